"""Steady state: verify latency with delivery running beside the requests, at ~25 % of the plain app's capacity.

    python benchmarks/steady.py [--seconds 15] [--rounds 2] [--fraction 0.25] [--connections 8] [--base REF]
                                [--json PATH]

Two apps under gunicorn (2 gthread workers x 4 threads, ``_harness.Server``), each with its own SQLite files:
``plain`` (the example app without the extension) and ``ours`` (the example app with it, default config, its
reporter delivering to nginx answering a fixed ``ReportConversion`` success, ``fixed_server.py``: a provider
whose CPU is not on our cores). With --base REF a third, ``base``: the example app and the extension of that
commit (a throw-away git worktree), with ``OTP_CONVERSION_YIELD_TO_REQUESTS = 1`` if it still has that window,
so that it too delivers beside the requests.

1. Capacity: plain alone, closed loop (``wrk -c16``, ``verify.lua``), --capacity-seconds.
2. The paced load: ``verify_paced.lua``, --connections connections each waiting so that together they offer
   --fraction of that capacity (wrk's ``delay()``). Each round loads each app in turn, a warm-up of
   --warm-seconds (delivery reaches its steady state) then --seconds measured, every request a fresh
   pre-issued code, so each 200 of ``ours`` becomes one report.
3. Per run: achieved verifies/s, p50 and p99 (wrk), the gunicorn workers' CPU per verify (/proc, delivery
   included) and the reports nginx received during the measured seconds (its access log): delivery kept up
   when that is about the number of verifies.

Variants beside ``plain`` (``--variants``, default ``ours``), each lever on its own, for the record:

    ours            default config: the deliverer worker's delivery process (under SCHED_IDLE) applies and delivers
    ours-nice10     the same, niced by 10 instead (``OTP_CONVERSION_DELIVERY_IDLE = False``)
    ours-nice19     the same, niced by 19 (``OTP_CONVERSION_DELIVERY_NICE``)
    ours-nice0      the same, not niced
    ours-threads    ``OTP_CONVERSION_DELIVERY_PROCESS = False``: the deliverer worker's own threads deliver
    threads-nice10  those threads (drain loop, senders) niced by 10 (``os.setpriority`` on each thread's id)
    threads-applier niced by 10, the spool's applier thread too
    threads-switch  ``sys.setswitchinterval(0.001)`` in the workers (a library must not change it for the app)
    ours-sidecar    workers with OTP_CONVERSION_REPORTER_AUTOSTART = False, ``flask otp-conversion deliver --nice 19``
                    applying and delivering

The CPU of a worker's children (the delivery process) and of the sidecar is counted with the workers'. The
threads-* nice and switch variants are benchmark-only hooks (``_apps.ours``), kept to show what they were
measured against.

The figures are ratios to plain within each round, medians over rounds. Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import _apps
import _harness as h
from fixed_server import FixedServer
from overhead import start_sidecar


def _yield_key(root: Path) -> dict[str, Any]:
    """The yield window cut to 1 s for a checkout that has it: its delivery then runs beside the requests, the
    steady state this measures (load longer than any window)."""
    config = (root / "flask_otp_conversion" / "config.py").read_text()
    return {"OTP_CONVERSION_YIELD_TO_REQUESTS": 1} if "yield_to_requests" in config else {}


#: Extra config per variant; ``_sidecar`` starts a ``deliver`` process beside the workers, other keys starting with
#: ``_`` are benchmark-only hooks read by ``_apps.ours``.
VARIANTS: dict[str, dict[str, Any]] = {
    "ours": {},
    "ours-nice10": {"OTP_CONVERSION_DELIVERY_IDLE": False},
    "ours-nice19": {"OTP_CONVERSION_DELIVERY_IDLE": False, "OTP_CONVERSION_DELIVERY_NICE": 19},
    "ours-nice0": {"OTP_CONVERSION_DELIVERY_IDLE": False, "OTP_CONVERSION_DELIVERY_NICE": 0},
    "ours-threads": {"OTP_CONVERSION_DELIVERY_PROCESS": False},
    "threads-nice10": {"OTP_CONVERSION_DELIVERY_PROCESS": False, "_nice": 10},
    "threads-applier": {"OTP_CONVERSION_DELIVERY_PROCESS": False, "_nice": 10, "_nice_applier": True},
    "threads-switch": {"OTP_CONVERSION_DELIVERY_PROCESS": False, "_switch_interval": 0.001},
    "ours-sidecar": {"_sidecar": True, "OTP_CONVERSION_REPORTER_AUTOSTART": False},
}


def settle(server: FixedServer, quiet: float = 1.5, timeout: float = 60.0) -> int:
    """Wait until nginx has received nothing for ``quiet`` seconds (a backlog delivered); the arrivals so far."""
    deadline = time.monotonic() + timeout
    count, since = len(server.arrivals()), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.25)
        now = len(server.arrivals())
        if now != count:
            count, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            break
    return count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=15.0, help="measured seconds per run (default 15)")
    parser.add_argument("--warm-seconds", type=float, default=4.0, help="paced warm-up before each run (default 4)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds, apps in turn (default 2)")
    parser.add_argument("--fraction", type=float, default=0.25, help="of the plain app's capacity (default 0.25)")
    parser.add_argument("--connections", type=int, default=8, help="paced wrk connections (default 8)")
    parser.add_argument("--capacity-seconds", type=float, default=5.0, help="plain capacity run (default 5)")
    parser.add_argument("--variants", default="ours", help=f"beside plain, comma-separated: {', '.join(VARIANTS)}")
    parser.add_argument("--base", help="also serve this commit's app and extension (a git ref)")
    parser.add_argument("--json", type=Path, help="write the figures to this file as JSON")
    args = parser.parse_args()
    variants = [v for v in args.variants.split(",") if v]
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variants: {', '.join(sorted(unknown))}")
    figures: dict[str, Any] = {"setup": {k: v for k, v in vars(args).items() if k != "json"}}
    runs: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="otp-bench-") as tmp, h.checkout(args.base) as base_root, FixedServer(
        log_arrivals=True
    ) as nginx:
        workdir = Path(tmp)
        apps: dict[str, tuple[str, Path, dict[str, Any]]] = {
            "plain": ("plain", h.ROOT, {}),
            **{name: ("ours", h.ROOT, {**_yield_key(h.ROOT), **VARIANTS[name]}) for name in variants},
            **({"base": ("ours", base_root, _yield_key(base_root))} if base_root else {}),
        }
        figures["code"] = {"ours": h.commit_of(h.ROOT), **({"base": h.commit_of(base_root)} if base_root else {})}
        # fresh codes for every request: capacity (plain only), warm-ups and runs, and wrk's last in-flight ones
        budget = int(3000 * args.capacity_seconds) + 500
        paced = int(3000 * (args.seconds + args.warm_seconds) * args.fraction * args.rounds) + 1000
        files: dict[str, list[Path]] = {}
        servers: dict[str, h.Server] = {}
        sidecars: dict[str, subprocess.Popen[bytes]] = {}
        serial = 0
        try:
            for name, (kind, root, extra) in apps.items():
                config = h.app_config(nginx.url, workdir / name, **extra)
                count = paced + (budget if name == "plain" else 0) + 500
                sent = [(f"+86137{n:08d}", f"5000:{n:032d}") for n in range(serial, serial + count)]
                serial += count
                pairs = _apps.preissue_in(str(root), kind, config, sent)
                files[name] = [h.write_pairs(workdir / name / "warm.csv", pairs[:500])]
                files[name].append(h.write_pairs(workdir / name / "paced.csv", pairs[500 : 500 + paced]))
                if name == "plain":
                    files[name].append(h.write_pairs(workdir / name / "capacity.csv", pairs[500 + paced :]))
                servers[name] = h.Server(kind, config, workdir, max_connections=h.per_worker(16), root=root).start()
                if config.get("_sidecar"):
                    sidecars[name] = start_sidecar(config, workdir / name)
            for name, server in servers.items():
                h.warm_up(server.url, files[name][0], 400)
            settle(nginx)
            capacity = h.wrk_verify(servers["plain"].url, files["plain"][2], seconds=args.capacity_seconds,
                                    connections=16)  # fmt: skip
            target = capacity.rps * args.fraction
            pause_ms = max(1, round(1000 * args.connections / target))
            figures["plain_capacity_per_s"] = round(capacity.rps, 1)
            figures["target_per_s"] = round(target, 1)
            print(f"plain capacity (wrk -c16, closed loop): {capacity.rps:,.0f} verifies/s; paced load: "
                  f"{args.connections} connections x 1 request per {pause_ms} ms + latency (~{target:,.0f}/s)",
                  flush=True)
            offsets = dict.fromkeys(servers, 0)  # lines of each paced file already used, by wrk threads of 1

            def paced_run(name: str, seconds: float) -> h.WrkResult:
                # wrk restarts at the file's first line: give each run the lines no earlier run used
                path = workdir / name / f"run-{offsets[name]}.csv"
                lines = files[name][1].read_text().splitlines()[offsets[name] :]
                path.write_text("\n".join(lines) + "\n")
                result = h.wrk(servers[name].url + "/otp/verify", "verify_paced.lua", seconds=seconds,
                               connections=args.connections, script_args=[str(path), "1", str(pause_ms)])  # fmt: skip
                offsets[name] += result.requests + args.connections
                return result

            for r in range(args.rounds):
                for name, server in servers.items():
                    paced_run(name, args.warm_seconds)
                    workers = server.cost_pids() + ([sidecars[name].pid] if name in sidecars else [])
                    arrived0, cpu0 = len(nginx.arrivals()), h.cpu_seconds(workers)
                    result = paced_run(name, args.seconds)
                    cpu, arrived = h.cpu_seconds(workers) - cpu0, len(nginx.arrivals()) - arrived0
                    one = {
                        **result.as_dict(),
                        "worker_cpu_ms_per_verify": round(cpu * 1000 / max(result.requests, 1), 3),
                        "reports_during_run": arrived,
                    }
                    runs.setdefault(name, []).append(one)
                    print(f"round {r + 1} {name:12s} {result.rps:6.0f} verifies/s  p50 {result.p50_ms:5.2f} ms  "
                          f"p99 {result.p99_ms:6.2f} ms  non-2xx {result.non2xx}  workers "
                          f"{one['worker_cpu_ms_per_verify']:.3f} ms CPU/verify  reports meanwhile {arrived:,}",
                          flush=True)
                    settle(nginx)
        finally:
            for sidecar in sidecars.values():
                sidecar.terminate()
                sidecar.wait(timeout=30)
            for server in servers.values():
                server.stop()
    figures["variants"] = {
        name: {
            "rps": h.spread([m["rps"] for m in measured]),
            "p50_ms": h.spread([m["p50_ms"] for m in measured]),
            "p99_ms": h.spread([m["p99_ms"] for m in measured]),
            "worker_cpu_ms_per_verify": h.spread([m["worker_cpu_ms_per_verify"] for m in measured]),
            "non2xx": sum(m["non2xx"] for m in measured),
            "reports_during_run": [m["reports_during_run"] for m in measured],
            "runs": measured,
        }
        for name, measured in runs.items()
    }
    plain = runs["plain"]
    figures["ratios"] = {
        name: {
            "p99": h.spread([o["p99_ms"] / p["p99_ms"] for p, o in zip(plain, measured, strict=True)]),
            "p50": h.spread([o["p50_ms"] / p["p50_ms"] for p, o in zip(plain, measured, strict=True)]),
            "cpu": h.spread([o["worker_cpu_ms_per_verify"] / p["worker_cpu_ms_per_verify"]
                             for p, o in zip(plain, measured, strict=True)]),
        }
        for name, measured in runs.items()
        if name != "plain"
    }  # fmt: skip
    for name, ratio in figures["ratios"].items():
        print(f"{name} / plain: p99 {ratio['p99']['median']:.2f}x, p50 {ratio['p50']['median']:.2f}x, "
              f"worker CPU per verify {ratio['cpu']['median']:.2f}x")
    h.write_json(str(args.json) if args.json else None, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
