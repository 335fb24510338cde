"""The store contract: three small parts, each stating what an engine (SQLite, memory, PostgreSQL, Redis)
must guarantee, and ``Store``, all of them together.

``Records``
    sends, verifications (matched by the one rule in ``rules.py``), hourly counters, spool checkpoints.
``Outbox``
    the queue of conversion reports: claim with a lease, ack, release, retry at a time, dead letters.
``Coordination``
    what the processes sharing a store agree on: flags, named leases, request-start schedules.

Every method is one atomic operation (``prune`` may take several), so the contract maps onto a SQLite
transaction, a lock around dicts, a PostgreSQL transaction or a Redis script alike. Times are UNIX seconds
(float), passed in by the caller, so that tests and the reporter agree on one clock; the store never reads a
clock of its own. Arguments are checked once, by ``engine.Engine``, before an engine sees them: bad ones raise
``ValueError`` and change nothing. The store knows nothing of providers beyond their names.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

#: Longest message id we accept (Tencent serial numbers are ~40 chars, Alibaba BizIds ~25).
MAX_MESSAGE_ID_LENGTH = 128
MAX_PROVIDER_LENGTH = 64
MAX_ACCOUNT_LENGTH = 128
#: Longest error or dead-letter reason kept in a row.
MAX_ERROR_LENGTH = 500


@dataclass(frozen=True)
class VerifyOutcome:
    """What ``record_verified`` did."""

    #: The message the verification was matched to, or None when no send matched.
    message_id: str | None
    #: True when this call wrote an outbox row (False for a repeat verification or no match).
    enqueued: bool
    #: True when the matched message had already been verified before this call.
    already_verified: bool = False


@dataclass(slots=True)
class Verification:
    """One verification as the spool keeps it until the store applies it (phone in E.164). Not frozen: one is
    built in every verify request and for every spooled line applied, and a frozen dataclass's ``__init__``
    costs several times as much."""

    phone: str
    message_id: str | None
    verified_at: float


@dataclass(frozen=True)
class OutboxItem:
    """A claimed outbox row. ``lease_token`` proves the claim when acking, retrying or dead-lettering."""

    id: int
    message_id: str
    phone: str
    provider: str
    sent_at: float
    verified_at: float
    created_at: float
    attempts: int
    last_error: str | None
    lease_token: str
    #: The provider account the message was sent through ("" for a row written before rows knew theirs).
    account: str = ""
    #: False for the negative outcome: the send's match window ended without a verification.
    converted: bool = True


@dataclass(frozen=True)
class DeadLetter:
    id: int
    message_id: str
    phone: str
    provider: str
    verified_at: float
    created_at: float
    attempts: int
    reason: str
    dead_at: float
    account: str = ""
    converted: bool = True


@dataclass(frozen=True)
class Backlog:
    """Pending rows of one provider account (``outbox.backlog``): what is waiting, and since when."""

    provider: str
    account: str
    pending: int
    oldest_pending_at: float


@dataclass(frozen=True)
class DeliveryCounts:
    """Delivery figures for one hour (UTC, epoch seconds of its start) and provider.

    ``latency`` counts delivered reports by the time from verification (or, for a negative report, from the end
    of the match window) to the provider's acknowledgement, in the buckets of ``LATENCY_BUCKETS``: ``latency[i]``
    is the number at most ``LATENCY_BUCKETS[i]`` seconds and more than the bucket before; the last entry counts
    the rest. Each count is of that bucket alone, not cumulative.
    """

    hour: int
    provider: str
    delivered: int
    retried: int
    dead_lettered: int
    latency: tuple[int, ...]
    #: Requests that waited for a slot of the shared rate cap, and how long they waited in all (seconds).
    rate_limit_waits: int = 0
    rate_limit_wait_seconds: float = 0.0


#: Upper bounds (seconds) of the delivery latency histogram's buckets; one more bucket holds the rest.
LATENCY_BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0)
#: Counter spans: hour rows (kept until ``prune``) and minute rows (for the alarm's sliding window).
HOUR = 3600
MINUTE = 60


@dataclass(frozen=True)
class OutboxStats:
    pending: int  # not yet reported, including rows under lease
    in_flight: int  # under an unexpired lease
    dead: int
    reported: int  # acked and not yet pruned
    oldest_pending_at: float | None  # created_at of the oldest pending row

    def oldest_pending_age(self, now: float) -> float | None:
        return None if self.oldest_pending_at is None else max(0.0, now - self.oldest_pending_at)


@dataclass(frozen=True)
class CountRow:
    """Counters for one hour (or minute: ``counts(span=MINUTE)``), provider and calling code. ``hour`` is the
    span's start (UTC, epoch seconds).

    ``verified`` is counted in the span the message was *sent*, so a row's rate is a true conversion rate.
    ``unmatched`` counts verifications that matched no send (in the span they happened).
    """

    hour: int
    provider: str
    calling_code: str
    requested: int
    verified: int
    unmatched: int


@dataclass(frozen=True)
class PrefixCount:
    """The sends of a time range to one number prefix (``prefix_counts``) and how many of them are verified."""

    #: "+", the calling code and the next digits of the number (the whole number when it has fewer).
    prefix: str
    calling_code: str
    sends: int
    verified: int


#: Most digits after the calling code that ``prefix_counts`` groups by.
MAX_PREFIX_DIGITS = 12


class Records(ABC):
    """Sends, verifications, counters and spool checkpoints.

    Atomicity: each call is one transaction. ``record_verified`` and ``apply_verifications`` read the
    candidate sends and write every effect the matching rule computed (sends marked verified, outbox rows,
    counter increments, the spool position) in that one transaction, isolated from any concurrent
    verification of the same send: of two verifications of one send racing in two processes, exactly one
    enqueues. Counter increments are never lost under concurrency. Ordering: a send's record is committed
    before its ``record_sent`` returns, so a verification applied after it can match it.
    """

    @abstractmethod
    def record_sent(self, *, phone: str, message_id: str, provider: str, sent_at: float, account: str = "") -> bool:
        """Record a send (phone in E.164) through ``account`` and count one request in the hour of ``sent_at``.
        Idempotent per (provider, message_id): False, and nothing counted, if already known. The send's reports
        carry its account, so they are only ever made to the account that sent it."""

    @abstractmethod
    def record_verified(
        self,
        *,
        phone: str,
        message_id: str | None,
        provider: str,
        verified_at: float,
        match_window: float,
    ) -> VerifyOutcome:
        """Match one verification by the rule in ``rules.match`` and enqueue its report, in one transaction.

        With ``message_id``: that message of ``provider`` sent to ``phone``. Without: the most recent send to
        ``phone`` within ``match_window`` seconds before ``verified_at``. A message already verified is a
        repeat and enqueues nothing. No match: counts an unmatched verification under ``provider`` in the
        hour of ``verified_at`` and enqueues nothing. ``verified`` is counted in the hour of the send. A send
        settled as not converted (``enqueue_unverified``) is counted verified now but enqueues nothing more.
        """

    @abstractmethod
    def apply_verifications(
        self,
        items: Sequence[Verification],
        *,
        provider: str,
        match_window: float,
        checkpoint: tuple[str, int, int],
    ) -> list[VerifyOutcome] | None:
        """``record_verified`` for each item in order, and the spool's position moved, in one transaction.

        ``checkpoint`` is (spool name, position before the items, position after them). If the stored position
        is not the first (another process applied these lines already), nothing changes and the result is
        None. So a spool replayed after a crash, or read by two processes at once, never applies a line twice
        and never skips one. One bad item refuses the whole batch (``ValueError``), position unmoved."""

    @abstractmethod
    def matches(self, items: Sequence[Verification], *, provider: str, match_window: float) -> list[bool]:
        """Whether each verification would match a send now (``rules.match``, in order), changing nothing: the
        spool's applier asks after a store outage, when a send may still be on its way (held in another
        process's memory), so as not to apply its verification as unmatched too soon."""

    @abstractmethod
    def enqueue_unverified(
        self, *, provider: str, account: str | None, sent_after: float, sent_before: float, limit: int, now: float
    ) -> int:
        """Settle up to ``limit`` sends of ``provider`` (of ``account``, or of any account for None) sent in
        ``[sent_after, sent_before)`` and never verified: each gets one outbox row with ``converted`` False,
        created and due at ``now``, oldest send first, in one transaction. A settled send is never settled
        again. Returns how many were settled."""

    @abstractmethod
    def spool_position(self, name: str) -> int:
        """How far the spool ``name`` has been applied (bytes; 0 for a spool never seen)."""

    @abstractmethod
    def forget_spool(self, name: str) -> None:
        """Drop the position of a spool whose file is gone."""

    @abstractmethod
    def counts(self, *, since: float, until: float, span: int = HOUR) -> list[CountRow]:
        """Counter rows of ``span`` (``HOUR`` or ``MINUTE``) starting in ``[since, until)``, ordered by start,
        provider, calling code. Every increment is counted in both spans."""

    @abstractmethod
    def unverified_sends(self, *, prefix: str, since: float, limit: int) -> int:
        """How many sends to numbers starting with ``prefix`` ("+" and digits: a calling code and more, or a
        whole E.164 number, which a longer number starting with it shares) have ``sent_at`` at or after
        ``since`` and are unverified, up to ``limit``: the answer is ``min(count, limit)``, so an engine stops
        once it has seen ``limit`` (a limit only needs to know "at least that many"), and answers 0 for 0.

        A send is unverified while neither it nor a later send to the same number (``sent_at`` at or after
        its own) is verified: a verification clears the number's earlier sends, whose codes it superseded. A
        send settled as not converted is still unverified. Every process sharing the store sees a send once its
        ``record_sent`` returned, and its verification once ``record_verified`` (or the spool's apply) did.
        Reads only. Pruned sends are not counted."""

    @abstractmethod
    def prefix_counts(self, *, since: float, until: float, digits: int) -> list[PrefixCount]:
        """The sends with ``sent_at`` in ``[since, until)``, grouped by number prefix (the calling code and the
        next ``digits`` digits, 1 to ``MAX_PREFIX_DIGITS``), ordered by prefix: per prefix, how many and how many
        of them are verified now (a send settled as not converted and verified late counts as verified, as in
        ``counts``). Only prefixes with sends are listed. Reads only, and only the sends of the range (an index
        on ``sent_at``), never the whole retention: the alarm asks for a 15-minute window several times a
        minute. Pruned sends are not counted."""

    @abstractmethod
    def delivery_counts(self, *, since: float, until: float) -> list[DeliveryCounts]:
        """Delivery figures of the hours starting in ``[since, until)``, ordered by hour and provider. ``ack``,
        ``retry`` and ``dead_letter`` count them, only for rows they changed."""


