"""Request-path overhead: the example verify route with the extension against the same route without it.

Each variant is the example app (``example_app.create_app``) under its own gunicorn (2 gthread workers x 4
threads), with its own SQLite files; every verification is a fresh pre-issued code for a phone whose OTP was
"sent" (a serial the emulator issued), so with the extension each 200 spools one verification, which becomes an
outbox row and one ``ReportConversion`` to the emulator (its own process). Load: ``wrk`` (its own process),
fixed connections, one pair per request. Variants run in turn, the order rotated each round, and a variant that
delivers is drained before the next run starts, so no run pays for another's backlog. A run in which gunicorn
handed (nearly) every connection to one of the two workers is run again (see ``IMBALANCED``).

    plain          create_app(conversion=False): the baseline
    ours           create_app(), default config (background work gives way to requests for up to 30 s)
    ours-sustained the same with OTP_CONVERSION_YIELD_TO_REQUESTS=1: load that outlasts the window
    append-only    OTP_CONVERSION_REPORTER_AUTOSTART=false, nobody applying: the request path alone
    disabled       OTP_CONVERSION_ENABLED=false: the decorator alone
    degraded       OTP_CONVERSION_DEGRADED: spool applied, no provider calls
    ours-nginx     create_app(), reporter delivering to nginx answering a fixed success (benchmarks/fixed_server.py)
    ours-sidecar   workers with OTP_CONVERSION_REPORTER_AUTOSTART=false, `flask otp-conversion deliver --nice 19`
                   applying and delivering to nginx (its CPU is counted with the workers')

    python benchmarks/overhead.py [--seconds 8] [--rounds 3] [--connections 16] [--variants ...] [--json PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _apps
import _harness as h

VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "plain": ("plain", {}),
    "ours": ("ours", {}),
    "degraded": ("ours", {"OTP_CONVERSION_DEGRADED": True}),
    "inline": ("inline", {}),
    # the reporter's provider is nginx answering a fixed success (benchmarks/fixed_server.py): what remains is
    # the extension's own cost, without the emulator's CPU on the same cores (a real provider is elsewhere)
    "ours-nginx": ("ours", {"_provider": "nginx"}),
    # delivery moved out of the web workers: `flask otp-conversion deliver --nice 19` in a process of its own
    "ours-sidecar": ("ours", {"_provider": "nginx", "_sidecar": True, "OTP_CONVERSION_REPORTER_AUTOSTART": False}),
    # load that outlasts the yield window: background work gives way for 1 s only, then runs beside the requests
    "ours-sustained": ("ours", {"OTP_CONVERSION_YIELD_TO_REQUESTS": 1}),
    # the request path alone: no background threads in the workers, nobody applies the spools
    "append-only": ("ours", {"OTP_CONVERSION_REPORTER_AUTOSTART": False}),
    # the decorator alone: the extension disabled, so the signal has no receiver
    "disabled": ("ours", {"OTP_CONVERSION_ENABLED": False}),
}


#: A run in which one of the two workers took at least this share of their CPU is run again (up to SPARE_RUNS
#: times a variant): gunicorn's workers race to accept wrk's connections, and now and then one wins them all,
#: which halves the throughput of whatever app is served and made single rounds' ratios swing by +-50 %.
IMBALANCED = 0.8
SPARE_RUNS = 3


def start_sidecar(config: dict[str, Any], workdir: Path) -> subprocess.Popen[bytes]:
    """``flask otp-conversion deliver`` for the app ``_apps:ours()`` with ``config``."""
    env = dict(os.environ, BENCH_APP_CONFIG=json.dumps(config), PYTHONPATH=f"{h.BENCH}:{h.ROOT}")
    log = (workdir / "deliver.log").open("wb")
    cmd = [h.PYTHON, "-m", "flask", "--app", "_apps:ours()", "otp-conversion", "deliver", "--nice", "19"]
    return subprocess.Popen(cmd, cwd=h.ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def _delivers(name: str, config: dict[str, Any]) -> bool:
    """Whether someone applies the variant's spools and delivers its reports (so a run ends drained)."""
    if config.get("OTP_CONVERSION_DEGRADED") or config.get("OTP_CONVERSION_ENABLED") is False:
        return False
    return bool(config.get("OTP_CONVERSION_REPORTER_AUTOSTART", True) or VARIANTS[name][1].get("_sidecar"))


