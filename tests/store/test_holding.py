"""Records held in memory while the store refuses writes (``store/holding.py``), on a real SQLite file whose
write lock another connection holds: the store really refuses, then really takes them."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from store_helpers import CN, HOUR0, SG, wait_for

from flask_otp_conversion.store import Store
from flask_otp_conversion.store.base import Verification
from flask_otp_conversion.store.holding import HeldSend, Holding
from tests.sqlite_lock import WriteLock

LOGGER = logging.getLogger("flask_otp_conversion.tests.holding")
Make = Callable[..., Holding]


@pytest.fixture
def holdings() -> Iterator[list[Holding]]:
    """Every holding a test makes, closed after it: its thread must not write into the next test."""
    made: list[Holding] = []
    yield made
    for held in made:
        held.close(1.0)


@pytest.fixture
def holding(sqlite_store: Store, holdings: list[Holding]) -> Callable[..., Holding]:
    def make(capacity: int = 100) -> Holding:
        held = Holding(
            sqlite_store, provider="tencent", match_window=900, logger=LOGGER, capacity=capacity, retry_every=0.05
        )
        holdings.append(held)
        return held

    return make


def sent(message_id: str, phone: str = CN, at: float = HOUR0) -> HeldSend:
    return HeldSend(phone, message_id, "tencent", at, "1400")


def refusal(sqlite_store: Store) -> Exception:
    try:
        sqlite_store.record_sent(phone=SG, message_id="probe", provider="tencent", sent_at=HOUR0)
    except Exception as exc:
        return exc
    raise AssertionError("the store took a write under the lock")


def test_what_is_held_is_written_in_order_once_the_store_takes_writes(
    sqlite_store: Store, sqlite_db: Path, holding: Callable[..., Holding]
) -> None:
    lock = WriteLock(sqlite_db)
    held = holding()
    error = refusal(sqlite_store)
    assert held.hold(sent("m1"), error) and held.hold(Verification(CN, "m1", HOUR0 + 5), error)
    assert not held.write_held()
    assert held.counts().held == 2
    lock.release()
    assert held.write_held()
    assert held.counts().held == 0 and held.counts().written == 2
    (item,) = sqlite_store.claim(provider="tencent", limit=5, lease_seconds=30, now=HOUR0 + 10)
    assert (item.message_id, item.account) == ("m1", "1400")  # the send, then its verification: matched


def test_the_holdings_own_thread_writes_them_without_being_asked(
    sqlite_store: Store, sqlite_db: Path, holding: Callable[..., Holding]
) -> None:
    lock = WriteLock(sqlite_db)
    held = holding()
    held.hold(sent("m1"), refusal(sqlite_store))
    lock.release()
    assert wait_for(lambda: held.counts().written == 1)
    assert not sqlite_store.record_sent(phone=CN, message_id="m1", provider="tencent", sent_at=HOUR0)  # known


def test_beyond_capacity_records_are_counted_lost(sqlite_store: Store, sqlite_db: Path, holding: Make) -> None:
    lock = WriteLock(sqlite_db)
    held = holding(capacity=2)
    error = refusal(sqlite_store)
    assert [held.hold(sent(f"m{n}", phone=f"+658100000{n}"), error) for n in range(4)] == [True, True, False, False]
    assert (held.counts().held, held.counts().lost) == (2, 2)
    lock.release()


def test_one_error_line_per_episode(
    sqlite_store: Store, sqlite_db: Path, holding: Make, caplog: pytest.LogCaptureFixture
) -> None:
    lock = WriteLock(sqlite_db)
    held = holding()
    error = refusal(sqlite_store)
    with caplog.at_level(logging.WARNING, logger=LOGGER.name):
        for n in range(5):
            held.hold(sent(f"m{n}", phone=f"+658100000{n}"), error)
        lock.release()
        assert held.write_held()
        lock = WriteLock(sqlite_db)
        held.hold(sent("again"), refusal(sqlite_store))
        lock.release()
        assert held.write_held()
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2  # one per episode, not one per record
    assert "holding up to 100" in errors[0].getMessage()
    assert sum("takes writes again" in r.getMessage() for r in caplog.records) == 2, [
        r.getMessage() for r in caplog.records
    ]


def test_a_held_record_the_store_calls_invalid_is_dropped_not_retried_forever(
    sqlite_store: Store, holding: Make
) -> None:
    held = holding()
    held.hold(HeldSend("not-a-phone", "m1", "tencent", HOUR0, ""), RuntimeError("refused"))
    held.hold(sent("m2"), RuntimeError("refused"))
    assert held.write_held()
    assert held.counts().held == 0
    assert not sqlite_store.record_sent(phone=CN, message_id="m2", provider="tencent", sent_at=HOUR0)


def test_a_forked_child_does_not_write_its_parents_records_again(
    sqlite_store: Store, sqlite_db: Path, holding: Callable[..., Holding]
) -> None:
    lock = WriteLock(sqlite_db)
    held = holding()
    held.hold(sent("m1"), refusal(sqlite_store))
    pid = os.fork()
    if pid == 0:  # the child: its copy must be empty
        os._exit(0 if held.counts().held == 0 else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert held.counts().held == 1
    lock.release()
