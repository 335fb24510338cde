"""Stores for sends, verifications, counters and the outbox; ``open_store(url)`` picks one by URL.

``base.py`` is the contract, ``rules.py`` the decisions every engine shares, ``engine.py`` what an engine
implements; ``sqlite.py`` and ``memory.py`` are the engines, ``spool.py`` fronts them on the verify path."""

from __future__ import annotations

import re
from urllib.parse import parse_qsl

from .base import (
    Coordination,
    CountRow,
    DeadLetter,
    Outbox,
    OutboxItem,
    OutboxStats,
    PrefixCount,
    Records,
    Store,
    VerifyOutcome,
)
from .memory import MemoryStore
from .postgresql_url import SCHEMES as POSTGRESQL_SCHEMES
from .postgresql_url import driver_missing as postgresql_driver_missing
from .postgresql_url import parse_url as parse_postgresql_url
from .redis_url import driver_missing as redis_driver_missing
from .redis_url import parse_url as parse_redis_url
from .sqlite import SYNCHRONOUS_MODES, SQLiteStore

_SQLITE_PREFIX = "sqlite:///"
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*)://")
_USAGE = "use 'sqlite:////absolute/path.db' or 'memory://'"


def open_store(url: str) -> Store:
    """The store a URL names.

    ``sqlite:///PATH[?synchronous=normal|full&busy_timeout=SECONDS]`` (SQLAlchemy style: everything after
    ``sqlite:///`` is the path, so an absolute path gives four slashes) or ``memory://``. Error messages
    name at most the scheme or a query key, never the URL: it may hold a password.
    """
    if not isinstance(url, str):
        raise ValueError(f"store URL must be a string, not {type(url).__name__}")
    if url.startswith(_SQLITE_PREFIX):
        return _open_sqlite(url[len(_SQLITE_PREFIX) :])
    if url == "memory://":
        return MemoryStore()
    match = _SCHEME.match(url)
    if match is None:
        raise ValueError(f"store URL has no recognisable scheme; {_USAGE}")
    scheme = match.group(1).lower()
    if scheme in POSTGRESQL_SCHEMES:
        return _open_postgresql(url)
    if scheme in ("redis", "rediss"):
        return _open_redis(url)
    if scheme == "sqlite":
        raise ValueError(f"a sqlite store URL needs three slashes before the path; {_USAGE}")
    if scheme == "memory":
        raise ValueError("a memory store URL takes nothing after 'memory://'")
    raise ValueError(f"unsupported store URL scheme {scheme!r}; {_USAGE}")


def _open_redis(url: str) -> Store:
    """``redis://`` or ``rediss://`` (``redis_url.py`` lists the options); the driver is imported here only, so
    that it stays an optional extra."""
    options = parse_redis_url(url)
    missing = redis_driver_missing()
    if missing is not None:
        raise ValueError(missing)
    from .redis import RedisStore

    return RedisStore(options)


def _open_postgresql(url: str) -> Store:
    """``postgresql://`` or ``postgresql+psycopg://`` (``postgresql_url.py`` lists the options); the driver is
    imported here only, so that it stays an optional extra."""
    options = parse_postgresql_url(url)
    missing = postgresql_driver_missing()
    if missing is not None:
        raise ValueError(missing)
    from .postgresql import PostgreSQLStore

    return PostgreSQLStore(options)


def _open_sqlite(rest: str) -> Store:
    path, _, query = rest.partition("?")
    if not path:
        raise ValueError(f"a sqlite store URL needs a file path; {_USAGE}")
    if path == ":memory:":
        # A per-thread connection would give every thread its own empty database: same semantics in memory.
        return MemoryStore()
    synchronous = "normal"
    busy_timeout = 5.0
    try:
        options = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise ValueError("the sqlite store URL's query string is malformed") from None
    for key, value in options:
        if key == "synchronous":
            synchronous = value.lower()
            if synchronous not in SYNCHRONOUS_MODES:
                allowed = ", ".join(SYNCHRONOUS_MODES)
                raise ValueError(f"sqlite store URL: synchronous must be one of {allowed}")
        elif key == "busy_timeout":
            try:
                busy_timeout = float(value)
            except ValueError:
                raise ValueError("sqlite store URL: busy_timeout must be a number of seconds") from None
            if not 0 < busy_timeout < float("inf"):
                raise ValueError("sqlite store URL: busy_timeout must be > 0 seconds")
        else:
            raise ValueError(
                f"sqlite store URL: unknown option {key[:40]!r} (known: synchronous, busy_timeout)"
            )
    return SQLiteStore(path, synchronous=synchronous, busy_timeout=busy_timeout)


__all__ = [
    "Coordination",
    "CountRow",
    "DeadLetter",
    "MemoryStore",
    "Outbox",
    "OutboxItem",
    "OutboxStats",
    "PrefixCount",
    "Records",
    "SQLiteStore",
    "Store",
    "VerifyOutcome",
    "open_store",
]
