"""The contract's outbox part (``base.Outbox``), on every store: claim, lease, ack, release, retry, dead letters,
stats and pruning."""

from __future__ import annotations

import pytest
from store_helpers import CN, HOUR0, SG, US, send, verify

from flask_otp_conversion.store import OutboxItem, OutboxStats, Store
from flask_otp_conversion.store.base import MAX_ERROR_LENGTH, MINUTE

LEASE = 30.0


def enqueue(store: Store, phone: str, message_id: str, verified_at: float, provider: str = "tencent") -> None:
    send(store, phone, message_id, verified_at - 10, provider=provider)
    assert verify(store, phone, verified_at, message_id=message_id, provider=provider).enqueued


def claim(store: Store, now: float, limit: int = 100, provider: str = "tencent") -> list[OutboxItem]:
    return store.claim(provider=provider, limit=limit, lease_seconds=LEASE, now=now)


def ids(items: list[OutboxItem]) -> list[str]:
    return [item.message_id for item in items]


# Claim and lease ------------------------------------------------------------------------------------------


def test_a_claimed_row_is_not_claimed_again_while_its_lease_holds(store: Store) -> None:
    enqueue(store, CN, "m1", HOUR0)
    assert ids(claim(store, HOUR0 + 1)) == ["m1"]
    assert claim(store, HOUR0 + 1 + LEASE - 0.5) == []


def test_a_row_whose_lease_expired_is_claimed_again_with_a_new_token(store: Store) -> None:
    enqueue(store, CN, "m1", HOUR0)
    (first,) = claim(store, HOUR0 + 1)
    (second,) = claim(store, HOUR0 + 1 + LEASE)
    assert second.id == first.id
    assert second.lease_token != first.lease_token


def test_claim_takes_the_longest_due_rows_first_up_to_the_limit(store: Store) -> None:
    enqueue(store, CN, "third", HOUR0 + 30)
    enqueue(store, SG, "first", HOUR0 + 10)
    enqueue(store, US, "second", HOUR0 + 20)
    assert ids(claim(store, HOUR0 + 100, limit=2)) == ["first", "second"]
    assert ids(claim(store, HOUR0 + 100, limit=2)) == ["third"]


def test_claim_takes_rows_due_at_the_same_moment_in_the_order_they_were_enqueued(store: Store) -> None:
    for n, phone in enumerate((US, CN, SG)):
        enqueue(store, phone, f"m{n}", HOUR0)
    assert ids(claim(store, HOUR0 + 1)) == ["m0", "m1", "m2"]


def test_row_ids_are_never_reused_after_a_prune(store: Store) -> None:
    enqueue(store, CN, "m1", HOUR0)
    (first,) = claim(store, HOUR0 + 1)
    store.ack([first], now=HOUR0 + 2)
    store.prune(before=HOUR0 + 10)
    enqueue(store, SG, "m2", HOUR0 + 20)
    (second,) = claim(store, HOUR0 + 21)
    assert second.id > first.id


def test_claim_leaves_rows_not_yet_due(store: Store) -> None:
    enqueue(store, CN, "m1", HOUR0 + 50)
    assert claim(store, HOUR0 + 49) == []
    assert ids(claim(store, HOUR0 + 50)) == ["m1"]


def test_claim_only_takes_rows_of_the_given_provider(store: Store) -> None:
    enqueue(store, CN, "t1", HOUR0, provider="tencent")
    enqueue(store, SG, "a1", HOUR0, provider="alibaba")
    assert ids(claim(store, HOUR0 + 1, provider="alibaba")) == ["a1"]
    assert ids(claim(store, HOUR0 + 1, provider="tencent")) == ["t1"]


def test_two_claims_at_the_same_moment_never_share_a_row(store: Store) -> None:
    for n in range(5):
        enqueue(store, f"+658100000{n}", f"m{n}", HOUR0)
    first = claim(store, HOUR0 + 1, limit=3)
    second = claim(store, HOUR0 + 1, limit=3)
    assert len(first) == 3
    assert len(second) == 2
    assert {item.id for item in first}.isdisjoint(item.id for item in second)
    assert len({item.lease_token for item in first}) == 1
    assert first[0].lease_token != second[0].lease_token


