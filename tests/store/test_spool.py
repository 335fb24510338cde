"""The verification spool: appends applied to a real SQLite store exactly once, across threads and processes."""

from __future__ import annotations

import logging
import os
import resource
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from store_helpers import CN, SG, send

from flask_otp_conversion.store import SQLiteStore
from flask_otp_conversion.store.base import Verification, VerifyOutcome
from flask_otp_conversion.store.spool import SUFFIX, Spool, decode, encode

WORKER = Path(__file__).with_name("spool_worker.py")
LOGGER = logging.getLogger("test_spool")
NOW = time.time()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    opened = SQLiteStore(tmp_path / "store.db")
    yield opened
    opened.close()


def make_spool(store: SQLiteStore, tmp_path: Path, **kwargs: object) -> Spool:
    options: dict[str, object] = {"autostart": False, **kwargs}
    return Spool(store, str(tmp_path / "spool"), provider="tencent", match_window=900.0, logger=LOGGER, **options)  # type: ignore[arg-type]


def phone(i: int) -> str:
    return f"+{6590000000 + i}"


def segments(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "spool").glob("*" + SUFFIX))


def pending(store: SQLiteStore) -> int:
    return store.outbox_stats(now=time.time()).pending


def wait_until_pending(store: SQLiteStore, count: int, timeout: float = 10.0) -> int:
    """Poll until the outbox holds ``count`` pending reports (or the timeout); returns what it holds."""
    deadline = time.monotonic() + timeout
    while pending(store) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    return pending(store)


def sent(store: SQLiteStore, count: int) -> None:
    for i in range(count):
        send(store, phone(i), f"m{i}", NOW - 60)


def spool_in_worker(store: SQLiteStore, tmp_path: Path, count: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, str(WORKER), store.path, str(tmp_path / "spool"), str(count)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "spooled"
    return proc


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


def test_a_verification_applied_late_is_matched_at_its_own_time(store: SQLiteStore, tmp_path: Path) -> None:
    send(store, CN, "early", NOW - 100)
    spool = make_spool(store, tmp_path)
    spool.append(Verification(CN, None, NOW - 50))
    send(store, CN, "later", NOW - 10)  # sent after the verification happened, before it is applied
    spool.apply_pending()
    assert [item.message_id for item in store.claim(provider="tencent", limit=9, lease_seconds=9, now=NOW)] == [
        "early"
    ]


def test_two_spools_applying_the_same_folder_at_once_apply_each_line_once(
    store: SQLiteStore, tmp_path: Path
) -> None:
    count = 2000
    writer = make_spool(store, tmp_path)
    reader = make_spool(SQLiteStore(store.path), tmp_path)
    for i in range(count):
        writer.append(Verification(phone(i), None, NOW))  # nothing sent: every one counts as unmatched
    results: list[int] = []
    threads = [
        threading.Thread(target=lambda: results.append(writer.apply_pending())),
        threading.Thread(target=lambda: results.append(reader.apply_pending(everyone=True))),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(results) == count
    assert sum(row.unmatched for row in store.counts(since=0, until=NOW + 3600)) == count


def test_a_bad_line_is_skipped_and_the_lines_after_it_applied(
    store: SQLiteStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sent(store, 2)
    spool = make_spool(store, tmp_path)
    spool.append(Verification(phone(0), None, NOW))
    with open(segments(tmp_path)[0], "ab") as file:
        file.write(b'["not a phone",null,1.0]\n{"garbage"\n')
    spool.append(Verification(phone(1), None, NOW))
    assert spool.apply_pending() == 2
    assert pending(store) == 2
    assert caplog.text.count("skipped the line") == 2


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


def killed_after_spooling(store: SQLiteStore, tmp_path: Path, count: int) -> None:
    """A process that spooled ``count`` verifications of sent OTPs, then got ``kill -9``."""
    sent(store, count)
    proc = spool_in_worker(store, tmp_path, count)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def test_what_a_killed_process_spooled_is_applied_by_the_next_sweep(store: SQLiteStore, tmp_path: Path) -> None:
    killed_after_spooling(store, tmp_path, 300)
    assert pending(store) == 0 and len(segments(tmp_path)) == 1
    assert make_spool(store, tmp_path).apply_pending() == 300
    assert pending(store) == 300
    assert segments(tmp_path) == []


def test_a_torn_last_line_of_a_killed_process_is_dropped(store: SQLiteStore, tmp_path: Path) -> None:
    killed_after_spooling(store, tmp_path, 5)
    with open(segments(tmp_path)[0], "ab") as file:
        file.write(encode(Verification(SG, None, NOW))[:9])  # a write the kill cut off
    assert make_spool(store, tmp_path).apply_pending() == 5
    assert pending(store) == 5
    assert segments(tmp_path) == []


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


@pytest.mark.parametrize("message_id", [None, "m-1", 'quote " backslash \\ newline \n tab \t', "é中文", "x" * 128])
def test_a_line_reads_back_as_the_verification_written(message_id: str | None) -> None:
    item = Verification(CN, message_id, 1_795_460_400.123456)
    line = encode(item)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert decode(line) == item


def test_append_refuses_a_phone_not_in_e164(store: SQLiteStore, tmp_path: Path) -> None:
    spool = make_spool(store, tmp_path)
    with pytest.raises(ValueError):
        spool.append(Verification('+86"]', None, NOW))
    assert segments(tmp_path) == []
