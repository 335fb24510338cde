"""``assess`` and ``assess_prefixes``: the alarm's arithmetic over counter rows and prefix counts."""

from __future__ import annotations

import pytest

from flask_otp_conversion.alarm import AlarmSettings, CodeAssessment, assess, assess_prefixes
from flask_otp_conversion.store.base import CountRow, PrefixCount

SETTINGS = AlarmSettings(min_sends=20, ratio=0.5, floor=0.2, clear_ratio=0.7, baseline_min_sends=200)


def rows(code: str, requested: int, verified: int, provider: str = "tencent") -> list[CountRow]:
    return [CountRow(0, provider, code, requested, verified, 0)]


def one(window: list[CountRow], baseline: list[CountRow]) -> CodeAssessment:
    (result,) = assess(window, baseline, SETTINGS)
    return result


def test_a_rate_below_half_its_baseline_triggers() -> None:
    result = one(rows("234", 40, 8), rows("234", 1000, 850))
    assert (result.triggered, result.baseline, result.baseline_source) == (True, 0.85, "own")


def test_a_rate_above_half_its_baseline_does_not_trigger() -> None:
    assert not one(rows("234", 40, 20), rows("234", 1000, 850)).triggered


def test_too_few_sends_never_trigger() -> None:
    assert not one(rows("234", 19, 0), rows("234", 1000, 850)).triggered


def test_a_code_with_little_history_is_judged_against_every_code() -> None:
    baseline = rows("234", 10, 9) + rows("86", 1000, 800)
    result = one(rows("234", 30, 10), baseline)
    assert (result.baseline_source, result.baseline) == ("all", pytest.approx(809 / 1010))


def test_without_any_history_only_the_floor_applies() -> None:
    result = one(rows("234", 30, 5), [])
    assert (result.baseline_source, result.trigger_below, result.triggered) == ("none", 0.2, True)


def test_the_floor_holds_under_a_poor_baseline() -> None:
    assert one(rows("234", 30, 5), rows("234", 1000, 300)).trigger_below == 0.2


def test_providers_of_one_code_are_summed() -> None:
    result = one(rows("86", 15, 3, "tencent") + rows("86", 15, 3, "alibaba"), rows("86", 1000, 850))
    assert (result.sends, result.verified, result.triggered) == (30, 6, True)


def test_clearing_needs_more_than_not_triggering() -> None:
    result = one(rows("234", 40, 20), rows("234", 1000, 850))  # 50 %: above 42.5 %, below the 59.5 % to clear
    assert (result.triggered, result.clears) == (False, False)


def test_a_recovered_rate_clears() -> None:
    assert one(rows("234", 40, 30), rows("234", 1000, 850)).clears


def test_a_window_emptied_of_sends_clears() -> None:
    assert one(rows("234", 9, 0), rows("234", 1000, 850)).clears


PREFIXES = AlarmSettings(prefix_alarm_digits=3, prefix_alarm_min_sends=30, baseline_min_sends=200)


def test_a_prefix_is_judged_against_its_calling_codes_baseline() -> None:
    (result,) = assess_prefixes([PrefixCount("+44791", "44", 30, 3)], rows("44", 1000, 900), PREFIXES)
    assert (result.prefix, result.baseline, result.baseline_source, result.triggered) == ("+44791", 0.9, "own", True)


def test_a_prefix_needs_its_own_minimum_of_sends() -> None:
    (result,) = assess_prefixes([PrefixCount("+44791", "44", 29, 0)], rows("44", 1000, 900), PREFIXES)
    assert (result.sends, result.triggered) == (29, False)


def test_prefixes_too_small_to_hold_an_alarm_are_left_out() -> None:
    counted = [PrefixCount("+1415", "1", 14, 0), PrefixCount("+1646", "1", 15, 0)]
    assert [a.prefix for a in assess_prefixes(counted, rows("1", 1000, 850), PREFIXES)] == ["+1646"]


def test_a_prefix_of_a_code_with_little_history_is_judged_against_every_code() -> None:
    (result,) = assess_prefixes([PrefixCount("+234803", "234", 30, 10)], rows("86", 1000, 800), PREFIXES)
    assert (result.calling_code, result.baseline_source, result.baseline) == ("234", "all", 0.8)
