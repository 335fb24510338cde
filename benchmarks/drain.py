"""Drain rate of the real reporter (SQLite outbox -> emulator) beside the official Tencent Cloud SDK.

Starts the provider emulator as a separate process (``python -m flask_otp_conversion.testing``), issues
real serial numbers with ``SendSms`` (200 numbers a call), records a send and a verification for each
into a SQLite outbox through the extension, then times ``conversion.flush()``. In the same run it times
``tencentcloud-sdk-python-sms`` sending ``ReportConversion`` for fresh serials one after another in a loop
(the way a hand-written integration would), against the same emulator, and prints both rates and their ratio.

    python benchmarks/drain.py [--rows 20000] [--sdk-rows 2000] [--latency 0]

The SDK is optional: ``pip install tencentcloud-sdk-python-sms`` (not a project dependency).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from flask import Flask

from flask_otp_conversion import OTPConversion
from flask_otp_conversion.providers.settings import TencentSettings
from flask_otp_conversion.providers.tencent import TencentProvider
from flask_otp_conversion.testing import ProviderEmulator

BATCH = 200  # SendSms takes at most 200 numbers a call


def start_emulator(latency: float) -> tuple[subprocess.Popen[str], str]:
    cmd = [sys.executable, "-m", "flask_otp_conversion.testing", "--port", "0", "--latency", str(latency)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("OTP_CONVERSION_TENCENT_ENDPOINT="):
            return proc, line.strip().split("=", 1)[1]
    proc.kill()
    raise RuntimeError("emulator did not print its URL")


def phones(start: int, count: int) -> Iterator[str]:
    for n in range(start, start + count):
        yield f"+86137{n:08d}"


def issue_serials(url: str, numbers: list[str]) -> list[tuple[str, str]]:
    """(phone, serial) pairs from real SendSms calls, so every report names a message the emulator sent."""
    settings = TencentSettings(
        secret_id=ProviderEmulator.TENCENT_SECRET_ID,
        secret_key=ProviderEmulator.TENCENT_SECRET_KEY,
        sdk_app_id=ProviderEmulator.TENCENT_SDK_APP_ID,
        endpoint=url,
        template_id="1110",
        sign_name="Example",
    )
    pairs: list[tuple[str, str]] = []
    with TencentProvider.from_settings(settings) as provider:
        for i in range(0, len(numbers), BATCH):
            reply = provider.send_sms(numbers[i : i + BATCH], ["123456"])
            pairs.extend((s.phone_number, s.serial_no) for s in reply.send_status_set)
    return pairs


def time_reporter(url: str, pairs: list[tuple[str, str]], workdir: Path) -> tuple[float, float, int]:
    """(seconds to fill the outbox, seconds to drain it, rows left pending)."""
    app = Flask("drain-bench", instance_path=str(workdir / "instance"))
    app.config.update(
        OTP_CONVERSION_PROVIDER="tencent",
        OTP_CONVERSION_TENCENT_ENDPOINT=url,
        OTP_CONVERSION_TENCENT_SECRET_ID=ProviderEmulator.TENCENT_SECRET_ID,
        OTP_CONVERSION_TENCENT_SECRET_KEY=ProviderEmulator.TENCENT_SECRET_KEY,
        OTP_CONVERSION_TENCENT_SDK_APP_ID=ProviderEmulator.TENCENT_SDK_APP_ID,
        OTP_CONVERSION_STORE_URL=f"sqlite:///{workdir / 'outbox.db'}",
        OTP_CONVERSION_REPORTER_AUTOSTART=False,
    )
    conversion = OTPConversion(app)
    with app.app_context():
        started = time.perf_counter()
        for phone, serial in pairs:
            conversion.record_sent(phone, serial)
            conversion.record_verified(phone, serial)
        filled = time.perf_counter() - started
        started = time.perf_counter()
        pending = conversion.flush(timeout=600)
        drained = time.perf_counter() - started
    app.extensions["otp_conversion"].shutdown()
    return filled, drained, pending


def time_sdk(url: str, pairs: list[tuple[str, str]]) -> tuple[float, int] | None:
    """Seconds for the SDK to report every pair sequentially, and how many failed; None without the SDK."""
    try:
        from tencentcloud.common import credential
        from tencentcloud.common.profile.client_profile import ClientProfile
        from tencentcloud.common.profile.http_profile import HttpProfile
        from tencentcloud.sms.v20210111 import models, sms_client
    except ImportError:
        return None
    http = HttpProfile(protocol="http", endpoint=url.removeprefix("http://"), reqMethod="POST", keepAlive=True)
    client = sms_client.SmsClient(
        credential.Credential(ProviderEmulator.TENCENT_SECRET_ID, ProviderEmulator.TENCENT_SECRET_KEY),
        "ap-singapore",
        ClientProfile(httpProfile=http),
    )
    failed = 0
    started = time.perf_counter()
    for _, serial in pairs:
        request = models.ReportConversionRequest()
        request.SmsSdkAppId = ProviderEmulator.TENCENT_SDK_APP_ID
        request.SerialNo = serial
        request.ConversionTime = int(time.time())
        reply = client.ReportConversion(request)
        if reply.ReportConversionStatus.Code.lower() != "ok":
            failed += 1
    return time.perf_counter() - started, failed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=20_000, help="outbox rows to drain (default 20000)")
    parser.add_argument(
        "--sdk-rows", type=int, default=2_000, help="reports for the sequential SDK loop (default 2000)"
    )
    parser.add_argument("--latency", type=float, default=0.0, help="emulator latency per answer, seconds")
    args = parser.parse_args()

    emulator, url = start_emulator(args.latency)
    try:
        print(f"emulator {url} (separate process), latency {args.latency} s")
        ours_pairs = issue_serials(url, list(phones(0, args.rows)))
        sdk_pairs = issue_serials(url, list(phones(args.rows, args.sdk_rows)))
        with tempfile.TemporaryDirectory() as tmp:
            filled, drained, pending = time_reporter(url, ours_pairs, Path(tmp))
        ours = (len(ours_pairs) - pending) / drained
        print(f"outbox filled: {len(ours_pairs)} sends + verifications in {filled:.1f} s")
        print(f"reporter flush: {len(ours_pairs) - pending} reports in {drained:.2f} s, {pending} left pending")
        print(f"  ours:     {ours:8.0f} reports/s")
        sdk = time_sdk(url, sdk_pairs)
        if sdk is None:
            print("  SDK loop: not run (pip install tencentcloud-sdk-python-sms)")
            return 0
        seconds, failed = sdk
        rate = (len(sdk_pairs) - failed) / seconds
        sample = f"on a {len(sdk_pairs)}-report sample" if len(sdk_pairs) != len(ours_pairs) else "same count"
        print(f"  SDK loop: {rate:8.0f} reports/s ({sample}, {failed} failed, {seconds:.2f} s)")
        print(f"  ratio:    {ours / rate:8.1f}x")
    finally:
        emulator.terminate()
        emulator.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
