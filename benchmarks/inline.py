"""Inline baseline: the verify route reporting the conversion synchronously, beside ours, provider at 50 ms.

The emulator (its own process) answers every call 50 ms late, as a real provider round trip would. Two apps
under gunicorn (2 gthread workers x 4 threads), same load (``wrk``, fixed connections, one fresh pre-issued code
per request), runs alternated:

    inline   the example app without the extension, its verify view calling ``report_conversion`` through the
             package's own provider client after a right code, waiting for the answer (benchmarks/_apps.py)
    ours     the example app with the extension: the report goes out from the reporter, off the request path

    python benchmarks/inline.py [--seconds 8] [--rounds 2] [--connections 16] [--latency 0.05] [--json PATH]
"""

from __future__ import annotations

import argparse
import sys
import time

import overhead


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8.0, help="seconds per run (default 8)")
    parser.add_argument("--rounds", type=int, default=2, help="runs per variant, order rotated (default 2)")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections (default 16)")
    parser.add_argument("--latency", type=float, default=0.05, help="emulator latency, seconds (default 0.05)")
    parser.add_argument("--json", help="write the figures as JSON to this path")
    args = parser.parse_args()
    started = time.perf_counter()
    figures = overhead.run(
        seconds=args.seconds,
        rounds=args.rounds,
        connections=args.connections,
        # ours alone on the machine serves up to ~1,700 verifies/s, inline ~140: enough fresh codes for each
        max_rps={"inline": 400, "ours": 2000},
        variants=["inline", "ours"],
        latency=args.latency,
    )
    figures["setup"]["latency"] = args.latency
    figures["wall_seconds"] = round(time.perf_counter() - started, 1)
    v = figures["variants"]
    for name in ("inline", "ours"):
        print(f"{name:7s} req/s {v[name]['rps']['median']:6.0f}  p50 {v[name]['p50_ms']['median']:7.1f} ms"
              f"  p99 {v[name]['p99_ms']['median']:7.1f} ms")
    figures["ratios"]["ours_vs_inline_rps"] = round(v["ours"]["rps"]["median"] / v["inline"]["rps"]["median"], 2)
    figures["ratios"]["inline_vs_ours_p50"] = round(v["inline"]["p50_ms"]["median"] / v["ours"]["p50_ms"]["median"], 2)
    print(f"ours / inline throughput: {figures['ratios']['ours_vs_inline_rps']}x;"
          f" inline p50 / ours p50: {figures['ratios']['inline_vs_ours_p50']}x")
    overhead.h.write_json(args.json, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
