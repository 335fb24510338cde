"""A worker process for the multi-process contract test (run as a script, one per process).

Protocol on stdin/stdout, so the parent can start every process's work at the same moment: the worker
prints ``ready`` and waits for a line before each phase; it prints one JSON line with its results at the end.

    record URL PROC THREADS N BASE  phase 1: each thread sends its N messages and verifies most of them;
                                    phase 2: every thread of every process verifies the same not-yet-verified
                                    messages of all processes at once (only one verification may enqueue);
                                    phase 3: every thread of every process applies the same spool batch (the
                                    rest of the messages) at the same checkpoint (only one may apply it).
    claim URL THREADS BATCH         claims until nothing is due: acks, and hands some rows back once.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any

from flask_otp_conversion.store import VerifyOutcome, open_store
from flask_otp_conversion.store.base import Verification

PROCESSES = 4
WINDOW = 100_000.0


def message(proc: int, thread: int, i: int, n: int, threads: int) -> tuple[str, str]:
    """Message id and (unique) phone of message ``i`` of ``thread`` in ``proc``."""
    index = (proc * threads + thread) * n + i
    return f"p{proc}t{thread}m{i}", f"+6580{index:06d}"


def verified_in_phase(i: int) -> int:
    """1, 2 or 3: the phase in which message ``i`` is verified."""
    return {4: 2, 9: 3}.get(i % 10, 1)


def wait_for_go() -> None:
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        raise SystemExit("parent went away")


def run_threads(count: int, target: Any) -> None:
    threads = [threading.Thread(target=target, args=(t,)) for t in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def record(url: str, proc: int, threads: int, n: int, base: float) -> dict[str, Any]:
    wait_for_go()
    store = open_store(url)  # every process opens the fresh store at the same moment
    lock = threading.Lock()
    results: dict[str, Any] = {"enqueued": [], "already": 0, "unmatched": 0, "batches_applied": 0, "errors": []}

    def note(outcome: VerifyOutcome) -> None:
        with lock:
            if outcome.enqueued:
                results["enqueued"].append(outcome.message_id)
            elif outcome.already_verified:
                results["already"] += 1
            else:
                results["unmatched"] += 1

    def phase1(thread: int) -> None:
        try:
            for i in range(n):
                message_id, phone = message(proc, thread, i, n, threads)
                assert store.record_sent(phone=phone, message_id=message_id, provider="tencent", sent_at=base + i)
                if verified_in_phase(i) == 1:
                    by_id = message_id if i % 2 == 0 else None
                    note(
                        store.record_verified(
                            phone=phone,
                            message_id=by_id,
                            provider="tencent",
                            verified_at=base + i + 1,
                            match_window=WINDOW,
                        )
                    )
        except Exception as exc:  # reported to the parent, which fails the test
            results["errors"].append(repr(exc))

    def phase2(thread: int) -> None:
        try:
            for i in range(n):
                if verified_in_phase(i) != 2:
                    continue
                for owner in range(PROCESSES):
                    message_id, phone = message(owner, thread, i, n, threads)
                    by_id = message_id if (proc + i) % 2 == 0 else None
                    note(
                        store.record_verified(
                            phone=phone,
                            message_id=by_id,
                            provider="tencent",
                            verified_at=base + n + 10,
                            match_window=WINDOW,
                        )
                    )
        except Exception as exc:
            results["errors"].append(repr(exc))

    def phase3(thread: int) -> None:
        batch = [
            Verification(message(owner, t, i, n, threads)[1], None, base + n + 20)
            for owner in range(PROCESSES)
            for t in range(threads)
            for i in range(n)
            if verified_in_phase(i) == 3
        ]
        try:
            outcomes = store.apply_verifications(
                batch, provider="tencent", match_window=WINDOW, checkpoint=("shared-spool", 0, len(batch))
            )
            if outcomes is not None:
                with lock:
                    results["batches_applied"] += 1
                for outcome in outcomes:
                    note(outcome)
        except Exception as exc:
            results["errors"].append(repr(exc))

    run_threads(threads, phase1)
    wait_for_go()
    run_threads(threads, phase2)
    wait_for_go()
    run_threads(threads, phase3)
    store.close()
    return results


def claim(url: str, threads: int, batch: int) -> dict[str, Any]:
    wait_for_go()
    store = open_store(url)
    lock = threading.Lock()
    results: dict[str, Any] = {"acked": [], "released": 0, "errors": []}
    released: set[int] = set()

    def drain(thread: int) -> None:
        try:
            while True:
                items = store.claim(provider="tencent", limit=batch, lease_seconds=600, now=time.time())
                if not items:
                    return
                with lock:  # this process hands each row it sees with an id ending in 3 back once
                    back = [item for item in items if item.id % 10 == 3 and item.id not in released]
                    released.update(item.id for item in back)
                if back:
                    assert store.release(back) == len(back)
                keep = [item for item in items if item not in back]
                assert store.ack(keep, now=time.time()) == len(keep)
                with lock:
                    results["acked"].extend([item.id, item.message_id] for item in keep)
                    results["released"] += len(back)
        except Exception as exc:
            results["errors"].append(repr(exc))

    run_threads(threads, drain)
    store.close()
    return results


def main(argv: list[str]) -> None:
    mode, url, *rest = argv
    if mode == "record":
        proc, threads, n, base = int(rest[0]), int(rest[1]), int(rest[2]), float(rest[3])
        result = record(url, proc, threads, n, base)
    elif mode == "claim":
        result = claim(url, int(rest[0]), int(rest[1]))
    else:
        raise SystemExit(f"unknown mode {mode}")
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
