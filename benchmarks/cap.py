"""Drain at the documented cap: one process, Tencent's 1,000/s ReportConversion limit, 50 ms provider latency.

    python benchmarks/cap.py [--rows 6000] [--rounds 2] [--latency 0.05] [--base REF] [--json PATH]

The provider is nginx on loopback answering a fixed ``ReportConversion`` success ``--latency`` late (the echo
module's timer: no thread held) and logging each request's arrival time (``fixed_server.py``). It is measured
alone first (wrk, 200 connections) to show that it serves far more than the cap at that latency, so the cap,
not the server, bounds what follows.

An outbox of ``--rows`` verified sends (a real SQLite store, filled once through the extension, copied per
round) is drained by one process, ``OTPConversion(app)`` with autostart off and ``conversion.flush()``, with the
extension's default rate limits (the provider's documented ones). From nginx's log: reports/s between the first
and the last arrival (and without the first and last 0.5 s: the rate once the senders are up), and the most
arrivals in any 1-second window (sliding, not per calendar second), which must never exceed the cap. With
--base REF the same harness also drains with another commit's code.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import _harness as h
import _outbox
from fixed_server import FixedServer

CAP = 1000.0  # Tencent's documented ReportConversion limit, the extension's default for it


def max_in_window(times: Sequence[float], window: float = 1.0) -> int:
    """The most arrivals in any half-open interval [t, t + window)."""
    ordered = sorted(times)
    best, start = 0, 0
    for end, t in enumerate(ordered):
        while ordered[start] <= t - window:
            start += 1
        best = max(best, end - start + 1)
    return best


def middle_rate(times: Sequence[float], edge: float = 0.5) -> float:
    """Arrivals/s between ``edge`` seconds after the first arrival and ``edge`` before the last: the rate the drain
    holds once its senders are up, without the start-up ramp and the tail (0.0 for a drain too short to have one)."""
    ordered = sorted(times)
    if len(ordered) < 2 or ordered[-1] - ordered[0] <= 2 * edge:
        return 0.0
    mid = [t for t in ordered if ordered[0] + edge <= t <= ordered[-1] - edge]
    return (len(mid) - 1) / (mid[-1] - mid[0]) if len(mid) > 1 and mid[-1] > mid[0] else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=6000, help="outbox rows per round (default 6000)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds (default 2)")
    parser.add_argument("--latency", type=float, default=0.05, help="provider latency, seconds (default 0.05)")
    parser.add_argument("--base", help="also drain with this commit's code (a git ref), in a throw-away worktree")
    parser.add_argument("--json", type=Path, help="write the figures to this file as JSON")
    args = parser.parse_args()
    figures: dict[str, Any] = {"setup": {"rows": args.rows, "rounds": args.rounds, "latency_s": args.latency,
                                         "cap_per_s": CAP}}  # fmt: skip
    runs: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="otp-bench-") as tmp, h.checkout(args.base) as base_root, FixedServer(
        latency=args.latency, log_arrivals=True
    ) as server:
        workdir = Path(tmp)
        alone = h.fixed_server_alone(server.url, connections=200)
        figures["nginx_alone_req_per_s"] = round(alone)
        print(f"nginx alone at {args.latency * 1000:g} ms (wrk -c200): {alone:,.0f} req/s, {alone / CAP:.1f}x the cap")
        roots = {"ours": h.ROOT, **({"base": base_root} if base_root else {})}
        figures["code"] = {name: h.commit_of(root) for name, root in roots.items()}
        templates = {}
        for name, root in roots.items():
            templates[name] = workdir / f"template-{name}"
            _outbox.fill(root, _outbox.app_config(server.url, templates[name], cap=None), templates[name], args.rows)
        for r in range(args.rounds):
            for name, root in roots.items():
                instance = _outbox.copy(templates[name], workdir / f"{name}-{r}")
                before = len(server.arrivals())
                result = _outbox.drain(root, _outbox.app_config(server.url, instance, cap=None), instance)
                times = server.arrivals()[before:]
                span = max(times) - min(times) if len(times) > 1 else 0.0
                one = {
                    "arrived": len(times),
                    "left": result["left"],
                    "reports_per_s": round((len(times) - 1) / span, 1) if span else 0.0,
                    "flush_reports_per_s": round(len(times) / result["seconds"], 1),
                    "middle_reports_per_s": round(middle_rate(times), 1),
                    "max_in_1s": max_in_window(times),
                    "cpu_ms_per_report": round(result["cpu_s"] * 1000 / max(len(times), 1), 3),
                }
                runs.setdefault(name, []).append(one)
                print(f"round {r + 1} {name}: {one['reports_per_s']:7,.1f} reports/s "
                      f"({one['middle_reports_per_s']:,.1f} without the first and last 0.5 s), most in any 1 s "
                      f"{one['max_in_1s']:,} (cap {CAP:,.0f}); {one['arrived']:,} arrived, {one['left']} left, "
                      f"{one['cpu_ms_per_report']} ms CPU/report", flush=True)
    figures["variants"] = {
        name: {
            "reports_per_s": h.spread([m["reports_per_s"] for m in measured]),
            "middle_reports_per_s": h.spread([m["middle_reports_per_s"] for m in measured]),
            "max_in_1s": max(m["max_in_1s"] for m in measured),
            "over_cap": any(m["max_in_1s"] > CAP for m in measured),
            "arrived": [m["arrived"] for m in measured],
            "left": [m["left"] for m in measured],
            "cpu_ms_per_report": h.spread([m["cpu_ms_per_report"] for m in measured]),
            "runs": measured,
        }
        for name, measured in runs.items()
    }
    h.write_json(str(args.json) if args.json else None, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
