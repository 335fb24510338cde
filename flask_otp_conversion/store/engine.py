"""What every store engine shares, so that a new engine writes only its storage primitives.

``Engine`` implements the public ``Store`` methods once: it checks the arguments (``checks.py``), runs the
matching rule (``rules.py``) over the sends an engine's transaction reads, and hands the effects back to be
written. An engine implements the underscore methods, each with the atomicity its public method promises in
``base.py``, and receives only checked arguments.
"""

from __future__ import annotations

from abc import abstractmethod
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Protocol, TypeVar

from ..phone import calling_code
from .base import (
    HOUR,
    LATENCY_BUCKETS,
    MAX_PREFIX_DIGITS,
    MINUTE,
    Backlog,
    CountRow,
    DeadLetter,
    DeliveryCounts,
    OutboxItem,
    OutboxStats,
    PrefixCount,
    Store,
    Verification,
    VerifyOutcome,
)
from .checks import (
    check_account,
    check_checkpoint,
    check_count,
    check_flag_value,
    check_ids,
    check_message_id,
    check_name,
    check_phone,
    check_positive,
    check_prefix,
    check_provider,
    check_schedule,
    check_text,
    check_time,
    check_verification,
    check_verifications,
)
from .rules import (
    CounterKey,
    Effects,
    Report,
    Sent,
    Tally,
    Wanted,
    hour_of,
    latency_bucket,
    match,
    sent_counter,
    unverified_reports,
    wanted,
)

T = TypeVar("T")
#: A delivery figure's key: (hour start, provider, figure name).
FigureKey = tuple[int, str, str]
_LATENCY = tuple(f"latency:{index}" for index in range(len(LATENCY_BUCKETS) + 1))


def foreign_reason(provider: str, account: str) -> str:
    """The dead-letter reason of a row ``expire_foreign`` moved: whose row it was."""
    return f"expired: the row belongs to {provider} account {account or '(unknown)'}, not the configured one"


def prefix_upper(prefix: str) -> str:
    """The first string past every number starting with ``prefix`` in byte order (``"+4479"`` -> ``"+447:"``):
    the exclusive end of the range an index on ``phone`` scans."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


class RecordsTransaction(Protocol):
    """An engine's primitives for records, valid inside one ``Engine._in_records`` transaction."""

    def insert_send(self, *, provider: str, message_id: str, phone: str, sent_at: float, account: str) -> bool:
        """Insert a send unless (provider, message_id) is known; True if inserted."""

    def find_sends(self, wanted: Wanted) -> Iterable[Sent]:
        """The sends ``wanted`` asks for (more is fine, fewer is not), as of this transaction, and protected
        from concurrent change until it ends (a lock, ``FOR UPDATE``, or a watched key)."""

    def mark_verified(self, verified: Sequence[tuple[int, float]]) -> None:
        """Set ``verified_at`` on each send (by ``Sent.key``)."""

    def find_unsettled(
        self, provider: str, account: str | None, sent_after: float, sent_before: float, limit: int
    ) -> Sequence[Sent]:
        """Up to ``limit`` sends of ``provider`` (and ``account`` unless None) sent in ``[sent_after,
        sent_before)``, neither verified nor settled, oldest ``sent_at`` first, protected as ``find_sends``."""

    def mark_settled(self, keys: Sequence[int]) -> None:
        """Mark the sends (by ``Sent.key``) settled: their negative report is enqueued."""

    def insert_reports(self, reports: Sequence[Report]) -> None:
        """Insert pending outbox rows, in order (their ids increase in that order)."""

    def add_counts(self, counters: Mapping[CounterKey, Tally]) -> None:
        """Add the increments to the counter rows, creating missing ones."""

    def spool_position(self, name: str) -> int:
        """The stored position of spool ``name`` (0 if none). Two transactions that read the same position
        must not both commit a move from it: lock the row (creating it if missing), or fail the later one."""

    def set_spool_position(self, name: str, position: int) -> None: ...


