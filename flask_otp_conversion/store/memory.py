"""An in-process store, for tests and ``memory://``: the contract on plain dicts under one lock.

One lock around every call makes each atomic. Nothing survives the process, and a forked child gets its own
diverging copy, so it is no use under a multi-process server. It implements only the storage primitives; the
rules and the argument checks are the ones every engine shares (``engine.py``, ``rules.py``).
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import math
import os
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from .._forks import ForkLocal
from .base import HOUR, Backlog, CountRow, DeadLetter, OutboxItem, OutboxStats
from .engine import Engine, FigureKey, RecordsTransaction, T, foreign_reason
from .rules import CounterKey, Report, Sent, Tally, Wanted, draw_slots, first_kept_hour, sendable

PENDING = "pending"
REPORTED = "reported"
DEAD = "dead"


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
    account: str = ""
    converted: bool = True

    def held_by(self, token: str) -> bool:
        return self.state == PENDING and self.lease_token == token

    def item(self, token: str) -> OutboxItem:
        return OutboxItem(
            self.id,
            self.message_id,
            self.phone,
            self.provider,
            self.sent_at,
            self.verified_at,
            self.created_at,
            self.attempts,
            self.last_error,
            token,
            self.account,
            self.converted,
        )


class MemoryStore(Engine, ForkLocal):
    """A :class:`Store` in this process's memory."""

    def __init__(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._records = _Records()
        self._outbox = self._records.outbox
        self._counters = self._records.counters
        self._spools = self._records.spools
        self._flags: dict[str, str] = {}
        self._leases: dict[str, tuple[str, float]] = {}
        self._schedules: dict[str, float] = {}
        self._figures_by_key: dict[FigureKey, int] = {}
        self._watch_forks()

    def __repr__(self) -> str:
        return "MemoryStore()"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self._check_fork()
        with self._lock:
            yield

    def _after_fork_in_child(self) -> None:
        """A parent thread may have held the lock at the fork: the child's copy gets a fresh one."""
        self._lock = threading.Lock()
        self._pid = os.getpid()

    def reopen(self) -> None:
        self._check_fork()

    def close(self) -> None:
        """Nothing to close: the data lives as long as the object."""

    # Records ------------------------------------------------------------------------------------------

    def _in_records(self, body: Callable[[RecordsTransaction], T]) -> T:
        """All-or-nothing without a rollback: ``body`` only reads until the rule has decided, and the writes
        it then makes cannot fail."""
        with self._locked():
            return body(self._records)

    def _spool_position(self, name: str) -> int:
        with self._locked():
            return self._spools.get(name, 0)

    def _forget_spool(self, name: str) -> None:
        with self._locked():
            self._spools.pop(name, None)

    def _counts(self, since: float, until: float, span: int) -> list[CountRow]:
        with self._locked():
            rows = [
                CountRow(start, provider, code, t.requested, t.verified, t.unmatched)
                for (start, row_span, provider, code), t in self._counters.items()
                if row_span == span and since <= start < until
            ]
        return sorted(rows, key=lambda r: (r.hour, r.provider, r.calling_code))

    def _unverified_sends(self, prefix: str, upper: str, since: float, limit: int) -> int:
        with self._locked():
            return self._records.unverified(prefix, upper, since, limit)

    def _prefix_counts(self, since: float, until: float, length: int) -> list[tuple[str, int, int]]:
        with self._locked():
            return self._records.by_prefix(since, until, length)

    def _add_figures(self, increments: Mapping[FigureKey, int]) -> None:
        with self._locked():
            for key, value in increments.items():
                self._figures_by_key[key] = self._figures_by_key.get(key, 0) + value

    def _figures(self, since: float, until: float) -> list[tuple[int, str, str, int]]:
        with self._locked():
            return [(*key, value) for key, value in self._figures_by_key.items() if since <= key[0] < until]

    # Outbox -------------------------------------------------------------------------------------------

    def _claim(
        self, provider: str, account: str | None, limit: int, lease_until: float, now: float
    ) -> list[OutboxItem]:
        token = uuid.uuid4().hex
        with self._locked():
            due = sorted(
                (
                    row
                    for row in self._outbox.values()
                    if row.state == PENDING
                    and (
                        row.provider == provider
                        if account is None
                        else sendable(row.provider, row.account, provider=provider, account=account)
                    )
                    and row.next_attempt_at <= now
                    and (row.lease_until is None or row.lease_until <= now)
                ),
                key=lambda r: (r.next_attempt_at, r.id),
            )[:limit]
            for row in due:
                row.lease_token, row.lease_until = token, lease_until
            return [row.item(token) for row in due]

    def _held(self, items: Sequence[OutboxItem]) -> Iterator[_Row]:
        """Rows still carrying their item's token (call with the lock held)."""
        for item in items:
            row = self._outbox.get(item.id)
            if row is not None and row.held_by(item.lease_token):
                yield row

    def _ack(self, items: Sequence[OutboxItem], now: float) -> list[int]:
        done = []
        with self._locked():
            for row in self._held(items):
                row.state, row.done_at, row.lease_token, row.lease_until = REPORTED, now, None, None
                done.append(row.id)
        return done

    def _release(self, items: Sequence[OutboxItem]) -> int:
        done = 0
        with self._locked():
            for row in self._held(items):
                row.lease_token = row.lease_until = None
                done += 1
        return done

    def _retry(self, item: OutboxItem, next_attempt_at: float, error: str) -> bool:
        with self._locked():
            for row in self._held([item]):
                row.attempts += 1
                row.next_attempt_at, row.last_error = next_attempt_at, error
                row.lease_token = row.lease_until = None
                return True
        return False

    def _dead_letter(self, item: OutboxItem, reason: str, now: float) -> bool:
        with self._locked():
            for row in self._held([item]):
                row.attempts += 1
                row.state, row.reason, row.done_at = DEAD, reason, now
                row.lease_token = row.lease_until = None
                return True
        return False

    def _expire_foreign(self, provider: str, account: str, created_before: float, now: float) -> list[str]:
        moved = []
        with self._locked():
            for row in self._outbox.values():
                if (
                    row.state == PENDING
                    and (row.lease_until is None or row.lease_until <= now)
                    and row.created_at < created_before
                    and not sendable(row.provider, row.account, provider=provider, account=account)
                ):
                    row.state, row.reason, row.done_at = DEAD, foreign_reason(row.provider, row.account), now
                    row.lease_token = row.lease_until = None
                    moved.append(row.provider)
        return moved

    def _backlog(self) -> list[Backlog]:
        found: dict[tuple[str, str], list[float]] = {}
        with self._locked():
            for row in self._outbox.values():
                if row.state == PENDING:
                    found.setdefault((row.provider, row.account), []).append(row.created_at)
        return [Backlog(provider, account, len(ages), min(ages)) for (provider, account), ages in sorted(found.items())]

    def _dead(self, ids: list[int] | None) -> list[_Row]:
        """Dead rows (all, or those of ``ids``); call with the lock held."""
        rows = self._outbox.values() if ids is None else [r for r in map(self._outbox.get, ids) if r is not None]
        return [row for row in rows if row.state == DEAD]

    def _dead_letters(self, limit: int, ids: list[int] | None) -> list[DeadLetter]:
        with self._locked():
            dead = sorted(self._dead(ids), key=lambda r: (r.done_at or 0.0, r.id), reverse=True)[:limit]
            return [
                DeadLetter(
                    r.id,
                    r.message_id,
                    r.phone,
                    r.provider,
                    r.verified_at,
                    r.created_at,
                    r.attempts,
                    r.reason or "",
                    r.done_at or 0.0,
                    r.account,
                    r.converted,
                )
                for r in dead
            ]

    def _replay_dead_letters(self, ids: list[int] | None, now: float) -> int:
        with self._locked():
            rows = self._dead(ids)
            for row in rows:
                row.state, row.attempts, row.next_attempt_at, row.created_at = PENDING, 0, now, now
                row.reason = row.done_at = row.lease_token = row.lease_until = None
        return len(rows)

    def _outbox_stats(self, now: float) -> OutboxStats:
        with self._locked():
            pending = [row for row in self._outbox.values() if row.state == PENDING]
            states = [row.state for row in self._outbox.values()]
        return OutboxStats(
            pending=len(pending),
            in_flight=sum(1 for row in pending if row.lease_until is not None and row.lease_until > now),
            dead=states.count(DEAD),
            reported=states.count(REPORTED),
            oldest_pending_at=min((row.created_at for row in pending), default=None),
        )

    def _prune(self, before: float, minutes_before: float) -> int:
        with self._locked():
            old_sends = self._records.prune(before)
            old_rows = [
                row.id
                for row in self._outbox.values()
                if row.state in (REPORTED, DEAD) and row.done_at is not None and row.done_at < before
            ]
            for row_id in old_rows:
                del self._outbox[row_id]
            kept = first_kept_hour(before)
            old_counters = [key for key in self._counters if key[0] < (kept if key[1] == HOUR else minutes_before)]
            for key in old_counters:
                del self._counters[key]
            old_figures = [key for key in self._figures_by_key if key[0] < kept]
            for figure in old_figures:
                del self._figures_by_key[figure]
        return old_sends + len(old_rows) + len(old_counters) + len(old_figures)

    # Coordination -------------------------------------------------------------------------------------

    def _get_flag(self, name: str) -> str | None:
        with self._locked():
            return self._flags.get(name)

    def _set_flag(self, name: str, value: str | None) -> None:
        with self._locked():
            if value is None:
                self._flags.pop(name, None)
            else:
                self._flags[name] = value

    def _acquire_lease(self, name: str, owner: str, expires_at: float, now: float) -> bool:
        with self._locked():
            held = self._leases.get(name)
            if held is not None and held[0] != owner and held[1] > now:
                return False
            self._leases[name] = (owner, expires_at)
        return True

    def _take_slots(self, name: str, want: int, interval: float, horizon: float, now: float) -> tuple[float, int]:
        with self._locked():
            first, count, self._schedules[name] = draw_slots(
                self._schedules.get(name), want=want, interval=interval, horizon=horizon, now=now
            )
        return first, count


class _Records:
    """The tables, and ``engine.RecordsTransaction`` on them (used with the store's lock held)."""

    def __init__(self) -> None:
        self.sends: dict[int, Sent] = {}  # by ``Sent.key``, which counts up and is never reused
        self.by_id: dict[tuple[str, str], Sent] = {}  # (provider, message_id)
        self.by_phone: dict[str, list[Sent]] = {}
        #: Every phone of ``by_phone`` in byte order, so a prefix is a range (``unverified``).
        self.phones: list[str] = []
        #: (sent_at, key) of every send in order, so a time range is a slice (``by_prefix``).
        self.by_time: list[tuple[float, int]] = []
        self.last_key = 0
        self.outbox: dict[int, _Row] = {}
        self.last_row_id = 0  # never reused, like SQLite's AUTOINCREMENT
        self.counters: dict[CounterKey, Tally] = {}
        self.spools: dict[str, int] = {}

    def insert_send(self, *, provider: str, message_id: str, phone: str, sent_at: float, account: str) -> bool:
        if (provider, message_id) in self.by_id:
            return False
        self.last_key += 1
        sent = Sent(self.last_key, provider, message_id, phone, sent_at, None, account)
        self.sends[sent.key] = self.by_id[(provider, message_id)] = sent
        known = self.by_phone.get(phone)
        if known is None:
            known = self.by_phone[phone] = []
            bisect.insort(self.phones, phone)
        known.append(sent)
        bisect.insort(self.by_time, (sent_at, sent.key))  # an append, for sends recorded in time order
        return True

    def find_sends(self, wanted: Wanted) -> list[Sent]:
        """Copies, so that nothing the rule is handed can change the tables behind the lock's back."""
        found = [self.by_id.get((wanted.provider, message_id)) for message_id in wanted.ids]
        for phone, (earliest, latest) in wanted.phones.items():
            found.extend(s for s in self.by_phone.get(phone, ()) if earliest <= s.sent_at <= latest)
        return [dataclasses.replace(s) for s in found if s is not None]

    def mark_verified(self, verified: Sequence[tuple[int, float]]) -> None:
        for key, at in verified:
            self.sends[key].verified_at = at

    def find_unsettled(
        self, provider: str, account: str | None, sent_after: float, sent_before: float, limit: int
    ) -> list[Sent]:
        found = sorted(
            (
                s
                for s in self.sends.values()
                if s.provider == provider
                and (account is None or s.account == account)
                and sent_after <= s.sent_at < sent_before
                and s.verified_at is None
                and not s.settled
            ),
            key=lambda s: (s.sent_at, s.key),
        )[:limit]
        return [dataclasses.replace(s) for s in found]

    def mark_settled(self, keys: Sequence[int]) -> None:
        for key in keys:
            self.sends[key].settled = True

    def insert_reports(self, reports: Sequence[Report]) -> None:
        for report in reports:
            self.last_row_id += 1
            self.outbox[self.last_row_id] = _Row(
                self.last_row_id,
                report.message_id,
                report.phone,
                report.provider,
                report.sent_at,
                report.verified_at,
                created_at=report.verified_at,
                next_attempt_at=report.verified_at,
                account=report.account,
                converted=report.converted,
            )

    def add_counts(self, counters: Mapping[CounterKey, Tally]) -> None:
        for key, tally in counters.items():
            total = self.counters.setdefault(key, Tally())
            total.requested += tally.requested
            total.verified += tally.verified
            total.unmatched += tally.unmatched

    def spool_position(self, name: str) -> int:
        return self.spools.get(name, 0)

    def set_spool_position(self, name: str, position: int) -> None:
        self.spools[name] = position

    def prune(self, before: float) -> int:
        """Forget sends made before ``before``; returns how many."""
        old = [sent for sent in self.sends.values() if sent.sent_at < before]
        for sent in old:
            del self.sends[sent.key], self.by_id[(sent.provider, sent.message_id)]
        self.by_phone = {}
        for sent in self.sends.values():
            self.by_phone.setdefault(sent.phone, []).append(sent)
        self.phones = sorted(self.by_phone)
        self.by_time = sorted((sent.sent_at, sent.key) for sent in self.sends.values())
        return len(old)

    def by_prefix(self, since: float, until: float, length: int) -> list[tuple[str, int, int]]:
        """``Engine._prefix_counts``: the sends of ``[since, until)``, a slice of ``by_time``."""
        totals: dict[str, list[int]] = {}
        first = bisect.bisect_left(self.by_time, (since, -1))
        for _, key in self.by_time[first : bisect.bisect_left(self.by_time, (until, -1))]:
            sent = self.sends[key]
            tally = totals.setdefault(sent.phone[:length], [0, 0])
            tally[0] += 1
            tally[1] += sent.verified_at is not None
        return [(head, sends, verified) for head, (sends, verified) in totals.items()]

    def unverified(self, prefix: str, upper: str, since: float, limit: int) -> int:
        """``Store.unverified_sends`` over the phones in ``[prefix, upper)``, stopping at ``limit``."""
        count = 0
        for phone in self.phones[bisect.bisect_left(self.phones, prefix) : bisect.bisect_left(self.phones, upper)]:
            sends = self.by_phone[phone]
            cleared = max((s.sent_at for s in sends if s.verified_at is not None), default=-math.inf)
            count += sum(1 for s in sends if s.verified_at is None and s.sent_at >= since and s.sent_at > cleared)
            if count >= limit:
                return limit
        return count
