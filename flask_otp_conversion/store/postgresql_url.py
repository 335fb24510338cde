"""What a ``postgresql://`` store URL says: the libpq connection string, and our own options taken out of it.

Parsed without the driver, so ``init_app`` can refuse a bad URL, or a missing ``psycopg``, before anything
connects. Errors name an option at most, never the URL: it holds a password.

Our options (in the query string, removed before the rest goes to libpq; everything else, ``sslmode`` say,
goes to libpq as it is):

``schema``
    the PostgreSQL schema the store's tables live in (created if missing), so several apps share a database.
    Default: none given, the connection's ``search_path`` (``public``).
``pool_size``
    connections a process keeps at most (default 5).
``connect_timeout``, ``statement_timeout``, ``lock_timeout``, ``pool_timeout``
    seconds (decimals allowed): to open a connection (also bounding how long a dead server may go
    unanswered, through TCP's ``tcp_user_timeout``), for one statement, to wait for a row lock, and to wait for
    a free connection of the pool.
``call_timeout``
    seconds one store call may wait for the server's answers, measured on the client: a server process that is
    frozen (stopped, or a host that still acknowledges TCP but runs nothing) never answers, and neither
    ``statement_timeout`` (enforced by the server) nor ``tcp_user_timeout`` (unacknowledged data) notices.
    Default: ``statement_timeout`` + 1 s, so a statement the server cancels is reported as such first.

Together they bound how long any store call, a send in a request included, can hang on a database that stopped
answering: ``pool_timeout`` + ``connect_timeout`` + ``call_timeout`` at most.
"""

from __future__ import annotations

import importlib.util
import math
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, unquote, urlsplit, urlunsplit

SCHEMES = ("postgresql", "postgresql+psycopg")
EXTRA = "pip install 'flask-otp-conversion[postgresql]'"
#: A schema name we put in SQL and in ``search_path``: a plain identifier, so it needs no quoting anywhere.
_SCHEMA = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")

DEFAULT_POOL_SIZE = 5
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_STATEMENT_TIMEOUT = 5.0
DEFAULT_LOCK_TIMEOUT = 2.0
DEFAULT_POOL_TIMEOUT = 5.0
#: ``call_timeout`` when none is given: ``statement_timeout`` plus this, the margin for a round trip or two.
CALL_TIMEOUT_MARGIN = 1.0
_SECONDS = ("connect_timeout", "statement_timeout", "lock_timeout", "pool_timeout", "call_timeout")
#: Longest timeout we take: a day; a store call that may hang for longer is a mistake in the URL.
_MAX_SECONDS = 86400.0


@dataclass(frozen=True)
class PostgreSQLOptions:
    #: The URL handed to libpq (scheme ``postgresql``, our options removed): it holds the password.
    conninfo: str
    schema: str | None
    pool_size: int
    connect_timeout: float
    statement_timeout: float
    lock_timeout: float
    pool_timeout: float
    #: Client-side deadline of one store call (see the module docstring).
    call_timeout: float
    #: The password as written in the URL (decoded), so that errors can blank it out wherever it shows up.
    password: str | None

    def __repr__(self) -> str:  # never the conninfo
        return f"PostgreSQLOptions(schema={self.schema!r}, pool_size={self.pool_size})"


def driver_missing() -> str | None:
    """The error to give when the driver is not installed, or None when it is."""
    try:
        found = importlib.util.find_spec("psycopg") is not None
    except (ImportError, ValueError):  # an import hook refusing it, or a half-installed package
        found = False
    return None if found else f"the PostgreSQL store needs the psycopg driver: {EXTRA}"


def parse_url(url: str) -> PostgreSQLOptions:
    """Split a store URL into libpq's part and ours; ``ValueError`` (never quoting the URL) if it is bad."""
    scheme, _, rest = url.partition("://")
    if scheme.lower() not in SCHEMES or not rest:
        raise ValueError(f"a PostgreSQL store URL starts with {' or '.join(s + '://' for s in SCHEMES)}")
    try:
        parts = urlsplit("postgresql://" + rest)
        password = None if parts.password is None else unquote(parts.password)
        parts.port  # noqa: B018 (raises ValueError for a bad port)
        pairs = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise ValueError("the PostgreSQL store URL is malformed (host, port or query string)") from None
    if parts.fragment:
        raise ValueError("the PostgreSQL store URL must not have a #fragment")
    ours: dict[str, str] = {}
    passed: list[tuple[str, str]] = []
    for key, value in pairs:
        if key in ("schema", "pool_size", *_SECONDS):
            if key in ours:
                raise ValueError(f"PostgreSQL store URL: {key} is given twice")
            ours[key] = value
        else:
            passed.append((key, value))
    schema = ours.get("schema")
    if schema is not None and _SCHEMA.fullmatch(schema) is None:
        raise ValueError(
            "PostgreSQL store URL: schema must be a plain identifier (letters, digits and _, at most 63,"
            " not starting with a digit)"
        )
    pool_size = DEFAULT_POOL_SIZE
    if "pool_size" in ours:
        try:
            pool_size = int(ours["pool_size"])
        except ValueError:
            raise ValueError("PostgreSQL store URL: pool_size must be a whole number") from None
        if not 1 <= pool_size <= 1000:
            raise ValueError("PostgreSQL store URL: pool_size must be between 1 and 1000")
    seconds: dict[str, float] = {
        "connect_timeout": DEFAULT_CONNECT_TIMEOUT,
        "statement_timeout": DEFAULT_STATEMENT_TIMEOUT,
        "lock_timeout": DEFAULT_LOCK_TIMEOUT,
        "pool_timeout": DEFAULT_POOL_TIMEOUT,
    }
    for key in _SECONDS:
        if key in ours:
            seconds[key] = _seconds(key, ours[key])
    seconds.setdefault("call_timeout", seconds["statement_timeout"] + CALL_TIMEOUT_MARGIN)
    query = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in passed)
    conninfo = urlunsplit(("postgresql", parts.netloc, parts.path, query, ""))
    return PostgreSQLOptions(
        conninfo=conninfo,
        schema=schema,
        pool_size=pool_size,
        password=password or None,
        **seconds,
    )


def _seconds(key: str, value: str) -> float:
    try:
        result = float(value)
    except ValueError:
        raise ValueError(f"PostgreSQL store URL: {key} must be a number of seconds") from None
    if not math.isfinite(result) or not 0 < result <= _MAX_SECONDS:
        raise ValueError(f"PostgreSQL store URL: {key} must be > 0 and at most {_MAX_SECONDS:g} seconds")
    return result


def redact(text: str, password: str | None) -> str:
    """``text`` with the password blanked out, however it is spelled (as typed, or percent-encoded)."""
    if password:
        for spelling in {password, quote(password, safe=""), quote(password)}:
            text = text.replace(spelling, "***")
    return text
