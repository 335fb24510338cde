"""The contract's records part (``base.Records``), on every store: sends, the matching rule, counters and
spool checkpoints."""

from __future__ import annotations

import pytest
from store_helpers import CN, HOUR0, SG, US, WINDOW, empty_stats, send, verify

from flask_otp_conversion.store import CountRow, OutboxItem, Store, VerifyOutcome
from flask_otp_conversion.store.base import MAX_MESSAGE_ID_LENGTH, MAX_PROVIDER_LENGTH, Verification

ALL_TIME = {"since": 0.0, "until": 1e11}


def claim_all(store: Store, now: float, provider: str = "tencent") -> list[OutboxItem]:
    return store.claim(provider=provider, limit=1000, lease_seconds=60, now=now)


# Sends ----------------------------------------------------------------------------------------------------


def test_a_send_counts_one_request_in_its_hour(store: Store) -> None:
    assert send(store, CN, "m1", HOUR0 + 10)
    assert store.counts(**ALL_TIME) == [CountRow(HOUR0, "tencent", "86", 1, 0, 0)]


def test_a_duplicate_send_is_recorded_once(store: Store) -> None:
    assert send(store, CN, "m1", HOUR0 + 10)
    assert not send(store, CN, "m1", HOUR0 + 20)
    assert store.counts(**ALL_TIME) == [CountRow(HOUR0, "tencent", "86", 1, 0, 0)]


def test_the_same_message_id_from_another_provider_is_another_send(store: Store) -> None:
    assert send(store, CN, "m1", HOUR0 + 10, provider="tencent")
    assert send(store, CN, "m1", HOUR0 + 10, provider="alibaba")
    assert [row.provider for row in store.counts(**ALL_TIME)] == ["alibaba", "tencent"]


# Verifications --------------------------------------------------------------------------------------------


def test_a_phone_only_verify_matches_the_most_recent_send_in_the_window(store: Store) -> None:
    send(store, CN, "older", HOUR0 + 100)
    send(store, CN, "newer", HOUR0 + 200)
    send(store, SG, "other-phone", HOUR0 + 250)
    outcome = verify(store, CN, HOUR0 + 300)
    assert outcome.message_id == "newer"
    assert outcome.enqueued
    assert not outcome.already_verified
    assert [item.message_id for item in claim_all(store, HOUR0 + 300)] == ["newer"]


def test_a_phone_only_verify_matches_sends_at_both_ends_of_the_window(store: Store) -> None:
    send(store, CN, "at-start", HOUR0 + 100)
    send(store, SG, "at-end", HOUR0 + 100 + WINDOW)
    assert verify(store, CN, HOUR0 + 100 + WINDOW).message_id == "at-start"
    assert verify(store, SG, HOUR0 + 100 + WINDOW).message_id == "at-end"


def test_of_two_sends_at_the_same_moment_the_one_recorded_later_is_matched(store: Store) -> None:
    send(store, CN, "recorded-first", HOUR0 + 100)
    send(store, CN, "recorded-second", HOUR0 + 100)
    assert verify(store, CN, HOUR0 + 200).message_id == "recorded-second"


def test_a_phone_only_verify_matches_a_send_of_another_provider(store: Store) -> None:
    send(store, CN, "m1", HOUR0 + 100, provider="alibaba")
    outcome = verify(store, CN, HOUR0 + 200, provider="tencent")
    assert (outcome.message_id, outcome.enqueued) == ("m1", True)
    assert store.counts(**ALL_TIME) == [CountRow(HOUR0, "alibaba", "86", 1, 1, 0)]


def test_a_phone_only_verify_ignores_sends_after_the_verification(store: Store) -> None:
    send(store, CN, "before", HOUR0 + 100)
    send(store, CN, "after", HOUR0 + 400)
    assert verify(store, CN, HOUR0 + 300).message_id == "before"


