"""The provider emulator as a separate process, switchable while it serves (benchmarks only).

``python -m flask_otp_conversion.testing`` serves the emulator but takes faults only in-process, and restarting
it would forget the messages it sent (reports for them would then be refused). This host serves the same
``ProviderEmulator`` through the same ``EmulatorServer`` and reads one command a line on stdin, answering one
JSON line on stdout:

    issue START COUNT      register COUNT sent messages (+86137 numbers from START): {"serials": [...]}
    fault 500              every ReportConversion answers HTTP 500
    fault hang SECONDS     every ReportConversion hangs (the client sees its read timeout)
    clear                  drop the faults, end hangs in progress
    counts                 {"calls": {action: {"ok": n, "failed": n}}, "conversions": n}
    quit

    python benchmarks/_emulator.py [--latency 0.05]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter

from flask_otp_conversion.testing import EmulatorServer, Fault, ProviderEmulator

REPORT = "ReportConversion"


def phone(n: int) -> str:
    return f"+86137{n:08d}"


def answer(emulator: ProviderEmulator, words: list[str]) -> dict[str, object]:
    command = words[0] if words else ""
    if command == "issue":
        start, count = int(words[1]), int(words[2])
        serials = [emulator.issue_message_id("tencent", phone(n)) for n in range(start, start + count)]
        return {"serials": serials}
    if command == "fault" and words[1:2] == ["500"]:
        emulator.inject(REPORT, Fault.http_500())
        return {"fault": "http_500"}
    if command == "fault" and words[1:2] == ["hang"]:
        emulator.inject(REPORT, Fault.hang(float(words[2]) if len(words) > 2 else 60.0))
        return {"fault": "hang"}
    if command == "clear":
        emulator.clear_faults()
        emulator.release_hangs()
        return {"fault": None}
    if command == "counts":
        ok: Counter[str] = Counter()
        failed: Counter[str] = Counter()
        for call in emulator.calls():
            (ok if call.ok else failed)[call.action] += 1
        actions = sorted(set(ok) | set(failed))
        return {
            "calls": {a: {"ok": ok[a], "failed": failed[a]} for a in actions},
            "conversions": len(emulator.conversions()),
        }
    return {"error": f"unknown command {' '.join(words)!r}"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every answer")
    args = parser.parse_args()
    emulator = ProviderEmulator(latency=args.latency)
    with EmulatorServer(emulator) as server:
        print(json.dumps({"url": server.url}), flush=True)
        for line in sys.stdin:
            words = line.split()
            if words == ["quit"]:
                break
            try:
                reply = answer(emulator, words)
            except (IndexError, ValueError) as exc:
                reply = {"error": str(exc)}
            print(json.dumps(reply), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
