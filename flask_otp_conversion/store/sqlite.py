"""The SQLite store: one file shared by every worker process of an app on one host.

Concurrency
    WAL mode, so readers never block the writer. Every write is one short ``BEGIN IMMEDIATE``
    transaction: it takes the write lock up front, so concurrent writers queue on SQLite's lock (waiting
    up to ``busy_timeout``) instead of failing when a read transaction tries to upgrade.

Claims and leases
    ``claim`` stamps the due rows with a fresh uuid4 token and ``lease_until`` in one ``UPDATE`` inside one
    ``BEGIN IMMEDIATE`` transaction, so two processes never lease the same row, then reads them back by
    token. Writes that touch many rows are one statement each, never a statement per row: between two
    statements the thread may wait for the GIL while holding the write lock that every request queues on.
    ``ack``, ``retry`` and ``dead_letter`` change a row only while it still carries
    the caller's token: a worker that stalled past its lease finds the row re-claimed under a new token and
    changes nothing. A token that expired but was not re-claimed still counts, since the report did go out.

Processes and threads
    Each store call borrows one of at most ``POOL_SIZE`` connections of its process and hands it back when it
    returns; a call made while its thread already holds one (nested) uses that one. Not one per thread: a
    delivering process runs up to 64 reporter workers, and a connection costs ~230 KiB of RAM even idle, while
    SQLite lets one writer in at a time however many connections wait. Store calls wait on nothing but SQLite
    while they hold a connection, so a thread waiting for one never waits on a thread waiting for it.
    Connections are tagged with the pid that opened them. One opened before ``os.fork`` is never used, closed
    or finalised in the child (its SQLite locks and WAL index belong to the parent): the child leaves it
    alone and opens its own on first use. ``reopen()`` does the same at once.

Schema
    Versioned with ``PRAGMA user_version``; created or migrated inside one ``BEGIN IMMEDIATE``
    transaction, so processes opening a fresh file at the same moment create it exactly once. A file
    written by a newer version of this package is refused rather than misread.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

from ..phone import calling_code
from ._common import (
    HOUR,
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
    draw_tokens,
    hour_of,
)
from .base import CountRow, DeadLetter, OutboxItem, OutboxStats, Store, Verification, VerifyOutcome

SCHEMA_VERSION = 3
SYNCHRONOUS_MODES = ("normal", "full")
#: Rows deleted per transaction when pruning, so a large prune never holds the write lock for long.
PRUNE_BATCH = 2000
#: Each connection's page cache, in KiB (SQLite's default is 2,000). In WAL mode a connection's cache is dropped
#: whenever another one commits, so a bigger one buys little here; the file's pages stay in the OS page cache.
CACHE_KIB = 256
#: Connections a process keeps at most; a store call waits for a free one (see "Processes and threads").
POOL_SIZE = 4

_SCHEMA_V1 = (
    """CREATE TABLE IF NOT EXISTS messages (
        id INTEGER PRIMARY KEY,
        provider TEXT NOT NULL,
        message_id TEXT NOT NULL,
        phone TEXT NOT NULL,
        sent_at REAL NOT NULL,
        verified_at REAL,
        UNIQUE (provider, message_id)
    )""",
    "CREATE INDEX IF NOT EXISTS messages_phone_sent ON messages (phone, sent_at)",
    "CREATE INDEX IF NOT EXISTS messages_sent ON messages (sent_at)",
    """CREATE TABLE IF NOT EXISTS outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        message_id TEXT NOT NULL,
        phone TEXT NOT NULL,
        provider TEXT NOT NULL,
        sent_at REAL NOT NULL,
        verified_at REAL NOT NULL,
        created_at REAL NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('pending', 'reported', 'dead')),
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL NOT NULL,
        lease_token TEXT,
        lease_until REAL,
        last_error TEXT,
        reason TEXT,
        done_at REAL
    )""",
    "CREATE INDEX IF NOT EXISTS outbox_claim ON outbox (state, provider, next_attempt_at)",
    "CREATE INDEX IF NOT EXISTS outbox_done ON outbox (state, done_at)",
    """CREATE TABLE IF NOT EXISTS counters (
        hour INTEGER NOT NULL,
        provider TEXT NOT NULL,
        calling_code TEXT NOT NULL,
        requested INTEGER NOT NULL DEFAULT 0,
        verified INTEGER NOT NULL DEFAULT 0,
        unmatched INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (hour, provider, calling_code)
    )""",
    "CREATE TABLE IF NOT EXISTS flags (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS leases (name TEXT PRIMARY KEY, owner TEXT NOT NULL, expires_at REAL NOT NULL)",
)
#: Version 2: the shared rate-limit buckets, and claimed rows found by their lease token.
_SCHEMA_V2 = (
    "CREATE TABLE IF NOT EXISTS budgets (name TEXT PRIMARY KEY, tokens REAL NOT NULL, updated REAL NOT NULL)",
    "CREATE INDEX IF NOT EXISTS outbox_lease ON outbox (lease_token) WHERE lease_token IS NOT NULL",
)
#: Version 3: how far each verification spool (``store/spool.py``) has been applied.
_SCHEMA_V3 = ("CREATE TABLE IF NOT EXISTS spools (name TEXT PRIMARY KEY, position INTEGER NOT NULL)",)
#: Rows one ack statement takes (two parameters each, well under SQLite's variable limit).
ACK_CHUNK = 400

_BUMP = """INSERT INTO counters (hour, provider, calling_code, requested, verified, unmatched)
    VALUES (?, ?, ?, ?, ?, ?)
    ON CONFLICT (hour, provider, calling_code) DO UPDATE SET
        requested = requested + excluded.requested,
        verified = verified + excluded.verified,
        unmatched = unmatched + excluded.unmatched"""

#: A claimable row (parameters: provider, now, now).
_DUE = "state = 'pending' AND provider = ? AND next_attempt_at <= ? AND (lease_until IS NULL OR lease_until <= ?)"
_ITEM_COLUMNS = "id, message_id, phone, provider, sent_at, verified_at, created_at, attempts, last_error"

#: Connections inherited from a parent process. Kept referenced for the life of the child so that they are
#: never finalised here: closing one would run SQLite's close path (locks, WAL checkpoint) on the parent's
#: file handles.
_ABANDONED: list[sqlite3.Connection] = []


class _ProcessState:
    """Connections opened by one process. Replaced wholesale after a fork or ``close()``, never repaired."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.lock = threading.Lock()
        self.slots = threading.BoundedSemaphore(POOL_SIZE)
        self.local = threading.local()  # ``conn``: the connection this thread holds
        self.connections: list[sqlite3.Connection] = []  # every one open, lent or idle
        self.idle: list[sqlite3.Connection] = []
        self.closed = False


