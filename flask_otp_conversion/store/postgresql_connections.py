"""The PostgreSQL store's connections: a bounded pool per process, fork safety, and outages as one error.

The pool
    Each process keeps a pool of at most ``pool_size`` connections (``_forks.ForkLocal``): a call borrows one and
    hands it back. A child of ``os.fork`` never uses, closes or finalises its parent's connections (closing one
    would end the parent's session on the shared socket): it keeps them referenced and opens its own. A
    connection that broke is dropped; a call that found a pooled connection dead (the server restarted) runs once
    more on a fresh one, and a transaction the server rolled back for a deadlock or serialisation failure runs
    again (``TRANSIENT_RETRIES`` times). Every connection sets ``statement_timeout``, ``lock_timeout`` and TCP
    timeouts. The schema is brought up to date (``prepare``) by the first call that reaches the server.

The deadline
    The server enforces ``statement_timeout`` and ``lock_timeout``, and TCP gives up on unacknowledged data; none
    of them ends a call whose server process is frozen (stopped, or a stuck host whose kernel still acknowledges
    TCP). So every call also has a deadline of the client's, ``call_timeout``: one watchdog thread per pool
    (started by the first call, again in a forked child) shuts the socket of a call still running at its
    deadline down, so the blocked read returns at once. That call fails with ``PostgreSQLUnavailableError`` and
    is not run again (a frozen server would freeze the next try too); its connection is dropped.

Outages
    Any failure to reach the server, a timeout, or the server shutting down is raised as
    ``PostgreSQLUnavailableError``, a ``ConnectionError``: the spool keeps verifications and retries (it takes
    ``OSError`` for store trouble), and the reporter pauses and retries. Its message never holds the password.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import psycopg

from .._forks import ForkLocal
from .postgresql_url import PostgreSQLOptions, redact

T = TypeVar("T")

#: Runs of a transaction the server rolled back for a deadlock or serialisation failure.
TRANSIENT_RETRIES = 3


class PostgreSQLUnavailableError(ConnectionError):
    """PostgreSQL did not answer in time, refused the connection, or went away mid-call. A ``ConnectionError``
    (so an ``OSError``), which the spool and the reporter treat as store trouble: retried, nothing dropped."""


#: Connections inherited from a parent process: referenced for the life of the child so that they are never
#: finalised here, which would end the parent's session on the socket both hold.
_ABANDONED: list[psycopg.Connection[Any]] = []


#: Words of a connection failure that no waiting will mend (a wrong password, user or database name).
_MISCONFIGURED = ("authentication failed", "does not exist", "no pg_hba.conf entry", "permission denied")


class _Watchdog:
    """Shuts down the socket of a call that outlived its deadline (see "The deadline").

    Every deadline is ``timeout`` after the call began, so a call that starts while the thread sleeps is due
    after it wakes: the thread never needs waking, and ``watch`` / ``finished`` are a dict store and a pop, no
    lock (the fast path of every store call)."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._calls: dict[int, tuple[float, psycopg.Connection[Any]]] = {}
        self._keys = itertools.count()
        #: Held while a socket is being shut down, so its connection is not closed (its descriptor reused) then.
        self._cutting = threading.Lock()
        self._starting = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False

    def watch(self, conn: psycopg.Connection[Any]) -> int:
        """Start ``conn``'s call's clock; the key to hand to ``finished``."""
        key = next(self._keys)
        self._calls[key] = (time.monotonic() + self.timeout, conn)
        if self._thread is None:
            self._start()
        return key

    def finished(self, key: int) -> bool:
        """End the call's clock: True if it ended in time, False if the watchdog has shut its socket down."""
        if self._calls.pop(key, None) is not None:
            return True
        with self._cutting:  # the shutdown is over before the caller may close the connection
            return False

    def close(self) -> None:
        """The thread ends once the calls still running have finished."""
        self._closed = True

    def _start(self) -> None:
        with self._starting:
            if self._thread is None:
                thread = threading.Thread(target=self._run, name="otp-conversion-pg-watchdog", daemon=True)
                thread.start()
                self._thread = thread

    def _run(self) -> None:
        while not (self._closed and not self._calls):
            now = time.monotonic()
            wake = now + self.timeout
            for key, (deadline, conn) in self._calls.copy().items():
                if deadline > now:
                    wake = min(wake, deadline)
                    continue
                with self._cutting:
                    if self._calls.pop(key, None) is not None:  # else it finished meanwhile: not ours to cut
                        _shut_down(conn)
            time.sleep(max(0.0, wake - time.monotonic()) + 0.001)