def test_claim_with_limit_zero_takes_nothing(store: Store) -> None:
    enqueue(store, CN, "m1", HOUR0)
    assert claim(store, HOUR0 + 1, limit=0) == []
    assert store.outbox_stats(now=HOUR0 + 1).in_flight == 0


# Ack ------------------------------------------------------------------------------------------------------


def test_ack_marks_claimed_rows_reported(store: Store) -> None:
    enqueue(store, CN, "m1", HOUR0)
    enqueue(store, SG, "m2", HOUR0)
    items = claim(store, HOUR0 + 1)
    assert store.ack(items, now=HOUR0 + 2) == 2
    stats = store.outbox_stats(now=HOUR0 + 2)
    assert (stats.pending, stats.reported) == (0, 2)
    assert claim(store, HOUR0 + 1000) == []


def test_ack_with_a_stale_token_changes_nothing(store: Store) -> None:
    enqueue(store, CN, "m1", HOUR0)
    (stale,) = claim(store, HOUR0 + 1)
    (current,) = claim(store, HOUR0 + 1 + LEASE)  # the first worker stalled past its lease
    assert store.ack([stale], now=HOUR0 + 40) == 0
    assert store.outbox_stats(now=HOUR0 + 40).pending == 1
    assert store.ack([current], now=HOUR0 + 41) == 1


def test_ack_after_the_lease_expired_still_counts_if_nobody_reclaimed(store: Store) -> None:
    enqueue(store, CN, "m1", HOUR0)
    (item,) = claim(store, HOUR0 + 1)
    assert store.ack([item], now=HOUR0 + 1 + 10 * LEASE) == 1


def test_a_second_ack_of_the_same_item_counts_nothing(store: Store) -> None:
    enqueue(store, CN, "m1", HOUR0)
    items = claim(store, HOUR0 + 1)
    assert store.ack(items, now=HOUR0 + 2) == 1
    assert store.ack(items, now=HOUR0 + 3) == 0


# Retry ----------------------------------------------------------------------------------------------------


def test_retry_counts_an_attempt_keeps_the_error_and_delays_the_row(store: Store) -> None:
    enqueue(store, CN, "m1", HOUR0)
    (item,) = claim(store, HOUR0 + 1)
    assert store.retry(item, next_attempt_at=HOUR0 + 60, error="HTTP 500", now=HOUR0 + 2)
    assert store.outbox_stats(now=HOUR0 + 2).in_flight == 0
    assert claim(store, HOUR0 + 59) == []
    (again,) = claim(store, HOUR0 + 60)
    assert (again.attempts, again.last_error) == (1, "HTTP 500")


def test_retry_keeps_only_the_start_of_a_long_error(store: Store) -> None:
    enqueue(store, CN, "m1", HOUR0)
    (item,) = claim(store, HOUR0 + 1)
    store.retry(item, next_attempt_at=HOUR0 + 1, error="e" * (MAX_ERROR_LENGTH * 3), now=HOUR0 + 2)
    (again,) = claim(store, HOUR0 + 2)
    assert again.last_error == "e" * MAX_ERROR_LENGTH


def test_retry_with_a_stale_token_is_refused(store: Store) -> None:
    enqueue(store, CN, "m1", HOUR0)
    (stale,) = claim(store, HOUR0 + 1)
    (current,) = claim(store, HOUR0 + 1 + LEASE)
    assert not store.retry(stale, next_attempt_at=HOUR0 + 9999, error="late", now=HOUR0 + 2)
    assert store.ack([current], now=HOUR0 + 40) == 1


# Dead letters ---------------------------------------------------------------------------------------------


def test_dead_letter_keeps_the_reason_and_counts_the_attempt(store: Store) -> None:
    enqueue(store, CN, "m1", HOUR0)
    (item,) = claim(store, HOUR0 + 1)
    assert store.dead_letter(item, reason="InvalidParameterValue", now=HOUR0 + 2)
    (dead,) = store.dead_letters()
    assert (dead.id, dead.message_id, dead.phone, dead.provider) == (item.id, "m1", CN, "tencent")
    assert (dead.reason, dead.attempts, dead.dead_at, dead.verified_at) == (
        "InvalidParameterValue",
        1,
        HOUR0 + 2,
        HOUR0,
    )
    assert claim(store, HOUR0 + 1000) == []


