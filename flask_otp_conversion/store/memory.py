"""An in-process store with the SQLite store's semantics: for tests, development and single-process apps.

One lock around plain dicts makes every method atomic. Nothing survives the process, and a forked child
gets its own diverging copy, so it is no use under a multi-process server.
"""

from __future__ import annotations

import math
import os
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from ..phone import calling_code
from ._common import (
    DEAD,
    PENDING,
    REPORTED,
    check_batch,
    check_count,
    check_flag_value,
    check_message_id,
    check_name,
    check_phone,
    check_positive,
    check_provider,
    check_rate,
    check_text,
    check_time,
    check_verification,
    counter_expired,
    draw_tokens,
    hour_of,
)
from .base import CountRow, DeadLetter, OutboxItem, OutboxStats, Store, Verification, VerifyOutcome


@dataclass
class _Message:
    seq: int
    provider: str
    message_id: str
    phone: str
    sent_at: float
    verified_at: float | None = None


@dataclass
class _Row:
    id: int
    message_id: str
    phone: str
    provider: str
    sent_at: float
    verified_at: float
    created_at: float
    next_attempt_at: float
    state: str = PENDING
    attempts: int = 0
    lease_token: str | None = None
    lease_until: float | None = None
    last_error: str | None = None
    reason: str | None = None
    done_at: float | None = None

    def due(self, provider: str, now: float) -> bool:
        return (
            self.state == PENDING
            and self.provider == provider
            and self.next_attempt_at <= now
            and (self.lease_until is None or self.lease_until <= now)
        )

    def held_by(self, token: str) -> bool:
        return self.state == PENDING and self.lease_token == token