def _shut_down(conn: psycopg.Connection[Any]) -> None:
    """Make the socket's blocked read return (end of file) without closing the descriptor, which stays the
    connection's to close: ``shutdown`` on a duplicate acts on the socket both share."""
    try:
        duplicate = socket.socket(fileno=os.dup(conn.pgconn.socket))
    except (OSError, psycopg.Error):
        return  # closed already
    with contextlib.suppress(OSError), duplicate:
        duplicate.shutdown(socket.SHUT_RDWR)


class _ProcessState:
    """The pool of one process. Replaced wholesale after a fork or ``close()``, never repaired."""

    def __init__(self, size: int, call_timeout: float) -> None:
        self.lock = threading.Lock()
        self.slots = threading.BoundedSemaphore(size)
        self.idle: list[psycopg.Connection[Any]] = []
        self.connections: list[psycopg.Connection[Any]] = []
        self.closed = False
        self.watchdog = _Watchdog(call_timeout)


class _Retry(Exception):
    """A pooled connection was found dead before anything was written: run the call again on a fresh one."""


class ConnectionPool(ForkLocal):
    """This process's connections to one PostgreSQL database; see the module docstring.

    ``prepare(conn)`` (the schema check) runs inside the first call that reaches the server, until it succeeds
    once."""

    def __init__(self, options: PostgreSQLOptions, *, prepare: Callable[[psycopg.Connection[Any]], None]) -> None:
        self._options = options
        self._prepare = prepare
        self._prepared = False
        self._pid = os.getpid()
        self._state = _ProcessState(options.pool_size, options.call_timeout)
        self._watch_forks()

    def check_server(self) -> None:
        """Reach the server once (the schema created or checked), so a refused password or a newer schema fail
        at start-up; nothing is held open afterwards."""
        # A server that does not answer does not stop the app from starting: the spool takes verifications
        # meanwhile, and the schema is checked by the first call that reaches it.
        try:
            self.call(lambda conn: None)
        except PostgreSQLUnavailableError as exc:
            if any(sign in str(exc) for sign in _MISCONFIGURED):
                raise
        # Nothing held open from here: a master that forks its workers next (gunicorn --preload) leaves them none.
        self.close()

    # Calls --------------------------------------------------------------------------------------------

    def call(self, work: Callable[[psycopg.Connection[Any]], T]) -> T:
        """``work`` on a connection, run again on a fresh one if a pooled connection was dead, and again after
        a deadlock or serialisation failure (``work`` is one transaction, rolled back whole)."""
        transient = 0
        while True:
            try:
                with self._connection() as conn:
                    if not self._prepared:
                        self._prepare(conn)
                        self._prepared = True
                    return work(conn)
            except _Retry:
                continue  # the next connection is fresh, or the pool has none: a failure there is final
            except psycopg.errors.TransactionRollback:
                transient += 1
                if transient > TRANSIENT_RETRIES:
                    raise PostgreSQLUnavailableError(
                        "PostgreSQL store: a transaction kept failing on conflicts (deadlock or serialisation)"
                    ) from None
                time.sleep(0.005 * transient)

    # Opening ------------------------------------------------------------------------------------------

    def _connect(self) -> psycopg.Connection[Any]:
        o = self._options
        settings = [
            f"-c statement_timeout={int(o.statement_timeout * 1000)}",
            f"-c lock_timeout={int(o.lock_timeout * 1000)}",
            # A session that died holding a transaction open must not hold its locks for ever.
            f"-c idle_in_transaction_session_timeout={int(max(o.statement_timeout * 4, 10) * 1000)}",
        ]
        if o.schema is not None:
            settings.append(f"-c search_path={o.schema}")
        conn = psycopg.connect(
            o.conninfo,
            autocommit=True,
            connect_timeout=max(1, round(o.connect_timeout)),
            application_name="flask-otp-conversion",
            options=" ".join(settings),
            # A server that vanished without closing the socket: unacknowledged data fails after this long.
            tcp_user_timeout=int(o.connect_timeout * 1000),
            keepalives=1,
            keepalives_idle=max(1, int(o.connect_timeout)),
            keepalives_interval=1,
            keepalives_count=3,
        )
        return conn

    # Lending ------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        """A connection of this process for one store call; failures to reach the server become
        ``PostgreSQLUnavailableError``. A call that meets a dead pooled connection first is run again by
        ``call`` (see ``_Retry``)."""
        self._check_fork()
        state = self._state
        if not state.slots.acquire(timeout=self._options.pool_timeout):
            raise PostgreSQLUnavailableError(
                f"PostgreSQL store: no free connection in {self._options.pool_timeout:g} s "
                f"(pool_size={self._options.pool_size})"
            )
        conn: psycopg.Connection[Any] | None = None
        in_time = True
        try:
            with state.lock:
                conn = state.idle.pop() if state.idle else None
            reused = conn is not None
            if conn is None:
                try:
                    conn = self._connect()
                except psycopg.Error as exc:
                    raise self._unavailable(exc) from None
                with state.lock:
                    state.connections.append(conn)
            try:
                call = state.watchdog.watch(conn)
                try:
                    yield conn
                finally:
                    _settle(conn)  # still on the clock: a rollback may meet a frozen server too
                    in_time = state.watchdog.finished(call)
            except psycopg.Error as exc:
                if not in_time:  # never again on a fresh connection: a frozen server freezes that one as well
                    raise PostgreSQLUnavailableError(
                        f"PostgreSQL store unavailable: no answer in {state.watchdog.timeout:g} s (call_timeout);"
                        " the connection was dropped"
                    ) from None
                if not isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError)):
                    raise
                if conn.broken or conn.closed:
                    self._drop(state, conn)
                    conn = None
                    if reused and not isinstance(exc, psycopg.errors.QueryCanceled):
                        raise _Retry from None
                if isinstance(exc, psycopg.errors.TransactionRollback):
                    raise  # a serialisation failure or deadlock: ``call`` runs the transaction again
                raise self._unavailable(exc) from None
        finally:
            if conn is not None:
                if in_time:
                    self._give_back(state, conn)
                else:  # its socket was shut down, even if the call's last answer came just in time
                    self._drop(state, conn)
            state.slots.release()

    def _give_back(self, state: _ProcessState, conn: psycopg.Connection[Any]) -> None:
        if conn.broken or conn.closed or conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
            self._drop(state, conn)  # the next borrower must not inherit an interrupted call's transaction
            return
        with state.lock:
            if not state.closed:
                state.idle.append(conn)
                return
        with contextlib.suppress(Exception):
            conn.close()

    def _drop(self, state: _ProcessState, conn: psycopg.Connection[Any]) -> None:
        with state.lock:
            if conn in state.connections:
                state.connections.remove(conn)
        with contextlib.suppress(Exception):
            conn.close()

    def _unavailable(self, exc: BaseException) -> PostgreSQLUnavailableError:
        detail = " ".join(str(exc).split())[:300] or type(exc).__name__
        return PostgreSQLUnavailableError(f"PostgreSQL store unavailable: {redact(detail, self._options.password)}")

    # Forks and closing --------------------------------------------------------------------------------

    def _after_fork_in_child(self) -> None:
        _ABANDONED.extend(self._state.connections)
        self._pid = os.getpid()
        self._state = _ProcessState(self._options.pool_size, self._options.call_timeout)

    def reopen(self) -> None:
        """Drop connections inherited across ``os.fork`` (in the parent: close this process's own)."""
        if not self._check_fork():  # in the process that opened them, they are ours to close
            self.close()

    def close(self) -> None:
        """Close this process's idle connections; the pool stays usable and reconnects on the next call."""
        if self._check_fork():
            return
        state, self._state = self._state, _ProcessState(self._options.pool_size, self._options.call_timeout)
        state.watchdog.close()
        with state.lock:
            state.closed = True
            idle, state.idle = state.idle, []
        for conn in idle:
            with contextlib.suppress(Exception):
                conn.close()


def _settle(conn: psycopg.Connection[Any]) -> None:
    """Roll back a transaction an interrupted call left open, so the connection can go back to the pool."""
    if conn.closed or conn.broken or conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
        return
    with contextlib.suppress(Exception):
        conn.rollback()


__all__ = ["TRANSIENT_RETRIES", "ConnectionPool", "PostgreSQLUnavailableError"]
