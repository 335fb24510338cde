"""The per-prefix alarm on generated traffic with known truth: a normal week of traffic spread over number ranges
raises nothing; pumping into one range of the biggest code, whose whole rate stays above its trigger, is caught as
that range's alarm within five minutes."""

from __future__ import annotations

from flask_otp_conversion.alarm import AlarmSettings
from tests.alarm.conftest import (
    DAY,
    RANGE_BURST_MINUTES,
    RANGE_BURST_START,
    RANGE_PUMPED,
    START,
    Played,
)

MIN_SENDS = AlarmSettings().prefix_alarm_min_sends


def test_a_normal_week_with_the_prefix_alarm_on_raises_no_alarm(played_ranged_week: Played) -> None:
    assert [(at, e.key) for at, e in played_ranged_week.opened if at < RANGE_BURST_START] == []


def test_the_normal_week_puts_prefixes_past_the_minimum_volume_every_day(played_ranged_week: Played) -> None:
    """Else the week above would prove nothing: the prefixes were judged, many times a day."""
    days = {
        int((minute - START) // DAY)
        for minute, seen in played_ranged_week.prefixes_by_minute.items()
        if minute < START + 7 * DAY and any(a.sends >= MIN_SENDS and a.baseline for a in seen)
    }
    assert days == set(range(7))


def test_a_pumped_range_raises_its_prefix_alarm_within_five_minutes(played_ranged_week: Played) -> None:
    during = [(at, e) for at, e in played_ranged_week.opened if at >= RANGE_BURST_START]
    assert during, "the burst was never detected"
    at, episode = during[0]
    assert (episode.prefix, episode.calling_code) == (RANGE_PUMPED.prefix, RANGE_PUMPED.calling_code)
    assert at - RANGE_BURST_START <= 300


def test_a_pumped_range_opens_no_alarm_of_its_whole_code(played_ranged_week: Played) -> None:
    assert [e.key for _, e in played_ranged_week.opened] == [RANGE_PUMPED.prefix]


def test_the_whole_codes_rate_stays_above_its_trigger_through_the_burst(played_ranged_week: Played) -> None:
    """The case the per-prefix alarm is for: the code's alarm cannot see this burst."""
    end = RANGE_BURST_START + (RANGE_BURST_MINUTES + 16) * 60  # until the burst's last minute leaves the window
    seen = [a for m, a in played_ranged_week.big_code_by_minute.items() if RANGE_BURST_START <= m <= end]
    assert len(seen) == RANGE_BURST_MINUTES + 17
    assert all(a.rate is not None and a.rate >= a.trigger_below for a in seen)


def test_the_prefix_alarm_clears_once_the_burst_is_over(played_ranged_week: Played) -> None:
    end = RANGE_BURST_START + RANGE_BURST_MINUTES * 60
    open_at = [m for m, keys in played_ranged_week.open_by_minute.items() if RANGE_PUMPED.prefix in keys]
    assert open_at and max(open_at) <= end + 25 * 60
