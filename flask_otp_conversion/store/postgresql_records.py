"""The PostgreSQL store's records transaction: sends, verifications, reports and counters written through one
cursor inside one transaction (``PostgreSQLStore._in_records``; its module docstring says in which order rows
are locked). Every lookup is by index whatever the table's statistics say: a queue's tables change faster than
ANALYZE follows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import psycopg

from .postgresql_text import dec, enc
from .rules import CounterKey, Report, Sent, Tally, Wanted

#: The largest value of a bigint column: an id or position beyond it is in no table.
BIGINT_MAX = (1 << 63) - 1
_SENT_COLUMNS = "id, provider, message_id, phone, sent_at, verified_at, account, settled"


class PostgreSQLTransaction:
    """``engine.RecordsTransaction`` on a cursor inside one transaction (``postgresql.py``, "Transactions")."""

    __slots__ = ("cur",)

    def __init__(self, cur: psycopg.Cursor[Any]) -> None:
        self.cur = cur

    def insert_send(self, *, provider: str, message_id: str, phone: str, sent_at: float, account: str) -> bool:
        self.cur.execute(
            "INSERT INTO otp_sends (provider, message_id, phone, sent_at, account) VALUES (%s, %s, %s, %s, %s)"
            " ON CONFLICT (provider, message_id) DO NOTHING",
            (enc(provider), enc(message_id), phone, sent_at, enc(account)),
        )
        return self.cur.rowcount > 0

    def find_sends(self, wanted: Wanted) -> list[Sent]:
        parts: list[str] = []
        params: list[Any] = []
        # Each candidate through a LATERAL lookup (OFFSET 0 keeps the planner from turning it back into a join)
        # and the rows by ``id = ANY``: index scans whatever the statistics say. A join here became a scan of
        # every send when the table had grown since the last ANALYZE.
        if wanted.ids:
            parts.append(
                "SELECT s.id FROM unnest(%s::text[]) AS m(message_id) CROSS JOIN LATERAL"
                " (SELECT id FROM otp_sends WHERE provider = %s AND message_id = m.message_id OFFSET 0) AS s"
            )
            params += [[enc(message_id) for message_id in wanted.ids], enc(wanted.provider)]
        if wanted.phones:
            phones = list(wanted.phones.items())
            parts.append(
                "SELECT s.id FROM unnest(%s::text[], %s::float8[], %s::float8[]) AS w(phone, lo, hi) CROSS JOIN"
                " LATERAL (SELECT id FROM otp_sends WHERE phone = w.phone AND sent_at >= w.lo AND sent_at <= w.hi"
                " OFFSET 0) AS s"
            )
            params += [[phone for phone, _ in phones], [span[0] for _, span in phones], [span[1] for _, span in phones]]
        if not parts:
            return []
        # One statement, so the candidates are locked in one order (by id) whatever mix a batch asks for.
        self.cur.execute(
            f"SELECT {_SENT_COLUMNS} FROM otp_sends WHERE id = ANY(ARRAY({' UNION ALL '.join(parts)}))"  # noqa: S608
            " ORDER BY id FOR UPDATE",
            params,
        )
        return [_sent(row) for row in self.cur.fetchall()]

    def mark_verified(self, verified: Sequence[tuple[int, float]]) -> None:
        keys = [key for key, _ in verified]
        self.cur.execute(
            "UPDATE otp_sends AS s SET verified_at = v.at FROM unnest(%s::bigint[], %s::float8[]) AS v(id, at)"
            " WHERE s.id = ANY(%s::bigint[]) AND s.id = v.id",  # ANY: by the primary key, whatever the statistics
            (keys, [at for _, at in verified], keys),
        )

    def find_unsettled(
        self, provider: str, account: str | None, sent_after: float, sent_before: float, limit: int
    ) -> list[Sent]:
        mine, params = ("", ()) if account is None else (" AND account = %s", (enc(account),))
        # SKIP LOCKED: a send being verified right now is not settled as unverified; two settlers split the rest.
        self.cur.execute(
            f"SELECT {_SENT_COLUMNS} FROM otp_sends WHERE provider = %s AND sent_at >= %s AND sent_at < %s"  # noqa: S608
            f" AND verified_at IS NULL AND NOT settled{mine} ORDER BY sent_at, id LIMIT %s FOR UPDATE SKIP LOCKED",
            (enc(provider), sent_after, sent_before, *params, min(limit, BIGINT_MAX)),
        )
        return [_sent(row) for row in self.cur.fetchall()]

    def mark_settled(self, keys: Sequence[int]) -> None:
        self.cur.execute("UPDATE otp_sends SET settled = true WHERE id = ANY(%s::bigint[])", (list(keys),))

    def insert_reports(self, reports: Sequence[Report]) -> None:
        # ORDER BY the input's position: ids are drawn in that order.
        self.cur.execute(
            "INSERT INTO otp_outbox (message_id, phone, provider, sent_at, verified_at, created_at, state,"
            " attempts, next_attempt_at, account, converted)"
            " SELECT m, p, pr, s, v, v, 'pending', 0, v, a, c FROM unnest(%s::text[], %s::text[], %s::text[],"
            " %s::float8[], %s::float8[], %s::text[], %s::boolean[]) WITH ORDINALITY AS r(m, p, pr, s, v, a, c, n)"
            " ORDER BY n",
            (
                [enc(r.message_id) for r in reports],
                [r.phone for r in reports],
                [enc(r.provider) for r in reports],
                [r.sent_at for r in reports],
                [r.verified_at for r in reports],
                [enc(r.account) for r in reports],
                [r.converted for r in reports],
            ),
        )

    def add_counts(self, counters: Mapping[CounterKey, Tally]) -> None:
        keys = sorted(counters)  # one lock order for every writer
        tallies = [counters[key] for key in keys]
        self.cur.execute(
            "INSERT INTO otp_counters (start, span, provider, calling_code, requested, verified, unmatched)"
            " SELECT * FROM unnest(%s::bigint[], %s::int[], %s::text[], %s::text[], %s::bigint[], %s::bigint[],"
            " %s::bigint[]) ON CONFLICT (span, start, provider, calling_code) DO UPDATE SET"
            " requested = otp_counters.requested + excluded.requested,"
            " verified = otp_counters.verified + excluded.verified,"
            " unmatched = otp_counters.unmatched + excluded.unmatched",
            (
                [key[0] for key in keys],
                [key[1] for key in keys],
                [enc(key[2]) for key in keys],
                [key[3] for key in keys],
                [t.requested for t in tallies],
                [t.verified for t in tallies],
                [t.unmatched for t in tallies],
            ),
        )

    def spool_position(self, name: str) -> int:
        # An upsert that changes nothing but locks the row (creating it if missing) and returns it: a second
        # transaction reading the same position waits here, then sees the moved one.
        self.cur.execute(
            "INSERT INTO otp_spools (name, position) VALUES (%s, 0)"
            " ON CONFLICT (name) DO UPDATE SET position = otp_spools.position RETURNING position",
            (enc(name),),
        )
        row = self.cur.fetchone()
        return 0 if row is None else int(row[0])

    def set_spool_position(self, name: str, position: int) -> None:
        if position > BIGINT_MAX:
            raise ValueError("spool position is out of range")
        self.cur.execute(
            "INSERT INTO otp_spools (name, position) VALUES (%s, %s)"
            " ON CONFLICT (name) DO UPDATE SET position = excluded.position",
            (enc(name), position),
        )


def _sent(row: Sequence[Any]) -> Sent:
    key, provider, message_id, phone, sent_at, verified_at, account, settled = row
    return Sent(int(key), dec(provider), dec(message_id), phone, float(sent_at), verified_at, dec(account), settled)


__all__ = ["BIGINT_MAX", "PostgreSQLTransaction"]
