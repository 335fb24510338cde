"""Requests in flight in this process, so that background work can give way to them.

The reporter and the spool applier run on threads of the web worker. On a saturated host every millisecond they
spend is a millisecond the requests do not get, and their threads contend with the requests for the GIL. While
requests are in flight they wait (up to ``OTP_CONVERSION_YIELD_TO_REQUESTS`` seconds for any one item), and
catch up in the gaps between requests.
"""

from __future__ import annotations

import threading

from flask import Flask, g


class RequestActivity:
    """Counts the app's requests in flight in this process."""

    _FLAG = "_otp_conversion_in_flight"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._in_flight = 0

    def watch(self, app: Flask) -> None:
        app.before_request(self._enter)
        app.teardown_request(self._leave)

    def busy(self) -> bool:
        return self._in_flight > 0

    def _enter(self) -> None:
        setattr(g, self._FLAG, True)
        with self._lock:
            self._in_flight += 1

    def _leave(self, exc: BaseException | None) -> None:
        # Only requests we counted: a before_request function registered earlier may have answered first.
        if g.pop(self._FLAG, False):
            with self._lock:
                self._in_flight -= 1

    def __repr__(self) -> str:
        return f"<RequestActivity in_flight={self._in_flight}>"
