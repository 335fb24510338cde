"""The verification spool: appends applied to a real SQLite store exactly once, across threads and processes."""

from __future__ import annotations

import base64
import json
import logging
import os
import resource
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from store_helpers import CN, SG, send

from flask_otp_conversion.store import SQLiteStore
from flask_otp_conversion.store.base import Verification, VerifyOutcome
from flask_otp_conversion.store.checks import check_verification
from flask_otp_conversion.store.quarantine import BAD_SUFFIX, QUARANTINE, quarantined
from flask_otp_conversion.store.spool import (
    MAX_LINE,
    READ_CHUNK,
    SUFFIX,
    Spool,
    decode,
    decode_block,
    encode,
    split_lines,
)

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


def line(i: int) -> bytes:
    return encode(Verification(phone(i), None, NOW))


def dead_segment(tmp_path: Path, content: bytes, name: str = "dead") -> Path:
    """A segment no process holds, as a process that died (or an operator) left it."""
    path = tmp_path / "spool" / (name + SUFFIX)
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(content)
    return path


def quarantine_records(tmp_path: Path, name: str) -> list[dict[str, Any]]:
    path = tmp_path / "spool" / QUARANTINE / (name + BAD_SUFFIX)
    return [json.loads(text) for text in path.read_text().splitlines()] if path.exists() else []


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


