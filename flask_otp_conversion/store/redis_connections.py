"""The Redis store's client: one per process, every call bounded, errors that never show the password, and the
server's data format and persistence checked on first use.

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

import logging
import os
import ssl
import threading
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.commands.core import Script
from redis.retry import Retry

from .._forks import ForkLocal
from .redis_scripts import SCRIPTS
from .redis_url import RedisOptions

#: The data format this version writes; a server holding a newer one is refused.
FORMAT_VERSION = 1
logger = logging.getLogger("flask_otp_conversion")


class RedisStoreError(OSError):
    """The Redis server refused a call or did not answer in time. The message names the server (host, port,
    database) and what went wrong, never the password."""


class RedisUnavailableError(RedisStoreError):
    """The server could not be reached or did not answer in time (down, restarting, loading its data)."""


class RedisClient(ForkLocal):
    """redis-py's client for this process, with the store's scripts registered on it (``RedisStore`` calls)."""

    def __init__(self, options: RedisOptions) -> None:
        self._options = options
        self._prefix = options.prefix
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._client: redis.Redis | None = None
        self._scripts: dict[str, Script] = {}
        self._checked = False
        self._watch_forks()

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

    def connection(self) -> tuple[redis.Redis, dict[str, Script]]:
        self._check_fork()
        with self._lock:
            client, scripts = self._client, self._scripts
            if client is None:
                client = self._client = self._new_client()
                scripts = self._scripts = {name: client.register_script(source) for name, source in SCRIPTS.items()}
        if not self._checked:
            with self.errors():
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

    def errors(self) -> Errors:
        return Errors(self._options)

    def run(self, name: str, *args: str | int) -> Any:
        """Script ``name`` with the prefix and ``args``; errors as :class:`RedisStoreError`."""
        _, scripts = self.connection()
        with self.errors():
            return scripts[name](args=[self._prefix, *args])


class Errors:
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