class SQLiteStore(Store):
    """A :class:`Store` in one SQLite file (created, with its parent folders, if missing)."""

    def __init__(self, path: str | os.PathLike[str], *, synchronous: str = "normal", busy_timeout: float = 5.0) -> None:
        self._path = os.fspath(path)
        if not self._path or self._path == ":memory:":
            raise ValueError("SQLiteStore needs a file path (use MemoryStore for an in-memory store)")
        if synchronous not in SYNCHRONOUS_MODES:
            raise ValueError(f"synchronous must be one of {', '.join(SYNCHRONOUS_MODES)}")
        self._synchronous = synchronous
        self._busy_timeout = check_positive(busy_timeout, "busy_timeout")
        parent = os.path.dirname(os.path.abspath(self._path))
        os.makedirs(parent, exist_ok=True)
        self._state = _ProcessState()
        # Create or check the schema now, so a bad file fails at start-up and not on the first request; the
        # connection is closed again so that nothing is held open across a later fork.
        conn = self._connect()
        conn.close()

    def __repr__(self) -> str:
        return f"SQLiteStore({self._path!r})"

    @property
    def path(self) -> str:
        return self._path

    # Connections --------------------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._path, timeout=self._busy_timeout, isolation_level=None, check_same_thread=False)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
            conn.execute(f"PRAGMA synchronous = {self._synchronous.upper()}")
            conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
            self._use_wal(conn)
            self._ensure_schema(conn)
            for statement in _BATCH_TABLE:
                conn.execute(statement)
        except BaseException:
            conn.close()
            raise
        return conn

    def _use_wal(self, conn: sqlite3.Connection) -> None:
        """Switch the file to WAL (persistent, so usually already done). Retried: the switch needs a lock
        that some SQLite versions report as busy without calling the busy handler."""
        deadline = time.monotonic() + self._busy_timeout
        while True:
            try:
                mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
                if str(mode).lower() != "wal":
                    conn.execute("PRAGMA journal_mode = WAL").fetchone()
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise
                time.sleep(0.01)

    def _ensure_schema(self, conn: sqlite3.Connection) -> None:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version == SCHEMA_VERSION:
            return
        self._check_version(version)
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])  # another process may have won
            self._check_version(version)
            if version < 1:
                for statement in _SCHEMA_V1:
                    conn.execute(statement)
            if version < 2:
                for statement in _SCHEMA_V2:
                    conn.execute(statement)
            if version < 3:
                for statement in _SCHEMA_V3:
                    conn.execute(statement)
            # Later versions migrate here, step by step, in this same transaction.
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _check_version(self, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise RuntimeError(
                f"{self._path}: store schema version {version} is newer than this version of "
                f"flask-otp-conversion supports ({SCHEMA_VERSION}); upgrade the package"
            )

    @contextlib.contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        """A connection of this process for the length of one store call (the one this thread already holds,
        in a nested call)."""
        state = self._state
        if state.pid != os.getpid():
            state = self._forget_parent()
        held: sqlite3.Connection | None = getattr(state.local, "conn", None)
        if held is not None:
            yield held
            return
        with state.slots:
            with state.lock:
                conn = state.idle.pop() if state.idle else None
            if conn is None:
                conn = self._connect()
                with state.lock:
                    state.connections.append(conn)
            state.local.conn = conn
            try:
                yield conn
            finally:
                state.local.conn = None
                with contextlib.suppress(sqlite3.Error):  # (closed by close() meanwhile)
                    if conn.in_transaction:  # an interrupted call's: the next borrower must not see its snapshot
                        conn.execute("ROLLBACK")
                with state.lock:
                    keep = not state.closed
                    if keep:
                        state.idle.append(conn)
                if not keep:  # close() ran meanwhile; it closed the others
                    with contextlib.suppress(sqlite3.Error):
                        conn.close()

    def _forget_parent(self) -> _ProcessState:
        """In a forked child: set the parent's connections aside untouched (its lock may be held, too)."""
        old = self._state
        if old.pid != os.getpid():
            _ABANDONED.extend(old.connections)
            self._state = _ProcessState()
        return self._state

    def reopen(self) -> None:
        """Drop connections inherited across ``os.fork`` (in the parent: close this process's own)."""
        if self._state.pid != os.getpid():
            self._forget_parent()
        else:
            self.close()

    def close(self) -> None:
        """Close this process's connections; the store stays usable and reconnects on the next call."""
        old = self._state
        if old.pid != os.getpid():
            self._forget_parent()
            return
        self._state = _ProcessState()
        with old.lock:
            old.closed = True
            connections, old.connections, old.idle = old.connections, [], []
        for conn in connections:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction: committed on success, rolled back on any error."""
        with self._connection() as conn:
            # A lent connection comes back without a transaction, so one is open here only when this call is
            # nested in another of this thread's: never commit its remains.
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            try:
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    @contextlib.contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        """A read transaction, so several queries see one snapshot."""
        with self._connection() as conn:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                if conn.in_transaction:
                    conn.execute("COMMIT")

    # Records ------------------------------------------------------------------------------------------

    def record_sent(self, *, phone: str, message_id: str, provider: str, sent_at: float) -> bool:
        phone = check_phone(phone)
        message_id = check_message_id(message_id)
        provider = check_provider(provider)
        sent = check_time(sent_at, "sent_at")
        with self._write() as conn:
            inserted = conn.execute(
                "INSERT INTO messages (provider, message_id, phone, sent_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (provider, message_id) DO NOTHING",
                (provider, message_id, phone, sent),
            ).rowcount
            if inserted:
                conn.execute(_BUMP, (hour_of(sent), provider, calling_code(phone), 1, 0, 0))
        return bool(inserted)

    def record_verified(
        self,
        *,
        phone: str,
        message_id: str | None,
        provider: str,
        verified_at: float,
        match_window: float,
    ) -> VerifyOutcome:
        """See :meth:`Store.record_verified`. Without ``message_id`` the *most recent* send in the window
        is the candidate: if it is already verified this is a repeat verification, and an older unverified
        send is not taken instead (its code was superseded by the newer one)."""
        item = check_verification(Verification(phone, message_id, verified_at))
        provider = check_provider(provider)
        window = check_positive(match_window, "match_window")
        with self._write() as conn:
            return _verify_batch(conn, [item], provider, window)[0]

    def apply_verifications(
        self,
        items: Sequence[Verification],
        *,
        provider: str,
        match_window: float,
        checkpoint: tuple[str, int, int],
    ) -> list[VerifyOutcome] | None:
        checked, provider, window, (name, start, end) = check_batch(items, provider, match_window, checkpoint)
        with self._write() as conn:
            row = conn.execute("SELECT position FROM spools WHERE name = ?", (name,)).fetchone()
            if (0 if row is None else row[0]) != start:
                return None
            conn.execute(
                "INSERT INTO spools (name, position) VALUES (?, ?)"
                " ON CONFLICT (name) DO UPDATE SET position = excluded.position",
                (name, end),
            )
            return _verify_batch(conn, checked, provider, window)

    def spool_position(self, name: str) -> int:
        key = check_name(name, "spool name")
        with self._connection() as conn:
            row = conn.execute("SELECT position FROM spools WHERE name = ?", (key,)).fetchone()
        return 0 if row is None else int(row[0])

    def forget_spool(self, name: str) -> None:
        key = check_name(name, "spool name")
        with self._write() as conn:
            conn.execute("DELETE FROM spools WHERE name = ?", (key,))

    def counts(self, *, since: float, until: float) -> list[CountRow]:
        start = check_time(since, "since")
        end = check_time(until, "until")
        with self._connection() as conn:
            rows = conn.execute(
                "SELECT hour, provider, calling_code, requested, verified, unmatched FROM counters"
                " WHERE hour >= ? AND hour < ? ORDER BY hour, provider, calling_code",
                (start, end),
            ).fetchall()
        return [CountRow(*row) for row in rows]

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
        if limit == 0:
            return []
        token = uuid.uuid4().hex
        # One statement under the write lock, however many rows: a statement per row would let the lock be
        # held across a GIL hand-off per row, and every verify request in every process waits for that lock.
        with self._write() as conn:
            leased = conn.execute(
                "UPDATE outbox SET lease_token = ?, lease_until = ? WHERE id IN"  # noqa: S608
                f" (SELECT id FROM outbox WHERE {_DUE} AND created_at <= ? ORDER BY next_attempt_at, id LIMIT ?)",
                (token, at + lease, provider, at, at, newest, limit),
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

    def ack(self, items: Sequence[OutboxItem], *, now: float) -> int:
        """Rows still carrying the item's token become reported (see "Claims and leases" above)."""
        at = check_time(now, "now")
        if not items:
            return 0
        done = 0
        with self._write() as conn:  # a statement per ACK_CHUNK rows, not per row (see claim)
            for start in range(0, len(items), ACK_CHUNK):
                chunk = items[start : start + ACK_CHUNK]
                ids = [item.id for item in chunk]
                pairs = [value for item in chunk for value in (item.id, item.lease_token)]
                done += conn.execute(
                    "UPDATE outbox SET state = 'reported', done_at = ?, lease_token = NULL, lease_until = NULL"  # noqa: S608
                    f" WHERE id IN ({', '.join('?' * len(ids))}) AND state = 'pending'"
                    f" AND (id, lease_token) IN (VALUES {', '.join(['(?, ?)'] * len(chunk))})",
                    (at, *ids, *pairs),
                ).rowcount
        return done

    def retry(self, item: OutboxItem, *, next_attempt_at: float, error: str) -> bool:
        due = check_time(next_attempt_at, "next_attempt_at")
        text = check_text(error, "error")
        with self._write() as conn:
            changed = conn.execute(
                "UPDATE outbox SET attempts = attempts + 1, next_attempt_at = ?, last_error = ?,"
                " lease_token = NULL, lease_until = NULL"
                " WHERE id = ? AND lease_token = ? AND state = 'pending'",
                (due, text, item.id, item.lease_token),
            ).rowcount
        return bool(changed)

    def release(self, items: Sequence[OutboxItem]) -> int:
        """Rows still carrying the item's token become due at once, with no attempt counted. ``next_attempt_at``
        is left alone: a claimed row was already due, so the row keeps its place in the claim order."""
        if not items:
            return 0
        with self._write() as conn:
            return conn.executemany(
                "UPDATE outbox SET lease_token = NULL, lease_until = NULL"
                " WHERE id = ? AND lease_token = ? AND state = 'pending'",
                [(item.id, item.lease_token) for item in items],
            ).rowcount

    def dead_letter(self, item: OutboxItem, *, reason: str, now: float) -> bool:
        text = check_text(reason, "reason")
        at = check_time(now, "now")
        with self._write() as conn:
            changed = conn.execute(
                "UPDATE outbox SET state = 'dead', reason = ?, done_at = ?, attempts = attempts + 1,"
                " lease_token = NULL, lease_until = NULL"
                " WHERE id = ? AND lease_token = ? AND state = 'pending'",
                (text, at, item.id, item.lease_token),
            ).rowcount
        return bool(changed)

    def dead_letters(self, *, limit: int = 100) -> list[DeadLetter]:
        count = check_count(limit)
        with self._connection() as conn:
            rows = conn.execute(
                "SELECT id, message_id, phone, provider, verified_at, created_at, attempts, reason, done_at"
                " FROM outbox WHERE state = 'dead' ORDER BY done_at DESC, id DESC LIMIT ?",
                (count,),
            ).fetchall()
        return [DeadLetter(*row) for row in rows]

    def replay_dead_letters(self, ids: Sequence[int] | None = None, *, now: float) -> int:
        """Dead letters become pending and due at ``now``, with attempts and age (``created_at``) reset, so
        a replay gets a full ``max_report_age`` instead of expiring again at once."""
        at = check_time(now, "now")
        fresh = (
            "UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_at = ?, created_at = ?,"
            " reason = NULL, done_at = NULL, lease_token = NULL, lease_until = NULL WHERE state = 'dead'"
        )
        with self._write() as conn:
            if ids is None:
                return conn.execute(fresh, (at, at)).rowcount
            done = 0
            for row_id in _check_ids(ids):
                done += conn.execute(fresh + " AND id = ?", (at, at, row_id)).rowcount
            return done

    def outbox_stats(self, *, now: float) -> OutboxStats:
        at = check_time(now, "now")
        with self._read() as conn:
            pending, in_flight, oldest = conn.execute(
                "SELECT COUNT(*), COALESCE(SUM(lease_until > ?), 0), MIN(created_at) FROM outbox"
                " WHERE state = 'pending'",
                (at,),
            ).fetchone()
            dead = conn.execute("SELECT COUNT(*) FROM outbox WHERE state = 'dead'").fetchone()[0]
            reported = conn.execute("SELECT COUNT(*) FROM outbox WHERE state = 'reported'").fetchone()[0]
        return OutboxStats(pending=pending, in_flight=in_flight, dead=dead, reported=reported, oldest_pending_at=oldest)

    # Housekeeping and switches ----------------------------------------------------------------------

    def prune(self, *, before: float) -> int:
        """Deletes in batches of :data:`PRUNE_BATCH` rows per transaction, so requests keep writing."""
        cutoff = check_time(before, "before")
        batches: tuple[tuple[str, tuple[Any, ...]], ...] = (
            (
                "DELETE FROM messages WHERE id IN (SELECT id FROM messages WHERE sent_at < ? LIMIT ?)",
                (cutoff,),
            ),
            (  # never pending rows: a report not yet made is kept however old
                "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox"
                " WHERE state IN ('reported', 'dead') AND done_at < ? LIMIT ?)",
                (cutoff,),
            ),
            (  # only whole hours before the cutoff (see _common.counter_expired)
                "DELETE FROM counters WHERE rowid IN (SELECT rowid FROM counters WHERE hour + ? <= ? LIMIT ?)",
                (HOUR, cutoff),
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

    def get_flag(self, name: str) -> str | None:
        key = check_name(name, "flag name")
        with self._connection() as conn:
            row = conn.execute("SELECT value FROM flags WHERE name = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_flag(self, name: str, value: str | None) -> None:
        key = check_name(name, "flag name")
        text = check_flag_value(value)
        with self._write() as conn:
            if text is None:
                conn.execute("DELETE FROM flags WHERE name = ?", (key,))
            else:
                conn.execute(
                    "INSERT INTO flags (name, value) VALUES (?, ?)"
                    " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                    (key, text),
                )

    def acquire_lease(self, name: str, *, owner: str, ttl: float, now: float) -> bool:
        key = check_name(name, "lease name")
        who = check_name(owner, "lease owner")
        seconds = check_positive(ttl, "ttl")
        at = check_time(now, "now")
        with self._write() as conn:
            changed = conn.execute(
                "INSERT INTO leases (name, owner, expires_at) VALUES (?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at"
                " WHERE leases.owner = excluded.owner OR leases.expires_at <= ?",
                (key, who, at + seconds, at),
            ).rowcount
        return bool(changed)

    def release_lease(self, name: str, *, owner: str) -> None:
        key = check_name(name, "lease name")
        who = check_name(owner, "lease owner")
        with self._write() as conn:
            conn.execute("DELETE FROM leases WHERE name = ? AND owner = ?", (key, who))

    def take_tokens(self, name: str, *, want: int, rate: float, burst: float, now: float) -> tuple[int, float]:
        key = check_name(name, "bucket name")
        count = check_count(want, "want", minimum=1)
        rate_value, burst_value = check_rate(rate, burst)
        at = check_time(now, "now")
        with self._write() as conn:
            row = conn.execute("SELECT tokens, updated FROM budgets WHERE name = ?", (key,)).fetchone()
            granted, wait, (tokens, updated) = draw_tokens(
                None if row is None else (row[0], row[1]), want=count, rate=rate_value, burst=burst_value, now=at
            )
            conn.execute(
                "INSERT INTO budgets (name, tokens, updated) VALUES (?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET tokens = excluded.tokens, updated = excluded.updated",
                (key, tokens, updated),
            )
        return granted, wait


#: The verifications of one ``apply_verifications`` call, matched and applied set-wise: one statement per
#: step for the whole batch, not a few per verification (each statement lets another thread take the GIL,
#: and the spool applies in the background of request threads).
_BATCH_TABLE = (
    "CREATE TEMP TABLE IF NOT EXISTS verify_batch (seq INTEGER PRIMARY KEY, phone TEXT NOT NULL, message_id TEXT,"
    " verified_at REAL NOT NULL, verified_hour INTEGER NOT NULL, calling_code TEXT NOT NULL,"
    " message_row INTEGER, outcome TEXT)",
    "CREATE INDEX IF NOT EXISTS temp.verify_batch_row ON verify_batch (message_row)",
)
_BATCH_STEPS = (
    # the candidate message: by id (and the same phone), or the most recent send to the phone in the window
    """UPDATE temp.verify_batch SET message_row = CASE WHEN message_id IS NOT NULL THEN
        (SELECT id FROM messages m WHERE m.provider = :provider AND m.message_id = verify_batch.message_id
            AND m.phone = verify_batch.phone)
      ELSE
        (SELECT id FROM messages m WHERE m.phone = verify_batch.phone
            AND m.sent_at >= verify_batch.verified_at - :window AND m.sent_at <= verify_batch.verified_at
            ORDER BY m.sent_at DESC, m.id DESC LIMIT 1)
      END""",
    # the first verification of a message not verified before enqueues; later ones are repeats
    """UPDATE temp.verify_batch SET outcome = CASE
        WHEN message_row IS NULL THEN 'unmatched'
        WHEN (SELECT verified_at FROM messages WHERE id = message_row) IS NULL
            AND seq = (SELECT MIN(seq) FROM temp.verify_batch b WHERE b.message_row = verify_batch.message_row)
            THEN 'enqueued'
        ELSE 'repeat' END""",
    """UPDATE messages SET verified_at = (SELECT verified_at FROM temp.verify_batch b
        WHERE b.message_row = messages.id AND b.outcome = 'enqueued')
      WHERE id IN (SELECT message_row FROM temp.verify_batch WHERE outcome = 'enqueued')""",
    """INSERT INTO outbox (message_id, phone, provider, sent_at, verified_at, created_at, state, attempts,
        next_attempt_at)
      SELECT m.message_id, b.phone, m.provider, m.sent_at, b.verified_at, b.verified_at, 'pending', 0, b.verified_at
      FROM temp.verify_batch b JOIN messages m ON m.id = b.message_row WHERE b.outcome = 'enqueued' ORDER BY b.seq""",
    # verified: counted in the hour the message was sent (integer division: exactly ``hour_of``)
    """INSERT INTO counters (hour, provider, calling_code, requested, verified, unmatched)
      SELECT CAST(m.sent_at AS INTEGER) / 3600 * 3600, m.provider, b.calling_code, 0, COUNT(*), 0
      FROM temp.verify_batch b JOIN messages m ON m.id = b.message_row WHERE b.outcome = 'enqueued'
      GROUP BY 1, 2, 3
      ON CONFLICT (hour, provider, calling_code) DO UPDATE SET verified = verified + excluded.verified""",
    """INSERT INTO counters (hour, provider, calling_code, requested, verified, unmatched)
      SELECT verified_hour, :provider, calling_code, 0, 0, COUNT(*)
      FROM temp.verify_batch WHERE outcome = 'unmatched' GROUP BY 1, 3
      ON CONFLICT (hour, provider, calling_code) DO UPDATE SET unmatched = unmatched + excluded.unmatched""",
)


def _verify_batch(
    conn: sqlite3.Connection, items: Sequence[Verification], provider: str, window: float
) -> list[VerifyOutcome]:
    """``record_verified`` for each item in order, inside the caller's write transaction."""
    if not items:
        return []
    rows = [
        (i, item.phone, item.message_id, item.verified_at, hour_of(item.verified_at), calling_code(item.phone))
        for i, item in enumerate(items)
    ]
    conn.execute(
        "INSERT INTO temp.verify_batch (seq, phone, message_id, verified_at, verified_hour, calling_code)"
        " SELECT json_extract(value, '$[0]'), json_extract(value, '$[1]'), json_extract(value, '$[2]'),"
        " json_extract(value, '$[3]'), json_extract(value, '$[4]'), json_extract(value, '$[5]') FROM json_each(?)",
        (json.dumps(rows),),
    )
    try:
        params = {"provider": provider, "window": window}
        for step in _BATCH_STEPS:
            conn.execute(step, params)
        found = conn.execute(
            "SELECT b.outcome, m.message_id FROM temp.verify_batch b LEFT JOIN messages m ON m.id = b.message_row"
            " ORDER BY b.seq"
        ).fetchall()
    finally:
        conn.execute("DELETE FROM temp.verify_batch")
    return [
        VerifyOutcome(
            message_id=message_id,
            enqueued=outcome == "enqueued",
            already_verified=outcome == "repeat",
        )
        for outcome, message_id in found
    ]

def _item(row: Sequence[Any], token: str) -> OutboxItem:
    return OutboxItem(
        id=row[0],
        message_id=row[1],
        phone=row[2],
        provider=row[3],
        sent_at=row[4],
        verified_at=row[5],
        created_at=row[6],
        attempts=row[7],
        last_error=row[8],
        lease_token=token,
    )


def _check_ids(ids: Sequence[int]) -> list[int]:
    result = []
    for row_id in ids:
        if isinstance(row_id, bool) or not isinstance(row_id, int):
            raise ValueError(f"dead letter ids must be ints, not {type(row_id).__name__}")
        result.append(row_id)
    return result


__all__ = ["SCHEMA_VERSION", "SQLiteStore"]
