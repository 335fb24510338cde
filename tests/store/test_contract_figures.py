"""Contract: delivery figures per hour and provider, and the minute counters of the alarm (every engine)."""

from __future__ import annotations

import pytest
from store_helpers import CN, HOUR0, SG, send, verify

from flask_otp_conversion.store import OutboxItem, Store
from flask_otp_conversion.store.base import LATENCY_BUCKETS, MINUTE

LEASE = 30.0


def claimed(store: Store, message_id: str, verified_at: float, phone: str = CN) -> OutboxItem:
    send(store, phone, message_id, verified_at - 5)
    verify(store, phone, verified_at, message_id=message_id)
    (item,) = store.claim(provider="tencent", limit=1, lease_seconds=LEASE, now=verified_at)
    return item


def test_an_ack_counts_delivered_and_the_latency_bucket(store: Store) -> None:
    item = claimed(store, "m1", HOUR0 + 10)
    store.ack([item], now=HOUR0 + 10 + 1.5)  # 1.5 s after the verification: the (1, 2] bucket
    (row,) = store.delivery_counts(since=HOUR0, until=HOUR0 + 3600)
    assert (row.hour, row.provider, row.delivered, row.retried, row.dead_lettered) == (HOUR0, "tencent", 1, 0, 0)
    expected = [0] * (len(LATENCY_BUCKETS) + 1)
    expected[LATENCY_BUCKETS.index(2.0)] = 1
    assert list(row.latency) == expected


def test_a_late_ack_of_a_row_lost_to_another_claim_counts_nothing(store: Store) -> None:
    stale = claimed(store, "m1", HOUR0 + 10)
    (fresh,) = store.claim(provider="tencent", limit=1, lease_seconds=LEASE, now=HOUR0 + 10 + LEASE + 1)
    store.ack([fresh], now=HOUR0 + 50)
    store.ack([stale], now=HOUR0 + 51)
    (row,) = store.delivery_counts(since=HOUR0, until=HOUR0 + 3600)
    assert row.delivered == 1


def test_retries_and_dead_letters_are_counted_in_the_hour_they_happen(store: Store) -> None:
    item = claimed(store, "m1", HOUR0 + 10)
    store.retry(item, next_attempt_at=HOUR0 + 3700, error="HTTP 500", now=HOUR0 + 11)
    (again,) = store.claim(provider="tencent", limit=1, lease_seconds=LEASE, now=HOUR0 + 3700)
    store.dead_letter(again, reason="bad", now=HOUR0 + 3701)
    rows = store.delivery_counts(since=HOUR0, until=HOUR0 + 7200)
    assert [(row.hour, row.retried, row.dead_lettered, row.delivered) for row in rows] == [
        (HOUR0, 1, 0, 0),
        (HOUR0 + 3600, 0, 1, 0),
    ]


def test_delivery_counts_add_up_across_calls(store: Store) -> None:
    for n in range(3):
        store.ack([claimed(store, f"m{n}", HOUR0 + 10 + n, phone=f"+658100000{n}")], now=HOUR0 + 100)
    (row,) = store.delivery_counts(since=HOUR0, until=HOUR0 + 3600)
    assert row.delivered == 3 and sum(row.latency) == 3


def test_minute_counters_count_sends_and_verifications_in_the_minute_of_the_send(store: Store) -> None:
    send(store, CN, "m1", HOUR0 + 61)
    send(store, SG, "m2", HOUR0 + 130)
    verify(store, CN, HOUR0 + 200, message_id="m1")
    rows = store.counts(since=HOUR0, until=HOUR0 + 3600, span=MINUTE)
    assert [(r.hour, r.calling_code, r.requested, r.verified) for r in rows] == [
        (HOUR0 + 60, "86", 1, 1),
        (HOUR0 + 120, "65", 1, 0),
    ]


def test_counts_refuse_a_span_other_than_an_hour_or_a_minute(store: Store) -> None:
    with pytest.raises(ValueError, match="span"):
        store.counts(since=0, until=1, span=600)


def test_rate_limit_waits_add_up_in_the_hour_they_are_counted(store: Store) -> None:
    store.count_rate_waits(provider="tencent", waits=3, wait_seconds=0.25, now=HOUR0 + 10)
    store.count_rate_waits(provider="tencent", waits=2, wait_seconds=0.5, now=HOUR0 + 20)
    store.count_rate_waits(provider="tencent", waits=0, wait_seconds=0.0, now=HOUR0 + 30)
    (row,) = store.delivery_counts(since=HOUR0, until=HOUR0 + 3600)
    assert (row.rate_limit_waits, row.rate_limit_wait_seconds, row.delivered) == (5, 0.75, 0)
