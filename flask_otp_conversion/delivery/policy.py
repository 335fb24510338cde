"""Every delivery decision, as pure functions of state and time: no threads, no I/O, no clock of its own.

The worker (``worker.py``) asks this module how many rows to claim, whether a claimed row may go out now,
and what a provider's answer means for the row, the breaker, the throttling pause and the next attempt; it
does the I/O and holds a lock around ``DeliveryPolicy``. Times are UNIX seconds passed in as ``now``, the
store's clock, so a row's age, its next attempt and the breaker's timeouts are on one scale.

Answers
    success: ack. Throttled: retry no sooner than the provider's retry-after, and pause every send for it
    (1 s if it named none); for the breaker the provider answered, so it counts as up. Other retryable
    failures (5xx, timeouts, transport errors): retry with exponential backoff and full jitter (base 1 s,
    cap 5 min, never sooner than a retry-after) and count towards the breaker. Auth: the row waits without
    backoff and the breaker opens at once. Permanent: dead letter (the provider is up; the row is bad).
    A row older than ``max_report_age`` is dead-lettered instead of retried, or before it is sent.
"""

from __future__ import annotations

import enum
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from ..providers.base import ErrorKind, ProviderError, ThrottledError
from ..redaction import describe_error
from .breaker import Breaker, Probe, Transition

BACKOFF_BASE = 1.0
BACKOFF_CAP = 300.0
#: Pause after a throttling answer that named no retry-after.
THROTTLE_PAUSE = 1.0
#: The degraded flag is re-read from the store at most this often.
DEGRADED_RECHECK = 1.0
#: A claimed row must start within this many seconds of its claim (its lease allows for it).
SEND_WINDOW = 1.0
#: A claim takes what this many seconds of expected throughput can send: half the send window, so an
#: estimate that is off by two still fits.
CLAIM_WINDOW = 0.5
MAX_CLAIM = 500
#: Request latency assumed before any has been measured (on the slow side, so the first claim is small).
INITIAL_LATENCY = 0.25
#: Weight of each new request in the moving average of the latency.
LATENCY_WEIGHT = 0.1
#: Answers per half of the window whose fastest one sizes the senders (``DeliveryPolicy.senders_wanted``).
FLOOR_WINDOW = 100
#: Time allowed between a request's end and its ack, inside the row lease.
ACK_MARGIN = 2.0
#: Seconds between INFO summaries of delivery (only when something happened).
SUMMARY_EVERY = 60.0


def backoff_delay(
    attempts: int,
    retry_after: float | None = None,
    *,
    base: float = BACKOFF_BASE,
    cap: float = BACKOFF_CAP,
    rng: Callable[[], float] = random.random,
) -> float:
    """Seconds before the next attempt: full jitter over ``min(cap, base * 2**attempts)``, never less than
    the provider's ``retry_after``. Full jitter spreads a herd of rows that failed together."""
    ceiling = min(cap, base * 2.0 ** min(max(attempts, 0), 32))
    delay = rng() * ceiling
    if retry_after is not None and retry_after > delay:
        delay = retry_after
    return delay


def lease_seconds(connect_timeout: float, read_timeout: float) -> float:
    """A row's lease: the send window, the longest request and the ack, so that in normal operation every
    row is acked before its lease can expire and is sent once."""
    return SEND_WINDOW + connect_timeout + read_timeout + ACK_MARGIN


def claim_size(*, cap: float, concurrency: int, latency: float, buffered: int = 0) -> int:
    """Rows the next ``CLAIM_WINDOW`` seconds can send (the rate cap, or the senders over the observed
    latency, whichever is lower), less those already waiting for a sender."""
    throughput = min(cap, concurrency / max(latency, 1e-3))
    return max(0, min(MAX_CLAIM, math.ceil(throughput * CLAIM_WINDOW)) - buffered)


class Outcome(enum.Enum):
    OK = "ok"
    RETRYABLE = "retryable"
    THROTTLED = "throttled"
    AUTH = "auth"
    PERMANENT = "permanent"


