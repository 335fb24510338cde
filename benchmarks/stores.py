"""Stores compared: the verify route on PostgreSQL and on Redis against SQLite and the plain app, and the drain rate
of 1, 2 and 4 delivering processes sharing one PostgreSQL outbox, then one Redis outbox, in the same run.

verify
    ``overhead.run`` (gunicorn, wrk, the emulator; see ``overhead.py``) with four variants, order rotated each
    round: ``plain`` (the baseline), ``ours`` (default config, SQLite), ``ours-postgresql`` (the same app with
    ``OTP_CONVERSION_STORE_URL`` on a PostgreSQL server this script starts: ``initdb`` in a temporary folder,
    fsync on, ``tests/servers/postgresql.py``) and ``ours-redis`` (on a Redis server it starts:
    ``tests/servers/redis.py``, AOF with ``appendfsync always``). The spool keeps the store out of the request in
    all of them, so the ratios to plain should match; the store server's CPU per request is measured beside the
    workers', since here it shares their two cores (on a deployment it has a host of its own).
    ``--paired-rounds N`` then loads plain at the same time as each variant (``overhead.py``).
drain
    An outbox of ``--rows`` due rows in a fresh PostgreSQL schema (inserted by SQL), or under a fresh Redis key
    prefix (recorded through the store's own API: a send and a verification a row), drained by 1, 2 and 4
    processes at once (each a Flask app with an instance folder of its own calling ``conversion.flush()``, started
    before the clock), against nginx answering a fixed success 50 ms late (``fixed_server.py``): with the rate cap
    lifted, and at Tencent's documented 1,000/s. Figures: reports/s from nginx's arrival times, the most arrivals
    in any 1 s, and CPU per report of the drainers (every thread) and of the store server (PostgreSQL's
    processes, or ``redis-server``).

    python benchmarks/stores.py [--seconds 8] [--rounds 2] [--paired-rounds 0] [--rows 4000] [--only verify,drain]
                                [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import _harness as h
import _outbox
import overhead
from cap import max_in_window
from fixed_server import FixedServer

sys.path.insert(0, str(h.ROOT))
from flask_otp_conversion.store import open_store
from flask_otp_conversion.store.base import Verification
from tests.servers.postgresql import PostgreSQLServer, running_server
from tests.servers.redis import RedisServer, fresh_prefix
from tests.servers.redis import running as running_redis

#: Tencent's documented ReportConversion limit, the extension's default for it.
CAP = 1000.0
PROCESSES = (1, 2, 4)
LATENCY = 0.05
#: Verifications per Redis store transaction when filling (the spool applies batches of 500 too).
FILL_BATCH = 500


def postgres_cpu(server: PostgreSQLServer) -> float:
    """CPU seconds of the server: the postmaster with the backends it has reaped (a drainer's connections end
    with it), and those still running."""
    assert server.process is not None
    pid = server.process.pid
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(value) for value in fields[11:15])  # utime, stime, cutime, cstime
    return ticks / os.sysconf("SC_CLK_TCK") + h.cpu_seconds(h.children(pid))


def redis_cpu(server: RedisServer) -> float:
    """CPU seconds of ``redis-server`` (its main thread does all the work; the I/O threads are off)."""
    assert server.process is not None
    fields = Path(f"/proc/{server.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(value) for value in fields[11:13]) / os.sysconf("SC_CLK_TCK")


def verify_part(
    server: PostgreSQLServer, redis: RedisServer, *, seconds: float, rounds: int, paired_rounds: int
) -> dict[str, Any]:
    overhead.VARIANTS["ours-postgresql"] = ("ours", {"OTP_CONVERSION_STORE_URL": server.fresh_url()})
    overhead.VARIANTS["ours-redis"] = ("ours", {"OTP_CONVERSION_STORE_URL": redis.url(fresh_prefix())})
    figures = overhead.run(
        seconds=seconds,
        rounds=rounds,
        connections=16,
        max_rps=3500,
        variants=["plain", "ours", "ours-postgresql", "ours-redis"],
        paired_rounds=paired_rounds,
        store_cpu={"ours-postgresql": lambda: postgres_cpu(server), "ours-redis": lambda: redis_cpu(redis)},
    )
    return figures


def fill_postgresql(server: PostgreSQLServer, rows: int) -> str:
    """A fresh schema whose outbox holds ``rows`` due rows (as verifications would have left them); its URL."""
    url = server.fresh_url()
    open_store(url).close()  # creates the tables
    schema = url.rsplit("schema=", 1)[1]
    now = time.time()
    server.psql(
        f"INSERT INTO {schema}.otp_outbox (message_id, phone, provider, sent_at, verified_at, created_at, state,"
        " next_attempt_at) SELECT '5000:' || lpad(n::text, 32, '0'), '+86137' || lpad(n::text, 8, '0'), 'tencent',"
        f" {now - 60}, {now - 30}, {now - 30}, 'pending', {now - 30} FROM generate_series(1, {rows}) AS n"
    )
    return url


def fill_redis(server: RedisServer, rows: int) -> str:
    """A fresh prefix whose outbox holds ``rows`` due rows, as verifications leave them; its URL."""
    url = server.url(fresh_prefix())
    store = open_store(url)
    now = time.time()
    phones = [f"+86137{n:08d}" for n in range(rows)]
    for n, phone in enumerate(phones):
        store.record_sent(phone=phone, message_id=f"5000:{n:032d}", provider="tencent", sent_at=now - 60)
    for n, first in enumerate(range(0, rows, FILL_BATCH)):
        batch = [Verification(phone, None, now - 30) for phone in phones[first : first + FILL_BATCH]]
        store.apply_verifications(batch, provider="tencent", match_window=900.0, checkpoint=("fill", n, n + 1))
    store.close()
    return url


def drain_together(url: str, nginx_url: str, workdir: Path, processes: int, cap: float | None) -> dict[str, Any]:
    """``processes`` flushing one outbox at once; their CPU and wall time (start-up excluded)."""
    procs = []
    for n in range(processes):
        instance = workdir / f"drain-{uuid.uuid4().hex[:8]}-{n}"
        instance.mkdir(parents=True)
        config = _outbox.app_config(nginx_url, instance, cap=_outbox.NO_CAP if cap is None else cap)
        config["OTP_CONVERSION_STORE_URL"] = url
        job = json.dumps({"config": config, "instance": str(instance), "timeout": 300.0})
        procs.append(
            subprocess.Popen(
                [h.PYTHON, str(h.BENCH / "_outbox.py"), "drain", job],
                cwd=h.ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    try:
        for proc in procs:
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != "ready":
                raise RuntimeError(f"a drain process did not start:\n{proc.communicate()[1][-3000:]}")
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        results = []
        for proc in procs:
            out, err = proc.communicate(timeout=400)
            if proc.returncode != 0:
                raise RuntimeError(f"a drain process exited {proc.returncode}:\n{err[-3000:]}")
            results.append(json.loads(out.strip().splitlines()[-1]))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return {"cpu_s": sum(r["cpu_s"] for r in results), "left": max(r["left"] for r in results)}


def drain_part(
    fill: Callable[[int], str], server_cpu: Callable[[], float], *, server: str, key: str, rows: int, rounds: int
) -> dict[str, Any]:
    """One store's drains: ``fill(rows)`` gives a fresh outbox's URL, ``server_cpu()`` the store server's CPU
    seconds so far, reported per report under ``key``; ``server`` names it in the output."""
    runs: dict[str, list[dict[str, Any]]] = {}
    with (
        tempfile.TemporaryDirectory(prefix="otp-bench-") as tmp,
        FixedServer(latency=LATENCY, log_arrivals=True) as nginx,
    ):
        alone = h.fixed_server_alone(nginx.url, connections=200)
        print(f"nginx alone at {LATENCY * 1000:g} ms (wrk -c200): {alone:,.0f} req/s", flush=True)
        for r in range(rounds):
            for cap in (None, CAP):
                for processes in PROCESSES:
                    name = f"{processes} process{'es' if processes > 1 else ''}, " + (
                        "cap lifted" if cap is None else f"cap {CAP:,.0f}/s"
                    )
                    url = fill(rows)
                    before, cpu0 = len(nginx.arrivals()), server_cpu()
                    result = drain_together(url, nginx.url, Path(tmp), processes, cap)
                    cpu = server_cpu() - cpu0
                    times = nginx.arrivals()[before:]
                    span = max(times) - min(times) if len(times) > 1 else 0.0
                    one = {
                        "arrived": len(times),
                        "left": result["left"],
                        "reports_per_s": round((len(times) - 1) / span, 1) if span else 0.0,
                        "max_in_1s": max_in_window(times),
                        "cpu_ms_per_report": round(result["cpu_s"] * 1000 / max(len(times), 1), 3),
                        key: round(cpu * 1000 / max(len(times), 1), 3),
                    }
                    runs.setdefault(name, []).append(one)
                    print(
                        f"round {r + 1} {name}: {one['reports_per_s']:7,.1f} reports/s, most in any 1 s "
                        f"{one['max_in_1s']:,}; {one['arrived']:,} arrived, {one['left']} left, "
                        f"{one['cpu_ms_per_report']} ms CPU/report (+ {server} {one[key]})",
                        flush=True,
                    )
    variants = {
        name: {
            "reports_per_s": h.spread([m["reports_per_s"] for m in measured]),
            "max_in_1s": max(m["max_in_1s"] for m in measured),
            "arrived": [m["arrived"] for m in measured],
            "left": [m["left"] for m in measured],
            "cpu_ms_per_report": h.spread([m["cpu_ms_per_report"] for m in measured]),
            key: h.spread([m[key] for m in measured]),
            "runs": measured,
        }
        for name, measured in runs.items()
    }
    one = variants["1 process, cap lifted"]["reports_per_s"]["median"]
    scaling = {name: round(v["reports_per_s"]["median"] / one, 2) if one else None for name, v in variants.items()}
    capped = [v["max_in_1s"] for name, v in variants.items() if "cap lifted" not in name]
    return {
        "setup": {"rows": rows, "rounds": rounds, "latency_s": LATENCY, "cap_per_s": CAP, "processes": PROCESSES},
        "nginx_alone_req_per_s": round(alone),
        "variants": variants,
        "vs_one_process_cap_lifted": scaling,
        "max_in_1s_at_cap": max(capped) if capped else None,
        "over_cap": any(n > CAP for n in capped),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=8.0, help="seconds per verify run (default 8)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of each part (default 2)")
    parser.add_argument("--rows", type=int, default=4000, help="outbox rows per drain (default 4000)")
    parser.add_argument(
        "--paired-rounds", type=int, default=0, help="verify rounds with plain loaded at the same time (default 0)"
    )
    parser.add_argument("--only", default="verify,drain", help="parts to run (default verify,drain)")
    parser.add_argument("--json", help="write the figures as JSON to this path")
    args = parser.parse_args()
    parts = set(args.only.split(","))
    figures: dict[str, Any] = {}
    started = time.perf_counter()
    with running_server() as server, running_redis() as redis:
        figures["postgresql"] = server.psql("SHOW server_version")
        figures["redis"] = redis.client().info("server")["redis_version"]
        if "verify" in parts:
            verify = verify_part(
                server, redis, seconds=args.seconds, rounds=args.rounds, paired_rounds=args.paired_rounds
            )
            figures["verify"] = verify
            for name, v in verify["variants"].items():
                store = v["store_cpu_ms_per_request"]
                print(
                    f"{name:15s} req/s {v['rps']['median']:7.0f}  p99 {v['p99_ms']['median']:.1f} ms"
                    f"  CPU/request {v['worker_cpu_ms_per_request']['median']:.2f} ms"
                    + ("" if store is None else f" + store server {store['median']:.3f} ms"),
                    flush=True,
                )
            for name, ratio in verify["ratios"].items():
                print(
                    f"throughput ratio {name}/plain: {ratio['median']:.3f} ({ratio['min']:.3f} to {ratio['max']:.3f})"
                )
            for name, ratio in verify.get("paired", {}).get("ratios", {}).items():
                print(
                    f"paired throughput ratio {name}/plain: {ratio['median']:.3f}"
                    f" ({ratio['min']:.3f} to {ratio['max']:.3f})"
                )
        if "drain" in parts:
            drains: list[tuple[str, str, Callable[[int], str], Callable[[], float], str]] = [
                ("drain", "PostgreSQL", lambda rows: fill_postgresql(server, rows), lambda: postgres_cpu(server),
                 "postgres_cpu_ms_per_report"),
                ("redis_drain", "Redis", lambda rows: fill_redis(redis, rows), lambda: redis_cpu(redis),
                 "redis_cpu_ms_per_report"),
            ]  # fmt: skip
            for field, store, fill, cpu, key in drains:
                drain = drain_part(fill, cpu, server=store, key=key, rows=args.rows, rounds=args.rounds)
                figures[field] = drain
                for name, ratio in drain["vs_one_process_cap_lifted"].items():
                    print(f"drain {store} {name}: {ratio}x one process with the cap lifted")
    figures["wall_seconds"] = round(time.perf_counter() - started, 1)
    h.write_json(args.json, figures)
    return 0


if __name__ == "__main__":
    sys.exit(main())
