"""The SQLite store's schema: its versions and the steps that migrate a file from one to the next.

Versioned with ``PRAGMA user_version``; created or migrated inside one ``BEGIN IMMEDIATE`` transaction, so
processes opening a fresh file at the same moment create it exactly once. A file written by a newer version of
this package is refused rather than misread. ``MIGRATIONS[n]`` takes a file from version ``n`` to ``n + 1``; a new
version is one more step at the end, never an edit of an old one (files out there were made by it).
"""

from __future__ import annotations

import sqlite3

SCHEMA_V1 = (
    """CREATE TABLE IF NOT EXISTS messages (
        id INTEGER PRIMARY KEY,
        provider TEXT NOT NULL,
        message_id TEXT NOT NULL,
        phone TEXT NOT NULL,
        sent_at REAL NOT NULL,
        verified_at REAL,
        UNIQUE (provider, message_id)
    )""",
    "CREATE INDEX IF NOT EXISTS messages_phone_sent ON messages (phone, sent_at)",
    "CREATE INDEX IF NOT EXISTS messages_sent ON messages (sent_at)",
    """CREATE TABLE IF NOT EXISTS outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        message_id TEXT NOT NULL,
        phone TEXT NOT NULL,
        provider TEXT NOT NULL,
        sent_at REAL NOT NULL,
        verified_at REAL NOT NULL,
        created_at REAL NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('pending', 'reported', 'dead')),
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL NOT NULL,
        lease_token TEXT,
        lease_until REAL,
        last_error TEXT,
        reason TEXT,
        done_at REAL
    )""",
    "CREATE INDEX IF NOT EXISTS outbox_claim ON outbox (state, provider, next_attempt_at)",
    "CREATE INDEX IF NOT EXISTS outbox_done ON outbox (state, done_at)",
    """CREATE TABLE IF NOT EXISTS counters (
        hour INTEGER NOT NULL,
        provider TEXT NOT NULL,
        calling_code TEXT NOT NULL,
        requested INTEGER NOT NULL DEFAULT 0,
        verified INTEGER NOT NULL DEFAULT 0,
        unmatched INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (hour, provider, calling_code)
    )""",
    "CREATE TABLE IF NOT EXISTS flags (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS leases (name TEXT PRIMARY KEY, owner TEXT NOT NULL, expires_at REAL NOT NULL)",
)
#: Version 2: the shared rate-limit buckets, and claimed rows found by their lease token.
SCHEMA_V2 = (
    "CREATE TABLE IF NOT EXISTS budgets (name TEXT PRIMARY KEY, tokens REAL NOT NULL, updated REAL NOT NULL)",
    "CREATE INDEX IF NOT EXISTS outbox_lease ON outbox (lease_token) WHERE lease_token IS NOT NULL",
)
#: Version 3: how far each verification spool (``store/spool.py``) has been applied.
SCHEMA_V3 = ("CREATE TABLE IF NOT EXISTS spools (name TEXT PRIMARY KEY, position INTEGER NOT NULL)",)
#: Version 4: rows know their account and outcome, sends whether a negative report was made; counters come in
#: hour and minute spans (a new table: SQLite cannot change a primary key); delivery figures.
SCHEMA_V4 = (
    "ALTER TABLE messages ADD COLUMN account TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE messages ADD COLUMN settled INTEGER NOT NULL DEFAULT 0",
    "CREATE INDEX IF NOT EXISTS messages_unsettled ON messages (provider, sent_at)"
    " WHERE verified_at IS NULL AND settled = 0",
    "ALTER TABLE outbox ADD COLUMN account TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE outbox ADD COLUMN converted INTEGER NOT NULL DEFAULT 1",
    """CREATE TABLE IF NOT EXISTS tallies (
        start INTEGER NOT NULL,
        span INTEGER NOT NULL,
        provider TEXT NOT NULL,
        calling_code TEXT NOT NULL,
        requested INTEGER NOT NULL DEFAULT 0,
        verified INTEGER NOT NULL DEFAULT 0,
        unmatched INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (span, start, provider, calling_code)
    )""",
    "INSERT INTO tallies SELECT hour, 3600, provider, calling_code, requested, verified, unmatched FROM counters",
    "DROP TABLE counters",
    """CREATE TABLE IF NOT EXISTS figures (
        hour INTEGER NOT NULL,
        provider TEXT NOT NULL,
        name TEXT NOT NULL,
        value INTEGER NOT NULL,
        PRIMARY KEY (hour, provider, name)
    )""",
)
#: The steps in order: ``MIGRATIONS[n]`` takes a file at version ``n`` to ``n + 1``.
MIGRATIONS: tuple[tuple[str, ...], ...] = (SCHEMA_V1, SCHEMA_V2, SCHEMA_V3, SCHEMA_V4)
SCHEMA_VERSION = len(MIGRATIONS)


def ensure_schema(conn: sqlite3.Connection, path: str) -> None:
    """Bring the file behind ``conn`` (named ``path`` in errors) to ``SCHEMA_VERSION``, or refuse a newer one."""
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version == SCHEMA_VERSION:
        return
    check_version(version, path)
    conn.execute("BEGIN IMMEDIATE")
    try:
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])  # another process may have won
        check_version(version, path)
        for step in MIGRATIONS[max(version, 0) :]:
            for statement in step:
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def check_version(version: int, path: str) -> None:
    """A file of a newer version than this package knows is refused rather than misread."""
    if version > SCHEMA_VERSION:
        raise RuntimeError(
            f"{path}: store schema version {version} is newer than this version of "
            f"flask-otp-conversion supports ({SCHEMA_VERSION}); upgrade the package"
        )


__all__ = ["MIGRATIONS", "SCHEMA_VERSION", "check_version", "ensure_schema"]