@dataclass(frozen=True, slots=True)
class Answer:
    """What one provider call came to, with its error already made safe for logs and rows."""

    outcome: Outcome
    error: str = ""
    retry_after: float | None = None


OK = Answer(Outcome.OK)


def classify(exc: BaseException) -> Answer:
    """A failed call's exception as an ``Answer``. Errors the client did not classify (a transport bug, an
    unexpected exception) are retryable: never lose a row to them."""
    error = describe_error(exc)
    if isinstance(exc, ThrottledError):
        return Answer(Outcome.THROTTLED, error, exc.retry_after)
    if isinstance(exc, ProviderError):
        if exc.kind is ErrorKind.AUTH:
            return Answer(Outcome.AUTH, error)
        if exc.kind is ErrorKind.PERMANENT:
            return Answer(Outcome.PERMANENT, error)
        return Answer(Outcome.RETRYABLE, error, exc.retry_after)
    return Answer(Outcome.RETRYABLE, error)


@dataclass(frozen=True, slots=True)
class Ack:
    pass


@dataclass(frozen=True, slots=True)
class Retry:
    at: float
    error: str


@dataclass(frozen=True, slots=True)
class DeadLetter:
    reason: str


Verdict = Ack | Retry | DeadLetter


@dataclass(frozen=True, slots=True)
class Decision:
    """What to do with the row, and what the answer changed in the breaker."""

    verdict: Verdict
    transition: Transition = None


@dataclass(frozen=True, slots=True)
class Row:
    """The facts of a row a decision needs (an ``OutboxItem`` has them)."""

    created_at: float
    attempts: int
    sent_at: float | None = None


def expired(row: Row, now: float, max_report_age: float) -> bool:
    return now - row.created_at > max_report_age


def expiry_reason(max_report_age: float) -> str:
    return f"expired: not reported within {max_report_age:g} s"


def past_deadline(row: Row, now: float, deadline: float | None) -> bool:
    """The provider takes no report this long after the send: a request starting by ``now + SEND_WINDOW``
    would come too late."""
    return deadline is not None and row.sent_at is not None and now + SEND_WINDOW - row.sent_at > deadline


def deadline_reason(deadline: float) -> str:
    return f"expired: the provider takes no report later than {deadline:g} s after the send"


@dataclass(frozen=True, slots=True)
class Claim:
    """Claim up to ``limit`` rows; with ``probe``, the one row the half-open breaker lets out."""

    limit: int
    probe: Probe | None = None


@dataclass(frozen=True, slots=True)
class Wait:
    """Claim nothing; look again in ``seconds`` (or sooner when woken)."""

    seconds: float
    reason: str


Plan = Claim | Wait


