"""Request-path overhead: the example verify route with the extension against the same route without it.

Each variant is the example app (``example_app.create_app``) under its own gunicorn (2 gthread workers x 4
threads), with its own SQLite files; every verification is a fresh pre-issued code for a phone whose OTP was
"sent" (a serial the emulator issued), so with the extension each 200 spools one verification, which becomes an
outbox row and one ``ReportConversion`` to the emulator (its own process). Load: ``wrk`` (its own process),
fixed connections, one pair per request. Variants run in turn, the order rotated each round, and a variant that
delivers is drained before the next run starts, so no run pays for another's backlog. A run in which gunicorn
handed (nearly) every connection to one of the two workers is run again (see ``IMBALANCED``); each worker takes
at most its share of wrk's connections and two more (gunicorn's ``--worker-connections``), so that is rare.

    plain          create_app(conversion=False): the baseline
    plain-twin     the baseline again: the control of the paired rounds (two equal apps should come out at 1)
    ours           create_app(), default config (one worker, the deliverer, applies the spools and delivers
                   beside the requests it serves)
    ours-every     the same with OTP_CONVERSION_SINGLE_DELIVERER=False: every worker applies and delivers
    ours-nice10    the same, its delivery process niced by 10 instead of under SCHED_IDLE (OTP_CONVERSION_DELIVERY_IDLE)
    ours-nice19    the same, niced by 19 (OTP_CONVERSION_DELIVERY_NICE)
    ours-nice0     the same, its delivery process neither idle nor niced
    append-only    OTP_CONVERSION_REPORTER_AUTOSTART=false, nobody applying: the request path alone
    disabled       OTP_CONVERSION_ENABLED=false: the decorator alone
    degraded       OTP_CONVERSION_DEGRADED: spool applied, no provider calls
    ours-nginx     create_app(), reporter delivering to nginx answering a fixed success (benchmarks/fixed_server.py)
    ours-sidecar   workers with OTP_CONVERSION_REPORTER_AUTOSTART=false, `flask otp-conversion deliver --nice 19`
                   applying and delivering to nginx (its CPU is counted with the workers')
    hand-append    plain, its verify view appending the phone and the time to a file by hand (one os.write):
                   the floor of any durable record made in the request (``_apps._hand_append``)

Paired rounds (``--paired-rounds N``) then load plain and each other variant at the same time, each server with
its own wrk, so that both halves of a ratio see the same machine: on a shared VM, other work moves sequential
runs seconds apart by tens of percent, and moves two simultaneous runs alike.

    python benchmarks/overhead.py [--seconds 8] [--rounds 3] [--connections 16] [--variants ...]
                                  [--paired-rounds N] [--json PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _apps
import _harness as h

VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "plain": ("plain", {}),
    # the baseline again, as a control: its ratio to plain shows what the method alone makes of two equal apps
    "plain-twin": ("plain", {}),
    "ours": ("ours", {}),
    # every worker applies its spool and delivers (the default before one deliverer per store)
    "ours-every": ("ours", {"OTP_CONVERSION_SINGLE_DELIVERER": False}),
    # the delivery process niced instead of under SCHED_IDLE
    "ours-nice10": ("ours", {"OTP_CONVERSION_DELIVERY_IDLE": False}),
    "ours-nice19": ("ours", {"OTP_CONVERSION_DELIVERY_IDLE": False, "OTP_CONVERSION_DELIVERY_NICE": 19}),
    "ours-nice0": ("ours", {"OTP_CONVERSION_DELIVERY_IDLE": False, "OTP_CONVERSION_DELIVERY_NICE": 0}),
    "degraded": ("ours", {"OTP_CONVERSION_DEGRADED": True}),
    "inline": ("inline", {}),
    # the reporter's provider is nginx answering a fixed success (benchmarks/fixed_server.py): what remains is
    # the extension's own cost, without the emulator's CPU on the same cores (a real provider is elsewhere)
    "ours-nginx": ("ours", {"_provider": "nginx"}),
    # delivery moved out of the web workers: `flask otp-conversion deliver --nice 19` in a process of its own
    "ours-sidecar": ("ours", {"_provider": "nginx", "_sidecar": True, "OTP_CONVERSION_REPORTER_AUTOSTART": False}),
    # the request path alone: no background threads in the workers, nobody applies the spools
    "append-only": ("ours", {"OTP_CONVERSION_REPORTER_AUTOSTART": False}),
    # the decorator alone: the extension disabled, so the signal has no receiver
    "disabled": ("ours", {"OTP_CONVERSION_ENABLED": False}),
    # the floor: the least a durable record in the request costs, written by hand for this one view
    "hand-append": ("hand_append", {}),
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


@dataclass
class _Run:
    result: h.WrkResult
    #: CPU ms per request during the run: (the workers and a sidecar, the emulator)
    cpu: tuple[float, float]
    #: CPU ms per request of the variant's store server during the run (PostgreSQL, Redis; None: no server)
    store_cpu: float | None
    #: the busier worker's share of the workers' CPU: ~0.5 when the connections are spread evenly
    share: float
    #: verifications the run left unapplied or undelivered (ours only)
    backlog: int
    #: CPU ms per request of the run spent after it, applying and delivering that backlog (None: not drained)
    deferred: float | None


def run(
    *,
    seconds: float,
    rounds: int,
    connections: int,
    max_rps: int | Mapping[str, int],
    variants: list[str],
    latency: float = 0.0,
    paired_rounds: int = 0,
    paired_variants: list[str] | None = None,
    store_cpu: Mapping[str, Callable[[], float]] | None = None,
) -> dict[str, Any]:
    """Sequential rounds of ``variants``, then ``paired_rounds`` rounds in which each of ``paired_variants``
    (default: ``variants`` but plain) runs at the same time as plain. ``max_rps``: pairs pre-issued per second of
    a run, for every variant or per variant; a run that outruns them reuses spent codes, whose 4xx answers would
    pass for fast verifies (see ``non2xx`` in the figures). ``store_cpu``: per variant, the CPU seconds so far of
    the store server it uses, which shares the machine's cores with the workers."""
    store_cpu = store_cpu or {}

    def per_run(name: str) -> int:
        rate = max_rps if isinstance(max_rps, int) else max_rps[name]
        return int(seconds * rate) + 1000

    runs: dict[str, list[_Run]] = {v: [] for v in variants}
    paired_variants = [v for v in (paired_variants or variants) if v != "plain"] if paired_rounds else []
    paired: dict[str, list[tuple[_Run, _Run]]] = {v: [] for v in paired_variants}
    served = list(dict.fromkeys([*variants, *(["plain", *paired_variants] if paired_variants else [])]))
    reruns = dict.fromkeys(variants, 0)
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="otp-bench-"))
        emulator = stack.enter_context(h.Emulator(latency))
        nginx = None
        if any(VARIANTS[name][1].get("_provider") == "nginx" for name in served):
            from fixed_server import FixedServer

            nginx = stack.enter_context(FixedServer())
        configs: dict[str, dict[str, Any]] = {}
        servers: dict[str, h.Server] = {}
        fresh: dict[str, list[Path]] = {}  # pair files not used yet, one run each
        sidecars: dict[str, subprocess.Popen[bytes]] = {}

        def issue_runs(name: str, files: int, *, warm: bool = False) -> None:
            """Pre-issue ``files`` runs' worth of fresh pairs for ``name`` (and its warm-up pairs)."""
            size = per_run(name)
            pairs = _apps.preissue(VARIANTS[name][0], configs[name], emulator.issue(size * files + 500 * warm))
            if warm:
                h.write_pairs(Path(tmp) / name / "warm.csv", pairs[:500])
                pairs = pairs[500:]
            made = len(list((Path(tmp) / name).glob("run*.csv")))
            fresh.setdefault(name, []).extend(
                h.write_pairs(Path(tmp) / name / f"run{made + r}.csv", pairs[r * size : (r + 1) * size])
                for r in range(files)
            )

        def measure(name: str, after: Callable[[], None] = lambda: None) -> _Run:
            """One run of ``name`` on fresh pairs; ``after`` is called once the load has ended (before any
            drain), so that a paired run's two halves are drained after both have ended."""
            if not fresh[name]:  # a spare run: its pairs, before any CPU is counted
                issue_runs(name, 1)
            workers = servers[name].worker_pids()
            costs = servers[name].cost_pids() + ([sidecars[name].pid] if name in sidecars else [])
            split0 = [h.cpu_seconds([pid]) for pid in workers]
            server_cpu = store_cpu.get(name)
            cpu0 = h.cpu_seconds(costs), h.cpu_seconds([emulator.pid])
            store0 = server_cpu() if server_cpu else 0.0
            result = h.wrk_verify(servers[name].url, fresh[name].pop(0), seconds=seconds, connections=connections)
            cpu1 = h.cpu_seconds(costs), h.cpu_seconds([emulator.pid])
            store1 = server_cpu() if server_cpu else 0.0
            split = [h.cpu_seconds([pid]) - before for pid, before in zip(workers, split0, strict=True)]
            after()
            backlog, deferred = 0, None
            if VARIANTS[name][0] == "ours":
                backlog = h.outbox(configs[name])[0]
                if _delivers(name, configs[name]):
                    h.wait_drained(configs[name], 120)
                    deferred = (h.cpu_seconds(costs) - cpu1[0]) / result.requests * 1000
            per_request = (cpu1[0] - cpu0[0]) / result.requests * 1000, (cpu1[1] - cpu0[1]) / result.requests * 1000
            share = max(split) / sum(split) if sum(split) else 0.0
            store = (store1 - store0) / result.requests * 1000 if server_cpu else None
            return _Run(result, per_request, store, share, backlog, deferred)

        try:
            for name in served:
                kind, extra = VARIANTS[name]
                extra = dict(extra)
                provider_url = nginx.url if extra.pop("_provider", None) == "nginx" and nginx else emulator.url
                sidecar = extra.pop("_sidecar", False)
                configs[name] = h.app_config(provider_url, Path(tmp) / name, **extra)
                # a run a round and the paired runs (plain is paired with every other variant); a spare run's
                # pairs are issued when one is needed
                files = (rounds if name in variants else 0) + paired_rounds * (
                    len(paired_variants) if name == "plain" else int(name in paired_variants)
                )
                issue_runs(name, files, warm=True)
                cap = h.per_worker(connections)
                servers[name] = h.Server(kind, configs[name], Path(tmp), max_connections=cap).start()
                if sidecar:
                    sidecars[name] = start_sidecar(configs[name], Path(tmp) / name)
            for name in served:  # warm up: imports, connections, the reporter's first start
                h.warm_up(servers[name].url, Path(tmp) / name / "warm.csv", 400)
                if VARIANTS[name][0] == "ours" and _delivers(name, configs[name]):
                    h.wait_drained(configs[name], 60)
            spare = dict.fromkeys(variants, SPARE_RUNS)
            for r in range(rounds):
                order = variants[r % len(variants) :] + variants[: r % len(variants)]
                for name in order:
                    one = measure(name)
                    while one.share >= IMBALANCED and spare[name] > 0:
                        # gunicorn handed (nearly) every connection to one worker: that run measures one core,
                        # whatever the app; run again on fresh pairs
                        spare[name] -= 1
                        reruns[name] += 1
                        print(f"round {r + 1} {name:9s} {_line(one.result)}  one worker took {one.share:.0%}: again")
                        one = measure(name)
                    runs[name].append(one)
                    print(f"round {r + 1} {name:9s} {_line(one.result)}", flush=True)
            for r in range(paired_rounds):
                for name in paired:
                    paired[name].append(_paired(measure, name))
                    base, other = paired[name][-1]
                    print(
                        f"paired {r + 1} plain {base.result.rps:7.0f} req/s, {name} {other.result.rps:7.0f} req/s:"
                        f" {other.result.rps / base.result.rps:.3f}",
                        flush=True,
                    )
            counts = emulator.counts()
        finally:
            for server in servers.values():
                server.stop()
            for proc in sidecars.values():
                proc.terminate()
                proc.wait(timeout=30)
    figures = summarise(runs, counts, reruns, seconds=seconds, connections=connections, rounds=rounds)
    if paired_rounds:
        figures["paired"] = summarise_paired(paired, rounds=paired_rounds)
    return figures


