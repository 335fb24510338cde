"""``python -m flask_otp_conversion.testing``: run the provider emulator standalone (benchmarks, manual use).

Prints the URL and the emulated accounts as ``OTP_CONVERSION_*`` lines, then serves until interrupted.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence

from .emulator import ProviderEmulator
from .server import EmulatorServer


def _rate(text: str) -> tuple[str, float]:
    action, eq, rate = text.partition("=")
    try:
        value = float(rate)
    except ValueError:
        value = 0.0
    if not eq or not action or value <= 0:
        raise argparse.ArgumentTypeError(f"expected ACTION=REQUESTS_PER_SECOND, got {text!r}")
    return action, value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m flask_otp_conversion.testing",
        description="Serve the Tencent/Alibaba SMS API emulator over HTTP.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to bind (default: a free one)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every answer")
    parser.add_argument(
        "--rate-limit",
        type=_rate,
        action="append",
        default=[],
        metavar="ACTION=RPS",
        help="throttle ACTION above RPS requests/s (repeatable)",
    )
    args = parser.parse_args(argv)

    emulator = ProviderEmulator(latency=args.latency, rate_limits=dict(args.rate_limit))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with EmulatorServer(emulator, host=args.host, port=args.port) as server:
        lines = [
            f"# flask-otp-conversion provider emulator on {server.url} (Ctrl-C to stop)",
            f"OTP_CONVERSION_TENCENT_ENDPOINT={server.url}",
            f"OTP_CONVERSION_TENCENT_SECRET_ID={emulator.TENCENT_SECRET_ID}",
            f"OTP_CONVERSION_TENCENT_SECRET_KEY={emulator.TENCENT_SECRET_KEY}",
            f"OTP_CONVERSION_TENCENT_SDK_APP_ID={emulator.TENCENT_SDK_APP_ID}",
            f"OTP_CONVERSION_ALIBABA_ENDPOINT={server.url}",
            f"OTP_CONVERSION_ALIBABA_CAMS_ENDPOINT={server.url}",
            f"OTP_CONVERSION_ALIBABA_ACCESS_KEY_ID={emulator.ALIBABA_ACCESS_KEY_ID}",
            f"OTP_CONVERSION_ALIBABA_ACCESS_KEY_SECRET={emulator.ALIBABA_ACCESS_KEY_SECRET}",
            f"OTP_CONVERSION_ALIBABA_CUST_SPACE_ID={emulator.ALIBABA_CUST_SPACE_ID}",
        ]
        print("\n".join(lines), flush=True)
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
