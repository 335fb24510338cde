"""The spool's writer and life cycle: appends, the background thread, replacing and removing segments, forks,
a disk that refuses a write; applied to a real SQLite store exactly once, across threads and processes."""

from __future__ import annotations

import os
import resource
import signal
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from spool_helpers import (
    NOW,
    make_spool,
    pending,
    phone,
    segments,
    sent,
    spool_in_worker,
    wait_until_pending,
)

from flask_otp_conversion.store import SQLiteStore
from flask_otp_conversion.store.base import Verification, VerifyOutcome
from flask_otp_conversion.store.spool_format import encode


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    opened = SQLiteStore(tmp_path / "store.db")
    yield opened
    opened.close()


def test_appended_verifications_reach_the_store_when_applied(store: SQLiteStore, tmp_path: Path) -> None:
    sent(store, 3)
    seen: list[tuple[Verification, VerifyOutcome]] = []
    spool = make_spool(store, tmp_path, on_outcome=lambda item, outcome: seen.append((item, outcome)))
    for i in range(3):
        spool.append(Verification(phone(i), None, NOW))
    assert pending(store) == 0
    assert spool.apply_pending() == 3
    assert pending(store) == 3
    assert [outcome.message_id for _, outcome in seen] == ["m0", "m1", "m2"]
    assert spool.apply_pending() == 0


def test_the_background_thread_applies_without_being_asked(store: SQLiteStore, tmp_path: Path) -> None:
    sent(store, 1)
    spool = make_spool(store, tmp_path, autostart=True)
    spool.append(Verification(phone(0), None, NOW))
    assert wait_until_pending(store, 1) == 1
    spool.close()


def test_a_verification_spooled_while_the_store_refuses_is_applied_once_it_answers(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "store.db", busy_timeout=0.1)
    sent(store, 1)
    spool = make_spool(store, tmp_path, autostart=True)
    blocker = sqlite3.connect(store.path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")  # the store is unreachable: every write times out
    try:
        spool.append(Verification(phone(0), None, NOW))
        time.sleep(0.5)  # the applier tried, and failed, meanwhile
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert wait_until_pending(store, 1) == 1
    spool.close()
    store.close()


def test_append_refuses_a_phone_not_in_e164(store: SQLiteStore, tmp_path: Path) -> None:
    spool = make_spool(store, tmp_path)
    with pytest.raises(ValueError):
        spool.append(Verification('+86"]', None, NOW))
    assert segments(tmp_path) == []


def test_close_applies_everything_and_removes_the_segment(store: SQLiteStore, tmp_path: Path) -> None:
    sent(store, 2)
    spool = make_spool(store, tmp_path, autostart=True)
    spool.append(Verification(phone(0), None, NOW))
    spool.close()
    assert pending(store) == 1
    assert segments(tmp_path) == []
    spool.append(Verification(phone(1), None, NOW))  # a late append opens a fresh segment
    assert len(segments(tmp_path)) == 1
    spool.close()
    assert pending(store) == 2
    assert segments(tmp_path) == []


def test_a_large_applied_segment_is_replaced_by_a_fresh_one(store: SQLiteStore, tmp_path: Path) -> None:
    spool = make_spool(store, tmp_path, rotate_bytes=1000)
    for i in range(40):
        spool.append(Verification(phone(i), None, NOW))
    first = segments(tmp_path)
    spool.apply_pending()
    assert segments(tmp_path) == []
    spool.append(Verification(phone(99), None, NOW))
    assert len(segments(tmp_path)) == 1 and segments(tmp_path) != first
    spool.apply_pending()
    assert sum(row.unmatched for row in store.counts(since=0, until=NOW + 3600)) == 41


def test_a_live_process_keeps_its_segment_and_flush_applies_its_lines(store: SQLiteStore, tmp_path: Path) -> None:
    sent(store, 10)
    proc = spool_in_worker(store, tmp_path, 10)
    try:
        spool = make_spool(store, tmp_path)
        assert spool.apply_pending() == 0  # a sweep leaves a live process's segment alone
        assert spool.apply_pending(everyone=True) == 10
        assert pending(store) == 10
        assert len(segments(tmp_path)) == 1
    finally:
        proc.communicate("")
    assert proc.returncode == 0


def test_a_forked_child_writes_its_own_segment(store: SQLiteStore, tmp_path: Path) -> None:
    sent(store, 2)
    spool = make_spool(store, tmp_path)
    spool.append(Verification(phone(0), None, NOW))
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            spool.append(Verification(phone(1), None, NOW))
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    assert len(segments(tmp_path)) == 2
    assert spool.apply_pending(everyone=True) == 2
    assert pending(store) == 2


def test_a_write_the_disk_refuses_leaves_no_torn_line(store: SQLiteStore, tmp_path: Path) -> None:
    sent(store, 50)
    spool = make_spool(store, tmp_path)
    spool.append(Verification(phone(0), None, NOW))
    line = len(encode(Verification(phone(0), None, NOW)))
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child: a file size limit half way into a line
        code = 1
        try:
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (line * 3 + line // 2, resource.RLIM_INFINITY))
            refused = 0
            for i in range(1, 50):
                try:
                    spool.append(Verification(phone(i), None, NOW))
                except OSError:
                    refused += 1
            code = 0 if refused == 46 else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    sizes = sorted(path.stat().st_size for path in segments(tmp_path))
    assert sizes == [line, line * 3]  # the parent's one line; the child's three whole ones, no torn fourth
    assert spool.apply_pending(everyone=True) == 4


def test_an_applier_for_everyone_applies_a_live_processes_lines_unasked(store: SQLiteStore, tmp_path: Path) -> None:
    sent(store, 10)
    spool = make_spool(store, tmp_path)
    spool.start(everyone=True)
    proc = spool_in_worker(store, tmp_path, 10)
    try:
        assert wait_until_pending(store, 10) == 10
    finally:
        proc.communicate("")
        spool.close()
