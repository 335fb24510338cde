"""The Redis store: one outbox shared by every host of an app, on a Redis (6.2+) or Valkey server.

Atomicity
    Every outbox and coordination call is one Lua script (``redis_scripts.py``), so it runs alone on the server.
    A records transaction (``Engine._in_records``) is optimistic: each read the rule needs is a read-only script
    that returns its answer and the answer's SHA-1, and the commit script runs the same reads again and writes
    only if every digest still matches; otherwise nothing is written and the body runs again. So two processes
    verifying one send enqueue once, and a spool checkpoint moves once, without holding anything between calls.
    (``WATCH`` would do the same, at a round trip per watched read.)

The outbox
    A sorted set of due times per (provider, account), a hash per row carrying its lease token and deadline,
    and one sorted set of lease deadlines: a claim moves expired leases back to their due set, then takes the
    earliest due rows of the sets it may serve. A row is sent once in normal operation (only its token's holder
    may ack it), a retry is the row put back at a future score, and dead letters are a set of their own. Streams
    with consumer groups were the other choice: they deliver in arrival order only, so a retry at a future time
    would be a new entry and a second copy of the row to keep in step.

Durability
    At start the store reads the server's ``appendonly`` and ``appendfsync`` and logs a warning where a crash of
    the Redis host could lose reports it acknowledged (no AOF; or an fsync once a second). Managed servers that
    refuse ``CONFIG`` get a note instead. ``P format`` holds the data format version: a newer one is refused.

Outages
    Every call is bounded by the URL's ``connect_timeout`` and ``socket_timeout``, with one immediate retry of a
    connection found closed (a restarted server) and none after a timeout; errors come out as
    :class:`RedisStoreError`, an ``OSError``, so the spool keeps its lines and the reporter backs off. No message
    holds the URL or the password.

Processes
    The client and its connection pool belong to the process that built them (``_forks.ForkLocal``): a forked
    child builds its own on first use and never touches the parent's sockets.
"""

from __future__ import annotations

import json
import logging
import os
import random
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.commands.core import Script
from redis.retry import Retry

from .._forks import ForkLocal
from .base import HOUR, MINUTE, Backlog, CountRow, DeadLetter, OutboxItem, OutboxStats
from .engine import Engine, FigureKey, RecordsTransaction, T, foreign_reason
from .redis_scripts import SCRIPTS
from .redis_url import DEFAULT_PREFIX, RedisOptions, parse_url
from .rules import CounterKey, Report, Sent, Tally, Wanted, first_kept_hour, sendable

#: The data format this version writes; a server holding a newer one is refused.
FORMAT_VERSION = 1
#: A records transaction whose reads keep changing under it gives up after this many runs.
MAX_RUNS = 64
#: Entries deleted per prune script, so a large prune never holds the server for long.
PRUNE_BATCH = 1000
logger = logging.getLogger("flask_otp_conversion")


class RedisStoreError(OSError):
    """The Redis server refused a call or did not answer in time. The message names the server (host, port,
    database) and what went wrong, never the password."""


class RedisUnavailableError(RedisStoreError):
    """The server could not be reached or did not answer in time (down, restarting, loading its data)."""


def _t(value: float) -> str:
    """A time as Redis keeps it: the shortest decimal that reads back as the same double."""
    return repr(float(value))


def _row_id(row_id: int) -> str:
    return f"{row_id:016d}"