def _paired(measure: Callable[..., _Run], name: str) -> tuple[_Run, _Run]:
    """plain and ``name`` loaded at the same time, each by its own wrk: both runs see the same machine (other
    work on it, CPU frequency), which sequential runs seconds apart do not."""
    done = threading.Barrier(2, timeout=600)  # a half that failed must not leave the other waiting for ever
    box: dict[str, _Run] = {}

    def one(variant: str) -> None:
        box[variant] = measure(variant, after=done.wait)

    thread = threading.Thread(target=one, args=("plain",))
    thread.start()
    one(name)
    thread.join()
    return box["plain"], box[name]


def _line(r: h.WrkResult) -> str:
    return f"{r.rps:7.0f} req/s  p50 {r.p50_ms:6.1f} ms  p99 {r.p99_ms:6.1f} ms  non-2xx {r.non2xx}"


def summarise(
    runs: dict[str, list[_Run]], counts: dict[str, Any], reruns: dict[str, int], **setup: Any
) -> dict[str, Any]:
    out: dict[str, Any] = {"setup": setup, "variants": {}, "ratios": {}, "cpu_ratios": {}}
    for name, measured in runs.items():
        results = [m.result for m in measured]
        deferred = [m.deferred for m in measured if m.deferred is not None]
        out["variants"][name] = {
            "rps": h.spread([r.rps for r in results]),
            "p50_ms": h.spread([r.p50_ms for r in results]),
            "p99_ms": h.spread([r.p99_ms for r in results]),
            "non2xx": sum(r.non2xx for r in results),
            "socket_errors": sum(r.socket_errors for r in results),
            # CPU milliseconds per verification during the run: the gunicorn workers, the emulator process
            "worker_cpu_ms_per_request": h.spread([m.cpu[0] for m in measured]),
            "emulator_cpu_ms_per_request": h.spread([m.cpu[1] for m in measured]),
            # the store server's CPU milliseconds per verification during the run (None: the store is a file)
            "store_cpu_ms_per_request": (
                h.spread([m.store_cpu for m in measured if m.store_cpu is not None])
                if any(m.store_cpu is not None for m in measured)
                else None
            ),
            # the workers' CPU after the run, applying and delivering what it left (None for a variant that does
            # not deliver in the workers)
            "deferred_cpu_ms_per_request": h.spread(deferred) if deferred else None,
            "busier_worker_cpu_share": [round(m.share, 2) for m in measured],
            # runs measured again because one worker took at least IMBALANCED of the CPU
            "imbalanced_runs_repeated": reruns[name],
            "runs": [r.as_dict() for r in results],
        }
        if VARIANTS[name][0] == "ours":
            out["variants"][name]["outbox_pending_after_run"] = [m.backlog for m in measured]
    if "plain" in runs:
        base = runs["plain"]
        for name, measured in runs.items():
            if name == "plain":
                continue
            # ratio per round (runs of one round are side by side in time), then their spread
            out["ratios"][name], out["cpu_ratios"][name] = _ratios(zip(base, measured, strict=False))
    out["emulator_calls"] = counts["calls"]
    return out