def test_a_verify_with_no_send_in_the_window_counts_unmatched_and_enqueues_nothing(store: Store) -> None:
    send(store, CN, "too-old", HOUR0 + 100)
    outcome = verify(store, CN, HOUR0 + 100 + WINDOW + 1)
    assert outcome.message_id is None
    assert not outcome.enqueued
    assert store.outbox_stats(now=HOUR0 + 2000) == empty_stats()
    assert store.counts(**ALL_TIME) == [CountRow(HOUR0, "tencent", "86", 1, 0, 1)]


def test_an_unmatched_verify_is_counted_in_its_own_hour_under_the_given_provider(store: Store) -> None:
    verify(store, US, HOUR0 + 3600 + 5, provider="alibaba")
    assert store.counts(**ALL_TIME) == [CountRow(HOUR0 + 3600, "alibaba", "1", 0, 0, 1)]


def test_an_explicit_message_id_matches_that_send_not_the_latest(store: Store) -> None:
    send(store, CN, "first", HOUR0 + 100)
    send(store, CN, "second", HOUR0 + 200)
    outcome = verify(store, CN, HOUR0 + 300, message_id="first")
    assert (outcome.message_id, outcome.enqueued) == ("first", True)
    assert verify(store, CN, HOUR0 + 310).message_id == "second"


def test_an_explicit_message_id_matches_outside_the_window(store: Store) -> None:
    send(store, CN, "slow", HOUR0)
    assert verify(store, CN, HOUR0 + 10 * WINDOW, message_id="slow").enqueued


def test_an_explicit_message_id_sent_to_another_phone_is_unmatched(store: Store) -> None:
    send(store, CN, "m1", HOUR0 + 100)
    outcome = verify(store, SG, HOUR0 + 200, message_id="m1")
    assert (outcome.message_id, outcome.enqueued) == (None, False)
    assert store.outbox_stats(now=HOUR0 + 200).pending == 0
    assert CountRow(HOUR0, "tencent", "65", 0, 0, 1) in store.counts(**ALL_TIME)
    assert verify(store, CN, HOUR0 + 210, message_id="m1").enqueued  # the right phone still can


def test_an_explicit_message_id_of_another_provider_is_unmatched(store: Store) -> None:
    send(store, CN, "m1", HOUR0 + 100, provider="alibaba")
    assert verify(store, CN, HOUR0 + 200, message_id="m1", provider="tencent").message_id is None


def test_a_second_verify_with_the_message_id_reports_once(store: Store) -> None:
    send(store, CN, "m1", HOUR0 + 100)
    assert verify(store, CN, HOUR0 + 200, message_id="m1").enqueued
    again = verify(store, CN, HOUR0 + 210, message_id="m1")
    assert (again.message_id, again.enqueued, again.already_verified) == ("m1", False, True)
    assert store.outbox_stats(now=HOUR0 + 300).pending == 1
    assert store.counts(**ALL_TIME) == [CountRow(HOUR0, "tencent", "86", 1, 1, 0)]


def test_a_second_phone_only_verify_reports_once(store: Store) -> None:
    send(store, CN, "m1", HOUR0 + 100)
    assert verify(store, CN, HOUR0 + 200).enqueued
    again = verify(store, CN, HOUR0 + 210)
    assert (again.message_id, again.enqueued, again.already_verified) == ("m1", False, True)
    assert store.outbox_stats(now=HOUR0 + 300).pending == 1


def test_a_repeat_verify_does_not_fall_back_to_an_older_superseded_send(store: Store) -> None:
    send(store, CN, "superseded", HOUR0 + 100)
    send(store, CN, "latest", HOUR0 + 200)
    assert verify(store, CN, HOUR0 + 300).message_id == "latest"
    again = verify(store, CN, HOUR0 + 310)
    assert (again.message_id, again.already_verified) == ("latest", True)
    assert [item.message_id for item in claim_all(store, HOUR0 + 400)] == ["latest"]


