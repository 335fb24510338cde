"""The PostgreSQL store's schema: its versions, the statements that reach each one, and the advisory lock.

Tables named ``otp_*``, in the URL's ``schema`` (created if missing) or the connection's default one. The
versions applied are rows of ``otp_schema_versions``; created or migrated forward under a transaction-level
advisory lock, so processes starting at once create it once. A schema written by a newer version of this
package is refused. ``MIGRATIONS[n]`` takes the tables to version ``n``; a new version is one more entry, never
an edit of an old one (databases out there were made by it).
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

SCHEMA_VERSION = 2
#: Advisory lock key (first half) under which the schema is created or migrated.
_SCHEMA_LOCK = 0x07C0

SCHEMA_V1 = (
    """CREATE TABLE otp_sends (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        provider text NOT NULL,
        message_id text NOT NULL,
        phone text NOT NULL,
        account text NOT NULL DEFAULT '',
        sent_at double precision NOT NULL,
        verified_at double precision,
        settled boolean NOT NULL DEFAULT false,
        UNIQUE (provider, message_id)
    )""",
    "CREATE INDEX otp_sends_phone_sent ON otp_sends (phone, sent_at)",
    "CREATE INDEX otp_sends_sent ON otp_sends (sent_at)",
    "CREATE INDEX otp_sends_unsettled ON otp_sends (provider, sent_at) WHERE verified_at IS NULL AND NOT settled",
    """CREATE TABLE otp_outbox (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        message_id text NOT NULL,
        phone text NOT NULL,
        provider text NOT NULL,
        account text NOT NULL DEFAULT '',
        converted boolean NOT NULL DEFAULT true,
        sent_at double precision NOT NULL,
        verified_at double precision NOT NULL,
        created_at double precision NOT NULL,
        state text NOT NULL CHECK (state IN ('pending', 'reported', 'dead')),
        attempts integer NOT NULL DEFAULT 0,
        next_attempt_at double precision NOT NULL,
        lease_token text,
        lease_until double precision,
        last_error text,
        reason text,
        done_at double precision
    ) WITH (fillfactor = 80)""",
    "CREATE INDEX otp_outbox_due ON otp_outbox (provider, next_attempt_at, id) WHERE state = 'pending'",
    "CREATE INDEX otp_outbox_done ON otp_outbox (done_at) WHERE state <> 'pending'",
    "CREATE INDEX otp_outbox_dead ON otp_outbox (done_at DESC, id DESC) WHERE state = 'dead'",
    """CREATE TABLE otp_counters (
        start bigint NOT NULL,
        span integer NOT NULL,
        provider text NOT NULL,
        calling_code text NOT NULL,
        requested bigint NOT NULL DEFAULT 0,
        verified bigint NOT NULL DEFAULT 0,
        unmatched bigint NOT NULL DEFAULT 0,
        PRIMARY KEY (span, start, provider, calling_code)
    )""",
    """CREATE TABLE otp_figures (
        hour bigint NOT NULL,
        provider text NOT NULL,
        name text NOT NULL,
        value bigint NOT NULL,
        PRIMARY KEY (hour, provider, name)
    )""",
    "CREATE TABLE otp_flags (name text PRIMARY KEY, value text NOT NULL)",
    "CREATE TABLE otp_leases (name text PRIMARY KEY, owner text NOT NULL, expires_at double precision NOT NULL)",
    """CREATE TABLE otp_schedules (
        name text PRIMARY KEY,
        next_slot double precision,
        updated double precision NOT NULL
    )""",
    "CREATE TABLE otp_spools (name text PRIMARY KEY, position bigint NOT NULL)",
)
#: Version 2: sends by number prefix in byte order (``unverified_sends``), whatever the database's collation.
#: Built without CONCURRENTLY (it runs inside the migration's transaction): writes to otp_sends wait for it.
SCHEMA_V2 = ('CREATE INDEX otp_sends_phone_c ON otp_sends ((phone COLLATE "C"), sent_at)',)
#: Each version's statements, applied in order to reach it.
MIGRATIONS: dict[int, tuple[str, ...]] = {1: SCHEMA_V1, 2: SCHEMA_V2}


class PostgreSQLSchemaError(RuntimeError):
    """The store's tables are of a newer version of this package than the one running."""


def ensure_schema(conn: psycopg.Connection[Any], schema: str | None) -> None:
    """Bring the tables in ``schema`` (None: the connection's default) to ``SCHEMA_VERSION``, in one
    transaction under the advisory lock, or refuse a newer version (``PostgreSQLSchemaError``)."""
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_SCHEMA_LOCK, schema or ""))
        if schema is not None:
            cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        cur.execute(
            "CREATE TABLE IF NOT EXISTS otp_schema_versions (version integer PRIMARY KEY,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        cur.execute("SELECT COALESCE(MAX(version), 0) FROM otp_schema_versions")
        row = cur.fetchone()
        version = 0 if row is None else int(row[0])
        if version > SCHEMA_VERSION:
            raise PostgreSQLSchemaError(
                f"PostgreSQL store{'' if schema is None else f' (schema {schema})'}: its tables are of schema "
                f"version {version}, newer than this version of flask-otp-conversion supports "
                f"({SCHEMA_VERSION}); upgrade the package"
            )
        for step in range(version + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[step]:
                cur.execute(statement)
            cur.execute("INSERT INTO otp_schema_versions (version) VALUES (%s)", (step,))


__all__ = ["MIGRATIONS", "SCHEMA_V1", "SCHEMA_V2", "SCHEMA_VERSION", "PostgreSQLSchemaError", "ensure_schema"]
