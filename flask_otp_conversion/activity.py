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
from contextvars import ContextVar

#: Seconds without a request in flight before the worker counts as quiet.
QUIET_AFTER = 0.02


class RequestActivity:
    """Counts the app's requests in flight in this process: ``enter()`` as a request starts (a before_request
    hook), ``leave()`` as it ends (a teardown_request hook, which runs for every request)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._in_flight = 0
        self._last_end = -float("inf")
        # Set in the request's context by enter(): a request answered by an earlier before_request function never
        # entered, and its teardown must not leave.
        self._entered: ContextVar[bool] = ContextVar(f"otp_conversion_entered_{id(self):x}", default=False)

    def busy(self) -> bool:
        return self._in_flight > 0 or time.monotonic() - self._last_end < QUIET_AFTER

    def enter(self) -> None:
        self._entered.set(True)
        with self._lock:
            self._in_flight += 1

    def leave(self) -> None:
        if self._entered.get():
            self._entered.set(False)
            with self._lock:
                self._in_flight -= 1
                self._last_end = time.monotonic()

    def __repr__(self) -> str:
        return f"<RequestActivity in_flight={self._in_flight}>"
