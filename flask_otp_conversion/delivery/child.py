"""A host's delivery process (``python -m flask_otp_conversion.delivery.child``), spawned by its deliverer web
worker (``process.py``): it applies the host's spools and delivers, so the web workers' CPU and GIL serve
requests only.

It reads its start-up from stdin (the app's ``OTP_CONVERSION_*`` keys: secrets travel over the pipe, never in
argv or the environment), builds an app of its own with the extension, and runs what the deliverer would run on
threads: the spool applier, the drain loop, upkeep and the alarm. Its log records and signals go back to the
parent on stdout. It stops, gracefully, when stdin ends: the parent stopped, or died (``kill -9`` included).
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
import traceback
from typing import IO, Any

from flask import Flask

from .priority import give_way
from .process_wire import FORWARDED, decode, encode, signal_message

#: Seconds between checks that the child's threads still run (a dead one is restarted).
CHECK_EVERY = 1.0


class _Pipe:
    """The child's stdout to its parent, written by many threads, one whole line at a time."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def send(self, message: dict[str, Any]) -> None:
        line = encode(message)
        with self._lock:
            try:
                self._stream.write(line)
                self._stream.flush()
            except (BrokenPipeError, ValueError):  # the parent is gone: stdin's end stops us
                pass


class _PipeHandler(logging.Handler):
    """Log records to the parent, which logs them through the app's own handlers."""

    def __init__(self, pipe: _Pipe) -> None:
        super().__init__()
        self._pipe = pipe

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
            if record.exc_info:
                text += "\n" + "".join(traceback.format_exception(*record.exc_info)).rstrip()
            self._pipe.send({"log": record.levelno, "name": record.name, "msg": text})
        except Exception:
            self.handleError(record)


def _relay(app: Flask, pipe: _Pipe, forward: set[str]) -> list[object]:
    """Connect a receiver per forwarded signal; returns them (blinker holds receivers weakly)."""
    receivers: list[object] = []
    for name, sig in FORWARDED.items():

        def receive(sender: object, _name: str = name, **kwargs: Any) -> None:
            if _name in forward:
                pipe.send(signal_message(_name, kwargs))

        sig.connect(receive, sender=app)
        receivers.append(receive)
    return receivers


def main() -> int:
    pipe = _Pipe(os.fdopen(os.dup(1), "wb"))
    os.dup2(2, 1)  # a stray print goes to stderr, not into the parent's pipe
    stdin = sys.stdin.buffer
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C is the parent's to handle
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stopping.set())
    try:
        start = decode(stdin.readline())
    except ValueError as exc:
        print(f"otp-conversion delivery process: bad start-up line: {exc}", file=sys.stderr)
        return 2
    logger = logging.getLogger("flask_otp_conversion")
    logger.handlers[:] = [_PipeHandler(pipe)]
    logger.propagate = False
    logger.setLevel(int(start.get("log_level", logging.INFO)))
    priority = give_way(nice=int(start.get("nice", 0)), idle=bool(start.get("idle", False)))
    logger.debug("otp-conversion delivery process %d runs at %s", os.getpid(), priority)

    from ..extension import EXTENSION_KEY, OTPConversion

    app = Flask(__name__, instance_path=str(start["instance_path"]))
    app.config.update(start["config"])
    # This process delivers; it serves no requests and spawns no delivery process of its own.
    app.config.update(OTP_CONVERSION_REPORTER_AUTOSTART=False, OTP_CONVERSION_DELIVERY_PROCESS=False)
    try:
        OTPConversion(app)
    except Exception as exc:  # the parent logs it and delivers from its own threads instead
        pipe.send({"failed": f"{type(exc).__name__}: {exc}"})
        return 2
    state = app.extensions[EXTENSION_KEY]
    forward = set(start.get("forward", ()))
    receivers = _relay(app, pipe, forward)

    def read_parent() -> None:
        for line in stdin:
            try:
                message = decode(line)
            except ValueError:
                continue
            if isinstance(names := message.get("forward"), list):
                forward.clear()
                forward.update(str(n) for n in names)
            if isinstance(level := message.get("log_level"), int):
                logger.setLevel(level)
        stopping.set()  # stdin ended: the parent stopped or died

    threading.Thread(target=read_parent, name="otp-conversion-parent", daemon=True).start()

    def run_threads() -> None:
        state.reporter.ensure_running()
        if state.spool is not None:
            state.spool.start(everyone=True)

    run_threads()
    pipe.send({"ready": os.getpid()})
    try:
        while not stopping.wait(CHECK_EVERY):
            run_threads()  # restarts one that died
    finally:
        state.shutdown()
        del receivers
    return 0


if __name__ == "__main__":
    sys.exit(main())
