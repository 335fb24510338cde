"""The Redis store: one outbox shared by every host of an app, on a Redis (6.2+) or Valkey server.

Atomicity
    Every outbox and coordination call is one Lua script (``redis_scripts.py``), so it runs alone on the server.
    A records transaction (``Engine._in_records``) is optimistic: each read the rule needs is a read-only script
    that returns its answer and the answer's SHA-1, and the commit script runs the same reads again and writes
    only if every digest still matches; otherwise nothing is written and the body runs again
    (``redis_records.py``).

The outbox
    A sorted set of due times per (provider, account), a hash per row carrying its lease token and deadline,
    and one sorted set of lease deadlines: a claim moves expired leases back to their due set, then takes the
    earliest due rows of the sets it may serve. A row is sent once in normal operation (only its token's holder
    may ack it), a retry is the row put back at a future score, and dead letters are a set of their own. Streams
    with consumer groups were the other choice: they deliver in arrival order only, so a retry at a future time
    would be a new entry and a second copy of the row to keep in step.

Connections
    One client per process, every call bounded by the URL's timeouts, outages as ``RedisUnavailableError`` and
    the server's data format and persistence checked on first use: ``redis_connections.py``. The records
    transaction is ``redis_records.py``; the scripts, ``redis_scripts.py``.
"""

from __future__ import annotations

import json
import logging
import random
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import redis
from redis.commands.core import Script

from .base import HOUR, MINUTE, Backlog, CountRow, DeadLetter, OutboxItem, OutboxStats
from .engine import Engine, FigureKey, RecordsTransaction, T, foreign_reason
from .redis_connections import (
    FORMAT_VERSION,
    Errors,
    RedisClient,
    RedisStoreError,
    RedisUnavailableError,
    persistence_warning,
)
from .redis_records import RedisTransaction
from .redis_scripts import time_arg
from .redis_url import DEFAULT_PREFIX, RedisOptions, parse_url
from .rules import first_kept_hour, sendable

#: A records transaction whose reads keep changing under it gives up after this many runs.
MAX_RUNS = 64
#: Entries deleted per prune script, so a large prune never holds the server for long.
PRUNE_BATCH = 1000
logger = logging.getLogger("flask_otp_conversion")


def _row_id(row_id: int) -> str:
    return f"{row_id:016d}"