def _ratios(pairs: Iterable[tuple[_Run, _Run]]) -> tuple[dict[str, float], dict[str, float]]:
    """Spreads of (variant / baseline) over (baseline, variant) runs: by req/s, and by requests per worker CPU
    second. Other work on a shared machine takes CPU from whichever run it overlaps, which moves req/s by tens of
    percent but hardly moves CPU per request."""
    pairs = list(pairs)
    by_rps = h.spread([o.result.rps / b.result.rps for b, o in pairs])
    by_cpu = h.spread([b.cpu[0] / o.cpu[0] for b, o in pairs if o.cpu[0] > 0])
    return by_rps, by_cpu


def summarise_paired(paired: dict[str, list[tuple[_Run, _Run]]], **setup: Any) -> dict[str, Any]:
    """Throughput and CPU ratios of runs made at the same time as a plain run."""
    out: dict[str, Any] = {"setup": setup, "ratios": {}, "cpu_ratios": {}, "busier_worker_cpu_share": {}}
    for name, pairs in paired.items():
        out["ratios"][name], out["cpu_ratios"][name] = _ratios(pairs)
        out["busier_worker_cpu_share"][name] = [(round(b.share, 2), round(o.share, 2)) for b, o in pairs]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8.0, help="seconds per run (default 8)")
    parser.add_argument("--rounds", type=int, default=3, help="runs per variant, order rotated (default 3)")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections (default 16)")
    parser.add_argument("--max-rps", type=int, default=3500, help="pairs pre-issued per second of a run (default 3500)")
    parser.add_argument(
        "--variants",
        default="plain,ours,append-only",
        help=f"comma-separated, of: {', '.join(VARIANTS)} (default: plain,ours,append-only)",
    )
    parser.add_argument(
        "--paired-rounds",
        type=int,
        default=0,
        help="then, this many rounds in which each variant runs at the same time as plain (default 0)",
    )
    parser.add_argument(
        "--paired-variants",
        default="plain-twin,ours,append-only",
        help="the variants paired with plain (default: plain-twin,ours,append-only; plain-twin is the control)",
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
        paired_rounds=args.paired_rounds,
        paired_variants=args.paired_variants.split(","),
    )
    figures["wall_seconds"] = round(time.perf_counter() - started, 1)
    for name, v in figures["variants"].items():
        print(
            f"{name:9s} req/s {v['rps']['median']:7.0f} (min {v['rps']['min']:.0f}, max {v['rps']['max']:.0f})"
            f"  p50 {v['p50_ms']['median']:.1f} ms  p99 {v['p99_ms']['median']:.1f} ms"
            f"  CPU/request: workers {v['worker_cpu_ms_per_request']['median']:.2f} ms,"
            f" emulator {v['emulator_cpu_ms_per_request']['median']:.2f} ms"
        )
    for name, ratio in figures["ratios"].items():
        print(f"throughput ratio {name}/plain: {ratio['median']:.3f} (min {ratio['min']:.3f}, max {ratio['max']:.3f})")
    for name, ratio in figures["cpu_ratios"].items():
        print(
            f"requests per worker CPU second, {name}/plain: {ratio['median']:.3f}"
            f" (min {ratio['min']:.3f}, max {ratio['max']:.3f})"
        )
    for name, ratio in (figures.get("paired") or {}).get("ratios", {}).items():
        cpu = figures["paired"]["cpu_ratios"][name]
        print(
            f"paired with plain, at the same time: {name}/plain {ratio['median']:.3f} by req/s"
            f" (min {ratio['min']:.3f}, max {ratio['max']:.3f}), {cpu['median']:.3f} by worker CPU"
        )
    h.write_json(args.json, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