@dataclass
class DeliveryPolicy:
    """The delivery state of one process: breaker, throttling pause, degraded flag, latency estimate."""

    cap: float
    concurrency: int
    max_report_age: float
    breaker: Breaker
    idle_poll: float = 0.25
    #: ``Provider.report_deadline``: seconds after the send past which a report is useless (None: no limit).
    report_deadline: float | None = None
    rng: Callable[[], float] = random.random
    latency: float = INITIAL_LATENCY
    latency_samples: int = 0
    cpu: float = 0.0
    _floor_before: float = math.inf  # the fastest answer of the previous FLOOR_WINDOW, and of the current one
    _floor_current: float = math.inf
    _floor_count: int = 0
    pause_until: float = -math.inf
    degraded: bool = False
    degraded_checked_at: float = -math.inf
    _summary: Summary = field(default_factory=lambda: Summary())

    # The degraded flag ---------------------------------------------------------------------------------

    def degraded_stale(self, now: float) -> bool:
        """Whether the shared flag should be read again (at most once per ``DEGRADED_RECHECK``)."""
        return now - self.degraded_checked_at >= DEGRADED_RECHECK

    def note_degraded(self, on: bool, now: float) -> bool:
        """Record the flag as read (or set) at ``now``; True when it changed."""
        changed = on != self.degraded
        self.degraded = on
        self.degraded_checked_at = now
        return changed

    # Claiming ------------------------------------------------------------------------------------------

    def plan(self, now: float, *, buffered: int) -> Plan:
        """What the drain loop does next, given the rows already claimed and waiting for a sender."""
        if self.degraded:
            return Wait(DEGRADED_RECHECK, "degraded")
        pause = self.pause_until - now
        if pause > 0:
            return Wait(pause, "throttled")
        blocked = self.breaker.blocked_for(now)
        if blocked > 0:
            return Wait(min(blocked, self.idle_poll) if self.breaker.state != "open" else blocked, "breaker")
        if self.breaker.state != "closed":
            if buffered:  # rows claimed before the breaker opened are still being handed back
                return Wait(self.idle_poll, "breaker")
            admitted = self.breaker.admit(now)
            return Claim(1, admitted) if isinstance(admitted, Probe) else Wait(self.idle_poll, "breaker")
        limit = claim_size(cap=self.cap, concurrency=self.concurrency, latency=self.latency, buffered=buffered)
        if limit == 0:
            return Wait(self.idle_poll, "enough claimed")
        return Claim(limit)

    def send_blocked_for(self, now: float, probe: Probe | None) -> float | None:
        """For a claimed row about to go out: 0 (go), seconds to wait (a throttling pause), or None (it must
        not go: degraded, or the breaker is not closed and the row is not its probe)."""
        if self.degraded or not self.breaker.current(probe):
            return None
        return max(0.0, self.pause_until - now)

    # Answers -------------------------------------------------------------------------------------------

    def decide(
        self,
        answer: Answer,
        row: Row,
        now: float,
        *,
        probe: Probe | None = None,
        took: float = 0.0,
        cpu: float = 0.0,
    ) -> Decision:
        """What ``answer`` means for its row and for the breaker, the pause and the estimates of a request's
        latency (``took``, wall seconds) and of the CPU the calling thread spent on it (``cpu``)."""
        # a plain mean over the first answers, then a moving average: the guess is gone after the first answer
        self.latency_samples += 1
        weight = max(LATENCY_WEIGHT, 1.0 / self.latency_samples)
        self.latency += weight * (max(took, 0.0) - self.latency)
        self.cpu += weight * (max(cpu, 0.0) - self.cpu)
        self._note_floor(max(took, 0.0))
        outcome = answer.outcome
        transition: Transition
        if outcome is Outcome.OK:
            self._summary.reported += 1
            return Decision(Ack(), self.breaker.success(now, probe))
        if outcome is Outcome.PERMANENT:
            self._summary.dead += 1
            return Decision(DeadLetter(answer.error), self.breaker.success(now, probe))
        if outcome is Outcome.AUTH:
            transition = self.breaker.failure(now, answer.error, probe, auth=True)
            self._summary.retried += 1
            return Decision(Retry(now, answer.error), transition)  # no backoff: waits for the breaker instead
        if outcome is Outcome.THROTTLED:
            pause = answer.retry_after if answer.retry_after is not None else THROTTLE_PAUSE
            self.pause_until = max(self.pause_until, now + pause)
            transition = self.breaker.success(now, probe)  # it answered: up, only busy
        else:
            transition = self.breaker.failure(now, answer.error, probe)
        if expired(row, now, self.max_report_age):
            self._summary.dead += 1
            reason = f"expired after {row.attempts + 1} attempt(s); last error: {answer.error}"
            return Decision(DeadLetter(reason), transition)
        self._summary.retried += 1
        delay = backoff_delay(row.attempts, answer.retry_after, rng=self.rng)
        return Decision(Retry(now + delay, answer.error), transition)

    def _note_floor(self, took: float) -> None:
        if self._floor_count >= FLOOR_WINDOW:  # a new half: the older one is forgotten
            self._floor_before, self._floor_current, self._floor_count = self._floor_current, math.inf, 0
        self._floor_count += 1
        self._floor_current = min(self._floor_current, took)

    @property
    def latency_floor(self) -> float:
        """The fastest of the last ``FLOOR_WINDOW`` to ``2 * FLOOR_WINDOW`` answers (inf before any)."""
        return min(self._floor_before, self._floor_current)

    def senders_wanted(self, unanswered: float = 0.0) -> int:
        """Sender threads for the cap at the average latency, but no more than the GIL can use at the fastest
        recent answer (``senders_needed``): a request's time includes its wait for the GIL, which every sender
        added lengthens, so bounding by the average would feed on itself up to the concurrency; the fastest
        answer is what the provider and the network take. Before any answer, the provider takes at least
        ``unanswered`` (how long the first request has waited, seconds): a fast provider answers before that
        asks for more than a few, a slow one gets its senders without waiting a round trip for them."""
        if math.isinf(self.latency_floor):
            return min(self.concurrency, senders_needed(self.cap, unanswered)) if unanswered > 0 else 0
        return min(self.concurrency, senders_needed(self.cap, self.latency, self.cpu, fastest=self.latency_floor))

    def cancel(self, probe: Probe | None) -> None:
        """A claimed row did not go out after all (handed back); a probe it carried is settled."""
        self.breaker.cancel(probe)

    def dead_on_claim(self, row: Row, now: float) -> str | None:
        """Why a claimed row is too old to send (dead-lettered without a call), or None to send it."""
        reason = None
        if past_deadline(row, now, self.report_deadline):
            assert self.report_deadline is not None
            reason = deadline_reason(self.report_deadline)
        elif expired(row, now, self.max_report_age):
            reason = expiry_reason(self.max_report_age)
        if reason is not None:
            self._summary.dead += 1
        return reason

    # The summary ---------------------------------------------------------------------------------------

    def summary_due(self, now: float) -> Summary | None:
        """Once per ``SUMMARY_EVERY``: the counts since the last summary, or None (not yet, or nothing
        happened: an idle process logs nothing)."""
        return self._summary.take(now, force=False)

    def summary_now(self, now: float) -> Summary | None:
        """The counts since the last summary whatever the time (at stop), or None if nothing happened."""
        return self._summary.take(now, force=True)


