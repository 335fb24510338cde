"""Requests in flight in this process, so that background work can give way to them.

The reporter and the spool applier run on threads of the web worker. On a saturated host every millisecond they
spend is a millisecond the requests do not get, and their threads contend with the requests for the GIL. While
the worker is busy they wait (up to ``OTP_CONVERSION_YIELD_TO_REQUESTS`` seconds for any one item), and catch
up when it is quiet.

Busy: a request is in flight, or one ended less than ``QUIET_AFTER`` ago. The server's own work between two
requests (reading, parsing, writing) happens outside Flask, so a worker that is never idle still shows short
gaps with nothing in flight; a background batch started in such a gap would take the CPU from the next requests.
"""

from __future__ import annotations

import threading
import time

from flask import Flask, g

#: Seconds without a request in flight before the worker counts as quiet.
QUIET_AFTER = 0.02


class RequestActivity:
    """Counts the app's requests in flight in this process."""

    _FLAG = "_otp_conversion_in_flight"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._in_flight = 0
        self._last_end = -float("inf")

    def watch(self, app: Flask) -> None:
        app.before_request(self._enter)
        app.teardown_request(self._leave)

    def busy(self) -> bool:
        return self._in_flight > 0 or time.monotonic() - self._last_end < QUIET_AFTER

    def _enter(self) -> None:
        setattr(g, self._FLAG, True)
        with self._lock:
            self._in_flight += 1

    def _leave(self, exc: BaseException | None) -> None:
        # Only requests we counted: a before_request function registered earlier may have answered first.
        if g.pop(self._FLAG, False):
            with self._lock:
                self._in_flight -= 1
                self._last_end = time.monotonic()

    def __repr__(self) -> str:
        return f"<RequestActivity in_flight={self._in_flight}>"
