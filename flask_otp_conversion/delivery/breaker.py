"""A circuit breaker for the provider: stop calling a provider that is down or refusing our credentials.

States: *closed* (calls flow; consecutive retryable failures are counted), *open* (no calls until
``retry_at``), *half-open* (exactly one probe call is out; everyone else is refused until it reports).
A successful probe closes the breaker; a failed one reopens it with the reset timeout doubled, up to a cap,
so a long outage costs one request every ``max_reset_timeout`` seconds rather than a steady trickle.

Pure logic on an injected clock: no threads, no sleeping. Callbacks run after the lock is released, so they
may call back into the breaker (or send signals whose receivers do).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half-open"


class CircuitBreaker:
    """Thread-safe circuit breaker.

    Callers ask ``allow()`` right before a call and report its outcome with ``record_success()`` or
    ``record_failure()``. A caller that was allowed but did not make the call must say so with
    ``cancel()``, or a half-open breaker would wait forever for its probe.
    """

    def __init__(
        self,
        *,
        threshold: int = 5,
        reset_timeout: float = 30.0,
        max_reset_timeout: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
        on_open: Callable[[str, float], None] | None = None,
        on_close: Callable[[], None] | None = None,
    ) -> None:
        if threshold < 1:
            raise ValueError("threshold must be >= 1")
        if reset_timeout <= 0 or max_reset_timeout < reset_timeout:
            raise ValueError("need 0 < reset_timeout <= max_reset_timeout")
        self.threshold = threshold
        self.reset_timeout = reset_timeout
        self.max_reset_timeout = max_reset_timeout
        self._clock = clock
        self._on_open = on_open
        self._on_close = on_close
        self._lock = threading.Lock()
        self._state = CLOSED
        self._failures = 0
        self._timeout = reset_timeout
        self._retry_at: float | None = None
        self._last_error: str | None = None

    # Introspection ------------------------------------------------------------------------------------

    @property
    def state(self) -> str:
        """``"closed"``, ``"open"`` or ``"half-open"``."""
        return self._state

    @property
    def retry_at(self) -> float | None:
        """When (on the breaker's clock) an open breaker lets its probe through; None unless open."""
        return self._retry_at if self._state == OPEN else None

    @property
    def last_error(self) -> str | None:
        """The failure that last counted against the breaker (cleared when it closes)."""
        return self._last_error

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    @property
    def current_reset_timeout(self) -> float:
        """How long the breaker stays open the next (or current) time it opens."""
        return self._timeout

    # Protocol -----------------------------------------------------------------------------------------

    def allow(self) -> bool:
        """May a call go out now? In an open breaker whose timeout has passed, the first caller becomes the
        half-open probe and every later caller is refused until the probe reports."""
        with self._lock:
            if self._state == CLOSED:
                return True
            if self._state == OPEN and self._retry_at is not None and self._clock() >= self._retry_at:
                self._state = HALF_OPEN
                return True
            return False

    def cancel(self) -> None:
        """An allowed call was not made after all. A half-open breaker goes back to open, probe due now."""
        with self._lock:
            if self._state == HALF_OPEN:
                self._state = OPEN
                self._retry_at = self._clock()

    def record_success(self) -> None:
        """The provider answered. Closes a half-open breaker and resets the failure count.

        A success arriving while the breaker is open came from a call made before it opened; it says little
        about the provider now, so only the probe may close the breaker.
        """
        closed = False
        with self._lock:
            if self._state == OPEN:
                return
            if self._state == HALF_OPEN:
                self._state = CLOSED
                self._retry_at = None
                self._timeout = self.reset_timeout
                self._last_error = None
                closed = True
            self._failures = 0
        if closed and self._on_close is not None:
            self._on_close()

    def record_failure(self, error: str, *, auth: bool = False) -> None:
        """A retryable failure (or, with ``auth=True``, a credentials failure, which opens at once).

        A failed probe reopens the breaker with the reset timeout doubled (up to ``max_reset_timeout``).
        Failures of calls made before the breaker opened do not extend it.
        """
        opened: tuple[str, float] | None = None
        with self._lock:
            if self._state == OPEN:
                return
            self._last_error = error
            if self._state == HALF_OPEN:
                self._timeout = min(self._timeout * 2, self.max_reset_timeout)
                opened = self._open(error)
            else:
                self._failures += 1
                if auth or self._failures >= self.threshold:
                    opened = self._open(error)
        if opened is not None and self._on_open is not None:
            self._on_open(*opened)

    def _open(self, error: str) -> tuple[str, float]:
        self._state = OPEN
        self._failures = 0
        self._retry_at = self._clock() + self._timeout
        return error, self._retry_at

    def __repr__(self) -> str:
        return f"<CircuitBreaker {self._state} failures={self._failures} timeout={self._timeout:g}s>"