@dataclass
class Summary:
    """Counts since ``since`` (None: not started; the first event starts the minute)."""

    reported: int = 0
    retried: int = 0
    dead: int = 0
    since: float | None = None

    def take(self, now: float, *, force: bool) -> Summary | None:
        if self.since is None:
            self.since = now
        if not force and now - self.since < SUMMARY_EVERY:
            return None
        taken = Summary(self.reported, self.retried, self.dead, self.since)
        self.reported = self.retried = self.dead = 0
        self.since = now
        return taken if taken.reported or taken.retried or taken.dead else None


def claim_as_of(now: float, *, busy: bool, window: float) -> float:
    """The time a claim looks from: ``now``, or, while the web worker serves requests, ``window`` seconds ago, so
    that only reports that have waited the whole window go out and a burst costs the requests nothing but the
    spool append. The claim's lease is stretched by as much (``now - as_of``), so it still ends a lease after now."""
    return now - window if busy and window > 0 else now


def senders_needed(cap: float, latency: float, cpu: float = 0.0, *, fastest: float | None = None) -> int:
    """Requests in flight that keep up with ``cap`` at the observed ``latency``, a fifth more for its swings. A
    request that costs ``cpu`` seconds of the process's one GIL caps the rate at ``1 / cpu`` whatever the cap, so
    no more are in flight than that rate fills at the ``fastest`` latency (default ``latency``): more threads only
    contend for the GIL."""
    in_flight = cap * max(latency, 0.0)
    if cpu > 0:
        in_flight = min(in_flight, max(latency if fastest is None else fastest, 0.0) / cpu)
    return math.ceil(in_flight * 1.2) + 1