class MemoryStore(Store):
    """A :class:`Store` in this process's memory."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._seq = 0
        self._last_row_id = 0
        self._messages: dict[tuple[str, str], _Message] = {}
        self._by_phone: dict[str, list[_Message]] = {}
        self._outbox: dict[int, _Row] = {}
        self._counters: dict[tuple[int, str, str], list[int]] = {}  # [requested, verified, unmatched]
        self._flags: dict[str, str] = {}
        self._leases: dict[str, tuple[str, float]] = {}
        self._budgets: dict[str, tuple[float, float]] = {}
        self._spools: dict[str, int] = {}

    def __repr__(self) -> str:
        return "MemoryStore()"

    def _bump(self, hour: int, provider: str, code: str, index: int) -> None:
        self._counters.setdefault((hour, provider, code), [0, 0, 0])[index] += 1

    # Records ------------------------------------------------------------------------------------------

    def record_sent(self, *, phone: str, message_id: str, provider: str, sent_at: float) -> bool:
        phone = check_phone(phone)
        message_id = check_message_id(message_id)
        provider = check_provider(provider)
        sent = check_time(sent_at, "sent_at")
        with self._lock:
            if (provider, message_id) in self._messages:
                return False
            self._seq += 1
            message = _Message(self._seq, provider, message_id, phone, sent)
            self._messages[(provider, message_id)] = message
            self._by_phone.setdefault(phone, []).append(message)
            self._bump(hour_of(sent), provider, calling_code(phone), 0)
        return True

    def record_verified(
        self,
        *,
        phone: str,
        message_id: str | None,
        provider: str,
        verified_at: float,
        match_window: float,
    ) -> VerifyOutcome:
        """Same matching rule as :meth:`SQLiteStore.record_verified`."""
        item = check_verification(Verification(phone, message_id, verified_at))
        provider = check_provider(provider)
        window = check_positive(match_window, "match_window")
        with self._lock:
            return self._verify(item, provider, window)

    def apply_verifications(
        self,
        items: Sequence[Verification],
        *,
        provider: str,
        match_window: float,
        checkpoint: tuple[str, int, int],
    ) -> list[VerifyOutcome] | None:
        checked, provider, window, (name, start, end) = check_batch(items, provider, match_window, checkpoint)
        with self._lock:
            if self._spools.get(name, 0) != start:
                return None
            self._spools[name] = end
            return [self._verify(item, provider, window) for item in checked]

    def spool_position(self, name: str) -> int:
        key = check_name(name, "spool name")
        with self._lock:
            return self._spools.get(key, 0)

    def forget_spool(self, name: str) -> None:
        key = check_name(name, "spool name")
        with self._lock:
            self._spools.pop(key, None)

    def _verify(self, item: Verification, provider: str, window: float) -> VerifyOutcome:
        phone, message_id, verified = item.phone, item.message_id, item.verified_at
        message: _Message | None
        if message_id is not None:
            message = self._messages.get((provider, message_id))
            if message is not None and message.phone != phone:
                message = None
        else:
            in_window = [m for m in self._by_phone.get(phone, ()) if verified - window <= m.sent_at <= verified]
            message = max(in_window, key=lambda m: (m.sent_at, m.seq), default=None)
        if message is None:
            self._bump(hour_of(verified), provider, calling_code(phone), 2)
            return VerifyOutcome(message_id=None, enqueued=False)
        if message.verified_at is not None:
            return VerifyOutcome(message_id=message.message_id, enqueued=False, already_verified=True)
        message.verified_at = verified
        self._last_row_id += 1  # never reused, like SQLite's AUTOINCREMENT: replay takes ids
        row_id = self._last_row_id
        self._outbox[row_id] = _Row(
            id=row_id,
            message_id=message.message_id,
            phone=phone,
            provider=message.provider,
            sent_at=message.sent_at,
            verified_at=verified,
            created_at=verified,
            next_attempt_at=verified,
        )
        self._bump(hour_of(message.sent_at), message.provider, calling_code(phone), 1)
        return VerifyOutcome(message_id=message.message_id, enqueued=True)

    def counts(self, *, since: float, until: float) -> list[CountRow]:
        start = check_time(since, "since")
        end = check_time(until, "until")
        with self._lock:
            rows = [
                CountRow(hour, provider, code, *values)
                for (hour, provider, code), values in self._counters.items()
                if start <= hour < end
            ]
        return sorted(rows, key=lambda r: (r.hour, r.provider, r.calling_code))

    # Outbox -------------------------------------------------------------------------------------------

    def claim(
        self,
        *,
        provider: str,
        limit: int,
        lease_seconds: float,
        now: float,
        created_before: float | None = None,
    ) -> list[OutboxItem]:
        provider = check_provider(provider)
        limit = check_count(limit)
        lease = check_positive(lease_seconds, "lease_seconds")
        at = check_time(now, "now")
        newest = math.inf if created_before is None else check_time(created_before, "created_before")
        token = uuid.uuid4().hex
        with self._lock:
            due = sorted(
                (row for row in self._outbox.values() if row.due(provider, at) and row.created_at <= newest),
                key=lambda r: (r.next_attempt_at, r.id),
            )[:limit]
            for row in due:
                row.lease_token = token
                row.lease_until = at + lease
            return [_item(row, token) for row in due]

    def ack(self, items: Sequence[OutboxItem], *, now: float) -> int:
        """Same token rule as :meth:`SQLiteStore.ack`."""
        at = check_time(now, "now")
        done = 0
        with self._lock:
            for item in items:
                row = self._outbox.get(item.id)
                if row is not None and row.held_by(item.lease_token):
                    row.state = REPORTED
                    row.done_at = at
                    row.lease_token = row.lease_until = None
                    done += 1
        return done

    def retry(self, item: OutboxItem, *, next_attempt_at: float, error: str) -> bool:
        due = check_time(next_attempt_at, "next_attempt_at")
        text = check_text(error, "error")
        with self._lock:
            row = self._outbox.get(item.id)
            if row is None or not row.held_by(item.lease_token):
                return False
            row.attempts += 1
            row.next_attempt_at = due
            row.last_error = text
            row.lease_token = row.lease_until = None
        return True

    def release(self, items: Sequence[OutboxItem]) -> int:
        done = 0
        with self._lock:
            for item in items:
                row = self._outbox.get(item.id)
                if row is not None and row.held_by(item.lease_token):
                    row.lease_token = row.lease_until = None
                    done += 1
        return done

    def dead_letter(self, item: OutboxItem, *, reason: str, now: float) -> bool:
        text = check_text(reason, "reason")
        at = check_time(now, "now")
        with self._lock:
            row = self._outbox.get(item.id)
            if row is None or not row.held_by(item.lease_token):
                return False
            row.state = DEAD
            row.reason = text
            row.done_at = at
            row.attempts += 1
            row.lease_token = row.lease_until = None
        return True

    def dead_letters(self, *, limit: int = 100) -> list[DeadLetter]:
        count = check_count(limit)
        with self._lock:
            dead = sorted(
                (row for row in self._outbox.values() if row.state == DEAD),
                key=lambda r: (r.done_at or 0.0, r.id),
                reverse=True,
            )[:count]
            return [
                DeadLetter(
                    id=row.id,
                    message_id=row.message_id,
                    phone=row.phone,
                    provider=row.provider,
                    verified_at=row.verified_at,
                    created_at=row.created_at,
                    attempts=row.attempts,
                    reason=row.reason or "",
                    dead_at=row.done_at or 0.0,
                )
                for row in dead
            ]

    def replay_dead_letters(self, ids: Sequence[int] | None = None, *, now: float) -> int:
        """Same reset as :meth:`SQLiteStore.replay_dead_letters`."""
        at = check_time(now, "now")
        with self._lock:
            if ids is None:
                rows = [row for row in self._outbox.values() if row.state == DEAD]
            else:
                rows = []
                for row_id in ids:
                    if isinstance(row_id, bool) or not isinstance(row_id, int):
                        raise ValueError(f"dead letter ids must be ints, not {type(row_id).__name__}")
                    row = self._outbox.get(row_id)
                    if row is not None and row.state == DEAD and row not in rows:
                        rows.append(row)
            for row in rows:
                row.state = PENDING
                row.attempts = 0
                row.next_attempt_at = row.created_at = at
                row.reason = row.done_at = None
                row.lease_token = row.lease_until = None
        return len(rows)

    def outbox_stats(self, *, now: float) -> OutboxStats:
        at = check_time(now, "now")
        with self._lock:
            pending = [row for row in self._outbox.values() if row.state == PENDING]
            states = [row.state for row in self._outbox.values()]
        return OutboxStats(
            pending=len(pending),
            in_flight=sum(1 for row in pending if row.lease_until is not None and row.lease_until > at),
            dead=states.count(DEAD),
            reported=states.count(REPORTED),
            oldest_pending_at=min((row.created_at for row in pending), default=None),
        )

    # Housekeeping and switches ----------------------------------------------------------------------

    def prune(self, *, before: float) -> int:
        cutoff = check_time(before, "before")
        with self._lock:
            old_messages = [key for key, m in self._messages.items() if m.sent_at < cutoff]
            for key in old_messages:
                del self._messages[key]
            for phone in list(self._by_phone):
                kept = [m for m in self._by_phone[phone] if m.sent_at >= cutoff]
                if kept:
                    self._by_phone[phone] = kept
                else:
                    del self._by_phone[phone]
            old_rows = [
                row.id
                for row in self._outbox.values()
                if row.state in (REPORTED, DEAD) and row.done_at is not None and row.done_at < cutoff
            ]
            for row_id in old_rows:
                del self._outbox[row_id]
            old_counters = [hour_key for hour_key in self._counters if counter_expired(hour_key[0], cutoff)]
            for hour_key in old_counters:
                del self._counters[hour_key]
        return len(old_messages) + len(old_rows) + len(old_counters)

    def get_flag(self, name: str) -> str | None:
        key = check_name(name, "flag name")
        with self._lock:
            return self._flags.get(key)

    def set_flag(self, name: str, value: str | None) -> None:
        key = check_name(name, "flag name")
        text = check_flag_value(value)
        with self._lock:
            if text is None:
                self._flags.pop(key, None)
            else:
                self._flags[key] = text

    def acquire_lease(self, name: str, *, owner: str, ttl: float, now: float) -> bool:
        key = check_name(name, "lease name")
        who = check_name(owner, "lease owner")
        seconds = check_positive(ttl, "ttl")
        at = check_time(now, "now")
        with self._lock:
            held = self._leases.get(key)
            if held is not None and held[0] != who and held[1] > at:
                return False
            self._leases[key] = (who, at + seconds)
        return True

    def release_lease(self, name: str, *, owner: str) -> None:
        key = check_name(name, "lease name")
        who = check_name(owner, "lease owner")
        with self._lock:
            held = self._leases.get(key)
            if held is not None and held[0] == who:
                del self._leases[key]

    def take_tokens(self, name: str, *, want: int, rate: float, burst: float, now: float) -> tuple[int, float]:
        key = check_name(name, "bucket name")
        count = check_count(want, "want", minimum=1)
        rate_value, burst_value = check_rate(rate, burst)
        at = check_time(now, "now")
        with self._lock:
            granted, wait, self._budgets[key] = draw_tokens(
                self._budgets.get(key), want=count, rate=rate_value, burst=burst_value, now=at
            )
        return granted, wait

    def reopen(self) -> None:
        """In a forked child, replace the lock (a parent thread may have held it at the fork)."""
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._lock = threading.Lock()

    def close(self) -> None:
        """Nothing to close: the data lives as long as the object."""


def _item(row: _Row, token: str) -> OutboxItem:
    return OutboxItem(
        id=row.id,
        message_id=row.message_id,
        phone=row.phone,
        provider=row.provider,
        sent_at=row.sent_at,
        verified_at=row.verified_at,
        created_at=row.created_at,
        attempts=row.attempts,
        last_error=row.last_error,
        lease_token=token,
    )