def test_dead_letter_with_a_stale_token_is_refused(store: Store) -> None:
    enqueue(store, CN, "m1", HOUR0)
    (stale,) = claim(store, HOUR0 + 1)
    claim(store, HOUR0 + 1 + LEASE)
    assert not store.dead_letter(stale, reason="late", now=HOUR0 + 40)
    assert store.dead_letters() == []


def test_dead_letters_are_listed_newest_first_up_to_the_limit(store: Store) -> None:
    for n, phone in enumerate((CN, SG, US)):
        enqueue(store, phone, f"m{n}", HOUR0)
    for n, item in enumerate(claim(store, HOUR0 + 1)):
        store.dead_letter(item, reason="no", now=HOUR0 + 10 + n)
    assert [d.message_id for d in store.dead_letters(limit=2)] == ["m2", "m1"]


def test_replay_makes_every_dead_letter_pending_with_a_fresh_start(store: Store) -> None:
    enqueue(store, CN, "m1", HOUR0)
    (item,) = claim(store, HOUR0 + 1)
    store.retry(item, next_attempt_at=HOUR0 + 2, error="HTTP 500", now=HOUR0 + 2)
    (item,) = claim(store, HOUR0 + 2)
    store.dead_letter(item, reason="expired", now=HOUR0 + 3)
    assert store.replay_dead_letters(now=HOUR0 + 100) == 1
    assert store.dead_letters() == []
    assert claim(store, HOUR0 + 99) == []
    (again,) = claim(store, HOUR0 + 100)
    assert (again.id, again.attempts, again.created_at, again.verified_at) == (item.id, 0, HOUR0 + 100, HOUR0)


def test_replay_of_chosen_ids_leaves_the_other_dead_letters(store: Store) -> None:
    enqueue(store, CN, "m1", HOUR0)
    enqueue(store, SG, "m2", HOUR0)
    first, second = claim(store, HOUR0 + 1)
    store.dead_letter(first, reason="no", now=HOUR0 + 2)
    store.dead_letter(second, reason="no", now=HOUR0 + 2)
    assert store.replay_dead_letters([second.id, second.id, 999_999], now=HOUR0 + 5) == 1
    assert [d.id for d in store.dead_letters()] == [first.id]
    assert [item.id for item in claim(store, HOUR0 + 5)] == [second.id]


def test_dead_letters_can_be_listed_by_id(store: Store) -> None:
    for n, phone in enumerate((CN, SG, US)):
        enqueue(store, phone, f"m{n}", HOUR0)
    items = claim(store, HOUR0 + 1)
    for item in items:
        store.dead_letter(item, reason="no", now=HOUR0 + 2)
    wanted = [items[2].id, items[0].id, 999_999]
    assert [d.message_id for d in store.dead_letters(ids=wanted)] == ["m2", "m0"]
    assert store.dead_letters(ids=[]) == []


def test_dead_letters_by_id_leave_out_rows_that_are_not_dead(store: Store) -> None:
    enqueue(store, CN, "m1", HOUR0)
    (item,) = claim(store, HOUR0 + 1)
    assert store.dead_letters(ids=[item.id]) == []
    assert store.replay_dead_letters([item.id], now=HOUR0 + 2) == 0
    assert store.outbox_stats(now=HOUR0 + 2).in_flight == 1


# Stats ----------------------------------------------------------------------------------------------------


def test_outbox_stats_count_each_state(store: Store) -> None:
    for n in range(5):
        enqueue(store, f"+658100000{n}", f"m{n}", HOUR0 + n)
    a, b, _ = claim(store, HOUR0 + 10, limit=3)
    store.ack([a], now=HOUR0 + 11)
    store.dead_letter(b, reason="no", now=HOUR0 + 11)
    assert store.outbox_stats(now=HOUR0 + 12) == OutboxStats(
        pending=3, in_flight=1, dead=1, reported=1, oldest_pending_at=HOUR0 + 2
    )
    assert store.outbox_stats(now=HOUR0 + 10 + LEASE).in_flight == 0  # the third lease has run out
    assert store.outbox_stats(now=HOUR0 + 12).oldest_pending_age(HOUR0 + 12) == 10


# Prune ----------------------------------------------------------------------------------------------------


