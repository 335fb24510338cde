"""The SQLite store's connections: a bounded pool per process, fork safety, and the file's integrity check.

The pool
    Each store call borrows one of at most ``POOL_SIZE`` connections of its process and hands it back when it
    returns; a call made while its thread already holds one (nested) uses that one. Not one per thread: a
    delivering process runs many reporter workers, and every connection keeps its own memory even idle, while
    SQLite lets one writer in at a time however many connections wait. Store calls wait on nothing but SQLite
    while they hold a connection, so a thread waiting for one never waits on a thread waiting for it. Every
    connection is in WAL mode, with the file's schema brought up to date (``prepare``) before its first use.

Forks
    The pool belongs to the process that opened it (``_forks.ForkLocal``). A connection opened before
    ``os.fork`` is never used, closed or finalised in the child (its SQLite locks and WAL index belong to the
    parent): the child sets the parent's pool aside and opens its own on first use. ``reopen()`` does the
    same at once.

Integrity
    A file that fails SQLite's ``PRAGMA quick_check`` is refused at start (``DamagedStoreError``) rather than
    failing one send in ten later. quick_check reads every page and row but does not compare indexes with
    their tables, which ``integrity_check`` does at many times the cost; ``check_integrity()`` (the
    ``flask otp-conversion check`` command) runs the full one on demand.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence

from .._forks import ForkLocal

SYNCHRONOUS_MODES = ("normal", "full")
#: Each connection's page cache, in KiB (SQLite's default is 2,000). In WAL mode a connection's cache is dropped
#: whenever another one commits, so a bigger one buys little here; the file's pages stay in the OS page cache.
CACHE_KIB = 256
#: Connections a process keeps at most; a store call waits for a free one (see "The pool").
POOL_SIZE = 4
#: Problems SQLite's integrity check lists at most.
MAX_PROBLEMS = 20


class DamagedStoreError(sqlite3.DatabaseError):
    """The store file fails SQLite's integrity check. The message names the file and what to do."""


#: Connections inherited from a parent process. Kept referenced for the life of the child so that they are
#: never finalised here: closing one would run SQLite's close path (locks, WAL checkpoint) on the parent's
#: file handles.
_ABANDONED: list[sqlite3.Connection] = []


