"""The store's decisions as pure functions (``store/rules.py``): no store, no clock, every case by hand."""

from __future__ import annotations

from store_helpers import CN, HOUR0, SG, WINDOW

from flask_otp_conversion.store.base import HOUR, MINUTE, Verification, VerifyOutcome
from flask_otp_conversion.store.rules import (
    Report,
    Sent,
    Tally,
    draw_slots,
    first_kept_hour,
    hour_of,
    latency_bucket,
    match,
    sendable,
    unverified_reports,
    wanted,
)


def sent(key: int, message_id: str, at: float, phone: str = CN, provider: str = "tencent") -> Sent:
    return Sent(key, provider, message_id, phone, at, None)


def test_hour_of_rounds_down_to_the_start_of_the_utc_hour() -> None:
    assert [hour_of(HOUR0), hour_of(HOUR0 + 3599.9), hour_of(HOUR0 + 3600)] == [HOUR0, HOUR0, HOUR0 + 3600]


def test_hour_of_rounds_a_time_before_1970_down_too() -> None:
    assert hour_of(-1.0) == -3600


def test_pruning_keeps_the_counters_of_the_hour_still_running_at_the_cutoff() -> None:
    assert [first_kept_hour(HOUR0), first_kept_hour(HOUR0 + 1), first_kept_hour(HOUR0 + 3600)] == [
        HOUR0,
        HOUR0,
        HOUR0 + 3600,
    ]


def test_wanted_spans_each_phones_windows_and_collects_the_ids() -> None:
    items = [
        Verification(CN, None, HOUR0 + 1000),
        Verification(CN, None, HOUR0 + 2000),
        Verification(SG, "m9", HOUR0 + 3000),
    ]
    need = wanted(items, provider="tencent", window=WINDOW)
    assert need.ids == {"m9"}
    assert need.phones == {CN: (HOUR0 + 1000 - WINDOW, HOUR0 + 2000)}


def test_match_enqueues_the_latest_send_in_the_window_and_marks_it() -> None:
    effects = match(
        [Verification(CN, None, HOUR0 + 300)],
        [sent(1, "older", HOUR0 + 100), sent(2, "newer", HOUR0 + 200), sent(3, "later", HOUR0 + 301)],
        provider="tencent",
        window=WINDOW,
    )
    assert effects.outcomes == [VerifyOutcome("newer", enqueued=True)]
    assert effects.verified == [(2, HOUR0 + 300)]
    assert effects.reports == [Report("newer", CN, "tencent", HOUR0 + 200, HOUR0 + 300)]
    assert effects.counters == {
        (HOUR0, HOUR, "tencent", "86"): Tally(verified=1),
        (HOUR0 + 180, MINUTE, "tencent", "86"): Tally(verified=1),
    }


def test_match_counts_verified_in_the_hour_of_the_send_under_the_sends_provider() -> None:
    effects = match(
        [Verification(CN, None, HOUR0 + 3700)],
        [sent(1, "m1", HOUR0 + 3500, provider="alibaba")],
        provider="tencent",
        window=WINDOW,
    )
    assert effects.counters == {
        (HOUR0, HOUR, "alibaba", "86"): Tally(verified=1),
        (HOUR0 + 3480, MINUTE, "alibaba", "86"): Tally(verified=1),
    }


def test_match_without_a_send_counts_unmatched_in_the_hour_of_the_verification() -> None:
    effects = match([Verification(SG, None, HOUR0 + 3700)], [], provider="tencent", window=WINDOW)
    assert effects.outcomes == [VerifyOutcome(None, enqueued=False)]
    assert (effects.verified, effects.reports) == ([], [])
    assert effects.counters == {
        (HOUR0 + 3600, HOUR, "tencent", "65"): Tally(unmatched=1),
        (HOUR0 + 3660, MINUTE, "tencent", "65"): Tally(unmatched=1),
    }


def test_match_takes_a_named_message_only_of_the_provider_and_the_phone() -> None:
    sends = [sent(1, "m1", HOUR0, phone=SG), sent(2, "m2", HOUR0, provider="alibaba")]
    items = [Verification(CN, "m1", HOUR0 + 10), Verification(CN, "m2", HOUR0 + 10)]
    effects = match(items, sends, provider="tencent", window=WINDOW)
    assert effects.outcomes == [VerifyOutcome(None, enqueued=False)] * 2


def test_match_calls_a_send_verified_before_a_repeat() -> None:
    earlier = Sent(1, "tencent", "m1", CN, HOUR0, HOUR0 + 50)
    effects = match([Verification(CN, None, HOUR0 + 100)], [earlier], provider="tencent", window=WINDOW)
    assert effects.outcomes == [VerifyOutcome("m1", enqueued=False, already_verified=True)]
    assert effects.counters == {}


def test_match_calls_a_send_verified_earlier_in_the_batch_a_repeat() -> None:
    items = [Verification(CN, "m1", HOUR0 + 100), Verification(CN, None, HOUR0 + 110)]
    effects = match(items, [sent(1, "m1", HOUR0)], provider="tencent", window=WINDOW)
    assert [o.enqueued for o in effects.outcomes] == [True, False]
    assert effects.outcomes[1].already_verified
    assert len(effects.reports) == 1


