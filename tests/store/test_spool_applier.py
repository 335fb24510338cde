"""The spool's applier: lines applied exactly once whoever applies them, bad lines quarantined and the lines around
them applied, a verification waiting for its send after an outage, segments of killed processes swept."""

from __future__ import annotations

import base64
import json
import os
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from spool_helpers import (
    LOGGER,
    NOW,
    VERIFICATIONS,
    dead_segment,
    killed_after_spooling,
    line,
    make_spool,
    pending,
    phone,
    quarantine_records,
    refused_once,
    segments,
    sent,
)
from store_helpers import CN, SG, send

from flask_otp_conversion.store import SQLiteStore
from flask_otp_conversion.store.base import Verification, VerifyOutcome
from flask_otp_conversion.store.quarantine import quarantined
from flask_otp_conversion.store.spool import Spool
from flask_otp_conversion.store.spool_format import MAX_LINE, READ_CHUNK, SUFFIX, encode


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteStore]:
    opened = SQLiteStore(tmp_path / "store.db")
    yield opened
    opened.close()


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


class _CountingStore(SQLiteStore):
    """A real SQLite store that counts the position reads (each is a round trip on a shared store)."""

    reads = 0

    def spool_position(self, name: str) -> int:
        self.reads += 1
        return super().spool_position(name)


def test_a_pass_over_segments_with_nothing_new_reads_no_position(store: SQLiteStore, tmp_path: Path) -> None:
    writer = make_spool(store, tmp_path)
    counting = _CountingStore(store.path)
    reader = make_spool(counting, tmp_path)
    for i in range(3):
        writer.append(Verification(phone(i), None, NOW))
    assert reader.apply_pending(everyone=True) == 3
    counting.reads = 0
    assert reader.apply_pending(everyone=True) == 0
    assert counting.reads == 0
    writer.append(Verification(phone(3), None, NOW))
    assert reader.apply_pending(everyone=True) == 1
    counting.close()


def test_a_position_another_process_moved_meanwhile_applies_each_line_once(store: SQLiteStore, tmp_path: Path) -> None:
    writer = make_spool(store, tmp_path)
    reader = make_spool(SQLiteStore(store.path), tmp_path)
    writer.append(Verification(phone(0), None, NOW))
    assert reader.apply_pending(everyone=True) == 1
    writer.append(Verification(phone(1), None, NOW))
    assert writer.apply_pending() == 1  # the reader's known position is stale now
    writer.append(Verification(phone(2), None, NOW))
    # the stale checkpoint changes nothing; the pass carries on from the stored position, at the latest next time
    assert reader.apply_pending(everyone=True) + reader.apply_pending(everyone=True) == 1
    assert sum(row.unmatched for row in store.counts(since=0, until=NOW + 3600)) == 3


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


# Fuzz: any bytes in a segment ---------------------------------------------------------------------------

FUZZ = settings(max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

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