def test_prune_deletes_old_finished_rows_and_keeps_pending_ones(store: Store) -> None:
    enqueue(store, CN, "reported", HOUR0 + 100)
    enqueue(store, SG, "dead", HOUR0 + 100)
    enqueue(store, US, "pending", HOUR0 + 100)
    reported, dead, _ = claim(store, HOUR0 + 200, limit=3)
    store.ack([reported], now=HOUR0 + 300)
    store.dead_letter(dead, reason="no", now=HOUR0 + 300)
    removed = store.prune(before=HOUR0 + 2 * 3600)
    # three sends, two finished rows, three hour and three minute counter rows (one per country), and the
    # figures of the hour: delivered, its latency bucket, dead-lettered
    assert removed == 3 + 2 + 3 + 3 + 3
    assert store.outbox_stats(now=HOUR0 + 2 * 3600) == OutboxStats(
        pending=1, in_flight=0, dead=0, reported=0, oldest_pending_at=HOUR0 + 100
    )
    assert ids(claim(store, HOUR0 + 2 * 3600)) == ["pending"]
    assert store.counts(since=0, until=1e11) == []


def test_prune_keeps_rows_at_or_after_the_cutoff(store: Store) -> None:
    send(store, CN, "m1", HOUR0 + 100)
    assert store.prune(before=HOUR0 + 100) == 0
    assert not send(store, CN, "m1", HOUR0 + 100)  # still known


def test_prune_keeps_a_counter_hour_that_ends_after_the_cutoff(store: Store) -> None:
    send(store, CN, "early", HOUR0 + 10)
    send(store, SG, "late", HOUR0 + 3000)
    # the early send only; its hour is still running (minute rows kept here: the next test is theirs)
    assert store.prune(before=HOUR0 + 1000, minute_rows_before=HOUR0) == 1
    assert [row.requested for row in store.counts(since=0, until=1e11)] == [1, 1]


def test_prune_drops_minute_rows_that_ended_before_their_own_cutoff(store: Store) -> None:
    send(store, CN, "early", HOUR0 + 10)
    send(store, SG, "late", HOUR0 + 130)
    assert store.prune(before=HOUR0, minute_rows_before=HOUR0 + 150) == 1  # the minute of the early send
    assert [(row.hour, row.calling_code) for row in store.counts(since=0, until=1e11, span=MINUTE)] == [
        (HOUR0 + 120, "65")
    ]
    assert len(store.counts(since=0, until=1e11)) == 2  # hour rows go by ``before`` only


def test_a_pruned_send_can_no_longer_be_verified(store: Store) -> None:
    send(store, CN, "m1", HOUR0)
    store.prune(before=HOUR0 + 1)
    assert verify(store, CN, HOUR0 + 60, message_id="m1").message_id is None


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.claim(provider="tencent", limit=-1, lease_seconds=LEASE, now=HOUR0),
        lambda s: s.claim(provider="tencent", limit=1, lease_seconds=0, now=HOUR0),
        lambda s: s.claim(provider="", limit=1, lease_seconds=LEASE, now=HOUR0),
        lambda s: s.retry(None, next_attempt_at=float("nan"), error="x", now=HOUR0),
        lambda s: s.replay_dead_letters(["1"], now=HOUR0),
        lambda s: s.dead_letters(ids=[True]),
        lambda s: s.prune(before="yesterday"),
    ],
    ids=["negative limit", "zero lease", "empty provider", "nan retry time", "string id", "bool id", "string time"],
)
def test_bad_outbox_arguments_raise_value_error(store: Store, call: object) -> None:
    with pytest.raises(ValueError):
        call(store)  # type: ignore[operator]


# Release --------------------------------------------------------------------------------------------------


def test_a_released_row_is_due_again_at_once_with_no_attempt_counted(store: Store) -> None:
    enqueue(store, CN, "m1", HOUR0)
    items = claim(store, HOUR0 + 1)
    assert store.release(items) == 1
    assert store.outbox_stats(now=HOUR0 + 2).in_flight == 0
    (again,) = claim(store, HOUR0 + 2)
    assert (again.id, again.attempts, again.last_error) == (items[0].id, 0, None)


def test_release_with_a_stale_token_changes_nothing(store: Store) -> None:
    enqueue(store, CN, "m1", HOUR0)
    (stale,) = claim(store, HOUR0 + 1)
    (current,) = claim(store, HOUR0 + 1 + LEASE)
    assert store.release([stale]) == 0
    assert store.outbox_stats(now=HOUR0 + 1 + LEASE).in_flight == 1
    assert store.ack([current], now=HOUR0 + 40) == 1