def refused_once(store: SQLiteStore, spool: Spool) -> None:
    """Have the store refuse the applier (a write lock held elsewhere), as in an outage, then answer again."""
    blocker = sqlite3.connect(store.path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(sqlite3.OperationalError):
            spool.apply_pending()
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()


def test_after_an_outage_a_verification_waits_for_a_send_still_on_its_way(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "store.db", busy_timeout=0.05)
    spool = make_spool(store, tmp_path, send_grace=30.0)
    spool.append(Verification(phone(0), None, NOW))
    refused_once(store, spool)
    assert spool.apply_pending() == 0  # no send yet: it waits rather than count as unmatched
    sent(store, 1)  # the send, held in some process's memory through the outage, arrives
    assert spool.apply_pending() == 1
    assert pending(store) == 1
    spool.close()
    store.close()


def test_after_an_outage_lines_before_the_waiting_one_are_applied(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "store.db", busy_timeout=0.05)
    sent(store, 1)
    spool = make_spool(store, tmp_path, send_grace=30.0)
    spool.append(Verification(phone(0), None, NOW))
    spool.append(Verification(phone(1), None, NOW))  # its send has not arrived
    refused_once(store, spool)
    assert spool.apply_pending() == 1
    assert pending(store) == 1
    spool.close()
    store.close()


def test_a_verification_whose_send_never_comes_is_applied_unmatched_after_the_grace(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "store.db", busy_timeout=0.05)
    spool = make_spool(store, tmp_path, send_grace=0.2)
    spool.append(Verification(phone(0), None, NOW))
    refused_once(store, spool)
    assert spool.apply_pending() == 0
    time.sleep(0.3)
    assert spool.apply_pending() == 1
    assert [row.unmatched for row in store.counts(since=0, until=1e11)] == [1]
    spool.close()
    store.close()


def test_without_an_outage_an_unmatched_verification_is_applied_at_once(store: SQLiteStore, tmp_path: Path) -> None:
    spool = make_spool(store, tmp_path, send_grace=30.0)
    spool.append(Verification(phone(0), None, NOW))
    assert spool.apply_pending() == 1
    spool.close()


def test_a_verification_applied_late_is_matched_at_its_own_time(store: SQLiteStore, tmp_path: Path) -> None:
    send(store, CN, "early", NOW - 100)
    spool = make_spool(store, tmp_path)
    spool.append(Verification(CN, None, NOW - 50))
    send(store, CN, "later", NOW - 10)  # sent after the verification happened, before it is applied
    spool.apply_pending()
    assert [item.message_id for item in store.claim(provider="tencent", limit=9, lease_seconds=9, now=NOW)] == ["early"]


def test_two_spools_applying_the_same_folder_at_once_apply_each_line_once(store: SQLiteStore, tmp_path: Path) -> None:
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


def test_a_bad_line_is_quarantined_and_the_lines_around_it_applied(
    store: SQLiteStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sent(store, 2)
    spool = make_spool(store, tmp_path)
    spool.append(Verification(phone(0), None, NOW))
    (segment,) = segments(tmp_path)
    first = segment.stat().st_size
    with open(segment, "ab") as file:
        file.write(b'["not a phone",null,1.0]\n{"garbage"\n')
    spool.append(Verification(phone(1), None, NOW))
    assert spool.apply_pending() == 2
    assert pending(store) == 2
    assert [record["offset"] for record in quarantine_records(tmp_path, segment.stem)] == [first, first + 25]
    assert quarantined(str(tmp_path / "spool")) == 2
    assert [r.levelname for r in caplog.records if segment.stem in r.getMessage()] == ["ERROR"]


def test_a_quarantined_line_keeps_its_bytes_and_why(store: SQLiteStore, tmp_path: Path) -> None:
    dead_segment(tmp_path, b'["+6590000000",null,"soon"]\n' + b"\xff\xfe\x00\n")
    make_spool(store, tmp_path).apply_pending()
    text, binary = quarantine_records(tmp_path, "dead")
    assert (text["offset"], text["length"], text["line"]) == (0, 28, '["+6590000000",null,"soon"]\n')
    assert "verified_at" in text["reason"]
    assert (binary["offset"], base64.b64decode(binary["line_base64"])) == (28, b"\xff\xfe\x00\n")


def test_a_dead_segment_with_a_line_the_store_cannot_take_is_applied_around_it(
    store: SQLiteStore, tmp_path: Path
) -> None:
    # Valid JSON and a valid verification by every check, but a time SQLite cannot hold (OverflowError).
    sent(store, 4)
    lines = [line(0), b'["+6590000001",null,1e300]\n', line(2)]
    dead_segment(tmp_path, b"".join(lines), name="first")
    dead_segment(tmp_path, line(3), name="second")  # swept after the first
    spool = make_spool(store, tmp_path)
    assert spool.apply_pending() == 3
    assert pending(store) == 3
    assert [record["offset"] for record in quarantine_records(tmp_path, "first")] == [len(lines[0])]
    assert segments(tmp_path) == []


class AsciiIdStore(SQLiteStore):
    """A real engine with a rule of its own, as a key-value engine might have: message ids in ASCII only.
    Like any engine it refuses a batch holding a record it cannot keep with ``ValueError``."""

    def apply_verifications(
        self, items: Sequence[Verification], *, provider: str, match_window: float, checkpoint: tuple[str, int, int]
    ) -> list[VerifyOutcome] | None:
        if any(item.message_id is not None and not item.message_id.isascii() for item in items):
            raise ValueError("message ids must be ASCII in this store")
        return super().apply_verifications(items, provider=provider, match_window=match_window, checkpoint=checkpoint)


def test_a_record_the_store_refuses_with_a_value_error_is_quarantined(tmp_path: Path) -> None:
    store = AsciiIdStore(tmp_path / "store.db")
    sent(store, 2)
    dead_segment(tmp_path, line(0) + b'["+6590000001","caf\\u00e9",1795460400.0]\n' + line(1))
    assert make_spool(store, tmp_path).apply_pending() == 2
    assert pending(store) == 2
    (record,) = quarantine_records(tmp_path, "dead")
    assert record["offset"] == len(line(0)) and "ValueError: message ids must be ASCII" in record["reason"]
    store.close()


@pytest.mark.parametrize(
    "bad",
    [
        b"\x00\n",
        b"\xff\xfe\xfd\n",
        b'["+6590000001",null,1e400]\n',
        b"[" * 100_000 + b"\n",
        b'{"+6590000001": 1, "m": 2, "t": 3}\n',
        b'["+6590000001",null,1.0],["+6590000002",null,1.0]\n',
        b'["+\xef\xbc\x96590000001",null,1.0]\n',
        b"\n",
        b'["+6590000001",null,1.0]\r["+6590000002",null,1.0]\n',
    ],
    ids=["nul", "not-utf8", "infinite-time", "deep", "object", "two-records", "fullwidth-digit", "empty", "cr"],
)
def test_a_line_that_is_no_verification_is_quarantined_whatever_it_holds(
    store: SQLiteStore, tmp_path: Path, bad: bytes
) -> None:
    sent(store, 2)
    dead_segment(tmp_path, line(0) + bad + line(1))
    assert make_spool(store, tmp_path).apply_pending() == 2
    assert quarantined(str(tmp_path / "spool")) == 1


def test_a_huge_line_is_quarantined_and_the_lines_after_it_applied(store: SQLiteStore, tmp_path: Path) -> None:
    sent(store, 2)
    huge = b"x" * (3 * READ_CHUNK + 17) + b"\n"  # over several reads: never held whole
    dead_segment(tmp_path, line(0) + huge + line(1))
    assert make_spool(store, tmp_path).apply_pending() == 2
    (record,) = quarantine_records(tmp_path, "dead")
    assert (record["offset"], record["length"], len(record["line"])) == (len(line(0)), len(huge), MAX_LINE)


def test_entries_that_are_not_regular_files_are_moved_aside(store: SQLiteStore, tmp_path: Path) -> None:
    sent(store, 1)
    folder = tmp_path / "spool"
    folder.mkdir()
    (folder / "adir.spool").mkdir()
    os.mkfifo(folder / "apipe.spool")  # opening it to read would block for ever
    (folder / "alink.spool").symlink_to("/dev/zero")  # reading it would never end
    dead_segment(tmp_path, line(0))
    assert make_spool(store, tmp_path).apply_pending() == 1
    assert sorted(path.name for path in (folder / "quarantine").iterdir()) == [
        "adir.spool",
        "alink.spool",
        "apipe.spool",
    ]
    assert quarantined(str(folder)) == 3


def test_a_dead_segment_named_beyond_what_the_store_keeps_is_renamed_and_applied(
    store: SQLiteStore, tmp_path: Path
) -> None:
    sent(store, 1)
    dead_segment(tmp_path, line(0), name="n" * 240)
    assert make_spool(store, tmp_path).apply_pending() == 1
    assert pending(store) == 1 and segments(tmp_path) == []


def test_a_store_that_cannot_be_written_quarantines_nothing(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "store.db", busy_timeout=0.1)
    sent(store, 1)
    dead_segment(tmp_path, line(0) + b"garbage\n")
    spool = make_spool(store, tmp_path)
    refused_once(store, spool)
    assert pending(store) == 0 and quarantine_records(tmp_path, "dead") == []
    assert spool.apply_pending(everyone=True) == 1
    assert len(quarantine_records(tmp_path, "dead")) == 1
    store.close()


def test_two_spools_applying_bad_lines_at_once_quarantine_each_once(store: SQLiteStore, tmp_path: Path) -> None:
    count = 600
    writer = make_spool(store, tmp_path)
    reader = make_spool(SQLiteStore(store.path), tmp_path)
    writer.append(Verification(phone(0), None, NOW))
    (segment_path,) = segments(tmp_path)
    with open(segment_path, "ab") as file:
        for i in range(1, count):
            file.write(encode(Verification(phone(i), None, NOW)) if i % 3 else b"bad %d\n" % i)
    results: list[int] = []
    threads = [
        threading.Thread(target=lambda: results.append(writer.apply_pending(everyone=True))),
        threading.Thread(target=lambda: results.append(reader.apply_pending(everyone=True))),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    bad = len(range(0, count, 3)) - 1
    assert sum(results) == count - bad
    assert sum(row.unmatched for row in store.counts(since=0, until=NOW + 3600)) == count - bad
    assert len(quarantine_records(tmp_path, segment_path.stem)) == bad


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


def test_a_torn_last_line_of_a_killed_process_is_quarantined(store: SQLiteStore, tmp_path: Path) -> None:
    killed_after_spooling(store, tmp_path, 5)
    (segment,) = segments(tmp_path)
    with open(segment, "ab") as file:
        file.write(encode(Verification(SG, None, NOW))[:9])  # a write the kill cut off
    assert make_spool(store, tmp_path).apply_pending() == 5
    assert pending(store) == 5
    assert segments(tmp_path) == []
    assert [record["length"] for record in quarantine_records(tmp_path, segment.stem)] == [9]


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


# Fuzz: any bytes in a segment ---------------------------------------------------------------------------

FUZZ = settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
VERIFICATIONS = st.builds(
    Verification,
    phone=st.integers(0, 99).map(phone),
    message_id=st.none() | st.text(min_size=1, max_size=128),
    verified_at=st.floats(NOW - 86400 * 365, NOW + 86400, allow_nan=False),
)
#: Lines no verification is written as: bytes without a newline, and JSON that is almost one.
GARBAGE = st.one_of(
    st.binary(max_size=80).filter(lambda data: b"\n" not in data),
    st.lists(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8), max_size=4)
    .filter(lambda items: len(items) != 3 or not isinstance(items[0], str) or not items[0].startswith("+"))
    .map(lambda items: json.dumps(items).encode()),
    st.builds(
        lambda p, t: json.dumps([p, None, t]).encode(),
        st.integers(0, 99).map(phone),
        st.sampled_from([1e300, -1e300, 1e19, "1.0", None, True]),
    ),
    # Two records on one line, glued by a comma or a carriage return; nesting too deep to parse.
    st.builds(
        lambda a, glue, b: encode(a)[:-1] + glue + encode(b)[:-1],
        VERIFICATIONS,
        st.sampled_from([b",", b"\r"]),
        VERIFICATIONS,
    ),
    st.integers(1, 200_000).map(lambda depth: b"[" * depth),
).map(lambda data: data + b"\n")
LINES = st.lists(st.tuples(st.booleans(), VERIFICATIONS, GARBAGE), max_size=30)


def applied_in(folder: str, content: bytes) -> tuple[int, int, int]:
    """(what apply_pending returned, unmatched verifications the store counted, lines quarantined) for a dead
    segment holding ``content``, in a fresh store."""
    store = SQLiteStore(os.path.join(folder, "store.db"))
    try:
        os.makedirs(os.path.join(folder, "spool"), exist_ok=True)
        with open(os.path.join(folder, "spool", "fuzzed" + SUFFIX), "wb") as file:
            file.write(content)
        spool = Spool(store, os.path.join(folder, "spool"), provider="tencent", match_window=900.0, logger=LOGGER)
        applied = spool.apply_pending()
        assert spool.apply_pending(everyone=True) == 0
        assert not any(name.endswith(SUFFIX) for name in os.listdir(os.path.join(folder, "spool")))
        unmatched = sum(row.unmatched for row in store.counts(since=0, until=NOW + 2 * 86400))
        return applied, unmatched, quarantined(os.path.join(folder, "spool"))
    finally:
        store.close()


@FUZZ
@given(lines=LINES, tail=st.binary(max_size=40).filter(lambda data: b"\n" not in data))
def test_fuzz_every_valid_line_is_applied_once_and_every_other_quarantined(
    lines: list[tuple[bool, Verification, bytes]], tail: bytes
) -> None:
    content = b"".join(encode(item) if good else junk for good, item, junk in lines) + tail
    valid = sum(good for good, _, _ in lines)
    with tempfile.TemporaryDirectory() as folder:
        assert applied_in(folder, content) == (valid, valid, len(lines) - valid + bool(tail))


@FUZZ
@given(content=st.binary(max_size=600) | st.lists(st.sampled_from([b"\n", b"[", b'"', b"\x00", b"\xff"])).map(b"".join))
def test_fuzz_any_bytes_are_applied_or_quarantined_line_for_line(content: bytes) -> None:
    lines = content.count(b"\n") + (not content.endswith(b"\n") and bool(content))
    with tempfile.TemporaryDirectory() as folder:
        applied, unmatched, moved = applied_in(folder, content)
    assert applied == unmatched and applied + moved == lines


@settings(max_examples=300, deadline=None, database=None)
@given(data=st.binary(max_size=300))
def test_fuzz_the_decoder_returns_a_checked_verification_or_raises_value_error(data: bytes) -> None:
    try:
        item = decode(data)
    except ValueError:
        return
    assert check_verification(item) == item


@settings(max_examples=200, deadline=None, database=None)
@given(items=st.lists(VERIFICATIONS, min_size=1, max_size=20))
def test_fuzz_encoded_lines_decode_back_alone_and_as_a_block(items: list[Verification]) -> None:
    block = b"".join(map(encode, items))
    assert [decode(line) for line in split_lines(block)] == items
    assert decode_block(block) == items
