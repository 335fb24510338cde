"""The SQLite store: one file shared by every worker process of an app on one host.

Concurrency
    WAL mode, so readers never block the writer. Every write is one short ``BEGIN IMMEDIATE``
    transaction: it takes the write lock up front, so concurrent writers queue on SQLite's lock (waiting
    up to ``busy_timeout``) instead of failing when a read transaction tries to upgrade.

Claims and leases
    ``claim`` stamps the due rows with a fresh uuid4 token and ``lease_until`` in one ``UPDATE`` inside one
    ``BEGIN IMMEDIATE`` transaction, so two processes never lease the same row, then reads them back by
    token. Acks and releases of many rows are one statement, never a statement per row: between two
    statements the thread may wait for the GIL while holding the write lock that every request queues on.
    ``ack``, ``release``, ``retry`` and ``dead_letter`` change a row only while it still carries the caller's
    token: a worker that stalled past its lease finds the row re-claimed under a new token and
    changes nothing. A token that expired but was not re-claimed still counts, since the report did go out.

Connections
    Each store call borrows a connection of its process's bounded, fork-safe pool (``sqlite_connections.py``,
    where the file's integrity check lives too); the schema and its migrations are ``sqlite_schema.py``.

Matching
    A batch of verifications is one ``BEGIN IMMEDIATE`` transaction of a handful of statements
    (``sqlite_records.py``).
"""

from __future__ import annotations

import json
import os
import sqlite3
import uuid
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

from .base import Backlog, CountRow, DeadLetter, OutboxItem, OutboxStats
from .checks import check_positive
from .engine import Engine, FigureKey, RecordsTransaction, T, foreign_reason
from .rules import draw_slots, first_kept_hour
from .sqlite_connections import SYNCHRONOUS_MODES, ConnectionPool, DamagedStoreError
from .sqlite_records import SQLiteTransaction
from .sqlite_schema import SCHEMA_VERSION, ensure_schema

#: Rows deleted per transaction when pruning, so a large prune never holds the write lock for long.
PRUNE_BATCH = 2000

#: ``unverified_sends`` (parameters: prefix, upper, since, limit). Both scans are ranges of the (phone, sent_at)
#: index, in SQLite's BINARY (byte) order, which the range's bounds assume; LIMIT stops the count at the limit.
_UNVERIFIED = """SELECT count(*) FROM (
    SELECT 1 FROM messages AS m
    WHERE m.phone >= ? AND m.phone < ? AND m.sent_at >= ? AND m.verified_at IS NULL
    AND NOT EXISTS (
        SELECT 1 FROM messages AS v
        WHERE v.phone = m.phone AND v.sent_at >= m.sent_at AND v.verified_at IS NOT NULL
    )
    LIMIT ?
)"""

#: ``prefix_counts`` (parameters: length, since, until): a range of the messages_sent index, the window's sends only.
PREFIX_COUNTS_SQL = (
    "SELECT substr(phone, 1, ?), count(*), count(verified_at) FROM messages WHERE sent_at >= ? AND sent_at < ?"
    " GROUP BY 1"
)

#: A claimable row (parameters: provider, now, now).
_DUE = "state = 'pending' AND provider = ? AND next_attempt_at <= ? AND (lease_until IS NULL OR lease_until <= ?)"
_ITEM_COLUMNS = (
    "id, message_id, phone, provider, sent_at, verified_at, created_at, attempts, last_error, account, converted"
)
#: Pending rows still carrying the given items' tokens (parameters: ``_held_params``).
_HELD = (
    "id IN (SELECT value FROM json_each(?)) AND +state = 'pending'"
    " AND (id, lease_token) IN (SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]') FROM json_each(?))"
)