class RedisStore(Engine, ForkLocal):
    """A :class:`Store` on a Redis server, under a key prefix (several apps may share one server)."""

    def __init__(self, options: RedisOptions) -> None:
        self._options = options
        self._prefix = options.prefix
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._client: redis.Redis | None = None
        self._scripts: dict[str, Script] = {}
        self._checked = False
        self._watch_forks()
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

    def _after_fork_in_child(self) -> None:
        """The parent's sockets stay the parent's: the child's first call builds its own client."""
        self._lock = threading.Lock()
        self._client = None
        self._scripts = {}
        self._pid = os.getpid()

    def reopen(self) -> None:
        self._check_fork()
        self.close()

    def close(self) -> None:
        with self._lock:
            client, self._client, self._scripts = self._client, None, {}
        if client is not None:
            client.close()

    def _connection(self) -> tuple[redis.Redis, dict[str, Script]]:
        self._check_fork()
        with self._lock:
            client, scripts = self._client, self._scripts
            if client is None:
                client = self._client = self._new_client()
                scripts = self._scripts = {name: client.register_script(source) for name, source in SCRIPTS.items()}
        if not self._checked:
            with self._errors():
                self._check_server(client)
            self._checked = True
        return client, scripts

    def _new_client(self) -> redis.Redis:
        o = self._options
        tls: dict[str, Any] = {}
        for key, value in o.tls_options:
            tls[key] = value.lower() in ("1", "true", "yes") if key == "ssl_check_hostname" else value
        return redis.Redis(
            host=o.host,
            port=o.port,
            db=o.db,
            username=o.username,
            password=o.password,
            ssl=o.tls,
            socket_connect_timeout=o.connect_timeout,
            socket_timeout=o.socket_timeout,
            # One immediate retry of a connection found closed (a restarted server); none after a timeout, which
            # would double the wait and may repeat a script that ran.
            retry=Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
            decode_responses=True,
            client_name="flask-otp-conversion",
            **tls,
        )

    def _check_server(self, client: redis.Redis) -> None:
        """The data format (set on first use, a newer one refused) and the server's persistence settings."""
        key = self._prefix + "format"
        client.set(key, str(FORMAT_VERSION), nx=True)
        found = client.get(key)
        if not isinstance(found, str) or not found.isdigit():
            raise RuntimeError(f"{self._options.where} prefix {self._prefix!r}: {key!r} is not a format version")
        if int(found) > FORMAT_VERSION:
            raise RuntimeError(
                f"{self._options.where} prefix {self._prefix!r}: data format version {found} is newer than this "
                f"version of flask-otp-conversion supports ({FORMAT_VERSION}); upgrade the package"
            )
        warning = persistence_warning(client)
        if warning:
            logger.warning("otp-conversion Redis store %s: %s", self._options.where, warning)

    def _errors(self) -> _Errors:
        return _Errors(self._options)

    def _run(self, name: str, *args: str | int) -> Any:
        """Script ``name`` with the prefix and ``args``; errors as :class:`RedisStoreError`."""
        _, scripts = self._connection()
        with self._errors():
            return scripts[name](args=[self._prefix, *args])

    # Records ------------------------------------------------------------------------------------------

    def _in_records(self, body: Callable[[RecordsTransaction], T]) -> T:
        for run in range(MAX_RUNS):
            tx = _Transaction(self)
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
        found = self._run("spans", f"count-starts:{span}", f"count:{span}:", _t(since), _t(until))
        for i in range(0, len(found), 3):
            start, name, value = found[i : i + 3]
            kind, code, provider = name.split("|", 2)
            tally = rows.setdefault((int(start), provider, code), [0, 0, 0])
            tally["rvu".index(kind)] += int(value)
        return [CountRow(start, provider, code, *tally) for (start, provider, code), tally in sorted(rows.items())]

    def _unverified_sends(self, prefix: str, upper: str, since: float, limit: int) -> int:
        return int(self._run("unverified", prefix, upper, _t(since), limit))

    def _prefix_counts(self, since: float, until: float, length: int) -> list[tuple[str, int, int]]:
        found = self._run("prefix_counts", _t(since), _t(until), length)
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
        found = self._run("spans", "fig-hours", "fig:", _t(since), _t(until))
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
            "claim", provider, account or "", limit, _t(lease_until), _t(now), token, "0" if account is None else "1"
        )
        return [_item(row, token) for row in rows]

    def _ack(self, items: Sequence[OutboxItem], now: float) -> list[int]:
        return [int(i) for i in self._run("settle_held", "ack", _t(now), *_held(items))]

    def _release(self, items: Sequence[OutboxItem]) -> int:
        return len(self._run("settle_held", "release", "", *_held(items)))

    def _retry(self, item: OutboxItem, next_attempt_at: float, error: str) -> bool:
        return bool(self._run("retry", _row_id(item.id), item.lease_token, _t(next_attempt_at), error))

    def _dead_letter(self, item: OutboxItem, reason: str, now: float) -> bool:
        return bool(self._run("dead_letter", _row_id(item.id), item.lease_token, reason, _t(now)))

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
        return list(self._run("expire", _t(created_before), _t(now), *pairs))

    def _backlog(self) -> list[Backlog]:
        _, queues = self._run("stats", _t(0.0))
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
        return int(self._run("replay", _t(now), *([""] if ids is None else [_row_id(i) for i in ids])))

    def _outbox_stats(self, now: float) -> OutboxStats:
        (pending, in_flight, dead, reported, oldest), _ = self._run("stats", _t(now))
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
            ("sends", _t(before)),
            ("unverified", str(int(before // MINUTE) * MINUTE)),
            ("reported", _t(before)),
            ("dead", _t(before)),
            ("spans", str(first_kept_hour(before)), f"count-starts:{HOUR}", f"count:{HOUR}:", "3"),
            ("spans", _t(minutes_before), f"count-starts:{MINUTE}", f"count:{MINUTE}:", "3"),
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
        return bool(self._run("lease", name, owner, _t(expires_at), _t(now)))

    def _take_slots(self, name: str, want: int, interval: float, horizon: float, now: float) -> tuple[float, int]:
        first, count = self._run("take_slots", name, want, _t(interval), _t(horizon), _t(now))
        return float(first), int(count)


class _Errors:
    """Turns redis-py's errors into :class:`RedisStoreError`, without the password or the traceback's chain."""

    def __init__(self, options: RedisOptions) -> None:
        self._options = options

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if exc is None or not isinstance(exc, redis.RedisError):
            return
        text = str(exc)
        if self._options.password:
            text = text.replace(self._options.password, "***")
        unavailable = (
            isinstance(exc, (redis.ConnectionError, redis.TimeoutError))
            and not isinstance(exc, redis.AuthenticationError)
            and not _refused_certificate(exc)  # a TLS set-up to fix, not an outage to wait out
        )
        kind = RedisUnavailableError if unavailable else RedisStoreError
        raise kind(f"Redis at {self._options.where}: {type(exc).__name__}: {text[:300]}") from None


def _refused_certificate(exc: BaseException) -> bool:
    """Whether the error comes from a server certificate that failed verification."""
    seen: BaseException | None = exc
    for _ in range(8):  # the chain redis-py builds is short; never loop on a cycle
        if seen is None:
            return False
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def persistence_warning(client: redis.Redis) -> str | None:
    """What the server could lose of what it acknowledged (evicted under memory pressure, or lost in a crash),
    from its ``maxmemory-policy``, ``appendonly`` and ``appendfsync``; None when nothing. A server that refuses
    ``CONFIG GET`` (managed services) gets a note, not an error."""
    try:
        appendonly = client.config_get("appendonly").get("appendonly")
        fsync = client.config_get("appendfsync").get("appendfsync")
        eviction = client.config_get("maxmemory-policy").get("maxmemory-policy")
    except redis.ResponseError:
        logger.info(
            "otp-conversion Redis store: the server refuses CONFIG GET, so its persistence settings are unknown; "
            "reports it acknowledged survive a crash only with appendonly yes and appendfsync always"
        )
        return None
    if eviction not in (None, "noeviction"):
        return (
            f"maxmemory-policy {eviction}: under memory pressure Redis may evict pending reports and sends "
            "(set noeviction for the store's server)"
        )
    if appendonly != "yes":
        return (
            "appendonly is off: a restart or crash of Redis loses every report written since its last snapshot "
            "(set appendonly yes and appendfsync always)"
        )
    if fsync == "everysec":
        return (
            "appendfsync everysec: a power loss or kernel crash of the Redis host may lose the last second of "
            "reports (appendfsync always loses nothing acknowledged)"
        )
    if fsync != "always":
        return f"appendfsync {fsync}: a power loss or kernel crash of the Redis host may lose recent reports"
    return None


class _Transaction:
    """``engine.RecordsTransaction`` on Redis: reads run at once (each a script returning its answer and its
    digest), writes are kept, and the commit script checks every digest before it makes them."""

    def __init__(self, store: RedisStore) -> None:
        self._store = store
        self.checks: list[list[Any]] = []
        self.writes: list[list[str]] = []

    def _read(self, queries: list[list[Any]]) -> list[list[Any]]:
        reply = self._store._run("read", json.dumps(queries))
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
        self.writes.append(["send", provider, message_id, phone, _t(sent_at), account])
        return True

    def find_sends(self, wanted: Wanted) -> list[Sent]:
        queries: list[list[Any]] = []
        if wanted.ids:
            queries.append(["ids", wanted.provider, sorted(wanted.ids)])
        if wanted.phones:
            ranges = [[phone, _t(lo), _t(hi)] for phone, (lo, hi) in sorted(wanted.phones.items())]
            queries.append(["phones", ranges])
        return self._sends(queries) if queries else []

    def mark_verified(self, verified: Sequence[tuple[int, float]]) -> None:
        self.writes.extend(["verify", str(key), _t(at)] for key, at in verified)

    def find_unsettled(
        self, provider: str, account: str | None, sent_after: float, sent_before: float, limit: int
    ) -> list[Sent]:
        return self._sends([["unsettled", provider, account, _t(sent_after), _t(sent_before), str(limit)]])

    def mark_settled(self, keys: Sequence[int]) -> None:
        self.writes.extend(["settle", str(key)] for key in keys)

    def insert_reports(self, reports: Sequence[Report]) -> None:
        self.writes.extend(
            [
                "report",
                r.message_id,
                r.phone,
                r.provider,
                _t(r.sent_at),
                _t(r.verified_at),
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
]