class Outbox(ABC):
    """The queue of conversion reports, one row per verified send.

    Atomicity: ``claim`` leases its rows in one atomic step, so two claims never return the same row while
    its lease holds (any number of processes, on any number of hosts for a shared engine); a row whose lease
    expired is claimable again, under a new token. ``ack``, ``release``, ``retry`` and ``dead_letter``
    change a row only while it still carries the item's lease token, atomically with that check: a worker
    that stalled past its lease and lost the row changes nothing. A token that expired but was not re-claimed
    still counts (the report did go out). Ordering: claims take due rows oldest ``next_attempt_at`` first,
    then by id (insertion order). Row ids are never reused.
    """

    @abstractmethod
    def claim(
        self, *, provider: str, limit: int, lease_seconds: float, now: float, account: str | None = None
    ) -> list[OutboxItem]:
        """Lease up to ``limit`` due rows of ``provider`` for ``lease_seconds``, in claim order.

        Due: pending, ``next_attempt_at <= now``, and no unexpired lease. With ``account``, only rows of that
        account or of an unknown one (""): a row is never reported to an account that did not send it.
        """

    @abstractmethod
    def ack(self, items: Sequence[OutboxItem], *, now: float) -> int:
        """Mark rows reported (done at ``now``). Returns how many changed."""

    @abstractmethod
    def release(self, items: Sequence[OutboxItem]) -> int:
        """Hand claimed rows back unsent: lease cleared, due at once, no attempt counted (a graceful stop, or
        rows a worker could not send in time). Returns how many changed."""

    @abstractmethod
    def retry(self, item: OutboxItem, *, next_attempt_at: float, error: str, now: float) -> bool:
        """Release the lease, count an attempt, keep the error, and make the row due at ``next_attempt_at``
        (a retry counted in the hour of ``now``)."""

    @abstractmethod
    def dead_letter(self, item: OutboxItem, *, reason: str, now: float) -> bool:
        """Move the row to dead letters with ``reason`` (counts the attempt)."""

    @abstractmethod
    def count_rate_waits(self, *, provider: str, waits: int, wait_seconds: float, now: float) -> None:
        """Add requests that waited for a rate-cap slot, and their wait, to the delivery figures of the hour of
        ``now`` (a deliverer sums them and writes every few seconds)."""

    @abstractmethod
    def expire_foreign(self, *, provider: str, account: str, created_before: float, now: float) -> int:
        """Dead-letter the pending rows, not under an unexpired lease, created before ``created_before``, that
        belong to another provider, or to another known account of ``provider``: rows the configured account may
        not send, once they are too old to wait for their own. The reason names their provider and account.
        Returns how many."""

    @abstractmethod
    def backlog(self) -> list[Backlog]:
        """Pending rows per (provider, account), ordered by provider and account."""

    @abstractmethod
    def dead_letters(self, *, limit: int = 100, ids: Sequence[int] | None = None) -> list[DeadLetter]:
        """Dead letters (all, or those of ``ids``), newest first, at most ``limit``."""

    @abstractmethod
    def replay_dead_letters(self, ids: Sequence[int] | None = None, *, now: float) -> int:
        """Make dead letters (all, or those ``ids``) pending and due at ``now``, with attempts and age
        (``created_at``) reset, so a replay gets a full ``max_report_age``. Returns how many."""

    @abstractmethod
    def outbox_stats(self, *, now: float) -> OutboxStats:
        """Counts over the whole outbox, from one consistent snapshot."""

    @abstractmethod
    def prune(self, *, before: float, minute_rows_before: float | None = None) -> int:
        """Delete sends, reported and dead rows, counter hours and delivery figures that ended before ``before``,
        and minute counter rows starting before ``minute_rows_before`` (default ``before``); pending rows are
        kept however old. May run as several transactions (so writers are never held up for long); each
        leaves the store consistent. Returns how many rows went."""


