"""The SQLite store's records transaction: sends, verifications, reports and counters written on one
connection inside one ``BEGIN IMMEDIATE`` transaction (``SQLiteStore._in_records``).

A batch of verifications is a handful of statements however long it is: the candidate sends in one query per
kind (by id; by phone and window), the rule in Python (``rules.match``), then one ``executemany`` per kind of
write, counters aggregated to one upsert per row.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

from .rules import CounterKey, Report, Sent, Tally, Wanted

_BUMP = """INSERT INTO tallies (start, span, provider, calling_code, requested, verified, unmatched)
    VALUES (?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (span, start, provider, calling_code) DO UPDATE SET
        requested = requested + excluded.requested,
        verified = verified + excluded.verified,
        unmatched = unmatched + excluded.unmatched"""

_SENT_COLUMNS = "messages.id, provider, message_id, phone, sent_at, verified_at, account, settled"


class SQLiteTransaction:
    """``engine.RecordsTransaction`` on a connection in a ``BEGIN IMMEDIATE`` transaction: the write lock is
    held from the first read, so the sends read cannot change before the effects are written."""

    __slots__ = ("conn",)

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def insert_send(self, *, provider: str, message_id: str, phone: str, sent_at: float, account: str) -> bool:
        return bool(
            self.conn.execute(
                "INSERT INTO messages (provider, message_id, phone, sent_at, account) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (provider, message_id) DO NOTHING",
                (provider, message_id, phone, sent_at, account),
            ).rowcount
        )

    def find_sends(self, wanted: Wanted) -> list[Sent]:
        found: list[Sent] = []
        if wanted.ids:
            rows = self.conn.execute(
                f"SELECT {_SENT_COLUMNS} FROM messages WHERE provider = ?"  # noqa: S608
                " AND message_id IN (SELECT value FROM json_each(?))",
                (wanted.provider, json.dumps(list(wanted.ids))),
            ).fetchall()
            found.extend(_sent(row) for row in rows)
        if wanted.phones:
            # CROSS JOIN keeps the phone list as the outer loop: one index range of messages per phone.
            ranges = [[phone, earliest, latest] for phone, (earliest, latest) in wanted.phones.items()]
            rows = self.conn.execute(
                f"SELECT {_SENT_COLUMNS} FROM json_each(?) AS w CROSS JOIN messages"  # noqa: S608
                " ON messages.phone = json_extract(w.value, '$[0]')"
                " AND messages.sent_at >= json_extract(w.value, '$[1]')"
                " AND messages.sent_at <= json_extract(w.value, '$[2]')",
                (json.dumps(ranges),),
            ).fetchall()
            found.extend(_sent(row) for row in rows)
        return found

    def mark_verified(self, verified: Sequence[tuple[int, float]]) -> None:
        self.conn.executemany("UPDATE messages SET verified_at = ? WHERE id = ?", [(at, key) for key, at in verified])

    def find_unsettled(
        self, provider: str, account: str | None, sent_after: float, sent_before: float, limit: int
    ) -> list[Sent]:
        mine, params = ("", ()) if account is None else (" AND account = ?", (account,))
        rows = self.conn.execute(
            f"SELECT {_SENT_COLUMNS} FROM messages WHERE provider = ? AND sent_at >= ? AND sent_at < ?"  # noqa: S608
            f" AND verified_at IS NULL AND settled = 0{mine} ORDER BY sent_at, id LIMIT ?",
            (provider, sent_after, sent_before, *params, limit),
        ).fetchall()
        return [_sent(row) for row in rows]

    def mark_settled(self, keys: Sequence[int]) -> None:
        self.conn.executemany("UPDATE messages SET settled = 1 WHERE id = ?", [(key,) for key in keys])

    def insert_reports(self, reports: Sequence[Report]) -> None:
        self.conn.executemany(
            "INSERT INTO outbox (message_id, phone, provider, sent_at, verified_at, created_at, state, attempts,"
            " next_attempt_at, account, converted) VALUES (?, ?, ?, ?, ?, ?, 'pending', 0, ?, ?, ?)",
            [
                (
                    r.message_id,
                    r.phone,
                    r.provider,
                    r.sent_at,
                    r.verified_at,
                    r.verified_at,
                    r.verified_at,
                    r.account,
                    int(r.converted),
                )
                for r in reports
            ],
        )

    def add_counts(self, counters: Mapping[CounterKey, Tally]) -> None:
        self.conn.executemany(
            _BUMP, [(*key, tally.requested, tally.verified, tally.unmatched) for key, tally in counters.items()]
        )

    def spool_position(self, name: str) -> int:
        row = self.conn.execute("SELECT position FROM spools WHERE name = ?", (name,)).fetchone()
        return 0 if row is None else int(row[0])

    def set_spool_position(self, name: str, position: int) -> None:
        self.conn.execute(
            "INSERT INTO spools (name, position) VALUES (?, ?)"
            " ON CONFLICT (name) DO UPDATE SET position = excluded.position",
            (name, position),
        )


def _sent(row: Sequence[Any]) -> Sent:
    key, provider, message_id, phone, sent_at, verified_at, account, settled = row
    return Sent(key, provider, message_id, phone, sent_at, verified_at, account, bool(settled))
