"""The example app's own one-time codes: issued, hashed, checked. Nothing here knows about the extension.

The codes live in a small SQLite table rather than process memory so that every gunicorn worker sees the same
codes (a send on one worker, the verify on another). Only an HMAC-SHA256 of ``phone:code`` is stored.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import math
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

from flask_otp_conversion.phone import normalize_phone

CODE_DIGITS = 6

_SCHEMA = """
CREATE TABLE IF NOT EXISTS otp_codes (
    phone TEXT PRIMARY KEY,
    code_hash TEXT,             -- NULL once used: the row stays to pace the next send
    issued_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS otp_meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class CheckResult(enum.Enum):
    """What :meth:`CodeStore.check` found."""

    OK = "ok"
    WRONG = "wrong"  # a bad guess; counted
    EXPIRED = "expired"
    UNKNOWN = "unknown"  # nothing pending for the phone (never sent, or already used)
    LOCKED = "locked"  # too many wrong guesses: a new code is needed


class ResendTooSoon(Exception):
    """A code was sent to this phone less than the resend interval ago."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"a code was sent recently; try again in {math.ceil(retry_after)} s")
        self.retry_after = retry_after


def new_code() -> str:
    return f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"


class CodeStore:
    """One-time codes in a SQLite file that several processes may share.

    Every read-modify-write is one ``BEGIN IMMEDIATE`` transaction, so two workers cannot both accept a guess
    or both send within the resend interval. Phones are E.164 (``normalize_phone``'s output); :meth:`issue`
    and :meth:`issue_many` normalise for callers outside the request path.

    ``key`` is the HMAC key (the app's ``SECRET_KEY``); without one, a random key is kept in the file itself,
    so every process sharing the file hashes alike. ``clock`` returns UNIX seconds (tests move it forward).

    For load tests, pre-issue codes without sending any SMS and verify them over HTTP::

        store = app.extensions["example_app"].codes
        codes = store.issue_many(f"+86137{i:08d}" for i in range(10_000))   # {phone: code}, one transaction
        code = store.issue("+8613711112222")                                  # or one at a time
    """

    def __init__(
        self,
        path: str,
        *,
        key: bytes | None = None,
        ttl: float = 300.0,
        max_attempts: int = 5,
        resend_interval: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if ttl <= 0 or max_attempts < 1 or resend_interval < 0:
            raise ValueError("ttl must be > 0, max_attempts >= 1 and resend_interval >= 0")
        self.path = path
        self.ttl = float(ttl)
        self.max_attempts = int(max_attempts)
        self.resend_interval = float(resend_interval)
        self._clock = clock
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        self._closed = False
        parent = os.path.dirname(os.path.abspath(path))
        os.makedirs(parent, exist_ok=True)
        setup = sqlite3.connect(path, timeout=30)
        try:
            setup.execute("PRAGMA journal_mode=WAL")
            setup.executescript(_SCHEMA)
            setup.execute(
                "INSERT OR IGNORE INTO otp_meta (name, value) VALUES ('hmac_key', ?)", (secrets.token_hex(32),)
            )
            setup.commit()
            stored_key = setup.execute("SELECT value FROM otp_meta WHERE name = 'hmac_key'").fetchone()[0]
        finally:
            setup.close()
        self._key = key if key else bytes.fromhex(stored_key)

    def __repr__(self) -> str:
        return f"<CodeStore {self.path!r} ttl={self.ttl:g}s attempts={self.max_attempts}>"

    # ---- public ----------------------------------------------------------------------------------------

    def issue(self, phone: str, code: str | None = None) -> str:
        """Make ``phone``'s pending code ``code`` (default: a fresh random one) and return it.

        No resend pacing and no SMS: for load tests and scripts. Replaces any pending code and its attempts.
        """
        return self.issue_many([phone], code=code)[normalize_phone(phone)]

    def issue_many(self, phones: Iterable[str], *, code: str | None = None) -> dict[str, str]:
        """:meth:`issue` for many phones in one transaction; returns ``{e164_phone: code}``."""
        now = self._clock()
        issued = {normalize_phone(phone): code or new_code() for phone in phones}
        with self._transaction() as db:
            db.executemany(
                "INSERT OR REPLACE INTO otp_codes (phone, code_hash, issued_at, expires_at, attempts) "
                "VALUES (?, ?, ?, ?, 0)",
                [(phone, self._hash(phone, c), now, now + self.ttl) for phone, c in issued.items()],
            )
        return issued

    def issue_for_send(self, phone: str) -> str:
        """A fresh code for ``phone``, or :class:`ResendTooSoon` if one was issued within the resend interval."""
        now = self._clock()
        code = new_code()
        with self._transaction() as db:
            row = db.execute("SELECT issued_at FROM otp_codes WHERE phone = ?", (phone,)).fetchone()
            if row is not None and now - row[0] < self.resend_interval:
                raise ResendTooSoon(self.resend_interval - (now - row[0]))
            db.execute(
                "INSERT OR REPLACE INTO otp_codes (phone, code_hash, issued_at, expires_at, attempts) "
                "VALUES (?, ?, ?, ?, 0)",
                (phone, self._hash(phone, code), now, now + self.ttl),
            )
        return code

    def discard(self, phone: str, code: str) -> None:
        """Forget ``code`` if it is still ``phone``'s pending one (its SMS could not be sent): frees the slot."""
        with self._transaction() as db:
            db.execute("DELETE FROM otp_codes WHERE phone = ? AND code_hash = ?", (phone, self._hash(phone, code)))

    def check(self, phone: str, code: str) -> CheckResult:
        """Check a guess in constant time; a right one is used up, a wrong one counted."""
        now = self._clock()
        guess = self._hash(phone, code)
        with self._transaction() as db:
            row = db.execute(
                "SELECT code_hash, expires_at, attempts FROM otp_codes WHERE phone = ?", (phone,)
            ).fetchone()
            if row is None or row[0] is None:
                return CheckResult.UNKNOWN
            stored, expires_at, attempts = row
            if attempts >= self.max_attempts:
                return CheckResult.LOCKED
            if now >= expires_at:
                return CheckResult.EXPIRED
            if hmac.compare_digest(stored, guess):
                db.execute("UPDATE otp_codes SET code_hash = NULL WHERE phone = ?", (phone,))
                return CheckResult.OK
            db.execute("UPDATE otp_codes SET attempts = attempts + 1 WHERE phone = ?", (phone,))
            return CheckResult.WRONG

    def close(self) -> None:
        """Close every thread's connection (call at shutdown; the store is unusable afterwards)."""
        with self._lock:
            self._closed = True
            connections, self._connections = self._connections, []
        for connection in connections:
            connection.close()

    # ---- internals -------------------------------------------------------------------------------------

    def _hash(self, phone: str, code: str) -> str:
        return hmac.new(self._key, f"{phone}:{code}".encode(), hashlib.sha256).hexdigest()

    def _connection(self) -> sqlite3.Connection:
        """One connection per thread and process (a SQLite connection must not cross a fork)."""
        if self._closed:
            raise RuntimeError("the code store is closed")
        pid = os.getpid()
        cached: tuple[int, sqlite3.Connection] | None = getattr(self._local, "connection", None)
        if cached is not None and cached[0] == pid:
            return cached[1]
        connection = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        connection.execute("PRAGMA synchronous=NORMAL")
        self._local.connection = (pid, connection)
        with self._lock:
            self._connections.append(connection)
        return connection

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        db = self._connection()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        else:
            db.execute("COMMIT")
