"""What every store engine shares, so that a new engine writes only its storage primitives.

``Engine`` implements the public ``Store`` methods once: it checks the arguments (``checks.py``), runs the
matching rule (``rules.py``) over the sends an engine's transaction reads, and hands the effects back to be
written. An engine implements the underscore methods, each with the atomicity its public method promises in
``base.py``, and receives only checked arguments.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Protocol, TypeVar

from .base import CountRow, DeadLetter, OutboxItem, OutboxStats, Store, Verification, VerifyOutcome
from .checks import (
    check_checkpoint,
    check_count,
    check_flag_value,
    check_ids,
    check_message_id,
    check_name,
    check_phone,
    check_positive,
    check_provider,
    check_schedule,
    check_text,
    check_time,
    check_verification,
    check_verifications,
)
from .rules import CounterKey, Effects, Report, Sent, Tally, Wanted, match, sent_counter, wanted

T = TypeVar("T")


class RecordsTransaction(Protocol):
    """An engine's primitives for records, valid inside one ``Engine._in_records`` transaction."""

    def insert_send(self, *, provider: str, message_id: str, phone: str, sent_at: float) -> bool:
        """Insert a send unless (provider, message_id) is known; True if inserted."""

    def find_sends(self, wanted: Wanted) -> Iterable[Sent]:
        """The sends ``wanted`` asks for (more is fine, fewer is not), as of this transaction, and protected
        from concurrent change until it ends (a lock, ``FOR UPDATE``, or a watched key)."""

    def mark_verified(self, verified: Sequence[tuple[int, float]]) -> None:
        """Set ``verified_at`` on each send (by ``Sent.key``)."""

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
    def _counts(self, since: float, until: float) -> list[CountRow]: ...

    @abstractmethod
    def _claim(self, provider: str, limit: int, lease_until: float, now: float) -> list[OutboxItem]:
        """Lease rows due at ``now`` (``limit`` >= 1) until ``lease_until``, under one fresh token."""

    @abstractmethod
    def _ack(self, items: Sequence[OutboxItem], now: float) -> int: ...

    @abstractmethod
    def _release(self, items: Sequence[OutboxItem]) -> int: ...

    @abstractmethod
    def _retry(self, item: OutboxItem, next_attempt_at: float, error: str) -> bool: ...

    @abstractmethod
    def _dead_letter(self, item: OutboxItem, reason: str, now: float) -> bool: ...

    @abstractmethod
    def _dead_letters(self, limit: int, ids: list[int] | None) -> list[DeadLetter]: ...

    @abstractmethod
    def _replay_dead_letters(self, ids: list[int] | None, now: float) -> int: ...

    @abstractmethod
    def _outbox_stats(self, now: float) -> OutboxStats: ...

    @abstractmethod
    def _prune(self, before: float) -> int: ...

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

    def record_sent(self, *, phone: str, message_id: str, provider: str, sent_at: float) -> bool:
        phone = check_phone(phone)
        message_id = check_message_id(message_id)
        provider = check_provider(provider)
        sent = check_time(sent_at, "sent_at")

        def body(tx: RecordsTransaction) -> bool:
            if not tx.insert_send(provider=provider, message_id=message_id, phone=phone, sent_at=sent):
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

    def spool_position(self, name: str) -> int:
        return self._spool_position(check_name(name, "spool name"))

    def forget_spool(self, name: str) -> None:
        self._forget_spool(check_name(name, "spool name"))

    def counts(self, *, since: float, until: float) -> list[CountRow]:
        return self._counts(check_time(since, "since"), check_time(until, "until"))

    # Outbox -------------------------------------------------------------------------------------------

    def claim(self, *, provider: str, limit: int, lease_seconds: float, now: float) -> list[OutboxItem]:
        provider = check_provider(provider)
        limit = check_count(limit)
        lease = check_positive(lease_seconds, "lease_seconds")
        at = check_time(now, "now")
        return self._claim(provider, limit, at + lease, at) if limit else []

    def ack(self, items: Sequence[OutboxItem], *, now: float) -> int:
        at = check_time(now, "now")
        return self._ack(items, at) if items else 0

    def release(self, items: Sequence[OutboxItem]) -> int:
        return self._release(items) if items else 0

    def retry(self, item: OutboxItem, *, next_attempt_at: float, error: str) -> bool:
        return self._retry(item, check_time(next_attempt_at, "next_attempt_at"), check_text(error, "error"))

    def dead_letter(self, item: OutboxItem, *, reason: str, now: float) -> bool:
        return self._dead_letter(item, check_text(reason, "reason"), check_time(now, "now"))

    def dead_letters(self, *, limit: int = 100, ids: Sequence[int] | None = None) -> list[DeadLetter]:
        return self._dead_letters(check_count(limit), check_ids(ids))

    def replay_dead_letters(self, ids: Sequence[int] | None = None, *, now: float) -> int:
        return self._replay_dead_letters(check_ids(ids), check_time(now, "now"))

    def outbox_stats(self, *, now: float) -> OutboxStats:
        return self._outbox_stats(check_time(now, "now"))

    def prune(self, *, before: float) -> int:
        return self._prune(check_time(before, "before"))

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
