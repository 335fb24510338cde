"""What a ``redis://`` or ``rediss://`` store URL says, parsed without the driver, so ``init_app`` can refuse a
bad URL, or a missing ``redis`` package, before anything connects. Errors name an option at most, never the URL:
it may hold a password.

``redis://[[user]:password@]host[:port][/db]`` (``rediss://`` for TLS), and in the query string:

``prefix``
    the key prefix (default ``otp-conversion:``), so several apps share one server. A prefix with a hash tag
    (``{otp-conversion}:``) keeps all the app's keys in one Redis Cluster slot.
``connect_timeout``, ``socket_timeout``
    seconds (decimals allowed, default 1 and 3): to open a connection, and to wait for an answer. Together they
    bound how long any store call, a send in a request included, waits on a server that stopped answering.
``ssl_cert_reqs``, ``ssl_ca_certs``, ``ssl_certfile``, ``ssl_keyfile``, ``ssl_check_hostname``
    ``rediss://`` only: passed to redis-py as they are.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

SCHEMES = ("redis", "rediss")
EXTRA = "pip install 'flask-otp-conversion[redis]'"
DEFAULT_PREFIX = "otp-conversion:"
#: Seconds to wait for a connection, and for an answer, unless the URL says otherwise.
CONNECT_TIMEOUT = 1.0
SOCKET_TIMEOUT = 3.0
#: URL query options: ours, and redis-py's TLS options passed through for ``rediss://``.
_OWN_OPTIONS = ("prefix", "connect_timeout", "socket_timeout")
_TLS_OPTIONS = ("ssl_cert_reqs", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile", "ssl_check_hostname")
_USAGE = "use 'redis://[[user]:password@]host[:port][/db][?prefix=...&connect_timeout=S&socket_timeout=S]'"


@dataclass(frozen=True)
class RedisOptions:
    """What a ``redis://`` or ``rediss://`` URL says, checked."""

    host: str
    port: int
    db: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False
    prefix: str = DEFAULT_PREFIX
    connect_timeout: float = CONNECT_TIMEOUT
    socket_timeout: float = SOCKET_TIMEOUT
    tls_options: tuple[tuple[str, str], ...] = ()

    @property
    def where(self) -> str:
        return f"{'rediss' if self.tls else 'redis'}://{self.host}:{self.port}/{self.db}"


def parse_url(url: str) -> RedisOptions:
    """Options from a store URL. Errors name a query key or what is wrong, never the URL (it may hold a
    password)."""
    try:
        parts = urlsplit(url)
        port = parts.port or 6379
    except ValueError:
        raise ValueError(f"the Redis store URL is malformed (host or port); {_USAGE}") from None
    scheme = parts.scheme.lower()
    if scheme not in ("redis", "rediss"):
        raise ValueError(f"not a Redis store URL; {_USAGE}")
    path = parts.path.lstrip("/")
    if path and not path.isdigit():
        raise ValueError(f"the Redis store URL's path must be a database number; {_USAGE}")
    if parts.fragment:
        raise ValueError(f"the Redis store URL must not have a #fragment; {_USAGE}")
    options: dict[str, Any] = {}
    tls: list[tuple[str, str]] = []
    try:
        query = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise ValueError("the Redis store URL's query string is malformed") from None
    for key, value in query:
        if key == "prefix":
            if not value or len(value) > 200:
                raise ValueError("Redis store URL: prefix must be 1 to 200 characters")
            options["prefix"] = value
        elif key in ("connect_timeout", "socket_timeout"):
            options[key] = _seconds(key, value)
        elif key in _TLS_OPTIONS and scheme == "rediss":
            tls.append((key, value))
        else:
            known = ", ".join(_OWN_OPTIONS + (_TLS_OPTIONS if scheme == "rediss" else ()))
            raise ValueError(f"Redis store URL: unknown option {key[:40]!r} (known: {known})")
    return RedisOptions(
        host=parts.hostname or "localhost",
        port=port,
        db=int(path or 0),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        tls=scheme == "rediss",
        tls_options=tuple(tls),
        **options,
    )


def _seconds(key: str, value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise ValueError(f"Redis store URL: {key} must be a number of seconds") from None
    if not 0 < seconds <= 300:
        raise ValueError(f"Redis store URL: {key} must be > 0 and at most 300 seconds")
    return seconds


def driver_missing() -> str | None:
    """The error to give when the driver is not installed, or None when it is."""
    if importlib.util.find_spec("redis") is None:
        return f"the Redis store needs the redis driver: {EXTRA}"
    return None
