"""Requests in flight in this process, so that delivery can give way to them.

The delivery worker runs on threads of the web worker. On a saturated host every millisecond it spends is a
millisecond the requests do not get, and its threads contend with the requests for the GIL. So while the worker is
busy, delivery claims only what has waited the whole ``OTP_CONVERSION_YIELD_TO_REQUESTS`` window: a burst of
verifications costs the requests only the spool append, and under load that lasts longer, reports go out that much
late, at the rate they arrive.

Busy: a request is in flight, or one ended less than ``QUIET_AFTER`` ago. The server's own work between two
requests (reading, parsing, writing) happens outside Flask, so a worker that is never idle still shows short
gaps with nothing in flight.

Requests are counted by a WSGI middleware around ``app.wsgi_app`` rather than a ``before_request`` /
``teardown_request`` pair: it costs less than Flask's hook dispatch, and ``try``/``finally`` pairs every
count in with its count out.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

#: Seconds without a request in flight before the worker counts as quiet.
QUIET_AFTER = 0.02
#: Seconds between the delivery loop's looks at a busy worker: each look wakes a thread that then takes the GIL
#: from a request. Work resumes up to this much later once the worker goes quiet.
BUSY_POLL = 1.0


class RequestActivity:
    """Counts requests in flight in this process: ``enter()`` as one starts, ``leave()`` as it ends. Both are
    lock-free (``deque.append`` / ``pop`` are atomic), since they run on every request."""

    def __init__(self) -> None:
        self._in_flight: deque[None] = deque()
        self._last_end = -float("inf")

    def busy(self) -> bool:
        return bool(self._in_flight) or time.monotonic() - self._last_end < QUIET_AFTER

    def enter(self) -> None:
        self._in_flight.append(None)

    def leave(self) -> None:
        self._last_end = time.monotonic()
        self._in_flight.pop()

    def __repr__(self) -> str:
        return f"<RequestActivity in_flight={len(self._in_flight)}>"


class CountingMiddleware:
    """Wraps a WSGI app: runs ``on_request`` (e.g. start this process's background threads), then counts the
    request in flight in ``activity`` until the app has answered."""

    def __init__(
        self, wsgi_app: WSGIApplication, activity: RequestActivity, on_request: Callable[[], None]
    ) -> None:
        self.wsgi_app = wsgi_app
        self._activity = activity
        self._on_request = on_request

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        self._on_request()
        activity = self._activity
        activity.enter()
        try:
            return self.wsgi_app(environ, start_response)
        finally:
            activity.leave()
