"""The cached statistics endpoint under load: requests/s, and how many provider calls that load costs.

The example app with the extension under gunicorn (2 gthread workers x 4 threads), the emulator in its own
process, ``wrk -c32`` sending ``GET /otp-conversion/stats`` with the bearer token for --seconds. The provider's
statistics (Tencent: ``SendStatusStatistics`` + ``CallbackStatusStatistics``, one pair per fetch) are cached
for ``OTP_CONVERSION_STATS_CACHE_TTL`` (--ttl) in each worker process, single flight. Counted at the emulator:
fetches made, against the bound of one per TTL window per worker. Baseline in the same run: the same load with
the cache off (``TTL = 0``), where every request that is not sharing a failure calls the provider.

    python benchmarks/stats_load.py [--seconds 15] [--ttl 5] [--baseline-seconds 5] [--json PATH]
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _harness as h

ACTIONS = ("SendStatusStatistics", "CallbackStatusStatistics")


def _fetches(counts: dict[str, Any]) -> dict[str, int]:
    return {a: sum(counts["calls"].get(a, {}).values()) for a in ACTIONS}


def measure(emulator: h.Emulator, workdir: Path, *, ttl: float, seconds: float, connections: int) -> dict[str, Any]:
    config = h.app_config(emulator.url, workdir, OTP_CONVERSION_STATS_CACHE_TTL=ttl)
    with h.Server("ours", config, workdir.parent, max_connections=h.per_worker(connections)) as server:
        before = _fetches(emulator.counts())
        result = h.wrk(
            server.url + "/otp-conversion/stats",
            "get.lua",
            seconds=seconds,
            connections=connections,
            headers=[f"Authorization: Bearer {h.STATS_TOKEN}"],
        )
        after = _fetches(emulator.counts())
    calls = {a: after[a] - before[a] for a in ACTIONS}
    return {"ttl": ttl, "wrk": result.as_dict(), "provider_calls": calls, "fetches": max(calls.values())}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=15.0, help="seconds of cached load (default 15)")
    parser.add_argument("--ttl", type=float, default=5.0, help="OTP_CONVERSION_STATS_CACHE_TTL (default 5)")
    parser.add_argument("--baseline-seconds", type=float, default=5.0, help="seconds with the cache off (0: skip)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    parser.add_argument("--json", help="write the figures as JSON to this path")
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="otp-bench-") as tmp, h.Emulator() as emulator:
        cached = measure(emulator, Path(tmp) / "cached", ttl=args.ttl, seconds=args.seconds,
                         connections=args.connections)
        uncached = None
        if args.baseline_seconds > 0:
            uncached = measure(emulator, Path(tmp) / "uncached", ttl=0, seconds=args.baseline_seconds,
                               connections=args.connections)
    windows = math.ceil(args.seconds / args.ttl) + 1  # a window may straddle the start and the end
    bound = windows * h.WORKERS
    figures: dict[str, Any] = {
        "setup": {"seconds": args.seconds, "ttl": args.ttl, "connections": args.connections, "workers": h.WORKERS},
        "cached": cached,
        "uncached": uncached,
        "fetch_bound": bound,
        "fetches_within_bound": cached["fetches"] <= bound,
        "rps_ratio_cached_vs_uncached": (
            round(cached["wrk"]["rps"] / uncached["wrk"]["rps"], 1) if uncached and uncached["wrk"]["rps"] else None
        ),
        "wall_seconds": round(time.perf_counter() - started, 1),
    }
    w = cached["wrk"]
    print(f"cached (TTL {args.ttl:g} s): {w['rps']:.0f} req/s, p50 {w['p50_ms']:.1f} ms, p99 {w['p99_ms']:.1f} ms,"
          f" non-2xx {w['non2xx']}; provider fetches {cached['fetches']} {cached['provider_calls']}"
          f" (bound: {windows} windows x {h.WORKERS} workers = {bound})")
    if uncached:
        u = uncached["wrk"]
        print(f"uncached (TTL 0): {u['rps']:.0f} req/s, p99 {u['p99_ms']:.1f} ms, non-2xx {u['non2xx']};"
              f" provider fetches {uncached['fetches']}; ratio {figures['rps_ratio_cached_vs_uncached']}x")
    h.write_json(args.json, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