def run(
    *, seconds: float, rounds: int, connections: int, max_rps: int, variants: list[str], latency: float = 0.0
) -> dict[str, Any]:
    per_run = int(seconds * max_rps) + 1000
    results: dict[str, list[h.WrkResult]] = {v: [] for v in variants}
    backlog: dict[str, list[int]] = {v: [] for v in variants}
    cpu: dict[str, list[tuple[float, float]]] = {v: [] for v in variants}
    deferred: dict[str, list[float]] = {v: [] for v in variants}
    shares: dict[str, list[float]] = {v: [] for v in variants}
    reruns = dict.fromkeys(variants, 0)
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="otp-bench-"))
        emulator = stack.enter_context(h.Emulator(latency))
        nginx = None
        if any(VARIANTS[name][1].get("_provider") == "nginx" for name in variants):
            from fixed_server import FixedServer

            nginx = stack.enter_context(FixedServer())
        configs, servers, pair_files = {}, {}, {}
        sidecars: dict[str, subprocess.Popen[bytes]] = {}
        try:
            for name in variants:
                kind, extra = VARIANTS[name]
                extra = dict(extra)
                provider_url = nginx.url if extra.pop("_provider", None) == "nginx" and nginx else emulator.url
                sidecar = extra.pop("_sidecar", False)
                configs[name] = h.app_config(provider_url, Path(tmp) / name, **extra)
                files = rounds + SPARE_RUNS
                pairs = _apps.preissue(kind, configs[name], emulator.issue(per_run * files + 500))
                # 500 for the warm-up, then one file a round, then the spare runs'
                warm, rest = pairs[:500], pairs[500:]
                pair_files[name] = [h.write_pairs(Path(tmp) / name / "warm.csv", warm)] + [
                    h.write_pairs(Path(tmp) / name / f"run{r}.csv", rest[r * per_run : (r + 1) * per_run])
                    for r in range(files)
                ]
                servers[name] = h.Server(kind, configs[name], Path(tmp)).start()
                if sidecar:
                    sidecars[name] = start_sidecar(configs[name], Path(tmp) / name)
            for name in variants:  # warm up: imports, connections, the reporter's first start
                h.warm_up(servers[name].url, pair_files[name][0], 400)
                if VARIANTS[name][0] == "ours" and _delivers(name, configs[name]):
                    h.wait_drained(configs[name], 60)
            spare = {name: list(pair_files[name][rounds + 1 :]) for name in variants}
            for r in range(rounds):
                order = variants[r % len(variants) :] + variants[: r % len(variants)]
                for name in order:
                    pairs_file = pair_files[name][r + 1]
                    while True:
                        workers = servers[name].worker_pids()
                        costs = workers + ([sidecars[name].pid] if name in sidecars else [])
                        split0 = [h.cpu_seconds([pid]) for pid in workers]
                        cpu0 = h.cpu_seconds(costs), h.cpu_seconds([emulator.pid])
                        result = h.wrk_verify(servers[name].url, pairs_file, seconds=seconds, connections=connections)
                        cpu1 = h.cpu_seconds(costs), h.cpu_seconds([emulator.pid])
                        split = [h.cpu_seconds([pid]) - before for pid, before in zip(workers, split0, strict=True)]
                        # the busier worker's share of the workers' CPU: ~0.5 when the connections are spread evenly
                        share = max(split) / sum(split) if sum(split) else 0.0
                        backlog_after = h.outbox(configs[name])[0] if VARIANTS[name][0] == "ours" else 0
                        if VARIANTS[name][0] == "ours" and _delivers(name, configs[name]):
                            h.wait_drained(configs[name], 120)
                        if share < IMBALANCED or not spare[name]:
                            break
                        # gunicorn handed (nearly) every connection to one worker: that run measures one core,
                        # whatever the app; run again on fresh pairs
                        reruns[name] += 1
                        print(f"round {r + 1} {name:9s} {_line(result)}  one worker took {share:.0%}: again")
                        pairs_file = spare[name].pop(0)
                    shares[name].append(share)
                    results[name].append(result)
                    cpu[name].append(
                        ((cpu1[0] - cpu0[0]) / result.requests * 1000, (cpu1[1] - cpu0[1]) / result.requests * 1000)
                    )
                    if VARIANTS[name][0] == "ours":
                        backlog[name].append(backlog_after)
                        if _delivers(name, configs[name]):
                            # what the run left for later: applying and delivering its backlog
                            deferred[name].append((h.cpu_seconds(costs) - cpu1[0]) / result.requests * 1000)
                    print(f"round {r + 1} {name:9s} {_line(result)}", flush=True)
            counts = emulator.counts()
        finally:
            for server in servers.values():
                server.stop()
            for proc in sidecars.values():
                proc.terminate()
                proc.wait(timeout=30)
    return summarise(
        results, backlog, cpu, deferred, shares, counts, reruns,
        seconds=seconds, connections=connections, rounds=rounds,
    )  # fmt: skip


