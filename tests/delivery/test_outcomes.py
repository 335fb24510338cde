"""``delivery/outcomes.py`` on a real SQLite store: acks in batches, a refused ack kept, hand-backs, retry hints."""

from __future__ import annotations

import logging
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from flask_otp_conversion.delivery import policy as P
from flask_otp_conversion.delivery.outcomes import ACK_BATCH, Outcomes
from flask_otp_conversion.signals import conversion_failed, conversion_reported
from flask_otp_conversion.store import Store
from flask_otp_conversion.store.base import OutboxItem
from tests.sqlite_lock import WriteLock

PROVIDER = "tencent"


class Recorder:
    """What the outcomes asked of the drain loop: wakes, noted errors, signals."""

    def __init__(self) -> None:
        self.wakes = 0
        self.errors: list[str] = []
        self.signals: list[tuple[str, dict[str, Any]]] = []

    def wake(self) -> None:
        self.wakes += 1

    def emit(self, signal: Any, **kwargs: Any) -> None:
        self.signals.append((signal.name, kwargs))


@pytest.fixture
def seen() -> Recorder:
    return Recorder()


@pytest.fixture
def outcomes(sqlite_store: Store, seen: Recorder) -> Outcomes:
    made = Outcomes(
        store=sqlite_store,
        logger=logging.getLogger("flask_otp_conversion.tests.outcomes"),
        wake=seen.wake,
        note_error=seen.errors.append,
        emit=seen.emit,
    )
    made.provider_name = PROVIDER
    return made


def claimed(store: Store, count: int) -> list[OutboxItem]:
    """``count`` verified sends, their outbox rows claimed."""
    now = time.time()
    for n in range(count):
        phone = f"+8613800{n:06d}"
        store.record_sent(phone=phone, message_id=f"serial-{n}", provider=PROVIDER, sent_at=now - 10)
        store.record_verified(phone=phone, message_id=None, provider=PROVIDER, verified_at=now, match_window=600)
    items = store.claim(provider=PROVIDER, limit=count, lease_seconds=60, now=now)
    assert len(items) == count
    return items


def reported(store: Store) -> int:
    return store.outbox_stats(now=time.time()).reported


def test_acks_wait_for_a_batch_or_their_delay(sqlite_store: Store, outcomes: Outcomes, seen: Recorder) -> None:
    for item in claimed(sqlite_store, 3):
        outcomes.delivered(item, time.monotonic())
    outcomes.flush_acks(force=False)
    assert reported(sqlite_store) == 0
    assert seen.signals == []
    outcomes.flush_acks(force=True)
    assert reported(sqlite_store) == 3
    assert [name for name, _ in seen.signals] == [conversion_reported.name] * 3


def test_a_full_batch_of_acks_is_written_at_once(sqlite_store: Store, outcomes: Outcomes) -> None:
    items = claimed(sqlite_store, ACK_BATCH)
    for item in items[:-1]:
        outcomes.delivered(item, time.monotonic())
    assert reported(sqlite_store) == 0
    outcomes.delivered(items[-1], time.monotonic())
    assert reported(sqlite_store) == ACK_BATCH


def test_acks_older_than_their_delay_go_with_the_next_flush(sqlite_store: Store, outcomes: Outcomes) -> None:
    item = claimed(sqlite_store, 1)[0]
    outcomes.delivered(item, time.monotonic() - 60)  # its request began long ago: the batch is overdue
    assert reported(sqlite_store) == 1


def test_an_ack_the_store_refuses_is_kept_for_the_next_flush_and_not_signalled(
    sqlite_db: Path, sqlite_store: Store, outcomes: Outcomes, seen: Recorder
) -> None:
    items = claimed(sqlite_store, 2)
    for item in items:
        outcomes.delivered(item, time.monotonic())
    lock = WriteLock(sqlite_db)
    try:
        with pytest.raises(sqlite3.OperationalError):
            outcomes.flush_acks(force=True)
    finally:
        lock.release()
    assert seen.signals == []
    outcomes.flush_acks(force=True)
    assert reported(sqlite_store) == 2
    assert len(seen.signals) == 2


def test_hand_backs_wait_for_the_loops_pass(sqlite_store: Store, outcomes: Outcomes, seen: Recorder) -> None:
    items = claimed(sqlite_store, 2)
    outcomes.hand_back(items, "not sent in time")
    assert seen.wakes == 1
    assert outcomes.handed_back() == 2
    assert sqlite_store.outbox_stats(now=time.time()).in_flight == 2
    outcomes.hand_back_pending()
    assert outcomes.handed_back() == 0
    assert sqlite_store.outbox_stats(now=time.time()).in_flight == 0
    assert len(sqlite_store.claim(provider=PROVIDER, limit=10, lease_seconds=60, now=time.time())) == 2


def test_hand_backs_while_closing_are_written_at_once(sqlite_store: Store, outcomes: Outcomes, seen: Recorder) -> None:
    items = claimed(sqlite_store, 2)
    outcomes.closing()
    outcomes.hand_back(items, "reporter stopping")
    assert seen.wakes == 0
    assert sqlite_store.outbox_stats(now=time.time()).in_flight == 0


def test_next_retry_is_the_earliest_ahead_or_now_once_one_fell_due(sqlite_store: Store, outcomes: Outcomes) -> None:
    now = time.time()
    first, second = claimed(sqlite_store, 2)
    answer = P.Answer(P.Outcome.RETRYABLE, "HTTP 500")
    outcomes.retry(first, P.Retry(at=now + 30, error="HTTP 500"), answer)
    outcomes.retry(second, P.Retry(at=now + 5, error="HTTP 500"), answer)
    assert outcomes.next_retry(now) == now + 5
    assert outcomes.next_retry(now + 6) == now + 6
    assert outcomes.next_retry(now + 6) == now + 30


def test_a_retry_is_written_noted_and_signalled(sqlite_store: Store, outcomes: Outcomes, seen: Recorder) -> None:
    item = claimed(sqlite_store, 1)[0]
    at = time.time() + 30
    outcomes.retry(item, P.Retry(at=at, error="HTTP 503"), P.Answer(P.Outcome.RETRYABLE, "HTTP 503"))
    assert seen.errors == ["HTTP 503"]
    assert seen.signals == [(conversion_failed.name, {"report": item, "error": "HTTP 503", "next_attempt_at": at})]
    assert sqlite_store.claim(provider=PROVIDER, limit=10, lease_seconds=60, now=at - 1) == []
    assert len(sqlite_store.claim(provider=PROVIDER, limit=10, lease_seconds=60, now=at + 1)) == 1


def test_rejected_credentials_are_logged_once_until_they_work_again(
    sqlite_store: Store, outcomes: Outcomes, caplog: pytest.LogCaptureFixture
) -> None:
    items = claimed(sqlite_store, 3)
    auth = P.Answer(P.Outcome.AUTH, "AuthFailure")
    at = time.time() + 30
    with caplog.at_level(logging.ERROR):
        outcomes.retry(items[0], P.Retry(at=at, error="AuthFailure"), auth)
        outcomes.retry(items[1], P.Retry(at=at, error="AuthFailure"), auth)
        assert sum("rejected our credentials" in r.getMessage() for r in caplog.records) == 1
        outcomes.credentials_work()
        outcomes.retry(items[2], P.Retry(at=at, error="AuthFailure"), auth)
    assert sum("rejected our credentials" in r.getMessage() for r in caplog.records) == 2