class _ProcessState:
    """Connections opened by one process. Replaced wholesale after a fork or ``close()``, never repaired."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.slots = threading.BoundedSemaphore(POOL_SIZE)
        self.local = threading.local()  # ``conn``: the connection this thread holds
        self.connections: list[sqlite3.Connection] = []  # every one open, lent or idle
        self.idle: list[sqlite3.Connection] = []
        self.closed = False


class ConnectionPool(ForkLocal):
    """This process's connections to one SQLite file; see the module docstring.

    ``prepare(conn)`` runs on every new connection (the schema check), inside its first use."""

    def __init__(
        self, path: str, *, synchronous: str, busy_timeout: float, prepare: Callable[[sqlite3.Connection], None]
    ) -> None:
        self._path = path
        self._synchronous = synchronous
        self._busy_timeout = busy_timeout
        self._prepare = prepare
        self._pid = os.getpid()
        self._state = _ProcessState()
        self._watch_forks()

    @property
    def connections(self) -> list[sqlite3.Connection]:
        """Every connection this process has open, lent or idle."""
        return self._state.connections

    def check_file(self) -> None:
        """Open the file once (its schema created or migrated) and run ``quick_check``, so a bad file fails at
        start-up and not on the first request; the connection is closed again so that nothing is held open
        across a later fork. Raises ``DamagedStoreError`` for a damaged file."""
        try:
            conn = self._connect()
        except sqlite3.DatabaseError as exc:
            if "malformed" not in str(exc):
                raise  # not a database at all, or a newer schema: said as it is
            raise DamagedStoreError(self._damaged([str(exc)])) from None
        try:
            problems = _problems(conn, "quick_check")
        finally:
            conn.close()
        if problems:
            raise DamagedStoreError(self._damaged(problems))

    def check_integrity(self, *, full: bool = True) -> list[str]:
        """What SQLite's own check finds wrong with the file ([] when sound, at most ``MAX_PROBLEMS``). ``full``:
        ``PRAGMA integrity_check``, indexes compared with their tables too (seconds on a 100 MB file);
        otherwise ``quick_check``, the one run at start."""
        with self.connection() as conn:
            return _problems(conn, "integrity_check" if full else "quick_check")

    def _damaged(self, problems: Sequence[str]) -> str:
        shown = "; ".join(problems[:3]) + ("; ..." if len(problems) > 3 else "")
        return (
            f"{self._path} fails SQLite's integrity check ({shown}). It holds the outbox's pending conversion "
            "reports: stop the app and restore the file from a backup, or move it aside (with its -wal and -shm "
            "files) to start with an empty store, keeping it: `sqlite3 FILE .recover` may save its rows"
        )

    # Opening ------------------------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._path, timeout=self._busy_timeout, isolation_level=None, check_same_thread=False)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
            conn.execute(f"PRAGMA synchronous = {self._synchronous.upper()}")
            conn.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
            self._use_wal(conn)
            self._prepare(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _use_wal(self, conn: sqlite3.Connection) -> None:
        """Switch the file to WAL (persistent, so usually already done). Retried: the switch needs a lock
        that some SQLite versions report as busy without calling the busy handler."""
        deadline = time.monotonic() + self._busy_timeout
        while True:
            try:
                mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
                if str(mode).lower() != "wal":
                    conn.execute("PRAGMA journal_mode = WAL").fetchone()
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() >= deadline:
                    raise
                time.sleep(0.01)

    # Lending ------------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def connection(self) -> Iterator[sqlite3.Connection]:
        """A connection of this process for the length of one store call (the one this thread already holds,
        in a nested call)."""
        self._check_fork()
        state = self._state
        held: sqlite3.Connection | None = getattr(state.local, "conn", None)
        if held is not None:
            yield held
            return
        with state.slots:
            with state.lock:
                conn = state.idle.pop() if state.idle else None
            if conn is None:
                conn = self._connect()
                with state.lock:
                    state.connections.append(conn)
            state.local.conn = conn
            try:
                yield conn
            finally:
                state.local.conn = None
                with contextlib.suppress(sqlite3.Error):  # (closed by close() meanwhile)
                    if conn.in_transaction:  # an interrupted call's: the next borrower must not see its snapshot
                        conn.execute("ROLLBACK")
                with state.lock:
                    keep = not state.closed
                    if keep:
                        state.idle.append(conn)
                if not keep:  # close() ran meanwhile: it left this lent one to us
                    with contextlib.suppress(sqlite3.Error):
                        conn.close()

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction: committed on success, rolled back on any error."""
        with self.connection() as conn:
            # A lent connection comes back without a transaction, so one is open here only when this call is
            # nested in another of this thread's: never commit its remains.
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            try:
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    @contextlib.contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A read transaction, so several queries see one snapshot."""
        with self.connection() as conn:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            conn.execute("BEGIN")
            try:
                yield conn
            finally:
                if conn.in_transaction:
                    conn.execute("COMMIT")

    # Forks and closing --------------------------------------------------------------------------------

    def _after_fork_in_child(self) -> None:
        """Set the parent's connections aside untouched (its pool lock may be held, too)."""
        _ABANDONED.extend(self._state.connections)
        self._state = _ProcessState()
        self._pid = os.getpid()

    def reopen(self) -> None:
        """Drop connections inherited across ``os.fork`` (in the parent: close this process's own)."""
        if not self._check_fork():
            self.close()

    def close(self) -> None:
        """Close this process's idle connections; the pool stays usable and reconnects on the next call.

        A connection lent to another thread is closed by that thread when it comes back (``connection``):
        closing it under a running statement crashes the interpreter."""
        if self._check_fork():
            return
        old = self._state
        self._state = _ProcessState()
        with old.lock:
            old.closed = True
            connections, old.connections, old.idle = old.idle, [], []
        for conn in connections:
            with contextlib.suppress(sqlite3.Error):
                conn.close()


def _problems(conn: sqlite3.Connection, pragma: str) -> list[str]:
    """The rows of ``PRAGMA quick_check`` or ``integrity_check``, [] for a sound file."""
    try:
        rows = conn.execute(f"PRAGMA {pragma}({MAX_PROBLEMS})").fetchall()
    except sqlite3.DatabaseError as exc:  # damaged where the check itself must read
        return [str(exc)]
    # Each row may hold several lines, headed "*** in database main ***": one problem a line, headers dropped.
    found = [line for row in rows for line in str(row[0]).splitlines() if line and not line.startswith("***")]
    return [] if found == ["ok"] else found


__all__ = ["CACHE_KIB", "POOL_SIZE", "SYNCHRONOUS_MODES", "ConnectionPool", "DamagedStoreError"]
