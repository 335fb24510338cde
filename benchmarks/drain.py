"""Drain rate of the real reporter (SQLite outbox -> provider) beside the official Tencent Cloud SDK in a loop.

    python benchmarks/drain.py [--rows 20000] [--processes 2] [--latency 0.05] [--json out.json]

The server: our client is what is measured, so the throughput runs talk to Debian's nginx on loopback
answering a fixed ``ReportConversion`` success (``fixed_server.py``): the Python emulator saturates near
800 requests/s on 2 cores and would measure itself. nginx alone is measured first (wrk), to show it is not
the bottleneck. A realistic run adds the provider's round trip (``--latency``, 50 ms) inside nginx.

Ours: an outbox of ``--rows`` verified messages (filled once through the extension, copied per run) is
drained by ``--processes`` processes at once, each an app with the extension calling ``conversion.flush()``
(the reporter's own claim / rate-limit / worker / ack path), as gunicorn workers sharing one store would.
The rate cap is lifted for the capacity runs (so the limiter is not what is measured) and left at Tencent's
documented 1,000/s for the default run.

The baseline: ``tencentcloud-sdk-python-sms`` (``SmsClient.ReportConversion``, keep-alive) reporting one
after another in a loop, as a hand-written integration does, against the same server in the same run.

Last, a correctness run: ``--emulator-rows`` reports to the provider emulator (a separate process that
checks every signature as Tencent does), all of which must be accepted.

The SDK is optional (``pip install tencentcloud-sdk-python-sms``; ``make bench`` installs it).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from fixed_server import FixedServer

from flask_otp_conversion.config import Settings

HERE = Path(__file__).resolve().parent
BATCH = 200  # SendSms takes at most 200 numbers a call
#: "Lifted" rate cap for the capacity runs: far above anything one machine sends.
NO_CAP = 1_000_000.0
#: Credentials for nginx (which checks nothing); the emulator run uses the emulator's own.
FAKE_KEYS = {"secret_id": "AKIDbenchmark0000000000000000000000", "secret_key": "b" * 32, "sdk_app_id": "1400000000"}


def app_config(
    url: str, db: Path, *, keys: dict[str, str], cap: float | None, concurrency: int | None
) -> dict[str, Any]:
    config: dict[str, Any] = {
        "OTP_CONVERSION_PROVIDER": "tencent",
        "OTP_CONVERSION_TENCENT_ENDPOINT": url,
        "OTP_CONVERSION_TENCENT_SECRET_ID": keys["secret_id"],
        "OTP_CONVERSION_TENCENT_SECRET_KEY": keys["secret_key"],
        "OTP_CONVERSION_TENCENT_SDK_APP_ID": keys["sdk_app_id"],
        "OTP_CONVERSION_STORE_URL": f"sqlite:///{db}",
        "OTP_CONVERSION_REPORTER_AUTOSTART": False,
        "OTP_CONVERSION_STATS_TOKEN": "benchmark",
    }
    if cap is not None:
        config["OTP_CONVERSION_RATE_LIMITS"] = {"ReportConversion": cap}
    if concurrency is not None:
        config["OTP_CONVERSION_REPORT_CONCURRENCY"] = concurrency
    return config


def make_app(config: dict[str, Any], instance: Path) -> tuple[Any, Any]:
    from flask import Flask

    from flask_otp_conversion import OTPConversion

    app = Flask("drain-bench", instance_path=str(instance))
    app.config.update(config)
    return app, OTPConversion(app)


def fill(config: dict[str, Any], instance: Path, pairs: list[tuple[str, str]]) -> float:
    """Record a send and a verification for each pair through the extension; returns seconds."""
    app, conversion = make_app(config, instance)
    with app.app_context():
        started = time.perf_counter()
        for phone, serial in pairs:
            conversion.record_sent(phone, serial)
            conversion.record_verified(phone, serial)
        seconds = time.perf_counter() - started
    app.extensions["otp_conversion"].shutdown()
    return seconds


def copy_db(source: Path, target: Path) -> None:
    """A consistent copy of a SQLite store (WAL included), through the backup API."""
    src, dst = sqlite3.connect(source), sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        src.close()
        dst.close()


def outbox_state(config: dict[str, Any], instance: Path) -> tuple[int, int]:
    """(pending, dead) rows."""
    app, _ = make_app(config, instance)
    state = app.extensions["otp_conversion"]
    try:
        stats = state.store.outbox_stats(now=time.time())
        return stats.pending, stats.dead
    finally:
        state.shutdown()


def worker(spec: str) -> int:
    """One draining process: build the app, wait for "go" on stdin, flush, report on stdout."""
    job = json.loads(spec)
    app, conversion = make_app(job["config"], Path(job["instance"]))
    with app.app_context():
        print("ready", flush=True)
        sys.stdin.readline()
        left = conversion.flush(timeout=job["timeout"])
    app.extensions["otp_conversion"].shutdown()
    print(json.dumps({"left": left}), flush=True)
    return 0


def drain(config: dict[str, Any], instance: Path, processes: int, rows: int, timeout: float) -> dict[str, Any]:
    """Start ``processes`` drainers, release them together, time until all are done."""
    spec = json.dumps({"config": config, "instance": str(instance), "timeout": timeout})
    procs = [
        subprocess.Popen(
            [sys.executable, str(Path(__file__)), "--worker", spec],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=HERE,
        )
        for _ in range(processes)
    ]
    for proc in procs:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError("a drain worker did not start")
    started = time.perf_counter()
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    cpu = 0.0
    for proc in procs:
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        cpu += usage.ru_utime + usage.ru_stime
    seconds = time.perf_counter() - started
    for proc in procs:
        assert proc.stdout is not None and proc.stdin is not None
        proc.stdout.close()
        proc.stdin.close()
        if proc.returncode != 0:
            raise RuntimeError(f"a drain worker exited {proc.returncode}")
    pending, dead = outbox_state(config, instance)
    delivered = rows - pending - dead
    return {
        "processes": processes,
        "rows": rows,
        "delivered": delivered,
        "pending": pending,
        "dead": dead,
        "seconds": round(seconds, 2),
        "reports_per_s": round(delivered / seconds, 1),
        # CPU of the drain processes (start-up included), per report delivered
        "cpu_ms_per_report": round(cpu * 1000 / max(delivered, 1), 3),
    }


def time_sdk(url: str, serials: list[str], keys: dict[str, str]) -> dict[str, Any] | None:
    """The official SDK reporting each serial in turn (keep-alive); None without the SDK."""
    try:
        from tencentcloud.common import credential
        from tencentcloud.common.profile.client_profile import ClientProfile
        from tencentcloud.common.profile.http_profile import HttpProfile
        from tencentcloud.sms.v20210111 import models, sms_client
    except ImportError:
        return None
    http = HttpProfile(protocol="http", endpoint=url.removeprefix("http://"), reqMethod="POST", keepAlive=True)
    client = sms_client.SmsClient(
        credential.Credential(keys["secret_id"], keys["secret_key"]), "ap-singapore", ClientProfile(httpProfile=http)
    )
    failed = 0
    cpu0, started = time.process_time(), time.perf_counter()
    for serial in serials:
        request = models.ReportConversionRequest()
        request.SmsSdkAppId = keys["sdk_app_id"]
        request.SerialNo = serial
        request.ConversionTime = int(time.time())
        reply = client.ReportConversion(request)
        if reply.ReportConversionStatus.Code.lower() != "ok":
            failed += 1
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu0
    done = len(serials) - failed
    return {
        "rows": len(serials),
        "failed": failed,
        "seconds": round(seconds, 2),
        "reports_per_s": round(done / seconds, 1),
        "cpu_ms_per_report": round(cpu * 1000 / max(done, 1), 3),
    }


def measure_nginx(url: str, seconds: float = 3.0) -> float | None:
    """Requests/s nginx alone serves to wrk (POST, 32 connections); None without wrk."""
    wrk = shutil.which("wrk")
    if wrk is None:
        return None
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write('wrk.method = "POST"\nwrk.body = \'{"SerialNo": "5000:1"}\'\n')
        script.write('wrk.headers["Content-Type"] = "application/json"\n')
    try:
        out = subprocess.run(
            [wrk, "-t1", "-c32", f"-d{seconds:g}s", "-s", script.name, url],
            capture_output=True, text=True, check=True,
        ).stdout
    finally:
        os.unlink(script.name)
    for line in out.splitlines():
        if line.startswith("Requests/sec:"):
            return float(line.split()[1])
    return None


def emulator_run(rows: int, workdir: Path) -> dict[str, Any]:
    """Every report signed and accepted by the emulator (real serials from SendSms)."""
    from flask_otp_conversion.providers.settings import TencentSettings
    from flask_otp_conversion.providers.tencent import TencentProvider
    from flask_otp_conversion.testing import ProviderEmulator

    cmd = [sys.executable, "-m", "flask_otp_conversion.testing", "--port", "0"]
    emulator = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        assert emulator.stdout is not None
        url = next(
            line.strip().split("=", 1)[1]
            for line in emulator.stdout
            if line.startswith("OTP_CONVERSION_TENCENT_ENDPOINT=")
        )
        keys = {
            "secret_id": ProviderEmulator.TENCENT_SECRET_ID,
            "secret_key": ProviderEmulator.TENCENT_SECRET_KEY,
            "sdk_app_id": ProviderEmulator.TENCENT_SDK_APP_ID,
        }
        settings = TencentSettings(**keys, endpoint=url, template_id="1110", sign_name="Example")
        numbers = [f"+86138{n:08d}" for n in range(rows)]
        pairs: list[tuple[str, str]] = []
        with TencentProvider.from_settings(settings) as provider:
            for i in range(0, rows, BATCH):
                reply = provider.send_sms(numbers[i : i + BATCH], ["123456"])
                pairs.extend((s.phone_number, s.serial_no) for s in reply.send_status_set)
        instance = workdir / "emulator"
        config = app_config(url, instance / "outbox.db", keys=keys, cap=None, concurrency=None)
        fill(config, instance, pairs)
        result = drain(config, instance, 1, len(pairs), timeout=600)
        result["accepted_by_emulator"] = result["pending"] == 0 and result["dead"] == 0
        return result
    finally:
        emulator.terminate()
        emulator.wait(timeout=10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20_000, help="outbox rows per drain run (default 20000)")
    parser.add_argument(
        "--side-rows", type=int, default=8_000, help="rows for the one-process and default-cap runs (default 8000)"
    )
    parser.add_argument("--processes", type=int, default=2, help="draining processes (default 2, the cores here)")
    parser.add_argument("--latency", type=float, default=0.05, help="provider round trip for the realistic runs")
    parser.add_argument("--sdk-rows", type=int, default=2_000, help="SDK loop reports with no latency (default 2000)")
    parser.add_argument("--sdk-rows-latency", type=int, default=200, help="SDK loop reports with latency (default 200)")
    parser.add_argument("--emulator-rows", type=int, default=3_000, help="reports for the emulator run (default 3000)")
    parser.add_argument("--concurrency", type=int, help="OTP_CONVERSION_REPORT_CONCURRENCY (default: the extension's)")
    parser.add_argument("--json", type=Path, help="also write every figure to this file as JSON")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker)

    figures: dict[str, Any] = {
        "rows": args.rows,
        "processes": args.processes,
        "latency_s": args.latency,
        "report_concurrency": args.concurrency or Settings.model_fields["report_concurrency"].default,
    }
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        templates: dict[int, Path] = {}
        for rows in sorted({args.rows, args.side_rows}):
            templates[rows] = workdir / f"template-{rows}"
            pairs = [(f"+86137{n:08d}", f"5000:{n:032d}") for n in range(rows)]
            config = app_config("http://127.0.0.1:9", templates[rows] / "outbox.db", keys=FAKE_KEYS, cap=None,
                                concurrency=None)
            seconds = fill(config, templates[rows], pairs)
            print(f"outbox filled once: {rows:,} sends + verifications in {seconds:.1f} s (copied for each run)")

        def ours(
            server: FixedServer, name: str, *, processes: int, cap: float | None, rows: int = args.rows
        ) -> dict[str, Any]:
            instance = workdir / name
            instance.mkdir()
            copy_db(templates[rows] / "outbox.db", instance / "outbox.db")
            config = app_config(
                server.url, instance / "outbox.db", keys=FAKE_KEYS, cap=cap, concurrency=args.concurrency
            )
            result = drain(config, instance, processes, rows, timeout=900)
            result["rate_cap"] = "documented 1,000/s" if cap is None else "lifted"
            print(
                f"  ours, {processes} process(es), cap {result['rate_cap']}: {result['reports_per_s']:8,.0f} reports/s"
                f"  ({result['delivered']:,} in {result['seconds']} s, {result['cpu_ms_per_report']} ms CPU/report,"
                f" {result['pending']} left)",
                flush=True,
            )
            return result

        def sdk(server: FixedServer, count: int) -> dict[str, Any] | None:
            result = time_sdk(server.url, [f"5000:{n:032d}" for n in range(count)], FAKE_KEYS)
            if result is None:
                print("  SDK loop: not run (pip install tencentcloud-sdk-python-sms)")
            else:
                print(f"  SDK loop, 1 process: {result['reports_per_s']:8,.0f} reports/s  ({result['rows']:,} in "
                      f"{result['seconds']} s, {result['cpu_ms_per_report']} ms CPU/report)", flush=True)
            return result

        with FixedServer() as server:
            nginx = measure_nginx(server.url)
            figures["nginx_alone_req_per_s"] = nginx
            print(f"nginx alone (no latency, wrk -c32): {nginx:,.0f} req/s" if nginx else "nginx alone: not measured "
                  "(no wrk)")
            print("no added latency:")
            figures["no_latency"] = {
                "ours": ours(server, "fast-p", processes=args.processes, cap=NO_CAP),
                "ours_one_process": ours(server, "fast-1", processes=1, cap=NO_CAP, rows=args.side_rows),
                "sdk": sdk(server, args.sdk_rows),
            }
        with FixedServer(latency=args.latency) as server:
            print(f"{args.latency * 1000:g} ms provider latency:")
            figures["latency"] = {
                "ours": ours(server, "slow-p", processes=args.processes, cap=NO_CAP),
                "ours_default_cap": ours(server, "slow-cap", processes=args.processes, cap=None, rows=args.side_rows),
                "sdk": sdk(server, args.sdk_rows_latency),
            }
        print(f"emulator (signatures checked), {args.emulator_rows:,} reports, default config, 1 process:")
        emu = emulator_run(args.emulator_rows, workdir)
        figures["emulator"] = emu
        print(f"  ours: {emu['reports_per_s']:8,.0f} reports/s, all accepted: {emu['accepted_by_emulator']}")

    fast, slow = figures["no_latency"], figures["latency"]
    figures["ours_reports_per_s"] = slow["ours"]["reports_per_s"]
    figures["ours_no_latency_reports_per_s"] = fast["ours"]["reports_per_s"]
    if slow["sdk"] and fast["sdk"]:
        figures["sdk_reports_per_s"] = slow["sdk"]["reports_per_s"]
        figures["ratio"] = round(slow["ours"]["reports_per_s"] / slow["sdk"]["reports_per_s"], 1)
        figures["ratio_no_latency"] = round(fast["ours"]["reports_per_s"] / fast["sdk"]["reports_per_s"], 2)
        print(f"ratio ours / SDK loop: {figures['ratio']}x at {args.latency * 1000:g} ms, "
              f"{figures['ratio_no_latency']}x with no latency")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