class Coordination(ABC):
    """What the processes sharing a store agree on. Each call is atomic; every process sees a write at once."""

    @abstractmethod
    def get_flag(self, name: str) -> str | None:
        """A shared switch (e.g. ``degraded``)."""

    @abstractmethod
    def set_flag(self, name: str, value: str | None) -> None:
        """Set or (with None) clear a shared switch."""

    @abstractmethod
    def acquire_lease(self, name: str, *, owner: str, ttl: float, now: float) -> bool:
        """Take or renew a named lease for ``ttl`` seconds from ``now``. True if ``owner`` holds it now: at most
        one owner holds a lease at any moment of the callers' clock."""

    @abstractmethod
    def take_slots(self, name: str, *, want: int, interval: float, horizon: float, now: float) -> tuple[float, int]:
        """Reserve up to ``want`` consecutive request starts on the shared schedule ``name``, in one atomic step
        (``rules.draw_slots``): slots are ``interval`` seconds apart for every process that shares the store, the
        first at or after ``now``, none later than ``now + horizon``, and no slot is ever reserved twice, so a
        provider's rate cap holds for the whole app.

        Returns ``(first, count)``: the slots are ``first, first + interval, ...``; with ``count`` 0, ``first`` is
        the next free slot (reservable from ``first - horizon``). A schedule asked with another ``interval`` (a
        config change) continues from its next free slot.
        """


class Store(Records, Outbox, Coordination):
    """Durable record of OTP sends and verifications, the outbox of conversion reports, and coordination."""

    #: Seconds a background writer (the spool's applier) gathers lines between its transactions. An engine whose
    #: transactions cost mostly per statement on a server (PostgreSQL) asks for fewer, larger ones.
    batch_interval: ClassVar[float] = 0.05

    @abstractmethod
    def reopen(self) -> None:
        """Drop connections inherited across ``os.fork``; the next call opens fresh ones."""

    @abstractmethod
    def close(self) -> None:
        """Close connections held by this process; the store stays usable and reconnects on its next call."""
