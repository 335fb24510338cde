"""The Redis store's records transaction: reads run at once as read-only scripts that return their answer and
its digest, writes are kept, and one commit script writes them only if every digest still matches.

``RedisStore._in_records`` runs the body again when the commit finds a read changed: so two processes verifying
one send enqueue once, and a spool checkpoint moves once, without holding anything between calls. (``WATCH``
would do the same, at a round trip per watched read.) The scripts are ``redis_scripts_records.py``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .redis_scripts import time_arg
from .rules import CounterKey, Report, Sent, Tally, Wanted


class RedisTransaction:
    """``engine.RecordsTransaction`` on Redis: reads run at once (each a script returning its answer and its
    digest), writes are kept, and the commit script checks every digest before it makes them."""

    def __init__(self, run: Callable[..., Any]) -> None:
        self._run = run  # RedisClient.run
        self.checks: list[list[Any]] = []
        self.writes: list[list[str]] = []

    def _read(self, queries: list[list[Any]]) -> list[list[Any]]:
        reply = self._run("read", json.dumps(queries))
        answers = []
        for n, query in enumerate(queries):
            digest, payload = reply[2 * n], reply[2 * n + 1]
            self.checks.append([query, digest])
            answer = json.loads(payload)
            answers.append(answer if isinstance(answer, list) else [])  # cjson writes an empty array as {}
        return answers

    def _sends(self, queries: list[list[Any]]) -> list[Sent]:
        return [_sent(row) for answer in self._read(queries) for row in answer]

    def insert_send(self, *, provider: str, message_id: str, phone: str, sent_at: float, account: str) -> bool:
        if self._sends([["ids", provider, [message_id]]]):
            return False
        self.writes.append(["send", provider, message_id, phone, time_arg(sent_at), account])
        return True

    def find_sends(self, wanted: Wanted) -> list[Sent]:
        queries: list[list[Any]] = []
        if wanted.ids:
            queries.append(["ids", wanted.provider, sorted(wanted.ids)])
        if wanted.phones:
            ranges = [[phone, time_arg(lo), time_arg(hi)] for phone, (lo, hi) in sorted(wanted.phones.items())]
            queries.append(["phones", ranges])
        return self._sends(queries) if queries else []

    def mark_verified(self, verified: Sequence[tuple[int, float]]) -> None:
        self.writes.extend(["verify", str(key), time_arg(at)] for key, at in verified)

    def find_unsettled(
        self, provider: str, account: str | None, sent_after: float, sent_before: float, limit: int
    ) -> list[Sent]:
        return self._sends([["unsettled", provider, account, time_arg(sent_after), time_arg(sent_before), str(limit)]])

    def mark_settled(self, keys: Sequence[int]) -> None:
        self.writes.extend(["settle", str(key)] for key in keys)

    def insert_reports(self, reports: Sequence[Report]) -> None:
        self.writes.extend(
            [
                "report",
                r.message_id,
                r.phone,
                r.provider,
                time_arg(r.sent_at),
                time_arg(r.verified_at),
                r.account,
                "1" if r.converted else "0",
            ]
            for r in reports
        )

    def add_counts(self, counters: Mapping[CounterKey, Tally]) -> None:
        self.writes.extend(
            ["count", str(start), str(span), provider, code, str(t.requested), str(t.verified), str(t.unmatched)]
            for (start, span, provider, code), t in counters.items()
        )

    def spool_position(self, name: str) -> int:
        return int(self._read([["spool", name]])[0][0])

    def set_spool_position(self, name: str, position: int) -> None:
        self.writes.append(["spool", name, str(position)])


def _sent(row: Sequence[str]) -> Sent:
    seq, provider, message_id, phone, sent_at, verified_at, account, settled = row
    return Sent(
        int(seq),
        provider,
        message_id,
        phone,
        float(sent_at),
        float(verified_at) if verified_at else None,
        account,
        settled == "1",
    )
