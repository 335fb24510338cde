"""What only the SQLite store has: a file, a schema version, processes and forks."""

from __future__ import annotations

import os
import random
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest
from store_helpers import CN, HOUR0, SG, US, damage_an_index, send, verify

from flask_otp_conversion.store import SQLiteStore, open_store
from flask_otp_conversion.store.sqlite import SCHEMA_VERSION, DamagedStoreError
from flask_otp_conversion.store.sqlite_connections import CACHE_KIB, POOL_SIZE
from flask_otp_conversion.store.sqlite_schema import MIGRATIONS


def pragma(path: Path, name: str) -> Any:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(f"PRAGMA {name}").fetchone()[0]
    finally:
        conn.close()


# The file -------------------------------------------------------------------------------------------------


def test_data_survives_closing_and_reopening_the_file(tmp_path: Path) -> None:
    first = SQLiteStore(tmp_path / "s.db")
    send(first, CN, "m1", HOUR0)
    first.set_flag("degraded", "1")
    first.close()
    second = SQLiteStore(tmp_path / "s.db")
    assert not send(second, CN, "m1", HOUR0)
    assert second.get_flag("degraded") == "1"
    second.close()


def test_a_new_file_is_created_with_its_folders_in_wal_mode_at_the_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "s.db"
    SQLiteStore(path).close()
    assert pragma(path, "journal_mode") == "wal"
    assert pragma(path, "user_version") == SCHEMA_VERSION


