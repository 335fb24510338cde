"""What the PostgreSQL engine adds to the contract: its URL, schema versions, schemas side by side, hostile
values taken as data, a pool that a fork never shares, and errors that never print the password."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from urllib.parse import quote

import pytest
from store_helpers import CN, HOUR0, send, verify

from flask_otp_conversion.config import ConfigurationError, load_settings
from flask_otp_conversion.store import open_store
from flask_otp_conversion.store.base import OutboxItem, Verification
from flask_otp_conversion.store.postgresql import (
    SCHEMA_VERSION,
    PostgreSQLSchemaError,
    PostgreSQLStore,
    PostgreSQLUnavailableError,
)
from flask_otp_conversion.store.postgresql_url import CALL_TIMEOUT_MARGIN, parse_url
from tests.servers.postgresql import PASSWORD, PostgreSQLServer


@pytest.fixture
def pg(postgresql_url: str) -> Iterator[PostgreSQLStore]:
    store = open_store(postgresql_url)
    assert isinstance(store, PostgreSQLStore)
    yield store
    store.close()


def table_schemas(server: PostgreSQLServer, schema: str) -> set[str]:
    rows = server.psql(f"SELECT table_name FROM information_schema.tables WHERE table_schema = '{schema}'")
    return set(rows.split())


# URLs ---------------------------------------------------------------------------------------------------


def test_both_schemes_open_a_postgresql_store(postgresql_server: PostgreSQLServer) -> None:
    for scheme in ("postgresql", "postgresql+psycopg"):
        store = open_store(postgresql_server.url("t_schemes", scheme=scheme))
        assert isinstance(store, PostgreSQLStore)
        store.close()


def test_the_tables_go_in_the_schema_the_url_names(postgresql_server: PostgreSQLServer) -> None:
    store = open_store(postgresql_server.url("t_named"))
    store.close()
    assert {"otp_sends", "otp_outbox", "otp_schema_versions", "otp_counters"} <= table_schemas(
        postgresql_server, "t_named"
    )


def test_two_schemas_in_one_database_are_two_stores(postgresql_server: PostgreSQLServer) -> None:
    one, two = open_store(postgresql_server.fresh_url()), open_store(postgresql_server.fresh_url())
    send(one, CN, "m1", HOUR0)
    assert verify(two, CN, HOUR0 + 10, message_id="m1").message_id is None
    assert verify(one, CN, HOUR0 + 10, message_id="m1").enqueued
    one.close()
    two.close()


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("schema=a;drop", "schema must be a plain identifier"),
        ("schema=1abc", "schema must be a plain identifier"),
        ("pool_size=0", "pool_size must be between"),
        ("pool_size=many", "pool_size must be a whole number"),
        ("statement_timeout=0", "statement_timeout must be > 0"),
        ("lock_timeout=nan", "lock_timeout must be > 0"),
        ("connect_timeout=soon", "connect_timeout must be a number"),
        ("call_timeout=-1", "call_timeout must be > 0"),
        ("schema=a&schema=b", "schema is given twice"),
    ],
)
def test_a_bad_option_is_refused_without_echoing_the_password(query: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        open_store(f"postgresql://app:s3cret@db.internal/otp?{query}")
    assert "s3cret" not in str(info.value)


def test_a_bad_url_fails_init_app_naming_the_key_not_the_password() -> None:
    with pytest.raises(ConfigurationError, match=r"OTP_CONVERSION_STORE_URL: .*pool_size") as info:
        load_settings(
            {
                "OTP_CONVERSION_PROVIDER": "tencent",
                "OTP_CONVERSION_STORE_URL": "postgresql://a:s3cret@db/x?pool_size=0",
            },
            instance_path="/i",
        )
    assert "s3cret" not in str(info.value)


def test_libpq_options_pass_through_and_ours_are_taken_out() -> None:
    options = parse_url("postgresql+psycopg://u:p%40ss@h:5433/d?sslmode=disable&schema=s&statement_timeout=1.5")
    assert options.conninfo == "postgresql://u:p%40ss@h:5433/d?sslmode=disable"
    assert (options.schema, options.statement_timeout, options.password) == ("s", 1.5, "p@ss")
    assert "p@ss" not in repr(options) and "p%40ss" not in repr(options)


def test_the_call_deadline_defaults_to_the_statement_timeout_and_a_margin() -> None:
    assert parse_url("postgresql://h/d?statement_timeout=2").call_timeout == 2 + CALL_TIMEOUT_MARGIN


def test_the_call_deadline_is_taken_from_the_url() -> None:
    assert parse_url("postgresql://h/d?call_timeout=0.5").call_timeout == 0.5


def test_a_missing_driver_is_a_clear_error_naming_the_extra(postgresql_url: str) -> None:
    # A fresh interpreter in which psycopg cannot be imported, as where the extra is not installed.
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'psycopg' or name.startswith('psycopg.'): raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from flask_otp_conversion.config import ConfigurationError, load_settings\n"
        "try:\n"
        f"    load_settings({{'OTP_CONVERSION_PROVIDER': 'tencent', 'OTP_CONVERSION_STORE_URL': {postgresql_url!r}}},"
        " instance_path='/i')\n"
        "except ConfigurationError as exc:\n"
        "    print(exc)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "flask-otp-conversion[postgresql]" in done.stdout, done.stdout + done.stderr
    assert PASSWORD not in done.stdout


# Errors ---------------------------------------------------------------------------------------------------


def test_a_wrong_password_fails_at_open_without_printing_either_password(postgresql_server: PostgreSQLServer) -> None:
    url = postgresql_server.url().replace("pw-s3cret", "wrong-s3cret")
    with pytest.raises(PostgreSQLUnavailableError, match="authentication failed") as info:
        open_store(url)
    shown = "".join(traceback.format_exception(info.value))
    assert "wrong-s3cret" not in shown and "s3cret" not in shown


def test_a_server_that_does_not_answer_does_not_stop_the_store_from_opening() -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    store = open_store(f"postgresql://otp:{quote(PASSWORD, safe='')}@127.0.0.1:{port}/otp?connect_timeout=1")
    with pytest.raises(PostgreSQLUnavailableError) as info:
        send(store, CN, "m1", HOUR0)
    assert isinstance(info.value, OSError)  # what the spool and the reporter take for store trouble
    assert "s3cret" not in "".join(traceback.format_exception(info.value))
    store.close()


# Schema ---------------------------------------------------------------------------------------------------


def test_a_new_store_records_its_schema_version(pg: PostgreSQLStore) -> None:
    assert pg.schema_version() == SCHEMA_VERSION


def test_a_schema_written_by_a_newer_version_is_refused(postgresql_server: PostgreSQLServer) -> None:
    url = postgresql_server.fresh_url()
    open_store(url).close()
    schema = parse_url(url).schema
    postgresql_server.psql(f"INSERT INTO {schema}.otp_schema_versions (version) VALUES ({SCHEMA_VERSION + 1})")
    with pytest.raises(PostgreSQLSchemaError, match=f"version {SCHEMA_VERSION + 1}, newer .* upgrade the package"):
        open_store(url)


def test_processes_opening_a_new_schema_at_once_create_it_once(postgresql_server: PostgreSQLServer) -> None:
    url = postgresql_server.fresh_url()
    code = "import sys; from flask_otp_conversion.store import open_store; open_store(sys.argv[1]).close()"
    procs = [subprocess.Popen([sys.executable, "-c", code, url], stderr=subprocess.PIPE) for _ in range(4)]
    errors = [proc.communicate()[1].decode() for proc in procs]
    assert [proc.returncode for proc in procs] == [0] * 4, errors
    schema = parse_url(url).schema
    assert postgresql_server.psql(f"SELECT count(*) FROM {schema}.otp_schema_versions") == str(SCHEMA_VERSION)


# Plans ----------------------------------------------------------------------------------------------------


def _scans(server: PostgreSQLServer, schema: str) -> tuple[int, int]:
    """(sequential, index) scans of otp_sends so far, as the statistics collector has them."""
    row = server.psql(
        f"SELECT seq_scan, idx_scan FROM pg_stat_user_tables WHERE schemaname = '{schema}' AND relname = 'otp_sends'"
    )
    seq, idx = row.split("|")
    return int(seq), int(idx or 0)


@pytest.mark.timeout(60)
def test_verifications_find_their_sends_by_index_on_a_table_never_analyzed(
    postgresql_server: PostgreSQLServer,
) -> None:
    # A send table grown since its last ANALYZE had the planner scan every send for each batch (18.7 ms against
    # 0.45 ms at 40,000 sends): the lookups must not depend on the statistics.
    url = postgresql_server.fresh_url()
    store = open_store(url)
    schema = parse_url(url).schema
    postgresql_server.psql(
        f"ALTER TABLE {schema}.otp_sends SET (autovacuum_enabled = false);"
        f" INSERT INTO {schema}.otp_sends (provider, message_id, phone, sent_at) SELECT 'tencent', 'm' || n,"
        f" '+8613' || lpad(n::text, 9, '0'), {HOUR0} FROM generate_series(1, 40000) AS n"
    )
    items = [Verification(f"+8613{n:09d}", None, HOUR0 + 10) for n in range(1000, 1100)]
    items.append(Verification("+8613000000007", "m7", HOUR0 + 10))
    before = _scans(postgresql_server, schema)
    outcomes = store.apply_verifications(items, provider="tencent", match_window=600, checkpoint=("s", 0, 1))
    assert outcomes is not None and all(outcome.enqueued for outcome in outcomes)
    deadline = time.monotonic() + 20  # a backend reports its counters within a second or so of its transaction
    while (after := _scans(postgresql_server, schema))[1] == before[1] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert after[1] > before[1]  # the counters moved: the batch's scans are in them
    assert after[0] == before[0], "a sequential scan of otp_sends"
    store.close()


def _outbox_scans(server: PostgreSQLServer, schema: str) -> tuple[int, int, int]:
    """(sequential scans of otp_outbox, index scans of it, scans of its partial index otp_outbox_due) so far."""
    row = server.psql(
        "SELECT t.seq_scan, coalesce(t.idx_scan, 0), i.idx_scan FROM pg_stat_user_tables AS t"
        " JOIN pg_stat_user_indexes AS i ON i.relid = t.relid AND i.indexrelname = 'otp_outbox_due'"
        f" WHERE t.schemaname = '{schema}' AND t.relname = 'otp_outbox'"
    )
    seq, idx, due = row.split("|")
    return int(seq), int(idx), int(due)


def _settled_scans(
    server: PostgreSQLServer, store: PostgreSQLStore, schema: str, arrived: Callable[[tuple[int, int, int]], bool]
) -> tuple[int, int, int]:
    """The counters once the store's last statements are in them (``arrived``): its connections are closed
    first, as a backend reports its counters when it exits (an idle one, up to 10 s later)."""
    store.close()
    deadline = time.monotonic() + 20
    while not arrived(now := _outbox_scans(server, schema)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert arrived(now), "the statements' scans never reached the statistics"
    return now


def _stale_outbox(server: PostgreSQLServer, *, done: int, pending: int) -> tuple[PostgreSQLStore, str]:
    """A store whose outbox was analyzed holding 20 pending rows and ``done`` reported ones, then grew by
    ``pending`` pending rows with autovacuum off: statistics that take the backlog for tiny."""
    url = server.fresh_url()
    store = open_store(url)
    assert isinstance(store, PostgreSQLStore)
    schema = parse_url(url).schema
    assert schema is not None
    rows = (
        f"INSERT INTO {schema}.otp_outbox (message_id, phone, provider, sent_at, verified_at, created_at, state,"
        " next_attempt_at, done_at) SELECT 'm' || n, '+8613' || lpad(n::text, 9, '0'), 'tencent', {at}, {at}, {at},"
        " '{state}', {at} + n, {done_at} FROM generate_series({first}, {last}) AS n"
    )
    server.psql(
        f"ALTER TABLE {schema}.otp_outbox SET (autovacuum_enabled = false);"
        + rows.format(at=HOUR0, state="pending", done_at="NULL", first=1, last=20)
        + ";"
        + rows.format(at=HOUR0, state="reported", done_at=HOUR0, first=10**6, last=10**6 + done - 1)
        + f"; ANALYZE {schema}.otp_outbox;"
        + rows.format(at=HOUR0, state="pending", done_at="NULL", first=21, last=20 + pending)
    )
    return store, schema


def _ack(store: PostgreSQLStore, items: list[OutboxItem]) -> None:
    assert store.ack(items, now=HOUR0 + 10**6) == len(items)


def _release(store: PostgreSQLStore, items: list[OutboxItem]) -> None:
    assert store.release(items) == len(items)


def _claim(store: PostgreSQLStore, items: list[OutboxItem]) -> None:
    assert len(store.claim(provider="tencent", limit=50, lease_seconds=60, now=HOUR0 + 10**6)) == 50


@pytest.mark.timeout(90)
@pytest.mark.parametrize("change", [_ack, _release, _claim], ids=["ack", "release", "claim"])
def test_claimed_rows_are_changed_without_a_sequential_scan_of_a_backlog_grown_since_analyze(
    postgresql_server: PostgreSQLServer, change: Callable[[PostgreSQLStore, list[OutboxItem]], None]
) -> None:
    # Grown from 20 rows at the last ANALYZE, the backlog was hashed whole for each ack, release and claim.
    store, schema = _stale_outbox(postgresql_server, done=0, pending=5000)
    items = store.claim(provider="tencent", limit=50, lease_seconds=600, now=HOUR0 + 10**6)
    assert len(items) == 50
    before = _settled_scans(postgresql_server, store, schema, lambda scans: scans[1] > 0)  # the claim's
    change(store, items)
    after = _settled_scans(postgresql_server, store, schema, lambda scans: scans[:2] != before[:2])
    assert after[0] == before[0], "a sequential scan of otp_outbox"
    store.close()


@pytest.mark.timeout(90)
@pytest.mark.parametrize("change", [_ack, _release], ids=["ack", "release"])
def test_claimed_rows_are_changed_without_scanning_the_due_index_statistics_call_tiny(
    postgresql_server: PostgreSQLServer, change: Callable[[PostgreSQLStore, list[OutboxItem]], None]
) -> None:
    # Analyzed when nearly every row was reported, the pending set looks tiny: the planner read the whole
    # partial index otp_outbox_due (by its third column, id) for each ack instead of the primary key.
    store, schema = _stale_outbox(postgresql_server, done=20000, pending=20000)
    items = store.claim(provider="tencent", limit=50, lease_seconds=600, now=HOUR0 + 10**6)
    assert len(items) == 50
    before = _settled_scans(postgresql_server, store, schema, lambda scans: scans[1] > 0)  # the claim's
    change(store, items)
    after = _settled_scans(postgresql_server, store, schema, lambda scans: scans[:2] != before[:2])
    assert (after[0], after[2]) == (before[0], before[2]), "a scan of the table or of otp_outbox_due"
    store.close()


def test_an_ack_holding_an_id_twice_counts_the_pair_that_holds_it(pg: PostgreSQLStore) -> None:
    # The same row claimed again after its lease ran out can sit in one ack batch under both tokens.
    send(pg, CN, "m1", HOUR0)
    verify(pg, CN, HOUR0 + 1, message_id="m1")
    (stale,) = pg.claim(provider="tencent", limit=1, lease_seconds=1, now=HOUR0 + 2)
    (held,) = pg.claim(provider="tencent", limit=1, lease_seconds=60, now=HOUR0 + 4)
    assert pg.ack([stale, held], now=HOUR0 + 5) == 1
    assert pg.outbox_stats(now=HOUR0 + 5).pending == 0


# Hostile values -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "message_id",
    ["x'); DROP TABLE otp_sends; --", "nul\x00inside", "back\\slash \\u0000", "lone \ud800 surrogate", "ü" * 128],
)
def test_hostile_message_ids_are_stored_and_read_back_as_they_were(pg: PostgreSQLStore, message_id: str) -> None:
    assert send(pg, CN, message_id, HOUR0)
    assert not send(pg, CN, message_id, HOUR0)  # the same id, found again
    assert verify(pg, CN, HOUR0 + 10, message_id=message_id).enqueued
    (item,) = pg.claim(provider="tencent", limit=5, lease_seconds=60, now=HOUR0 + 20)
    assert item.message_id == message_id


def test_ids_that_differ_only_after_an_escape_stay_apart(pg: PostgreSQLStore) -> None:
    assert send(pg, CN, "a\x00", HOUR0)
    assert send(pg, CN, "a\\u0000", HOUR0 + 1)
    assert send(pg, CN, "a\\", HOUR0 + 2)
    assert verify(pg, CN, HOUR0 + 10, message_id="a\\u0000").enqueued
    assert not verify(pg, CN, HOUR0 + 11, message_id="a\\u0000").enqueued
    assert verify(pg, CN, HOUR0 + 12, message_id="a\x00").enqueued


def test_sql_looking_phones_never_reach_the_database(pg: PostgreSQLStore) -> None:
    with pytest.raises(ValueError, match=r"E\.164"):
        send(pg, "+8613711112222' OR '1'='1", "m1", HOUR0)
    assert pg.outbox_stats(now=HOUR0).pending == 0


def test_hostile_flag_values_and_errors_round_trip(pg: PostgreSQLStore) -> None:
    pg.set_flag("n\x00me", "v\x00lue'; --")
    assert pg.get_flag("n\x00me") == "v\x00lue'; --"
    assert pg.get_flag("n") is None
    send(pg, CN, "m1", HOUR0)
    verify(pg, CN, HOUR0 + 1, message_id="m1")
    (item,) = pg.claim(provider="tencent", limit=1, lease_seconds=60, now=HOUR0 + 2)
    assert pg.retry(item, next_attempt_at=HOUR0 + 3, error="boom\x00\ud800", now=HOUR0 + 2)
    (again,) = pg.claim(provider="tencent", limit=1, lease_seconds=60, now=HOUR0 + 4)
    assert again.last_error == "boom\x00\ud800"


def test_huge_ids_match_nothing_and_raise_nothing(pg: PostgreSQLStore) -> None:
    assert pg.dead_letters(ids=[10**30, -(10**30), 0]) == []
    assert pg.replay_dead_letters([10**30], now=HOUR0) == 0
    assert pg.dead_letters(limit=10**30) == []


# Processes ------------------------------------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork")
def test_a_forked_child_opens_its_own_connections_and_the_parent_keeps_its_own(pg: PostgreSQLStore) -> None:
    send(pg, CN, "m1", HOUR0)  # the parent's pool now holds a connection
    pid = os.fork()
    if pid == 0:  # the child: uses the store, then leaves without running any exit handler
        try:
            ok = verify(pg, CN, HOUR0 + 10, message_id="m1").enqueued
            pg.close()
        except BaseException:
            os._exit(2)
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert pg.outbox_stats(now=HOUR0 + 20).pending == 1  # the parent's connection still works