def _line(r: h.WrkResult) -> str:
    return f"{r.rps:7.0f} req/s  p50 {r.p50_ms:6.1f} ms  p99 {r.p99_ms:6.1f} ms  non-2xx {r.non2xx}"


def summarise(
    results: dict[str, list[h.WrkResult]],
    backlog: dict[str, list[int]],
    cpu: dict[str, list[tuple[float, float]]],
    deferred: dict[str, list[float]],
    shares: dict[str, list[float]],
    counts: dict[str, Any],
    reruns: dict[str, int],
    **setup: Any,
) -> dict[str, Any]:
    out: dict[str, Any] = {"setup": setup, "variants": {}, "ratios": {}, "cpu_ratios": {}}
    for name, runs in results.items():
        out["variants"][name] = {
            "rps": h.spread([r.rps for r in runs]),
            "p50_ms": h.spread([r.p50_ms for r in runs]),
            "p99_ms": h.spread([r.p99_ms for r in runs]),
            "non2xx": sum(r.non2xx for r in runs),
            "socket_errors": sum(r.socket_errors for r in runs),
            # CPU milliseconds per verification during the run: the gunicorn workers, the emulator process
            "worker_cpu_ms_per_request": h.spread([c[0] for c in cpu[name]]),
            "emulator_cpu_ms_per_request": h.spread([c[1] for c in cpu[name]]),
            # the workers' CPU after the run, applying and delivering what it left (0 for a variant that does
            # not deliver in the workers, or delivered everything during the run)
            "deferred_cpu_ms_per_request": h.spread(deferred[name]) if deferred[name] else None,
            "busier_worker_cpu_share": [round(x, 2) for x in shares[name]],
            # runs measured again because one worker took at least IMBALANCED of the CPU
            "imbalanced_runs_repeated": reruns[name],
            "runs": [r.as_dict() for r in runs],
        }
        if backlog.get(name):
            out["variants"][name]["outbox_pending_after_run"] = backlog[name]
    if "plain" in results:
        base = results["plain"]
        for name, runs in results.items():
            if name == "plain":
                continue
            # ratio per round (runs of one round are side by side in time), then their spread
            ratios = [o.rps / b.rps for o, b in zip(runs, base, strict=False)]
            out["ratios"][name] = h.spread(ratios)
            # the same per CPU second the workers got: other work on a shared machine takes CPU from whichever
            # run it overlaps, which moves req/s by tens of percent but hardly moves CPU per request
            per_cpu = [b[0] / o[0] for o, b in zip(cpu[name], cpu["plain"], strict=False) if o[0] > 0]
            out["cpu_ratios"][name] = h.spread(per_cpu)
    out["emulator_calls"] = counts["calls"]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8.0, help="seconds per run (default 8)")
    parser.add_argument("--rounds", type=int, default=3, help="runs per variant, order rotated (default 3)")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections (default 16)")
    parser.add_argument("--max-rps", type=int, default=1500, help="pairs pre-issued per second of a run")
    parser.add_argument(
        "--variants",
        default="plain,ours,ours-sustained,append-only",
        help=f"comma-separated, of: {', '.join(VARIANTS)} (default: plain,ours,ours-sustained,append-only)",
    )
    parser.add_argument("--json", help="write the figures as JSON to this path")
    args = parser.parse_args()
    started = time.perf_counter()
    figures = run(
        seconds=args.seconds,
        rounds=args.rounds,
        connections=args.connections,
        max_rps=args.max_rps,
        variants=args.variants.split(","),
    )
    figures["wall_seconds"] = round(time.perf_counter() - started, 1)
    for name, v in figures["variants"].items():
        print(f"{name:9s} req/s {v['rps']['median']:7.0f} (min {v['rps']['min']:.0f}, max {v['rps']['max']:.0f})"
              f"  p50 {v['p50_ms']['median']:.1f} ms  p99 {v['p99_ms']['median']:.1f} ms"
              f"  CPU/request: workers {v['worker_cpu_ms_per_request']['median']:.2f} ms,"
              f" emulator {v['emulator_cpu_ms_per_request']['median']:.2f} ms")
    for name, ratio in figures["ratios"].items():
        print(f"throughput ratio {name}/plain: {ratio['median']:.3f} (min {ratio['min']:.3f}, max {ratio['max']:.3f})")
    for name, ratio in figures["cpu_ratios"].items():
        print(f"requests per worker CPU second, {name}/plain: {ratio['median']:.3f}"
              f" (min {ratio['min']:.3f}, max {ratio['max']:.3f})")
    h.write_json(args.json, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
