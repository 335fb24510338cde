"""``python -m flask_otp_conversion.testing``: run the provider emulator standalone (benchmarks, manual use).

Prints the URL and the emulated accounts as ``export FLASK_OTP_CONVERSION_...=...`` lines, ready to paste into a
shell for an app that reads ``app.config.from_prefixed_env()``, then serves until interrupted, logging one line
per request (action, status, masked phone) to stderr. With ``--share RECORD`` it is a sandbox's shared emulator
(:mod:`flask_otp_conversion.testing.shared`): it writes its URL there and exits when no process uses it.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import logging
import os
import shlex
import signal
import sys
import threading
from collections.abc import Sequence

from ..phone import mask_phone
from .emulator import EmulatorCall, ProviderEmulator
from .server import EmulatorServer
from .shared import write_record

logger = logging.getLogger("flask_otp_conversion.testing")
#: Seconds between a shared emulator's looks at whether any process still uses it.
SHARE_CHECK_INTERVAL = 0.2


def _rate(text: str) -> tuple[str, float]:
    action, eq, rate = text.partition("=")
    try:
        value = float(rate)
    except ValueError:
        value = 0.0
    if not eq or not action or value <= 0:
        raise argparse.ArgumentTypeError(f"expected ACTION=REQUESTS_PER_SECOND, got {text!r}")
    return action, value


def export_lines(url: str, emulator: ProviderEmulator) -> list[str]:
    """Shell lines that configure an app reading ``FLASK_*`` variables for this emulator (every provider it
    serves: credentials and endpoints)."""
    values: dict[str, str] = {}
    for provider in emulator.providers:
        values.update(emulator.app_config(provider, url, defaults=False))
    # from_prefixed_env() JSON-decodes the all-digit ids into ints; the settings take them back as strings.
    return [f"export FLASK_{key}={shlex.quote(value)}" for key, value in values.items()]


def describe(call: EmulatorCall, phone: str | None) -> str:
    """One log line per request: provider and action, HTTP status, the error code if any, the masked phone."""
    status = "-" if call.http_status is None else str(call.http_status)
    outcome = "ok" if call.ok else (call.error_code or call.fault or "failed")
    who = "" if phone is None else f" phone={mask_phone(phone)}"
    return f"{call.provider} {call.action or '?'} {status} {outcome}{who}"


def _watch_users(record: str, stop: threading.Event) -> None:
    """Set ``stop`` once no process holds the record's users lock; the record goes first, under the start lock,
    so a process attaching meanwhile starts a new emulator instead of finding this one on its way out."""
    with open(f"{record}.lock", "a+", encoding="utf-8") as start, open(
        f"{record}.users", "a+", encoding="utf-8"
    ) as users:
        while not stop.wait(SHARE_CHECK_INTERVAL):
            try:
                fcntl.flock(start, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a process is attaching: look again later
            try:
                try:
                    fcntl.flock(users, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # still in use
                with contextlib.suppress(FileNotFoundError):
                    os.remove(record)
                logger.info("no process of the sandbox uses the emulator any more: stopping")
                stop.set()
            finally:
                fcntl.flock(start, fcntl.LOCK_UN)


#: With --detach: the write end of the pipe the waiting parent reads "serving" from (closed unread: it failed).
_READY_FD = "_OTP_EMULATOR_READY_FD"


def _detach() -> None:
    """Fork before anything starts a thread: the parent waits until the child serves, then exits, so the process
    that started us reaps it at once and the emulator itself belongs to no one's process tree."""
    read_end, write_end = os.pipe()
    if os.fork():
        os.close(write_end)
        with os.fdopen(read_end, "rb") as ready:
            os._exit(0 if ready.read() == b"serving" else 1)
    os.close(read_end)
    os.setsid()
    os.environ[_READY_FD] = str(write_end)


def _report_serving() -> None:
    fd = os.environ.pop(_READY_FD, None)
    if fd is not None:
        os.write(int(fd), b"serving")
        os.close(int(fd))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m flask_otp_conversion.testing",
        description="Serve the SMS provider API emulator over HTTP.",
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
    parser.add_argument("--quiet", action="store_true", help="no log line per request")
    parser.add_argument(
        "--share",
        metavar="RECORD",
        help="be a sandbox's shared emulator: write the URL to RECORD, exit when no process uses it",
    )
    parser.add_argument(
        "--detach",
        action="store_true",
        help="with --share: serve from a child in a session of its own; exit 0 once it serves, 1 if it cannot",
    )
    args = parser.parse_args(argv)
    if args.detach and args.share:
        _detach()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s emulator: %(message)s", stream=sys.stderr)

    emulator = ProviderEmulator(latency=args.latency, rate_limits=dict(args.rate_limit))
    if not args.quiet:
        emulator.on_call = lambda call: logger.info("%s", describe(call, emulator.phone_of(call)))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with EmulatorServer(emulator, host=args.host, port=args.port) as server:
        lines = [
            f"# flask-otp-conversion provider emulator on {server.url} (Ctrl-C to stop); for your shell:",
            *export_lines(server.url, emulator),
        ]
        print("\n".join(lines), flush=True)
        if args.share:
            write_record(args.share, {"url": server.url, "port": server.port, "pid": os.getpid()})
            threading.Thread(target=_watch_users, args=(args.share, stop), daemon=True).start()
            _report_serving()
        try:
            while not stop.wait(0.1):
                pass
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