class SQLiteStore(Engine):
    """A :class:`Store` in one SQLite file (created, with its parent folders, if missing)."""

    def __init__(self, path: str | os.PathLike[str], *, synchronous: str = "normal", busy_timeout: float = 5.0) -> None:
        self._path = os.fspath(path)
        if not self._path or self._path == ":memory:":
            raise ValueError("SQLiteStore needs a file path (use MemoryStore for an in-memory store)")
        if synchronous not in SYNCHRONOUS_MODES:
            raise ValueError(f"synchronous must be one of {', '.join(SYNCHRONOUS_MODES)}")
        busy_timeout = check_positive(busy_timeout, "busy_timeout")
        path = self._path
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        self._pool = ConnectionPool(
            path, synchronous=synchronous, busy_timeout=busy_timeout, prepare=lambda conn: ensure_schema(conn, path)
        )
        # The schema and the pages checked now, so that a bad file fails at start-up and not on the first request.
        self._pool.check_file()

    def __repr__(self) -> str:
        return f"SQLiteStore({self._path!r})"

    def check_integrity(self, *, full: bool = True) -> list[str]:
        """What SQLite's own check finds wrong with the file ([] when sound, at most
        ``sqlite_connections.MAX_PROBLEMS``). ``full``: ``PRAGMA integrity_check``, indexes compared with their
        tables too (seconds on a 100 MB file); otherwise ``quick_check``, the one run at start."""
        return self._pool.check_integrity(full=full)

    @property
    def path(self) -> str:
        return self._path

    # Connections ------------------------------------------------------------------------------------------

    def reopen(self) -> None:
        """Drop connections inherited across ``os.fork`` (in the parent: close this process's own)."""
        self._pool.reopen()

    def close(self) -> None:
        """Close this process's connections; the store stays usable and reconnects on the next call."""
        self._pool.close()

    def _connection(self) -> AbstractContextManager[sqlite3.Connection]:
        """A connection for one store call (``ConnectionPool.connection``)."""
        return self._pool.connection()

    def _write(self) -> AbstractContextManager[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction (``ConnectionPool.write``)."""
        return self._pool.write()

    def _read(self) -> AbstractContextManager[sqlite3.Connection]:
        """One read snapshot (``ConnectionPool.read``)."""
        return self._pool.read()

    # Records ------------------------------------------------------------------------------------------

    def _in_records(self, body: Callable[[RecordsTransaction], T]) -> T:
        with self._write() as conn:
            return body(SQLiteTransaction(conn))

    def _spool_position(self, name: str) -> int:
        with self._connection() as conn:
            return SQLiteTransaction(conn).spool_position(name)

    def _forget_spool(self, name: str) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM spools WHERE name = ?", (name,))

    def _counts(self, since: float, until: float, span: int) -> list[CountRow]:
        with self._connection() as conn:
            rows = conn.execute(
                "SELECT start, provider, calling_code, requested, verified, unmatched FROM tallies"
                " WHERE span = ? AND start >= ? AND start < ? ORDER BY start, provider, calling_code",
                (span, since, until),
            ).fetchall()
        return [CountRow(*row) for row in rows]

    def _unverified_sends(self, prefix: str, upper: str, since: float, limit: int) -> int:
        with self._connection() as conn:
            return int(conn.execute(_UNVERIFIED, (prefix, upper, since, limit)).fetchone()[0])

    def _prefix_counts(self, since: float, until: float, length: int) -> list[tuple[str, int, int]]:
        with self._connection() as conn:
            rows = conn.execute(PREFIX_COUNTS_SQL, (length, since, until)).fetchall()
        return [(str(head), int(sends), int(verified)) for head, sends, verified in rows]

    def _add_figures(self, increments: Mapping[FigureKey, int]) -> None:
        with self._write() as conn:
            conn.executemany(
                "INSERT INTO figures (hour, provider, name, value) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (hour, provider, name) DO UPDATE SET value = value + excluded.value",
                [(*key, value) for key, value in increments.items()],
            )

    def _figures(self, since: float, until: float) -> list[tuple[int, str, str, int]]:
        with self._connection() as conn:
            rows = conn.execute(
                "SELECT hour, provider, name, value FROM figures WHERE hour >= ? AND hour < ?", (since, until)
            ).fetchall()
        return [(int(hour), str(provider), str(name), int(value)) for hour, provider, name, value in rows]

    # Outbox -------------------------------------------------------------------------------------------

    def _claim(
        self, provider: str, account: str | None, limit: int, lease_until: float, now: float
    ) -> list[OutboxItem]:
        token = uuid.uuid4().hex
        mine, params = ("", ()) if account is None else (" AND account IN (?, '')", (account,))
        # One statement under the write lock, however many rows (see "Claims and leases").
        with self._write() as conn:
            leased = conn.execute(
                "UPDATE outbox SET lease_token = ?, lease_until = ? WHERE id IN"  # noqa: S608
                f" (SELECT id FROM outbox WHERE {_DUE}{mine} ORDER BY next_attempt_at, id LIMIT ?)",
                (token, lease_until, provider, now, now, *params, limit),
            ).rowcount
        if not leased:
            return []
        # Read back outside the lock: nobody else can change rows under our unexpired lease.
        with self._connection() as conn:
            rows = conn.execute(
                f"SELECT {_ITEM_COLUMNS} FROM outbox WHERE lease_token = ? ORDER BY next_attempt_at, id",  # noqa: S608
                (token,),
            ).fetchall()
        return [_item(row, token) for row in rows]

    def _ack(self, items: Sequence[OutboxItem], now: float) -> list[int]:
        with self._write() as conn:
            rows = conn.execute(
                "UPDATE outbox SET state = 'reported', done_at = ?, lease_token = NULL, lease_until = NULL"  # noqa: S608
                f" WHERE {_HELD} RETURNING id",
                (now, *_held_params(items)),
            ).fetchall()
        return [int(row[0]) for row in rows]

    def _release(self, items: Sequence[OutboxItem]) -> int:
        """``next_attempt_at`` is left alone: a claimed row was due already, so it keeps its place in line."""
        with self._write() as conn:
            return int(
                conn.execute(
                    f"UPDATE outbox SET lease_token = NULL, lease_until = NULL WHERE {_HELD}",  # noqa: S608
                    _held_params(items),
                ).rowcount
            )

    def _retry(self, item: OutboxItem, next_attempt_at: float, error: str) -> bool:
        with self._write() as conn:
            changed = conn.execute(
                "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?, last_error = ?,"
                " lease_token = NULL, lease_until = NULL"
                " WHERE id = ? AND lease_token = ? AND state = 'pending'",
                (next_attempt_at, error, item.id, item.lease_token),
            ).rowcount
        return bool(changed)

    def _dead_letter(self, item: OutboxItem, reason: str, now: float) -> bool:
        with self._write() as conn:
            changed = conn.execute(
                "UPDATE outbox SET state = 'dead', reason = ?, done_at = ?, attempts = attempts + 1,"
                " lease_token = NULL, lease_until = NULL"
                " WHERE id = ? AND lease_token = ? AND state = 'pending'",
                (reason, now, item.id, item.lease_token),
            ).rowcount
        return bool(changed)

    def _expire_foreign(self, provider: str, account: str, created_before: float, now: float) -> list[str]:
        with self._write() as conn:
            rows = conn.execute(
                "SELECT id, provider, account FROM outbox WHERE state = 'pending' AND created_at < ?"
                " AND (lease_until IS NULL OR lease_until <= ?) AND (provider != ? OR account NOT IN (?, ''))",
                (created_before, now, provider, account),
            ).fetchall()
            conn.executemany(
                "UPDATE outbox SET state = 'dead', reason = ?, done_at = ?, lease_token = NULL, lease_until = NULL"
                " WHERE id = ?",
                [(foreign_reason(owner, row_account), now, row_id) for row_id, owner, row_account in rows],
            )
        return [str(owner) for _, owner, _ in rows]

    def _backlog(self) -> list[Backlog]:
        with self._read() as conn:
            rows = conn.execute(
                "SELECT provider, account, COUNT(*), MIN(created_at) FROM outbox WHERE state = 'pending'"
                " GROUP BY provider, account ORDER BY provider, account"
            ).fetchall()
        return [Backlog(*row) for row in rows]

    def _dead_letters(self, limit: int, ids: list[int] | None) -> list[DeadLetter]:
        dead, params = _dead(ids)
        with self._connection() as conn:
            rows = conn.execute(
                "SELECT id, message_id, phone, provider, verified_at, created_at, attempts, reason, done_at,"  # noqa: S608
                " account, converted"
                f" FROM outbox WHERE {dead} ORDER BY done_at DESC, id DESC LIMIT ?",
                (*params, limit),
            ).fetchall()
        return [_dead_letter(row) for row in rows]

    def _replay_dead_letters(self, ids: list[int] | None, now: float) -> int:
        dead, params = _dead(ids)
        with self._write() as conn:
            return int(
                conn.execute(
                    "UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_at = ?, created_at = ?,"  # noqa: S608
                    " reason = NULL, done_at = NULL, lease_token = NULL, lease_until = NULL"
                    f" WHERE {dead}",
                    (now, now, *params),
                ).rowcount
            )

    def _outbox_stats(self, now: float) -> OutboxStats:
        with self._read() as conn:
            pending, in_flight, oldest = conn.execute(
                "SELECT COUNT(*), COALESCE(SUM(lease_until > ?), 0), MIN(created_at) FROM outbox"
                " WHERE state = 'pending'",
                (now,),
            ).fetchone()
            dead = conn.execute("SELECT COUNT(*) FROM outbox WHERE state = 'dead'").fetchone()[0]
            reported = conn.execute("SELECT COUNT(*) FROM outbox WHERE state = 'reported'").fetchone()[0]
        return OutboxStats(pending=pending, in_flight=in_flight, dead=dead, reported=reported, oldest_pending_at=oldest)

    def _prune(self, before: float, minutes_before: float) -> int:
        """Deletes in batches of :data:`PRUNE_BATCH` rows per transaction, so requests keep writing."""
        batches: tuple[tuple[str, tuple[Any, ...]], ...] = (
            (
                "DELETE FROM messages WHERE id IN (SELECT id FROM messages WHERE sent_at < ? LIMIT ?)",
                (before,),
            ),
            (  # never pending rows: a report not yet made is kept however old
                "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox"
                " WHERE state IN ('reported', 'dead') AND done_at < ? LIMIT ?)",
                (before,),
            ),
            (
                "DELETE FROM tallies WHERE rowid IN"
                " (SELECT rowid FROM tallies WHERE span = 3600 AND start < ? LIMIT ?)",
                (first_kept_hour(before),),
            ),
            (
                "DELETE FROM tallies WHERE rowid IN (SELECT rowid FROM tallies WHERE span = 60 AND start < ? LIMIT ?)",
                (minutes_before,),
            ),
            (
                "DELETE FROM figures WHERE rowid IN (SELECT rowid FROM figures WHERE hour < ? LIMIT ?)",
                (first_kept_hour(before),),
            ),
        )
        removed = 0
        for statement, params in batches:
            while True:
                with self._write() as conn:
                    count = conn.execute(statement, (*params, PRUNE_BATCH)).rowcount
                removed += count
                if count < PRUNE_BATCH:
                    break
        return removed

    # Coordination -------------------------------------------------------------------------------------

    def _get_flag(self, name: str) -> str | None:
        with self._connection() as conn:
            row = conn.execute("SELECT value FROM flags WHERE name = ?", (name,)).fetchone()
        return None if row is None else str(row[0])

    def _set_flag(self, name: str, value: str | None) -> None:
        with self._write() as conn:
            if value is None:
                conn.execute("DELETE FROM flags WHERE name = ?", (name,))
            else:
                conn.execute(
                    "INSERT INTO flags (name, value) VALUES (?, ?)"
                    " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                    (name, value),
                )

    def _acquire_lease(self, name: str, owner: str, expires_at: float, now: float) -> bool:
        with self._write() as conn:
            changed = conn.execute(
                "INSERT INTO leases (name, owner, expires_at) VALUES (?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at"
                " WHERE leases.owner = excluded.owner OR leases.expires_at <= ?",
                (name, owner, expires_at, now),
            ).rowcount
        return bool(changed)

    def _take_slots(self, name: str, want: int, interval: float, horizon: float, now: float) -> tuple[float, int]:
        # The schedule's next free slot lives in the budgets table's ``tokens`` column (``updated``: when drawn).
        # A row a token bucket left there holds a small count, which reads as a slot long past: harmless.
        with self._write() as conn:
            row = conn.execute("SELECT tokens FROM budgets WHERE name = ?", (name,)).fetchone()
            first, count, following = draw_slots(
                None if row is None else float(row[0]), want=want, interval=interval, horizon=horizon, now=now
            )
            conn.execute(
                "INSERT INTO budgets (name, tokens, updated) VALUES (?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET tokens = excluded.tokens, updated = excluded.updated",
                (name, following, now),
            )
        return first, count


def _item(row: Sequence[Any], token: str) -> OutboxItem:
    row_id, message_id, phone, provider, sent_at, verified_at, created_at, attempts, error, account, converted = row
    return OutboxItem(
        row_id,
        message_id,
        phone,
        provider,
        sent_at,
        verified_at,
        created_at,
        attempts,
        error,
        token,
        account,
        bool(converted),
    )


def _dead_letter(row: Sequence[Any]) -> DeadLetter:
    row_id, message_id, phone, provider, verified, created, attempts, reason, done_at, account, converted = row
    return DeadLetter(
        row_id, message_id, phone, provider, verified, created, attempts, reason, done_at, account, bool(converted)
    )


def _held_params(items: Sequence[OutboxItem]) -> tuple[str, str]:
    """Parameters of :data:`_HELD`: the items' ids and (id, token) pairs, as JSON (no variable limit)."""
    return json.dumps([item.id for item in items]), json.dumps([[item.id, item.lease_token] for item in items])


def _dead(ids: list[int] | None) -> tuple[str, tuple[str, ...]]:
    """The condition for dead letters (all, or those of ``ids``: looked up by id, not by scanning the dead)."""
    if ids is None:
        return "state = 'dead'", ()
    return "id IN (SELECT value FROM json_each(?)) AND +state = 'dead'", (json.dumps(ids),)


__all__ = ["SCHEMA_VERSION", "SYNCHRONOUS_MODES", "DamagedStoreError", "SQLiteStore"]