def test_every_threads_connection_has_a_small_page_cache(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    sizes: list[int] = []

    def look() -> None:
        with store._connection() as conn:
            sizes.append(conn.execute("PRAGMA cache_size").fetchone()[0])

    look()
    thread = threading.Thread(target=look)
    thread.start()
    thread.join()
    store.close()
    assert sizes == [-CACHE_KIB, -CACHE_KIB]


def file_at_version(path: Path, version: int) -> None:
    """A store file as ``version`` wrote it (its own schema statements), holding one send (m1), its pending
    outbox row and its counter hour."""
    conn = sqlite3.connect(path)
    for statement in MIGRATIONS[:version]:
        for sql in statement:
            conn.execute(sql)
    conn.execute(
        "INSERT INTO messages (provider, message_id, phone, sent_at, verified_at) VALUES ('tencent', 'm1', ?, ?, ?)",
        (CN, HOUR0, HOUR0 + 5),
    )
    conn.execute(
        "INSERT INTO outbox (message_id, phone, provider, sent_at, verified_at, created_at, state, next_attempt_at)"
        " VALUES ('m1', ?, 'tencent', ?, ?, ?, 'pending', ?)",
        (CN, HOUR0, HOUR0 + 5, HOUR0 + 5, HOUR0 + 5),
    )
    conn.execute("INSERT INTO counters VALUES (?, 'tencent', '86', 1, 1, 0)", (HOUR0,))
    conn.execute(f"PRAGMA user_version = {version}")
    conn.commit()
    conn.close()


def test_a_version_3_file_is_migrated_keeping_its_rows_of_unknown_account(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    file_at_version(path, 3)
    store = SQLiteStore(path)
    assert not send(store, CN, "m1", HOUR0)
    (item,) = store.claim(provider="tencent", account="1400", limit=5, lease_seconds=30, now=HOUR0 + 10)
    assert (item.message_id, item.account, item.converted) == ("m1", "", True)
    assert [(row.hour, row.requested, row.verified) for row in store.counts(since=0, until=1e11)] == [(HOUR0, 1, 1)]
    store.close()
    assert pragma(path, "user_version") == SCHEMA_VERSION


def test_a_version_1_file_is_migrated_keeping_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    file_at_version(path, 1)
    store = SQLiteStore(path)
    assert store.take_slots("rate:x", want=1, interval=1.0, horizon=0.0, now=HOUR0) == (HOUR0, 1)
    assert store.spool_position("s") == 0
    assert not send(store, CN, "m1", HOUR0)  # the message recorded before the migration is still there
    store.close()
    assert pragma(path, "user_version") == SCHEMA_VERSION


def test_a_version_2_file_is_migrated_keeping_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    file_at_version(path, 2)
    store = SQLiteStore(path)
    store.apply_verifications([], provider="tencent", match_window=600.0, checkpoint=("s", 0, 10))
    assert store.spool_position("s") == 10
    assert not send(store, CN, "m1", HOUR0)
    store.close()
    assert pragma(path, "user_version") == SCHEMA_VERSION


def test_a_file_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(RuntimeError, match=f"schema version {SCHEMA_VERSION + 1} is newer"):
        SQLiteStore(path)


def test_an_empty_sqlite_file_gets_the_schema(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    sqlite3.connect(path).close()
    store = SQLiteStore(path)
    assert send(store, CN, "m1", HOUR0)
    store.close()


def test_a_file_that_is_not_a_database_is_refused_at_start(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    path.write_bytes(b"these are not the pages of a database\n" * 200)
    with pytest.raises(sqlite3.DatabaseError, match="not a database"):
        SQLiteStore(path)


def sound_file_of_sends(path: Path, count: int = 2000) -> None:
    """A store file of ``count`` sends, closed, its WAL folded into the file."""
    store = SQLiteStore(path)
    for i in range(count):
        send(store, f"+86137{i:08d}", f"m{i}", HOUR0 + i)
    store.close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def test_a_file_with_a_damaged_page_in_the_middle_is_refused_at_start(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    sound_file_of_sends(path)
    page_size, pages = pragma(path, "page_size"), pragma(path, "page_count")
    with open(path, "r+b") as file:  # the header stays valid: only a page in the middle is garbage
        file.seek(page_size * (pages // 2))
        file.write(random.Random(7).randbytes(page_size))
    with pytest.raises(DamagedStoreError) as caught:
        SQLiteStore(path)
    message = str(caught.value)
    assert str(path) in message and "integrity check" in message
    assert "restore the file from a backup" in message and "move it aside" in message


def test_a_damaged_index_is_found_by_the_full_check_only(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    sound_file_of_sends(path, 50)
    damage_an_index(path)
    store = SQLiteStore(path)  # quick_check at start reads pages and rows, not indexes against tables
    assert store.check_integrity(full=False) == []
    assert "missing from index messages_phone_sent" in store.check_integrity()[0]
    store.close()


def test_a_sound_file_passes_the_full_check(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    sound_file_of_sends(path, 50)
    store = SQLiteStore(path)
    assert store.check_integrity() == []
    store.close()


def test_the_store_keeps_working_after_close(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    send(store, CN, "m1", HOUR0)
    store.close()
    assert verify(store, CN, HOUR0 + 5).enqueued
    store.close()


def test_the_repr_shows_only_the_path(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    assert repr(store) == f"SQLiteStore({str(tmp_path / 's.db')!r})"
    store.close()


def held(store: SQLiteStore) -> sqlite3.Connection:
    """The connection a store call in this thread would use now (handed back at once)."""
    with store._connection() as conn:
        return conn


def test_many_threads_share_at_most_pool_size_connections(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    start = threading.Barrier(4 * POOL_SIZE)
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            start.wait()
            for i in range(20):
                send(store, CN, f"t{n}-{i}", HOUR0)
                store.counts(since=0, until=1e11)
        except BaseException as exc:  # reported by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4 * POOL_SIZE)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert 1 <= len(store._pool.connections) <= POOL_SIZE
    assert sum(row.requested for row in store.counts(since=0, until=1e11)) == 4 * POOL_SIZE * 20
    store.close()


def test_a_thread_waits_for_a_connection_when_all_are_lent(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    lent, release = threading.Barrier(POOL_SIZE + 1), threading.Event()

    def hold() -> None:
        with store._connection():
            lent.wait()
            release.wait()

    holders = [threading.Thread(target=hold) for _ in range(POOL_SIZE)]
    for thread in holders:
        thread.start()
    lent.wait()
    done = threading.Event()
    late = threading.Thread(target=lambda: (send(store, CN, "late", HOUR0), done.set()))
    late.start()
    assert not done.wait(0.3)
    release.set()
    assert done.wait(10)
    for thread in [*holders, late]:
        thread.join()
    assert len(store._pool.connections) == POOL_SIZE
    assert not send(store, CN, "late", HOUR0)  # it was recorded, once
    store.close()


def test_a_nested_call_uses_the_connection_its_thread_holds(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    with store._connection() as outer:
        assert held(store) is outer
        assert store.get_flag("x") is None  # does not wait for a second slot
    store.close()


def test_a_connection_comes_back_without_the_transaction_its_call_left_open(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    with store._connection() as conn:
        conn.execute("BEGIN")
    assert held(store) is conn
    assert not conn.in_transaction
    store.close()


def test_a_connection_lent_when_the_store_is_closed_is_closed_on_return(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    with store._connection() as conn:
        store.close()
    with pytest.raises(sqlite3.ProgrammingError):
        conn.execute("SELECT 1")
    assert send(store, CN, "after", HOUR0)  # the store reconnects
    store.close()


def test_close_leaves_a_lent_connection_usable_until_it_comes_back(tmp_path: Path) -> None:
    # A delivery thread mid-claim while the app shuts down: closing its connection under it crashed the interpreter.
    store = SQLiteStore(tmp_path / "s.db")
    with store._connection() as conn:
        store.close()
        assert conn.execute("SELECT count(*) FROM outbox").fetchone() == (0,)
    with pytest.raises(sqlite3.ProgrammingError):
        conn.execute("SELECT 1")
    store.close()


# Forks ----------------------------------------------------------------------------------------------------


def _in_child(body: Any) -> int:
    """Run ``body`` in a forked child; its exit code (0 when ``body`` returned True)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 3
        try:
            code = 0 if body() else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.timeout(30)
def test_a_forked_child_opens_its_own_connection_without_reopen(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    send(store, CN, "parent", HOUR0)
    inherited = held(store)
    assert _in_child(lambda: held(store) is not inherited and send(store, SG, "child", HOUR0)) == 0
    assert held(store) is inherited  # the parent's own is untouched
    assert not send(store, SG, "child", HOUR0)  # the child's write is in the file
    assert send(store, US, "parent-again", HOUR0)
    store.close()
    assert pragma(tmp_path / "s.db", "integrity_check") == "ok"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
@pytest.mark.timeout(30)
def test_reopen_in_a_forked_child_drops_the_inherited_connection(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    inherited = held(store)

    def child() -> bool:
        store.reopen()
        own = held(store)
        store.close()  # closes only the child's own connection
        return own is not inherited and verify(store, CN, HOUR0).message_id is None

    assert _in_child(child) == 0
    assert store.counts(since=0, until=1e11)[0].unmatched == 1
    assert held(store) is inherited
    store.close()


# URLs -----------------------------------------------------------------------------------------------------


def test_url_options_set_synchronous_and_busy_timeout(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 's.db'}?synchronous=full&busy_timeout=2.5")
    assert isinstance(store, SQLiteStore)
    assert store.path == str(tmp_path / "s.db")
    conn = held(store)
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 2500
    store.close()


def test_the_default_synchronous_is_normal(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 's.db'}")
    assert isinstance(store, SQLiteStore)
    assert held(store).execute("PRAGMA synchronous").fetchone()[0] == 1
    store.close()
