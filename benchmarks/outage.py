"""Provider outage: verify latency and worker memory while the emulator fails, then the backlog drain.

One gunicorn (2 gthread workers x 4 threads) serves the example app with the extension (SQLite default store,
default reporter settings: breaker after 5 failures, 30 s reset doubling, 5 s read timeout); its deliverer meets
the outage while the verifications arrive.
Phases, with ``wrk`` (its own process, fixed connections, one fresh pre-issued code per request) and the emulator
in its own process, switched at run time through ``benchmarks/_emulator.py``:

    normal   the emulator healthy, the reporter delivering as requests arrive: p99 baseline (--normal-seconds)
    500      every ReportConversion answers HTTP 500, while half of --verifications arrive
    hang     every ReportConversion hangs (the client's read timeout ends it), the other half
    recover  faults cleared, no load: time until the outbox has nothing pending and the emulator has one
             accepted report per verification (split into the wait for the breaker's probe and the drain)

VmRSS of each gunicorn worker (/proc/<pid>/status) is sampled every 0.5 s from the start of the outage to the
end of the drain; growth is the peak minus the first sample.

    python benchmarks/outage.py [--verifications 10000] [--normal-seconds 10] [--json PATH]
    python benchmarks/outage.py --verifications 100000        # the issue's full size (~6 min more)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _apps
import _harness as h


def run(*, verifications: int, normal_seconds: float, connections: int, drain_timeout: float) -> dict[str, Any]:
    half = verifications // 2
    with tempfile.TemporaryDirectory(prefix="otp-bench-") as tmp, h.Emulator() as emulator:
        workdir = Path(tmp)
        config = h.app_config(emulator.url, workdir / "ours")
        normal_pairs = int(normal_seconds * 1500) + 500
        spare = connections  # in flight when a count-bound run stops
        pairs = _apps.preissue("ours", config, emulator.issue(normal_pairs + 2 * (half + spare)))
        warm = h.write_pairs(workdir / "warm.csv", pairs[:500])
        normal = h.write_pairs(workdir / "normal.csv", pairs[500:normal_pairs])
        phase_files = [
            h.write_pairs(workdir / "p500.csv", pairs[normal_pairs : normal_pairs + half + spare]),
            h.write_pairs(workdir / "hang.csv", pairs[normal_pairs + half + spare :]),
        ]
        with h.Server("ours", config, workdir, max_connections=h.per_worker(connections)) as server:
            h.warm_up(server.url, warm, 400)
            h.wait_drained(config, 60)
            base = h.wrk_verify(server.url, normal, seconds=normal_seconds, connections=connections)
            print(f"normal   {base.requests:7d} verifications  {base.rps:6.0f} req/s  p50 {base.p50_ms:6.1f} ms"
                  f"  p99 {base.p99_ms:6.1f} ms", flush=True)
            h.wait_drained(config, drain_timeout)
            reported_before = emulator.reports_ok()
            phases: dict[str, h.WrkResult] = {}
            with h.RssSampler(server.worker_pids()) as rss:
                outage_started = time.perf_counter()
                for fault, path in zip(("500", "hang 60"), phase_files, strict=False):
                    emulator.command(f"fault {fault}")
                    # count-bound: each request a fresh pair, wrk stops once all are answered
                    budget = half / max(base.rps, 50) * 1.3 + 5
                    result = h.wrk_verify(server.url, path, seconds=budget, connections=connections, limit=half)
                    phases[fault.split()[0]] = result
                    print(f"{fault.split()[0]:8s} {result.requests:7d} verifications  p50 {result.p50_ms:6.1f} ms"
                          f"  p99 {result.p99_ms:6.1f} ms  non-2xx {result.non2xx}", flush=True)
                outage_seconds = time.perf_counter() - outage_started
                pending_at_recovery = h.outbox(config)[0]
                emulator.command("clear")
                recovered = time.perf_counter()
                first_report = None
                expected = reported_before + sum(r.requests - r.non2xx for r in phases.values())
                drained = None
                while time.perf_counter() - recovered < drain_timeout:
                    ok = emulator.reports_ok()
                    if first_report is None and ok > reported_before:
                        first_report = time.perf_counter() - recovered
                    pending, dead = h.outbox(config)
                    if pending == 0 and ok >= expected:
                        drained = time.perf_counter() - recovered
                        break
                    time.sleep(0.5)
            pending_left, dead = h.outbox(config)
            counts = emulator.counts()
        growth = rss.growth_mib()
    outage = list(phases.values())
    worst_p99 = max(r.p99_ms for r in outage)
    figures: dict[str, Any] = {
        "setup": {"verifications": 2 * half, "normal_seconds": normal_seconds, "connections": connections},
        "normal": base.as_dict(),
        "outage": {name: r.as_dict() for name, r in phases.items()},
        "outage_seconds": round(outage_seconds, 1),
        "p99_ratio_outage_vs_normal": round(worst_p99 / base.p99_ms, 3),
        "rss_growth_mib_per_worker": {str(pid): round(mib, 1) for pid, mib in growth.items()},
        "rss_growth_mib_max": round(max(growth.values()), 1),
        "rss_first_mib": {str(pid): round(kib / 1024, 1) for pid, kib in rss.first.items()},
        "pending_at_recovery": pending_at_recovery,
        "seconds_to_first_report_after_recovery": None if first_report is None else round(first_report, 1),
        "seconds_to_drain_after_recovery": None if drained is None else round(drained, 1),
        "drain_rate_reports_per_s": (
            None
            if drained is None or first_report is None or drained <= first_report
            else round(pending_at_recovery / (drained - first_report), 0)
        ),
        "pending_left": pending_left,
        "dead_letters": dead,
        "reports_expected": expected,
        "emulator_calls": counts["calls"],
    }
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--verifications", type=int, default=10_000, help="verifications during the outage")
    parser.add_argument("--normal-seconds", type=float, default=10.0, help="seconds of the healthy baseline run")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections (default 16)")
    parser.add_argument("--drain-timeout", type=float, default=600.0, help="give up on the drain after this")
    parser.add_argument("--json", help="write the figures as JSON to this path")
    args = parser.parse_args()
    started = time.perf_counter()
    figures = run(
        verifications=args.verifications,
        normal_seconds=args.normal_seconds,
        connections=args.connections,
        drain_timeout=args.drain_timeout,
    )
    figures["wall_seconds"] = round(time.perf_counter() - started, 1)
    print(f"p99 outage / normal: {figures['p99_ratio_outage_vs_normal']:.2f}")
    print(f"worker RSS growth: {figures['rss_growth_mib_per_worker']} MiB (peak minus first sample)")
    print(f"backlog at recovery: {figures['pending_at_recovery']} reports; first report after "
          f"{figures['seconds_to_first_report_after_recovery']} s, drained after "
          f"{figures['seconds_to_drain_after_recovery']} s; pending left {figures['pending_left']},"
          f" dead letters {figures['dead_letters']}")
    h.write_json(args.json, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
