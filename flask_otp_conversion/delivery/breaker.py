"""A circuit breaker for the provider, as a pure state machine: every method takes ``now`` and returns what changed.

States: *closed* (calls flow; consecutive failures are counted), *open* (no calls until ``retry_at``),
*half-open* (exactly one probe is out; every other call is refused until it ends). A successful probe closes
the breaker; a failed one reopens it with the reset timeout doubled, up to a cap, so a long outage costs one
request every ``max_reset_timeout`` seconds rather than a steady trickle.

Every probe ends, by construction: ``admit`` hands out a ``Probe`` that only ``success``, ``failure`` or
``cancel`` settle, and a probe not settled within ``probe_timeout`` (the longest a request can take) is
treated as cancelled by the next ``admit``. So a caller that forgets to settle one delays the next probe by
``probe_timeout`` at most; it can never leave the breaker half-open for good.

No threads, no locks, no clock: the worker holds its own lock around calls and emits the transitions.
"""

from __future__ import annotations

from dataclasses import dataclass

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half-open"


@dataclass(frozen=True, slots=True)
class Probe:
    """The one call a half-open breaker lets out; ``number`` tells a settled probe from the current one."""

    number: int


@dataclass(frozen=True, slots=True)
class Opened:
    """The breaker opened (or reopened after a failed probe): no calls until ``retry_at``."""

    reason: str
    retry_at: float


@dataclass(frozen=True, slots=True)
class Closed:
    """A probe succeeded: calls flow again."""


Transition = Opened | Closed | None

#: What ``admit`` answers: True (closed: go), a ``Probe`` (half-open: go, and settle it), or None (refused).
Admission = bool | Probe | None


class Breaker:
    """The breaker's state; see the module docstring. Not thread-safe on purpose (the caller serialises)."""

    def __init__(
        self,
        *,
        threshold: int = 5,
        reset_timeout: float = 30.0,
        max_reset_timeout: float = 600.0,
        probe_timeout: float = 10.0,
    ) -> None:
        if threshold < 1:
            raise ValueError("threshold must be >= 1")
        if reset_timeout <= 0 or max_reset_timeout < reset_timeout:
            raise ValueError("need 0 < reset_timeout <= max_reset_timeout")
        if probe_timeout <= 0:
            raise ValueError("probe_timeout must be > 0")
        self.threshold = threshold
        self.reset_timeout = reset_timeout
        self.max_reset_timeout = max_reset_timeout
        self.probe_timeout = probe_timeout
        self.state = CLOSED
        self.failures = 0
        #: How long the breaker stays open the next (or current) time it opens.
        self.timeout = reset_timeout
        self._retry_at = 0.0
        self._probe: Probe | None = None
        self._probe_expires_at = 0.0
        self._probes = 0

    @property
    def retry_at(self) -> float | None:
        """When an open breaker lets its probe out; None unless open."""
        return self._retry_at if self.state == OPEN else None

    def blocked_for(self, now: float) -> float:
        """Seconds until ``admit`` can say yes (0 when it can now)."""
        if self.state == CLOSED:
            return 0.0
        if self.state == OPEN:
            return max(0.0, self._retry_at - now)
        return max(0.0, self._probe_expires_at - now)  # a probe is out: wait for it, or for it to expire

    def admit(self, now: float) -> Admission:
        """May a call go out now? Closed: True. Open past ``retry_at``, or half-open with the probe expired:
        a new ``Probe``. Otherwise None."""
        if self.state == CLOSED:
            return True
        if self.state == HALF_OPEN and now < self._probe_expires_at:
            return None
        if self.state == OPEN and now < self._retry_at:
            return None
        self._probes += 1
        self._probe = Probe(self._probes)
        self._probe_expires_at = now + self.probe_timeout
        self.state = HALF_OPEN
        return self._probe

    def current(self, probe: Probe | None) -> bool:
        """Whether a call under ``probe`` (None: a call admitted while closed) may still go out."""
        return self.state == CLOSED if probe is None else self._is_current(probe)

    def success(self, now: float, probe: Probe | None = None) -> Transition:
        """The provider answered (it is up). Resets the failure count; the current probe closes the breaker.

        Answers to calls made before the breaker opened say little about the provider now: only the probe
        moves an open or half-open breaker."""
        if self.state == CLOSED:
            self.failures = 0
            return None
        if probe is None or not self._is_current(probe):
            return None
        self.state = CLOSED
        self.failures = 0
        self.timeout = self.reset_timeout
        self._probe = None
        return Closed()

    def failure(self, now: float, reason: str, probe: Probe | None = None, *, auth: bool = False) -> Transition:
        """A failure of the provider (with ``auth``: our credentials were refused, which opens at once). The
        current probe failing reopens with the timeout doubled; failures of older calls change nothing."""
        if self.state == CLOSED:
            self.failures += 1
            if auth or self.failures >= self.threshold:
                return self._open(now, reason)
            return None
        if probe is None or not self._is_current(probe):
            return None
        self.timeout = min(self.timeout * 2, self.max_reset_timeout)
        return self._open(now, reason)

    def cancel(self, probe: Probe | None) -> None:
        """An admitted call was not made after all: the current probe goes back, and the next is due now."""
        if probe is not None and self._is_current(probe):
            self.state = OPEN
            self._probe = None
            self._retry_at = 0.0

    def _is_current(self, probe: Probe) -> bool:
        return self.state == HALF_OPEN and probe == self._probe

    def _open(self, now: float, reason: str) -> Opened:
        self.state = OPEN
        self.failures = 0
        self._probe = None
        self._retry_at = now + self.timeout
        return Opened(reason, self._retry_at)

    def __repr__(self) -> str:
        return f"<Breaker {self.state} failures={self.failures} timeout={self.timeout:g}s>"
