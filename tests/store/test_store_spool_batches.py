"""``apply_verifications``: a spool's batch of verifications and its position, applied as one."""

from __future__ import annotations

import pytest
from store_helpers import CN, HOUR0, SG, WINDOW, send

from flask_otp_conversion.store import CountRow, Store, VerifyOutcome
from flask_otp_conversion.store.base import Verification

ALL_TIME = {"since": 0.0, "until": 1e11}


def apply(
    store: Store, items: list[Verification], start: int, end: int, name: str = "spool-a"
) -> list[VerifyOutcome] | None:
    checkpoint = (name, start, end)
    return store.apply_verifications(items, provider="tencent", match_window=WINDOW, checkpoint=checkpoint)


def test_a_batch_matches_each_verification_like_record_verified_in_order(store: Store) -> None:
    send(store, CN, "m1", HOUR0 + 10)
    outcomes = apply(
        store,
        [
            Verification(CN, None, HOUR0 + 20),
            Verification(CN, None, HOUR0 + 30),  # the same send again: a repeat
            Verification(SG, None, HOUR0 + 40),  # nothing sent to this phone
        ],
        start=0,
        end=99,
    )
    assert outcomes == [
        VerifyOutcome("m1", enqueued=True),
        VerifyOutcome("m1", enqueued=False, already_verified=True),
        VerifyOutcome(None, enqueued=False),
    ]
    assert store.counts(**ALL_TIME) == [
        CountRow(HOUR0, "tencent", "65", 0, 0, 1),
        CountRow(HOUR0, "tencent", "86", 1, 1, 0),
    ]
    assert store.outbox_stats(now=HOUR0 + 50).pending == 1


def test_a_batch_stores_its_spool_position(store: Store) -> None:
    assert store.spool_position("spool-a") == 0
    assert apply(store, [], 0, 120) == []
    assert apply(store, [], 120, 240) == []
    assert store.spool_position("spool-a") == 240
    assert store.spool_position("spool-b") == 0


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
