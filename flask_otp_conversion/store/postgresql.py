"""The PostgreSQL store: one outbox shared by every process on every host of an app.

Driver
    psycopg 3, with SQL of our own: the same primitives as the SQLite engine, each one statement or one short
    transaction, every value a bound parameter (lists go in as arrays, expanded by ``unnest``).

Transactions
    READ COMMITTED, row locks where the contract asks for isolation. A batch of verifications locks the spool's
    position row (an upsert that returns it), then every candidate send in one ``SELECT ... ORDER BY id FOR
    UPDATE``, then writes; counters are upserted in key order. Locks are always taken in that order (spool,
    sends by id, counters by key), so two transactions never wait on each other in a circle. A deadlock or
    serialisation failure the server reports anyway is retried (``postgresql_connections.TRANSIENT_RETRIES``
    times): every body reads and writes only through its transaction.

Claims and leases
    ``claim`` is one ``UPDATE ... WHERE id = ANY(ARRAY(SELECT ... FOR UPDATE SKIP LOCKED LIMIT n))``:
    processes claiming at once on any number of hosts each take rows no other holds, without waiting on each
    other. Acks, releases, retries and dead letters change a row only while it carries the caller's lease
    token. Every statement on claimed rows finds them by the primary key whatever the statistics say
    (``_HELD``): a queue's table changes faster than ANALYZE follows, and a plan that read every pending row
    made each ack cost as much as the backlog. A take of request slots reads the schedule row and moves it by
    compare-and-set, reading again if another process moved it first.

Records
    Sends, verifications, reports and counters in one transaction: ``postgresql_records.py``.

Connections
    Each store call borrows a connection of its process's bounded, fork-safe pool (``postgresql_connections.py``,
    where outages become ``PostgreSQLUnavailableError``); the schema and its migrations are
    ``postgresql_schema.py``; text the server cannot hold is escaped by ``postgresql_text.py``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import psycopg

from .base import Backlog, CountRow, DeadLetter, OutboxItem, OutboxStats
from .engine import Engine, FigureKey, RecordsTransaction, T, foreign_reason
from .postgresql_connections import ConnectionPool, PostgreSQLUnavailableError
from .postgresql_records import BIGINT_MAX, PostgreSQLTransaction
from .postgresql_schema import SCHEMA_VERSION, PostgreSQLSchemaError, ensure_schema
from .postgresql_text import dec, dec_optional, enc
from .postgresql_url import PostgreSQLOptions, parse_url
from .rules import draw_slots, first_kept_hour

#: Rows deleted per transaction when pruning.
PRUNE_BATCH = 5000
#: Largest value of a ``bigint``: ids and positions past it cannot be in a table.
#: ``prefix_counts`` (parameters: length, since, until): a range of the otp_sends_sent index, the window's sends.
PREFIX_COUNTS_SQL = (
    "SELECT substr(phone, 1, %s), count(*), count(verified_at) FROM otp_sends WHERE sent_at >= %s AND sent_at < %s"
    " GROUP BY 1"
)

#: A claimed row's columns, as ``_item`` reads them (``next_attempt_at`` last: the claim order).
_ITEM_COLUMNS = (
    "o.id, o.message_id, o.phone, o.provider, o.sent_at, o.verified_at, o.created_at, o.attempts, o.last_error,"
    " o.account, o.converted, o.next_attempt_at"
)
#: Pending rows still carrying the given (id, token) pairs (parameters: ids, then ``_held``'s keys). The rows are
#: found by ``id = ANY(ARRAY(...))``, whose length the planner cannot see, and the condition names no
#: ``state = 'pending'`` of its own: a join on the pairs, or that predicate, let stale statistics (a pending set
#: they take for tiny) choose a hash over every pending row or a full scan of the partial index otp_outbox_due.
#: State and token are rechecked on the row being changed (READ COMMITTED), as one key per pair, exact even when a
#: batch holds an id twice.
_HELD = (
    "WHERE o.id = ANY(ARRAY(SELECT unnest(%s::bigint[])))"
    " AND o.id::text || ':' || o.state || ':' || o.lease_token = ANY(%s::text[])"
)


class PostgreSQLStore(Engine):
    """A :class:`Store` in PostgreSQL tables (``open_store("postgresql://...")``)."""

    batch_interval = 0.25

    def __init__(self, url: str | PostgreSQLOptions) -> None:
        self._options = parse_url(url) if isinstance(url, str) else url
        schema = self._options.schema
        self._pool = ConnectionPool(self._options, prepare=lambda conn: ensure_schema(conn, schema))
        # The schema created or checked now, so a refused password or a newer schema fail at start-up.
        self._pool.check_server()

    def __repr__(self) -> str:
        return f"PostgreSQLStore(schema={self._options.schema!r})"

    @property
    def schema(self) -> str | None:
        return self._options.schema

    # Connections --------------------------------------------------------------------------------------

    def reopen(self) -> None:
        """Drop connections inherited across ``os.fork`` (in the parent: close this process's own)."""
        self._pool.reopen()

    def close(self) -> None:
        """Close this process's connections; the store stays usable and reconnects on the next call."""
        self._pool.close()

    def _call(self, work: Callable[[psycopg.Connection[Any]], T]) -> T:
        """``work`` on a pooled connection (``ConnectionPool.call``: retried on a dead one or a conflict)."""
        return self._pool.call(work)

    def _write(self, work: Callable[[psycopg.Cursor[Any]], T]) -> T:
        """``work`` in one transaction (``_call`` runs it again after a conflict)."""

        def run(conn: psycopg.Connection[Any]) -> T:
            with conn.transaction(), conn.cursor() as cur:
                return work(cur)

        return self._call(run)

    def _execute(self, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """One statement, its own transaction (autocommit); the rows it returned."""

        def run(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
            with conn.cursor() as cur:
                cur.execute(query, params)
                return cur.fetchall() if cur.description is not None else []

        return self._call(run)

    def _rowcount(self, query: str, params: Sequence[Any] = ()) -> int:
        def run(conn: psycopg.Connection[Any]) -> int:
            with conn.cursor() as cur:
                cur.execute(query, params)
                return max(0, cur.rowcount)

        return self._call(run)

    def schema_version(self) -> int:
        rows = self._execute("SELECT COALESCE(MAX(version), 0) FROM otp_schema_versions")
        return int(rows[0][0])

    # Records ------------------------------------------------------------------------------------------

    def _in_records(self, body: Callable[[RecordsTransaction], T]) -> T:
        return self._write(lambda cur: body(PostgreSQLTransaction(cur)))

    def _spool_position(self, name: str) -> int:
        rows = self._execute("SELECT position FROM otp_spools WHERE name = %s", (enc(name),))
        return 0 if not rows else int(rows[0][0])

    def _forget_spool(self, name: str) -> None:
        self._rowcount("DELETE FROM otp_spools WHERE name = %s", (enc(name),))

    def _counts(self, since: float, until: float, span: int) -> list[CountRow]:
        rows = self._execute(
            "SELECT start, provider, calling_code, requested, verified, unmatched FROM otp_counters"
            " WHERE span = %s AND start >= %s AND start < %s",
            (span, since, until),
        )
        found = [CountRow(int(s), dec(p), c, int(r), int(v), int(u)) for s, p, c, r, v, u in rows]
        found.sort(key=lambda row: (row.hour, row.provider, row.calling_code))  # Python's order, not a collation's
        return found

    def _prefix_counts(self, since: float, until: float, length: int) -> list[tuple[str, int, int]]:
        rows = self._execute(PREFIX_COUNTS_SQL, (length, since, until))
        return [(str(head), int(sends), int(verified)) for head, sends, verified in rows]

    def _add_figures(self, increments: Mapping[FigureKey, int]) -> None:
        keys = sorted(increments)  # one lock order for every writer
        self._rowcount(
            "INSERT INTO otp_figures (hour, provider, name, value)"
            " SELECT * FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::bigint[])"
            " ON CONFLICT (hour, provider, name) DO UPDATE SET value = otp_figures.value + excluded.value",
            (
                [key[0] for key in keys],
                [enc(key[1]) for key in keys],
                [enc(key[2]) for key in keys],
                [increments[key] for key in keys],
            ),
        )

    def _figures(self, since: float, until: float) -> list[tuple[int, str, str, int]]:
        rows = self._execute(
            "SELECT hour, provider, name, value FROM otp_figures WHERE hour >= %s AND hour < %s", (since, until)
        )
        return [(int(hour), dec(provider), dec(name), int(value)) for hour, provider, name, value in rows]

    # Outbox -------------------------------------------------------------------------------------------

    def _claim(
        self, provider: str, account: str | None, limit: int, lease_until: float, now: float
    ) -> list[OutboxItem]:
        token = uuid.uuid4().hex
        mine, params = ("", ()) if account is None else (" AND account IN (%s, '')", (enc(account),))
        # The due rows come locked from the partial index; the update then takes them by the primary key
        # (``id = ANY``, no state condition of its own: see ``_HELD``), never by a join that may scan the table.
        rows = self._execute(
            "UPDATE otp_outbox AS o SET lease_token = %s, lease_until = %s WHERE o.id = ANY(ARRAY("  # noqa: S608
            "SELECT id FROM otp_outbox WHERE state = 'pending' AND provider = %s AND next_attempt_at <= %s"
            f" AND (lease_until IS NULL OR lease_until <= %s){mine}"
            f" ORDER BY next_attempt_at, id LIMIT %s FOR UPDATE SKIP LOCKED)) RETURNING {_ITEM_COLUMNS}",
            (token, lease_until, enc(provider), now, now, *params, min(limit, BIGINT_MAX)),
        )
        rows.sort(key=lambda row: (row[-1], row[0]))
        return [_item(row, token) for row in rows]

    def _ack(self, items: Sequence[OutboxItem], now: float) -> list[int]:
        rows = self._execute(
            "UPDATE otp_outbox AS o SET state = 'reported', done_at = %s, lease_token = NULL, lease_until = NULL"  # noqa: S608
            f" {_HELD} RETURNING o.id",
            (now, *_held(items)),
        )
        return [int(row[0]) for row in rows]

    def _release(self, items: Sequence[OutboxItem]) -> int:
        """``next_attempt_at`` is left alone: a claimed row was due already, so it keeps its place in line."""
        return self._rowcount(
            f"UPDATE otp_outbox AS o SET lease_token = NULL, lease_until = NULL {_HELD}",  # noqa: S608
            _held(items),
        )

    def _retry(self, item: OutboxItem, next_attempt_at: float, error: str) -> bool:
        if not 0 < item.id <= BIGINT_MAX:
            return False
        return bool(
            self._rowcount(
                "UPDATE otp_outbox SET attempts = attempts + 1, next_attempt_at = %s, last_error = %s,"
                " lease_token = NULL, lease_until = NULL WHERE id = %s AND lease_token = %s AND state = 'pending'",
                (next_attempt_at, enc(error), item.id, enc(item.lease_token)),
            )
        )

    def _dead_letter(self, item: OutboxItem, reason: str, now: float) -> bool:
        if not 0 < item.id <= BIGINT_MAX:
            return False
        return bool(
            self._rowcount(
                "UPDATE otp_outbox SET state = 'dead', reason = %s, done_at = %s, attempts = attempts + 1,"
                " lease_token = NULL, lease_until = NULL WHERE id = %s AND lease_token = %s AND state = 'pending'",
                (enc(reason), now, item.id, enc(item.lease_token)),
            )
        )

    def _expire_foreign(self, provider: str, account: str, created_before: float, now: float) -> list[str]:
        def work(cur: psycopg.Cursor[Any]) -> list[str]:
            cur.execute(
                "SELECT id, provider, account FROM otp_outbox WHERE state = 'pending' AND created_at < %s"
                " AND (lease_until IS NULL OR lease_until <= %s) AND (provider <> %s OR account NOT IN (%s, ''))"
                " ORDER BY id FOR UPDATE SKIP LOCKED",
                (created_before, now, enc(provider), enc(account)),
            )
            rows = [(int(row_id), dec(owner), dec(row_account)) for row_id, owner, row_account in cur.fetchall()]
            if rows:
                cur.execute(
                    "UPDATE otp_outbox AS o SET state = 'dead', reason = moved.reason, done_at = %s,"
                    " lease_token = NULL, lease_until = NULL"
                    " FROM unnest(%s::bigint[], %s::text[]) AS moved(id, reason)"
                    " WHERE o.id = ANY(ARRAY(SELECT unnest(%s::bigint[]))) AND o.id = moved.id",  # see _HELD
                    (
                        now,
                        [row_id for row_id, _, _ in rows],
                        [enc(foreign_reason(owner, row_account)) for _, owner, row_account in rows],
                        [row_id for row_id, _, _ in rows],
                    ),
                )
            return [owner for _, owner, _ in rows]

        return self._write(work)

    def _backlog(self) -> list[Backlog]:
        rows = self._execute(
            "SELECT provider, account, COUNT(*), MIN(created_at) FROM otp_outbox WHERE state = 'pending'"
            " GROUP BY provider, account"
        )
        found = [Backlog(dec(p), dec(a), int(n), float(oldest)) for p, a, n, oldest in rows]
        found.sort(key=lambda row: (row.provider, row.account))
        return found

    def _dead_letters(self, limit: int, ids: list[int] | None) -> list[DeadLetter]:
        dead, params = _dead(ids)
        rows = self._execute(
            "SELECT id, message_id, phone, provider, verified_at, created_at, attempts, reason, done_at,"  # noqa: S608
            f" account, converted FROM otp_outbox WHERE {dead} ORDER BY done_at DESC, id DESC LIMIT %s",
            (*params, min(limit, BIGINT_MAX)),
        )
        return [
            DeadLetter(
                int(row_id),
                dec(message_id),
                phone,
                dec(provider),
                verified,
                created,
                int(attempts),
                dec(reason or ""),
                done,
                dec(account),
                bool(ok),
            )
            for row_id, message_id, phone, provider, verified, created, attempts, reason, done, account, ok in rows
        ]

    def _replay_dead_letters(self, ids: list[int] | None, now: float) -> int:
        dead, params = _dead(ids)
        return self._rowcount(
            "UPDATE otp_outbox SET state = 'pending', attempts = 0, next_attempt_at = %s, created_at = %s,"  # noqa: S608
            f" reason = NULL, done_at = NULL, lease_token = NULL, lease_until = NULL WHERE {dead}",
            (now, now, *params),
        )

    def _outbox_stats(self, now: float) -> OutboxStats:
        # One statement: one snapshot.
        pending, in_flight, dead, reported, oldest = self._execute(
            "SELECT COUNT(*) FILTER (WHERE state = 'pending'),"
            " COUNT(*) FILTER (WHERE state = 'pending' AND lease_until > %s),"
            " COUNT(*) FILTER (WHERE state = 'dead'), COUNT(*) FILTER (WHERE state = 'reported'),"
            " MIN(created_at) FILTER (WHERE state = 'pending') FROM otp_outbox",
            (now,),
        )[0]
        return OutboxStats(
            pending=int(pending),
            in_flight=int(in_flight),
            dead=int(dead),
            reported=int(reported),
            oldest_pending_at=None if oldest is None else float(oldest),
        )

    def _prune(self, before: float, minutes_before: float) -> int:
        """Deletes in batches of :data:`PRUNE_BATCH` rows per transaction, so no transaction runs long."""
        batches: tuple[tuple[str, tuple[Any, ...]], ...] = (
            ("DELETE FROM otp_sends WHERE id IN (SELECT id FROM otp_sends WHERE sent_at < %s LIMIT %s)", (before,)),
            (  # never pending rows: a report not yet made is kept however old
                "DELETE FROM otp_outbox WHERE id IN (SELECT id FROM otp_outbox"
                " WHERE state <> 'pending' AND done_at < %s LIMIT %s)",
                (before,),
            ),
            (
                "DELETE FROM otp_counters WHERE ctid = ANY(ARRAY(SELECT ctid FROM otp_counters"
                " WHERE span = 3600 AND start < %s LIMIT %s))",
                (first_kept_hour(before),),
            ),
            (
                "DELETE FROM otp_counters WHERE ctid = ANY(ARRAY(SELECT ctid FROM otp_counters"
                " WHERE span = 60 AND start < %s LIMIT %s))",
                (minutes_before,),
            ),
            (
                "DELETE FROM otp_figures WHERE ctid = ANY(ARRAY(SELECT ctid FROM otp_figures"
                " WHERE hour < %s LIMIT %s))",
                (first_kept_hour(before),),
            ),
        )
        removed = 0
        for statement, params in batches:
            while True:
                count = self._rowcount(statement, (*params, PRUNE_BATCH))
                removed += count
                if count < PRUNE_BATCH:
                    break
        return removed

    # Coordination -------------------------------------------------------------------------------------

    def _get_flag(self, name: str) -> str | None:
        rows = self._execute("SELECT value FROM otp_flags WHERE name = %s", (enc(name),))
        return None if not rows else dec(rows[0][0])

    def _set_flag(self, name: str, value: str | None) -> None:
        if value is None:
            self._rowcount("DELETE FROM otp_flags WHERE name = %s", (enc(name),))
        else:
            self._rowcount(
                "INSERT INTO otp_flags (name, value) VALUES (%s, %s)"
                " ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                (enc(name), enc(value)),
            )

    def _acquire_lease(self, name: str, owner: str, expires_at: float, now: float) -> bool:
        return bool(
            self._rowcount(
                "INSERT INTO otp_leases (name, owner, expires_at) VALUES (%s, %s, %s)"
                " ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at"
                " WHERE otp_leases.owner = excluded.owner OR otp_leases.expires_at <= %s",
                (enc(name), enc(owner), expires_at, now),
            )
        )

    def _take_slots(self, name: str, want: int, interval: float, horizon: float, now: float) -> tuple[float, int]:
        key = enc(name)
        # Compare-and-set, not a transaction holding a row lock: two autocommit statements instead of five, and a
        # draw that lost the race to another process reads the schedule again (``draw_slots`` stays the one rule).
        while True:
            rows = self._execute("SELECT next_slot FROM otp_schedules WHERE name = %s", (key,))
            if not rows:
                self._rowcount(
                    "INSERT INTO otp_schedules (name, next_slot, updated) VALUES (%s, NULL, %s)"
                    " ON CONFLICT (name) DO NOTHING",
                    (key, now),
                )
                continue
            state = None if rows[0][0] is None else float(rows[0][0])
            first, count, following = draw_slots(state, want=want, interval=interval, horizon=horizon, now=now)
            if self._rowcount(
                "UPDATE otp_schedules SET next_slot = %s, updated = %s WHERE name = %s"
                " AND next_slot IS NOT DISTINCT FROM %s",
                (following, now, key, state),
            ):
                return first, count

    # Send limits --------------------------------------------------------------------------------------

    def _unverified_sends(self, prefix: str, upper: str, since: float, limit: int) -> int:
        # The range is in byte order whatever the database's collation (under en_US "+447:" sorts before
        # "+4479"): COLLATE "C" on both sides, which the index otp_sends_phone_c (schema 2) serves.
        rows = self._execute(
            "SELECT count(*) FROM (SELECT 1 FROM otp_sends AS m"
            ' WHERE m.phone COLLATE "C" >= %s AND m.phone COLLATE "C" < %s AND m.sent_at >= %s'
            " AND m.verified_at IS NULL AND NOT EXISTS (SELECT 1 FROM otp_sends AS v"
            " WHERE v.phone = m.phone AND v.sent_at >= m.sent_at AND v.verified_at IS NOT NULL)"
            " LIMIT %s) AS counted",
            (prefix, upper, since, min(limit, BIGINT_MAX)),
        )
        return int(rows[0][0])


def _item(row: Sequence[Any], token: str) -> OutboxItem:
    row_id, message_id, phone, provider, sent_at, verified_at, created_at, attempts, error, account, converted, _ = row
    return OutboxItem(
        int(row_id),
        dec(message_id),
        phone,
        dec(provider),
        float(sent_at),
        float(verified_at),
        float(created_at),
        int(attempts),
        dec_optional(error),
        token,
        dec(account),
        bool(converted),
    )


def _held(items: Sequence[OutboxItem]) -> tuple[list[int], list[str]]:
    """``_HELD``'s parameters: the items' ids, and the key ``id:pending:token`` of each (the id is digits and the
    state letters, so the first two colons split it); an id no bigint can hold is in no table, so left out."""
    kept = [item for item in items if 0 < item.id <= BIGINT_MAX]
    return [item.id for item in kept], [f"{item.id}:pending:{enc(item.lease_token)}" for item in kept]


def _dead(ids: list[int] | None) -> tuple[str, tuple[Any, ...]]:
    """The condition for dead letters (all, or those of ``ids``, looked up by id)."""
    if ids is None:
        return "state = 'dead'", ()
    return "id = ANY(%s::bigint[]) AND state = 'dead'", ([i for i in ids if 0 < i <= BIGINT_MAX],)


__all__ = ["SCHEMA_VERSION", "PostgreSQLSchemaError", "PostgreSQLStore", "PostgreSQLUnavailableError"]