def test_a_verification_is_counted_in_the_hour_of_the_send(store: Store) -> None:
    send(store, CN, "m1", HOUR0 + 3590)
    verify(store, CN, HOUR0 + 3610)
    assert store.counts(**ALL_TIME) == [CountRow(HOUR0, "tencent", "86", 1, 1, 0)]


def test_the_outbox_row_carries_the_send_and_the_verification(store: Store) -> None:
    send(store, CN, "m1", HOUR0 + 100, provider="alibaba")
    verify(store, CN, HOUR0 + 160)  # phone-only: the row takes the send's provider
    (item,) = claim_all(store, HOUR0 + 200, provider="alibaba")
    assert (item.message_id, item.phone, item.provider) == ("m1", CN, "alibaba")
    assert (item.sent_at, item.verified_at, item.created_at) == (HOUR0 + 100, HOUR0 + 160, HOUR0 + 160)
    assert (item.attempts, item.last_error) == (0, None)


# Counters -------------------------------------------------------------------------------------------------


def test_counts_are_split_by_hour_provider_and_calling_code(store: Store) -> None:
    send(store, CN, "a", HOUR0 + 1)
    send(store, SG, "b", HOUR0 + 2)
    send(store, SG, "c", HOUR0 + 3, provider="alibaba")
    send(store, US, "d", HOUR0 + 3600 + 4)
    verify(store, SG, HOUR0 + 60, message_id="b")
    assert store.counts(**ALL_TIME) == [
        CountRow(HOUR0, "alibaba", "65", 1, 0, 0),
        CountRow(HOUR0, "tencent", "65", 1, 1, 0),
        CountRow(HOUR0, "tencent", "86", 1, 0, 0),
        CountRow(HOUR0 + 3600, "tencent", "1", 1, 0, 0),
    ]


def test_counts_return_hours_starting_in_the_half_open_range(store: Store) -> None:
    for n in range(4):
        send(store, CN, f"m{n}", HOUR0 + n * 3600 + 30)
    rows = store.counts(since=HOUR0 + 1, until=HOUR0 + 3 * 3600)
    assert [row.hour for row in rows] == [HOUR0 + 3600, HOUR0 + 2 * 3600]


# Bad input ------------------------------------------------------------------------------------------------

GOOD_SEND = {"phone": CN, "message_id": "m1", "provider": "tencent", "sent_at": HOUR0 + 1.0}
BAD_SENDS = {
    "national number": {"phone": "13711112222"},
    "unnormalised spacing": {"phone": "+86 137 1111 2222"},
    "not a string phone": {"phone": 8613711112222},
    "empty message id": {"message_id": ""},
    "overlong message id": {"message_id": "x" * (MAX_MESSAGE_ID_LENGTH + 1)},
    "not a string message id": {"message_id": 42},
    "empty provider": {"provider": ""},
    "overlong provider": {"provider": "p" * (MAX_PROVIDER_LENGTH + 1)},
    "nan time": {"sent_at": float("nan")},
    "bool time": {"sent_at": True},
}