class Engine(Store):
    """A ``Store`` built on an engine's primitives (the underscore methods)."""

    # Primitives ---------------------------------------------------------------------------------------

    @abstractmethod
    def _in_records(self, body: Callable[[RecordsTransaction], T]) -> T:
        """Run ``body`` in one write transaction and return its result; commit only if it returns. An
        engine with optimistic transactions (Redis WATCH) may run it again after a conflict: ``body`` only
        reads and writes through the transaction."""

    @abstractmethod
    def _spool_position(self, name: str) -> int: ...

    @abstractmethod
    def _forget_spool(self, name: str) -> None: ...

    @abstractmethod
    def _counts(self, since: float, until: float, span: int) -> list[CountRow]: ...

    @abstractmethod
    def _unverified_sends(self, prefix: str, upper: str, since: float, limit: int) -> int:
        """``unverified_sends`` for numbers ``prefix <= phone < upper`` (byte order: ``upper`` is ``prefix``
        with its last digit raised by one, so the range is exactly the numbers starting with it); ``limit`` >= 1."""

    @abstractmethod
    def _prefix_counts(self, since: float, until: float, length: int) -> Iterable[tuple[str, int, int]]:
        """(the first ``length`` characters of the phone, sends, verified) of the sends with ``sent_at`` in
        ``[since, until)``, one entry per distinct start (or several, which are summed), read by ``sent_at``."""

    @abstractmethod
    def _add_figures(self, increments: Mapping[FigureKey, int]) -> None:
        """Add to the delivery figures (created where missing), atomically: no increment is lost under
        concurrency."""

    @abstractmethod
    def _figures(self, since: float, until: float) -> list[tuple[int, str, str, int]]:
        """(hour, provider, name, value) of the figures of hours starting in ``[since, until)``."""

    @abstractmethod
    def _claim(
        self, provider: str, account: str | None, limit: int, lease_until: float, now: float
    ) -> list[OutboxItem]:
        """Lease rows due at ``now`` (``limit`` >= 1) until ``lease_until``, under one fresh token; with
        ``account``, only rows of that account or of ""."""

    @abstractmethod
    def _ack(self, items: Sequence[OutboxItem], now: float) -> list[int]:
        """Mark the rows still held reported; the ids of those changed."""

    @abstractmethod
    def _release(self, items: Sequence[OutboxItem]) -> int: ...

    @abstractmethod
    def _retry(self, item: OutboxItem, next_attempt_at: float, error: str) -> bool: ...

    @abstractmethod
    def _dead_letter(self, item: OutboxItem, reason: str, now: float) -> bool: ...

    @abstractmethod
    def _expire_foreign(self, provider: str, account: str, created_before: float, now: float) -> list[str]:
        """``expire_foreign``, each row's reason ``foreign_reason(row provider, row account)``, in one
        transaction; the provider of each row moved."""

    @abstractmethod
    def _backlog(self) -> list[Backlog]: ...

    @abstractmethod
    def _dead_letters(self, limit: int, ids: list[int] | None) -> list[DeadLetter]: ...

    @abstractmethod
    def _replay_dead_letters(self, ids: list[int] | None, now: float) -> int: ...

    @abstractmethod
    def _outbox_stats(self, now: float) -> OutboxStats: ...

    @abstractmethod
    def _prune(self, before: float, minutes_before: float) -> int:
        """``prune``: hour counters and figures by ``rules.first_kept_hour(before)``, minute counters starting
        before ``minutes_before``."""

    @abstractmethod
    def _get_flag(self, name: str) -> str | None: ...

    @abstractmethod
    def _set_flag(self, name: str, value: str | None) -> None: ...

    @abstractmethod
    def _acquire_lease(self, name: str, owner: str, expires_at: float, now: float) -> bool:
        """Hold ``name`` for ``owner`` until ``expires_at`` unless another owner holds it past ``now``."""

    @abstractmethod
    def _take_slots(self, name: str, want: int, interval: float, horizon: float, now: float) -> tuple[float, int]:
        """``rules.draw_slots`` on the stored schedule, read and written atomically."""

    # Records ------------------------------------------------------------------------------------------

    def record_sent(self, *, phone: str, message_id: str, provider: str, sent_at: float, account: str = "") -> bool:
        phone = check_phone(phone)
        message_id = check_message_id(message_id)
        provider = check_provider(provider)
        sent = check_time(sent_at, "sent_at")
        owner = check_account(account)

        def body(tx: RecordsTransaction) -> bool:
            if not tx.insert_send(provider=provider, message_id=message_id, phone=phone, sent_at=sent, account=owner):
                return False
            tx.add_counts(sent_counter(phone, provider, sent))
            return True

        return self._in_records(body)

    def record_verified(
        self,
        *,
        phone: str,
        message_id: str | None,
        provider: str,
        verified_at: float,
        match_window: float,
    ) -> VerifyOutcome:
        item = check_verification(Verification(phone, message_id, verified_at))
        outcomes = self._apply([item], check_provider(provider), check_positive(match_window, "match_window"), None)
        assert outcomes is not None  # no checkpoint, so never refused
        return outcomes[0]

    def apply_verifications(
        self,
        items: Sequence[Verification],
        *,
        provider: str,
        match_window: float,
        checkpoint: tuple[str, int, int],
    ) -> list[VerifyOutcome] | None:
        return self._apply(
            check_verifications(items),
            check_provider(provider),
            check_positive(match_window, "match_window"),
            check_checkpoint(checkpoint),
        )

    def _apply(
        self,
        items: list[Verification],
        provider: str,
        window: float,
        checkpoint: tuple[str, int, int] | None,
    ) -> list[VerifyOutcome] | None:
        need = wanted(items, provider=provider, window=window)

        def body(tx: RecordsTransaction) -> list[VerifyOutcome] | None:
            if checkpoint is not None and tx.spool_position(checkpoint[0]) != checkpoint[1]:
                return None
            effects = match(items, tx.find_sends(need), provider=provider, window=window) if items else Effects()
            if effects.verified:
                tx.mark_verified(effects.verified)
                tx.insert_reports(effects.reports)
            if effects.counters:
                tx.add_counts(effects.counters)
            if checkpoint is not None:
                tx.set_spool_position(checkpoint[0], checkpoint[2])
            return effects.outcomes

        return self._in_records(body)

    def matches(self, items: Sequence[Verification], *, provider: str, match_window: float) -> list[bool]:
        checked, name = check_verifications(items), check_provider(provider)
        window = check_positive(match_window, "match_window")
        if not checked:
            return []
        need = wanted(checked, provider=name, window=window)

        def body(tx: RecordsTransaction) -> list[bool]:  # reads only: the transaction commits nothing
            effects = match(checked, tx.find_sends(need), provider=name, window=window)
            return [outcome.message_id is not None for outcome in effects.outcomes]

        return self._in_records(body)

    def enqueue_unverified(
        self, *, provider: str, account: str | None, sent_after: float, sent_before: float, limit: int, now: float
    ) -> int:
        provider = check_provider(provider)
        owner = None if account is None else check_account(account)
        after, before = check_time(sent_after, "sent_after"), check_time(sent_before, "sent_before")
        count, at = check_count(limit), check_time(now, "now")
        if not count or after >= before:
            return 0

        def body(tx: RecordsTransaction) -> int:
            sends = tx.find_unsettled(provider, owner, after, before, count)
            reports = unverified_reports(sends, at)
            if reports:
                tx.mark_settled([sent.key for sent in sends if sent.verified_at is None and not sent.settled])
                tx.insert_reports(reports)
            return len(reports)

        return self._in_records(body)

    def spool_position(self, name: str) -> int:
        return self._spool_position(check_name(name, "spool name"))

    def forget_spool(self, name: str) -> None:
        self._forget_spool(check_name(name, "spool name"))

    def counts(self, *, since: float, until: float, span: int = HOUR) -> list[CountRow]:
        if span not in (HOUR, MINUTE):
            raise ValueError(f"span must be {HOUR} (hours) or {MINUTE} (minutes)")
        return self._counts(check_time(since, "since"), check_time(until, "until"), span)

    def unverified_sends(self, *, prefix: str, since: float, limit: int) -> int:
        start, at, count = check_prefix(prefix), check_time(since, "since"), check_count(limit)
        return self._unverified_sends(start, prefix_upper(start), at, count) if count else 0

    def prefix_counts(self, *, since: float, until: float, digits: int) -> list[PrefixCount]:
        start, end = check_time(since, "since"), check_time(until, "until")
        wanted = check_count(digits, "digits", minimum=1)
        if wanted > MAX_PREFIX_DIGITS:
            raise ValueError(f"digits must be <= {MAX_PREFIX_DIGITS}")
        if start >= end:
            return []
        # Grouped by the longest calling code's length (three digits), then cut at each number's own code here.
        totals: dict[str, list[int]] = {}
        for head, sends, verified in self._prefix_counts(start, end, 4 + wanted):
            code = calling_code(head)
            tally = totals.setdefault("+" + code + head[1 + len(code) :][:wanted], [0, 0])
            tally[0] += sends
            tally[1] += verified
        return [
            PrefixCount(prefix, calling_code(prefix), sends, verified)
            for prefix, (sends, verified) in sorted(totals.items())
        ]

    def delivery_counts(self, *, since: float, until: float) -> list[DeliveryCounts]:
        values: dict[tuple[int, str], dict[str, int]] = {}
        for hour, provider, name, value in self._figures(check_time(since, "since"), check_time(until, "until")):
            values.setdefault((hour, provider), {})[name] = value
        return [
            DeliveryCounts(
                hour=hour,
                provider=provider,
                delivered=named.get("delivered", 0),
                retried=named.get("retried", 0),
                dead_lettered=named.get("dead", 0),
                latency=tuple(named.get(name, 0) for name in _LATENCY),
                rate_limit_waits=named.get("rate_waits", 0),
                rate_limit_wait_seconds=named.get("rate_wait_ms", 0) / 1000.0,
            )
            for (hour, provider), named in sorted(values.items())
        ]

    # Outbox -------------------------------------------------------------------------------------------

    def claim(
        self, *, provider: str, limit: int, lease_seconds: float, now: float, account: str | None = None
    ) -> list[OutboxItem]:
        provider = check_provider(provider)
        owner = None if account is None else check_account(account)
        limit = check_count(limit)
        lease = check_positive(lease_seconds, "lease_seconds")
        at = check_time(now, "now")
        return self._claim(provider, owner, limit, at + lease, at) if limit else []

    def ack(self, items: Sequence[OutboxItem], *, now: float) -> int:
        """Figures are counted after the rows change, in a call of their own: a crash between loses a count,
        never a report."""
        at = check_time(now, "now")
        if not items:
            return 0
        changed = set(self._ack(items, at))
        hour, figures = hour_of(at), Counter[FigureKey]()
        for item in items:
            if item.id in changed:
                figures[hour, item.provider, "delivered"] += 1
                figures[hour, item.provider, _LATENCY[latency_bucket(at - item.verified_at, LATENCY_BUCKETS)]] += 1
        if figures:
            self._add_figures(figures)
        return len(changed)

    def release(self, items: Sequence[OutboxItem]) -> int:
        return self._release(items) if items else 0

    def retry(self, item: OutboxItem, *, next_attempt_at: float, error: str, now: float) -> bool:
        at = check_time(now, "now")
        changed = self._retry(item, check_time(next_attempt_at, "next_attempt_at"), check_text(error, "error"))
        if changed:
            self._add_figures({(hour_of(at), item.provider, "retried"): 1})
        return changed

    def dead_letter(self, item: OutboxItem, *, reason: str, now: float) -> bool:
        at = check_time(now, "now")
        changed = self._dead_letter(item, check_text(reason, "reason"), at)
        if changed:
            self._add_figures({(hour_of(at), item.provider, "dead"): 1})
        return changed

    def count_rate_waits(self, *, provider: str, waits: int, wait_seconds: float, now: float) -> None:
        name, count = check_provider(provider), check_count(waits, "waits")
        seconds, hour = check_time(wait_seconds, "wait_seconds"), hour_of(check_time(now, "now"))
        if count:  # figures are whole numbers: the wait is kept in milliseconds
            self._add_figures({(hour, name, "rate_waits"): count, (hour, name, "rate_wait_ms"): round(seconds * 1000)})

    def expire_foreign(self, *, provider: str, account: str, created_before: float, now: float) -> int:
        at = check_time(now, "now")
        moved = self._expire_foreign(
            check_provider(provider), check_account(account), check_time(created_before, "created_before"), at
        )
        figures = Counter((hour_of(at), owner, "dead") for owner in moved)
        if figures:
            self._add_figures(figures)
        return len(moved)

    def backlog(self) -> list[Backlog]:
        return self._backlog()

    def dead_letters(self, *, limit: int = 100, ids: Sequence[int] | None = None) -> list[DeadLetter]:
        return self._dead_letters(check_count(limit), check_ids(ids))

    def replay_dead_letters(self, ids: Sequence[int] | None = None, *, now: float) -> int:
        return self._replay_dead_letters(check_ids(ids), check_time(now, "now"))

    def outbox_stats(self, *, now: float) -> OutboxStats:
        return self._outbox_stats(check_time(now, "now"))

    def prune(self, *, before: float, minute_rows_before: float | None = None) -> int:
        cutoff = check_time(before, "before")
        minutes = cutoff if minute_rows_before is None else check_time(minute_rows_before, "minute_rows_before")
        return self._prune(cutoff, int(minutes // MINUTE) * MINUTE)  # a minute goes once all of it is past

    # Coordination -------------------------------------------------------------------------------------

    def get_flag(self, name: str) -> str | None:
        return self._get_flag(check_name(name, "flag name"))

    def set_flag(self, name: str, value: str | None) -> None:
        self._set_flag(check_name(name, "flag name"), check_flag_value(value))

    def acquire_lease(self, name: str, *, owner: str, ttl: float, now: float) -> bool:
        key = check_name(name, "lease name")
        who = check_name(owner, "lease owner")
        seconds = check_positive(ttl, "ttl")
        at = check_time(now, "now")
        return self._acquire_lease(key, who, at + seconds, at)

    def take_slots(self, name: str, *, want: int, interval: float, horizon: float, now: float) -> tuple[float, int]:
        key = check_name(name, "schedule name")
        count = check_count(want, "want", minimum=1)
        interval_value, horizon_value = check_schedule(interval, horizon)
        return self._take_slots(key, count, interval_value, horizon_value, check_time(now, "now"))
