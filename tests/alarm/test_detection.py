"""The alarm on generated traffic with known truth: a normal week raises nothing, a pumping burst is caught fast."""

from __future__ import annotations

from tests.alarm.conftest import BURST_MINUTES, BURST_START, DAY, PUMPED, START, Played


def test_a_normal_week_raises_no_alarm(played_week: Played) -> None:
    before_burst = [(at, e.calling_code) for at, e in played_week.opened if at < BURST_START]
    assert before_burst == []
    assert played_week.evaluations >= 7 * 1440  # every simulated minute was looked at
    assert START + 7 * DAY < BURST_START


def test_a_pumping_burst_raises_an_alarm_within_five_minutes(played_week: Played) -> None:
    during = [(at, e) for at, e in played_week.opened if at >= BURST_START]
    assert during, "the burst was never detected"
    at, episode = during[0]
    assert episode.calling_code == PUMPED.calling_code
    assert at - BURST_START <= 300


def test_a_burst_is_one_episode_of_its_calling_code_only(played_week: Played) -> None:
    assert [e.calling_code for at, e in played_week.opened] == [PUMPED.calling_code]


def test_the_alarm_clears_once_the_burst_is_over(played_week: Played) -> None:
    end = BURST_START + BURST_MINUTES * 60
    still_open = [m for m, codes in played_week.open_by_minute.items() if m > end + 25 * 60 and codes]
    assert still_open == []
    assert any(PUMPED.calling_code in codes for m, codes in played_week.open_by_minute.items() if m <= end)