class RedisStore(Engine):
    """A :class:`Store` on a Redis server, under a key prefix (several apps may share one server)."""

    def __init__(self, options: RedisOptions) -> None:
        self._options = options
        self._prefix = options.prefix
        self._client = RedisClient(options)
        try:
            self._connection()  # a wrong password or a newer data format fails here, at init_app
        except RedisUnavailableError as exc:  # an outage at start: the spool holds verifications until it answers
            logger.error("otp-conversion Redis store: %s; sends fail and verifications wait until it answers", exc)

    @classmethod
    def from_url(cls, url: str) -> RedisStore:
        return cls(parse_url(url))

    def __repr__(self) -> str:
        return f"RedisStore({self._options.where!r}, prefix={self._prefix!r})"

    @property
    def prefix(self) -> str:
        return self._prefix

    # Connections --------------------------------------------------------------------------------------

    def reopen(self) -> None:
        self._client.reopen()

    def close(self) -> None:
        self._client.close()

    def _connection(self) -> tuple[redis.Redis, dict[str, Script]]:
        return self._client.connection()

    def _errors(self) -> Errors:
        return self._client.errors()

    def _run(self, name: str, *args: str | int) -> Any:
        """Script ``name`` with the prefix and ``args``; errors as :class:`RedisStoreError`."""
        return self._client.run(name, *args)

    # Records ------------------------------------------------------------------------------------------

    def _in_records(self, body: Callable[[RecordsTransaction], T]) -> T:
        for run in range(MAX_RUNS):
            tx = RedisTransaction(self._run)
            result = body(tx)
            if not tx.writes or self._run("commit", json.dumps(tx.checks), json.dumps(tx.writes)):
                return result
            if run >= 2:  # writers keep colliding on the same sends: let one of them through
                time.sleep(random.uniform(0, 0.001 * run))
        raise RedisStoreError(f"{self._options.where}: a records transaction collided {MAX_RUNS} times; try again")

    def _spool_position(self, name: str) -> int:
        client, _ = self._connection()
        with self._errors():
            value = client.hget(self._prefix + "spools", name)
        return int(value) if value else 0

    def _forget_spool(self, name: str) -> None:
        client, _ = self._connection()
        with self._errors():
            client.hdel(self._prefix + "spools", name)

    def _counts(self, since: float, until: float, span: int) -> list[CountRow]:
        rows: dict[tuple[int, str, str], list[int]] = {}
        found = self._run("spans", f"count-starts:{span}", f"count:{span}:", time_arg(since), time_arg(until))
        for i in range(0, len(found), 3):
            start, name, value = found[i : i + 3]
            kind, code, provider = name.split("|", 2)
            tally = rows.setdefault((int(start), provider, code), [0, 0, 0])
            tally["rvu".index(kind)] += int(value)
        return [CountRow(start, provider, code, *tally) for (start, provider, code), tally in sorted(rows.items())]

    def _unverified_sends(self, prefix: str, upper: str, since: float, limit: int) -> int:
        return int(self._run("unverified", prefix, upper, time_arg(since), limit))

    def _prefix_counts(self, since: float, until: float, length: int) -> list[tuple[str, int, int]]:
        found = self._run("prefix_counts", time_arg(since), time_arg(until), length)
        return [(str(found[i]), int(found[i + 1]), int(found[i + 2])) for i in range(0, len(found), 3)]

    def _add_figures(self, increments: Mapping[FigureKey, int]) -> None:
        client, _ = self._connection()
        with self._errors():
            pipe = client.pipeline(transaction=True)
            for (hour, provider, name), value in increments.items():
                pipe.hincrby(f"{self._prefix}fig:{hour}", f"{name}|{provider}", value)
                pipe.zadd(self._prefix + "fig-hours", {str(hour): hour})
            pipe.execute()

    def _figures(self, since: float, until: float) -> list[tuple[int, str, str, int]]:
        found = self._run("spans", "fig-hours", "fig:", time_arg(since), time_arg(until))
        out = []
        for i in range(0, len(found), 3):
            start, key, value = found[i : i + 3]
            name, provider = key.split("|", 1)
            out.append((int(start), provider, name, int(value)))
        return out

    # Outbox -------------------------------------------------------------------------------------------

    def _claim(
        self, provider: str, account: str | None, limit: int, lease_until: float, now: float
    ) -> list[OutboxItem]:
        token = uuid.uuid4().hex
        rows = self._run(
            "claim",
            provider,
            account or "",
            limit,
            time_arg(lease_until),
            time_arg(now),
            token,
            "0" if account is None else "1",
        )
        return [_item(row, token) for row in rows]

    def _ack(self, items: Sequence[OutboxItem], now: float) -> list[int]:
        return [int(i) for i in self._run("settle_held", "ack", time_arg(now), *_held(items))]

    def _release(self, items: Sequence[OutboxItem]) -> int:
        return len(self._run("settle_held", "release", "", *_held(items)))

    def _retry(self, item: OutboxItem, next_attempt_at: float, error: str) -> bool:
        return bool(self._run("retry", _row_id(item.id), item.lease_token, time_arg(next_attempt_at), error))

    def _dead_letter(self, item: OutboxItem, reason: str, now: float) -> bool:
        return bool(self._run("dead_letter", _row_id(item.id), item.lease_token, reason, time_arg(now)))

    def _expire_foreign(self, provider: str, account: str, created_before: float, now: float) -> list[str]:
        client, _ = self._connection()
        with self._errors():
            names = client.hgetall(self._prefix + "queue-names")
        pairs: list[str] = []
        for queue, name in names.items():
            assert isinstance(queue, str) and isinstance(name, str)  # decode_responses
            owner, owner_account = json.loads(name)
            if not sendable(owner, owner_account, provider=provider, account=account):
                pairs += [queue, foreign_reason(owner, owner_account)]
        if not pairs:
            return []
        return list(self._run("expire", time_arg(created_before), time_arg(now), *pairs))

    def _backlog(self) -> list[Backlog]:
        _, queues = self._run("stats", time_arg(0.0))
        backlog = []
        for name, pending, oldest in queues:
            provider, account = json.loads(name)
            backlog.append(Backlog(provider, account, int(pending), float(oldest)))
        return sorted(backlog, key=lambda b: (b.provider, b.account))

    def _dead_letters(self, limit: int, ids: list[int] | None) -> list[DeadLetter]:
        if not limit:
            return []
        rows = self._run("dead_letters", limit, *([""] if ids is None else [_row_id(i) for i in ids]))
        dead = [_dead_letter(row) for row in rows]
        dead.sort(key=lambda d: (d.dead_at, d.id), reverse=True)
        return dead[:limit]

    def _replay_dead_letters(self, ids: list[int] | None, now: float) -> int:
        return int(self._run("replay", time_arg(now), *([""] if ids is None else [_row_id(i) for i in ids])))

    def _outbox_stats(self, now: float) -> OutboxStats:
        (pending, in_flight, dead, reported, oldest), _ = self._run("stats", time_arg(now))
        return OutboxStats(
            pending=int(pending),
            in_flight=int(in_flight),
            dead=int(dead),
            reported=int(reported),
            oldest_pending_at=float(oldest) if oldest else None,
        )

    def _prune(self, before: float, minutes_before: float) -> int:
        """Script by script, :data:`PRUNE_BATCH` entries each, so other clients keep being served."""
        steps: list[tuple[str, ...]] = [
            ("sends", time_arg(before)),
            ("unverified", str(int(before // MINUTE) * MINUTE)),
            ("reported", time_arg(before)),
            ("dead", time_arg(before)),
            ("spans", str(first_kept_hour(before)), f"count-starts:{HOUR}", f"count:{HOUR}:", "3"),
            ("spans", time_arg(minutes_before), f"count-starts:{MINUTE}", f"count:{MINUTE}:", "3"),
            ("spans", str(first_kept_hour(before)), "fig-hours", "fig:", "1"),
        ]
        removed = 0
        for what, bound, *rest in steps:
            while True:
                gone, looked = self._run("prune", what, bound, PRUNE_BATCH, *rest)
                removed += int(gone)
                if int(looked) < PRUNE_BATCH:
                    break
        return removed

    # Coordination -------------------------------------------------------------------------------------

    def _get_flag(self, name: str) -> str | None:
        client, _ = self._connection()
        with self._errors():
            value = client.hget(self._prefix + "flags", name)
        return value if isinstance(value, str) else None

    def _set_flag(self, name: str, value: str | None) -> None:
        client, _ = self._connection()
        with self._errors():
            if value is None:
                client.hdel(self._prefix + "flags", name)
            else:
                client.hset(self._prefix + "flags", name, value)

    def _acquire_lease(self, name: str, owner: str, expires_at: float, now: float) -> bool:
        return bool(self._run("lease", name, owner, time_arg(expires_at), time_arg(now)))

    def _take_slots(self, name: str, want: int, interval: float, horizon: float, now: float) -> tuple[float, int]:
        first, count = self._run("take_slots", name, want, time_arg(interval), time_arg(horizon), time_arg(now))
        return float(first), int(count)


def _item(row: Sequence[str], token: str) -> OutboxItem:
    row_id, message_id, phone, provider, sent_at, verified_at, created_at, attempts, error, account, converted = row
    return OutboxItem(
        int(row_id),
        message_id,
        phone,
        provider,
        float(sent_at),
        float(verified_at),
        float(created_at),
        int(attempts),
        error or None,
        token,
        account,
        converted != "0",
    )


def _dead_letter(row: Sequence[str]) -> DeadLetter:
    row_id, message_id, phone, provider, _sent_at, verified_at, created_at, attempts, _e, account, converted = row[:11]
    reason, dead_at = row[11], row[12]
    return DeadLetter(
        int(row_id),
        message_id,
        phone,
        provider,
        float(verified_at),
        float(created_at),
        int(attempts),
        reason,
        float(dead_at),
        account,
        converted != "0",
    )


def _held(items: Sequence[OutboxItem]) -> list[str]:
    return [value for item in items for value in (_row_id(item.id), item.lease_token)]


__all__ = [
    "DEFAULT_PREFIX",
    "FORMAT_VERSION",
    "RedisOptions",
    "RedisStore",
    "RedisStoreError",
    "RedisUnavailableError",
    "parse_url",
    "persistence_warning",
]