def test_match_does_not_fall_back_to_an_older_send_when_the_latest_is_verified() -> None:
    sends = [sent(1, "superseded", HOUR0), Sent(2, "tencent", "latest", CN, HOUR0 + 10, HOUR0 + 20)]
    effects = match([Verification(CN, None, HOUR0 + 30)], sends, provider="tencent", window=WINDOW)
    assert effects.outcomes == [VerifyOutcome("latest", enqueued=False, already_verified=True)]


def test_match_breaks_a_tie_in_sent_at_by_the_later_recorded_send() -> None:
    effects = match(
        [Verification(CN, None, HOUR0 + 30)],
        [sent(7, "second", HOUR0), sent(3, "first", HOUR0)],
        provider="tencent",
        window=WINDOW,
    )
    assert effects.outcomes == [VerifyOutcome("second", enqueued=True)]


def test_match_ignores_extra_sends_outside_every_window() -> None:
    effects = match(
        [Verification(CN, None, HOUR0 + WINDOW + 1)], [sent(1, "old", HOUR0)], provider="tencent", window=WINDOW
    )
    assert effects.outcomes == [VerifyOutcome(None, enqueued=False)]


def test_match_adds_up_the_counters_of_a_batch_per_row() -> None:
    items = [Verification(f"+658100000{n}", None, HOUR0 + 100) for n in range(4)]
    sends = [sent(n, f"m{n}", HOUR0 + n, phone=f"+658100000{n}") for n in range(3)]
    effects = match(items, sends, provider="tencent", window=WINDOW)
    assert effects.counters == {
        (HOUR0, HOUR, "tencent", "65"): Tally(verified=3, unmatched=1),
        (HOUR0, MINUTE, "tencent", "65"): Tally(verified=3),
        (HOUR0 + 60, MINUTE, "tencent", "65"): Tally(unmatched=1),
    }


def test_match_counts_a_settled_send_verified_but_enqueues_nothing_more() -> None:
    settled = Sent(1, "tencent", "m1", CN, HOUR0, None, "acct", settled=True)
    effects = match([Verification(CN, "m1", HOUR0 + 30)], [settled], provider="tencent", window=WINDOW)
    assert effects.outcomes == [VerifyOutcome("m1", enqueued=False)]
    assert (effects.verified, effects.reports) == ([(1, HOUR0 + 30)], [])
    assert effects.counters[(HOUR0, HOUR, "tencent", "86")] == Tally(verified=1)


def test_match_gives_a_report_the_account_of_its_send() -> None:
    effects = match(
        [Verification(CN, "m1", HOUR0 + 30)],
        [Sent(1, "tencent", "m1", CN, HOUR0, None, "1400")],
        provider="tencent",
        window=WINDOW,
    )
    assert effects.reports == [Report("m1", CN, "tencent", HOUR0, HOUR0 + 30, "1400")]


def test_unverified_reports_are_negative_and_skip_verified_or_settled_sends() -> None:
    sends = [
        Sent(1, "alibaba", "open", CN, HOUR0, None, "key"),
        Sent(2, "alibaba", "done", CN, HOUR0, HOUR0 + 5),
        Sent(3, "alibaba", "settled", CN, HOUR0, None, settled=True),
    ]
    assert unverified_reports(sends, HOUR0 + 900) == [
        Report("open", CN, "alibaba", HOUR0, HOUR0 + 900, "key", converted=False)
    ]


def test_latency_bucket_is_the_first_bound_at_or_above_and_the_overflow_past_the_last() -> None:
    bounds = (1.0, 5.0)
    assert [latency_bucket(x, bounds) for x in (0.0, 1.0, 1.5, 5.0, 5.1)] == [0, 0, 1, 1, 2]


def test_a_new_schedule_starts_now_and_reserves_what_the_horizon_holds() -> None:
    assert draw_slots(None, want=10, interval=0.5, horizon=1.0, now=100.0) == (100.0, 3, 101.5)


def test_a_reservation_is_never_larger_than_asked() -> None:
    assert draw_slots(None, want=2, interval=0.5, horizon=1.0, now=100.0) == (100.0, 2, 101.0)


def test_a_schedule_full_to_the_horizon_reserves_nothing_and_names_its_next_slot() -> None:
    assert draw_slots(101.5, want=1, interval=0.5, horizon=1.0, now=100.2) == (101.5, 0, 101.5)


def test_idle_time_earns_no_burst() -> None:
    assert draw_slots(101.5, want=10, interval=0.5, horizon=1.0, now=200.0) == (200.0, 3, 201.5)


def test_a_clock_stepping_back_keeps_the_next_slot() -> None:
    assert draw_slots(101.5, want=10, interval=0.5, horizon=1.0, now=50.0) == (101.5, 0, 101.5)


def test_a_row_is_sendable_through_its_own_account_or_when_its_account_is_unknown() -> None:
    assert sendable("tencent", "1400", provider="tencent", account="1400")
    assert sendable("tencent", "", provider="tencent", account="1400")
    assert not sendable("tencent", "1401", provider="tencent", account="1400")
    assert not sendable("alibaba", "1400", provider="tencent", account="1400")