@pytest.mark.parametrize("change", BAD_SENDS.values(), ids=list(BAD_SENDS))
def test_a_bad_send_raises_value_error_and_writes_nothing(store: Store, change: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        store.record_sent(**{**GOOD_SEND, **change})  # type: ignore[arg-type]
    assert store.counts(**ALL_TIME) == []
    assert store.record_sent(**GOOD_SEND)  # type: ignore[arg-type]  # the id was not taken


def test_a_verify_by_id_after_a_phone_only_verify_of_the_same_send_is_a_repeat(store: Store) -> None:
    send(store, CN, "m1", HOUR0 + 100)
    assert verify(store, CN, HOUR0 + 200).enqueued
    again = verify(store, CN, HOUR0 + 210, message_id="m1")
    assert (again.message_id, again.enqueued, again.already_verified) == ("m1", False, True)


GOOD_VERIFY = {"phone": CN, "message_id": "m1", "provider": "tencent", "verified_at": HOUR0 + 60.0}
BAD_VERIFIES = {
    "national number": {"phone": "13711112222"},
    "leading 00": {"phone": "008613711112222"},
    "fullwidth digits": {"phone": "+\uff18\uff1613711112222"},
    "empty message id": {"message_id": ""},
    "overlong message id": {"message_id": "x" * (MAX_MESSAGE_ID_LENGTH + 1)},
    "overlong provider": {"provider": "p" * (MAX_PROVIDER_LENGTH + 1)},
    "infinite time": {"verified_at": float("inf")},
    "zero window": {"match_window": 0},
}


@pytest.mark.parametrize("change", BAD_VERIFIES.values(), ids=list(BAD_VERIFIES))
def test_a_bad_verify_raises_value_error_and_writes_nothing(store: Store, change: dict[str, object]) -> None:
    send(store, CN, "m1", HOUR0 + 1)
    before = store.counts(**ALL_TIME)
    with pytest.raises(ValueError):
        store.record_verified(**{"match_window": WINDOW, **GOOD_VERIFY, **change})  # type: ignore[arg-type]
    assert store.counts(**ALL_TIME) == before
    assert store.outbox_stats(now=HOUR0 + 100) == empty_stats()
    assert store.record_verified(match_window=WINDOW, **GOOD_VERIFY).enqueued  # type: ignore[arg-type]


def test_a_value_error_names_the_field_but_not_the_number(store: Store) -> None:
    with pytest.raises(ValueError, match="phone") as info:
        send(store, "13711112222", "m1", HOUR0)
    assert "13711112222" not in str(info.value)


# Spool checkpoints: apply_verifications --------------------------------------------------------------------


def apply(
    store: Store, items: list[Verification], start: int, end: int, name: str = "spool-a"
) -> list[VerifyOutcome] | None:
    checkpoint = (name, start, end)
    return store.apply_verifications(items, provider="tencent", match_window=WINDOW, checkpoint=checkpoint)


def test_a_batch_matches_each_verification_like_record_verified_in_order(store: Store) -> None:
    send(store, CN, "m1", HOUR0 + 10)
    send(store, US, "m2", HOUR0 + 11)
    outcomes = apply(
        store,
        [
            Verification(CN, None, HOUR0 + 20),
            Verification(CN, None, HOUR0 + 30),  # the same send again, earlier in this batch: a repeat
            Verification(SG, None, HOUR0 + 40),  # nothing sent to this phone
            Verification(US, "m2", HOUR0 + 50),
            Verification(US, None, HOUR0 + 60),  # m2 again, by phone this time
        ],
        start=0,
        end=99,
    )
    assert outcomes == [
        VerifyOutcome("m1", enqueued=True),
        VerifyOutcome("m1", enqueued=False, already_verified=True),
        VerifyOutcome(None, enqueued=False),
        VerifyOutcome("m2", enqueued=True),
        VerifyOutcome("m2", enqueued=False, already_verified=True),
    ]
    assert store.counts(**ALL_TIME) == [
        CountRow(HOUR0, "tencent", "1", 1, 1, 0),
        CountRow(HOUR0, "tencent", "65", 0, 0, 1),
        CountRow(HOUR0, "tencent", "86", 1, 1, 0),
    ]
    assert [item.message_id for item in claim_all(store, HOUR0 + 100)] == ["m1", "m2"]


def test_a_batch_counts_several_verifications_of_one_hour_in_one_row(store: Store) -> None:
    for n in range(5):
        send(store, f"+658100000{n}", f"m{n}", HOUR0 + n)
    items = [Verification(f"+658100000{n}", None, HOUR0 + 100) for n in range(5)]
    items += [Verification(f"+658200000{n}", None, HOUR0 + 100) for n in range(3)]
    apply(store, items, 0, 10)
    assert store.counts(**ALL_TIME) == [CountRow(HOUR0, "tencent", "65", 5, 5, 3)]


def test_a_batch_stores_its_spool_position(store: Store) -> None:
    assert store.spool_position("spool-a") == 0
    assert apply(store, [], 0, 120) == []
    assert apply(store, [], 120, 240) == []
    assert store.spool_position("spool-a") == 240
    assert store.spool_position("spool-b") == 0


def test_the_same_batch_applied_twice_applies_once(store: Store) -> None:
    send(store, CN, "m1", HOUR0 + 10)
    batch = [Verification(CN, None, HOUR0 + 20), Verification(SG, None, HOUR0 + 20)]
    assert apply(store, batch, 0, 80) is not None
    assert apply(store, batch, 0, 80) is None
    assert store.outbox_stats(now=HOUR0 + 50).pending == 1
    assert store.counts(**ALL_TIME) == [
        CountRow(HOUR0, "tencent", "65", 0, 0, 1),
        CountRow(HOUR0, "tencent", "86", 1, 1, 0),
    ]


def test_a_batch_that_does_not_start_at_the_stored_position_changes_nothing(store: Store) -> None:
    send(store, CN, "m1", HOUR0 + 10)
    assert apply(store, [], 0, 100) == []
    # a second reader of the same file, behind: these lines were applied already
    assert apply(store, [Verification(CN, None, HOUR0 + 20)], 0, 50) is None
    # ahead: lines in between would be skipped
    assert apply(store, [Verification(CN, None, HOUR0 + 20)], 150, 200) is None
    assert store.spool_position("spool-a") == 100
    assert store.outbox_stats(now=HOUR0 + 50).pending == 0


def test_a_batch_with_a_bad_item_applies_nothing_and_keeps_the_position(store: Store) -> None:
    send(store, CN, "m1", HOUR0 + 10)
    apply(store, [], 0, 50)
    with pytest.raises(ValueError):
        apply(store, [Verification(CN, None, HOUR0 + 20), Verification("not a phone", None, HOUR0 + 21)], 50, 90)
    assert store.spool_position("spool-a") == 50
    assert store.outbox_stats(now=HOUR0 + 50).pending == 0


def test_a_forgotten_spool_starts_again_at_zero(store: Store) -> None:
    apply(store, [], 0, 70)
    store.forget_spool("spool-a")
    store.forget_spool("never-seen")
    assert store.spool_position("spool-a") == 0


@pytest.mark.parametrize(
    "checkpoint",
    [("", 0, 10), ("s", -1, 10), ("s", 0, 1.5), ("s", 0)],
    ids=["empty name", "negative start", "float end", "two parts"],
)
def test_a_bad_checkpoint_is_refused(store: Store, checkpoint: object) -> None:
    with pytest.raises(ValueError):
        store.apply_verifications([], provider="tencent", match_window=WINDOW, checkpoint=checkpoint)  # type: ignore[arg-type]


@pytest.mark.parametrize("at", [1e300, -1e300, 2e12])
def test_a_time_no_store_can_keep_is_refused_with_a_value_error(store: Store, at: float) -> None:
    with pytest.raises(ValueError, match="out of range"):
        verify(store, CN, at)
    with pytest.raises(ValueError, match="out of range"):
        send(store, CN, "m-1", at)


def test_matches_says_which_verifications_would_match_and_changes_nothing(store: Store) -> None:
    send(store, CN, "m1", HOUR0)
    items = [Verification(CN, None, HOUR0 + 10), Verification(SG, None, HOUR0 + 10), Verification(CN, "nope", HOUR0)]
    assert store.matches(items, provider="tencent", match_window=WINDOW) == [True, False, False]
    assert store.outbox_stats(now=HOUR0 + 20).pending == 0
    assert store.counts(since=0, until=1e11)[0].unmatched == 0
    assert verify(store, CN, HOUR0 + 10).enqueued  # still unverified
