"""The statistics window: ``since`` or ``from``/``to`` parsed into a UTC window, refused with a message that says
what is expected, and held to the provider's longest span."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from flask_otp_conversion.providers.tencent import TencentProvider
from flask_otp_conversion.web.stats_window import EARLIEST, Window, WindowError, parse_window

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


def test_the_default_window_is_the_last_24_hours() -> None:
    assert parse_window({}, provider=None, now=NOW) == Window(NOW - timedelta(hours=24), NOW)


@pytest.mark.parametrize(
    ("since", "span"),
    [("90m", timedelta(minutes=90)), ("7d", timedelta(days=7)), (" 2 h ", timedelta(hours=2))],
)
def test_since_sets_the_window_length_up_to_now(since: str, span: timedelta) -> None:
    assert parse_window({"since": since}, provider=None, now=NOW) == Window(NOW - span, NOW)


def test_naive_from_and_to_are_utc() -> None:
    window = parse_window({"from": "2026-01-01T00:00:00", "to": "2026-01-02T00:00:00"}, provider=None, now=NOW)
    assert window.as_json() == {"from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z"}


def test_from_with_an_offset_is_converted_to_utc() -> None:
    window = parse_window({"from": "2026-01-01T08:00:00+08:00", "to": "2026-01-01T12:00:00Z"}, provider=None)
    assert window.begin == datetime(2026, 1, 1, tzinfo=timezone.utc)


def test_a_since_reaching_before_the_epoch_starts_at_the_epoch() -> None:
    early = datetime(1971, 1, 1, tzinfo=timezone.utc)
    assert parse_window({"since": "3000d"}, provider=None, now=early) == Window(EARLIEST, early)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"since": "abc"}, "since must be a number followed by m, h or d"),
        ({"since": "0h"}, "greater than zero"),
        ({"since": "24x"}, "since must be"),
        ({"from": "yesterday"}, "from must be an ISO-8601 date-time"),
        ({"from": "2026-01-01T00:00:00Z", "to": "not-a-date"}, "to must be an ISO-8601"),
        ({"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"}, "from must not be after to"),
        ({"since": "24h", "from": "2026-01-01T00:00:00Z"}, "not both"),
        ({"since": "999999d"}, "since must be at most 3660 days"),
        ({"from": "0001-01-01T00:00:00Z", "to": "0001-01-02T00:00:00Z"}, "to must be between"),
        ({"from": "0001-01-01T00:00:00+01:00", "to": "2026-01-01T00:00:00Z"}, "from must be between"),
        ({"to": "0001-01-01T00:00:00Z"}, "to must be between"),
        ({"from": "9999-12-30T00:00:00Z", "to": "9999-12-31T00:00:00Z"}, "to must be between"),
        ({"from": "2026-01-01T00:00:00Z", "to": "9999-12-31T23:59:59-01:00"}, "to must be between"),
        ({"from": "1969-12-31T23:00:00Z", "to": "1970-01-01T01:00:00Z"}, "from must be between"),
        ({"from": "1970-01-01T00:00:00Z", "to": "9998-12-31T00:00:00Z"}, "at most 3660 days"),
    ],
)
def test_a_bad_window_is_refused_saying_what_is_expected(args: dict[str, str], message: str) -> None:
    with pytest.raises(WindowError, match=message):
        parse_window(args, provider=None, now=NOW)


@pytest.mark.parametrize("provider", [TencentProvider, "tencent"], ids=["class", "registered-name"])
def test_a_window_longer_than_the_providers_span_is_refused(provider: type[TencentProvider] | str) -> None:
    with pytest.raises(WindowError, match="tencent allows at most 32 days"):
        parse_window({"since": "33d"}, provider=provider, now=NOW)


def test_an_unknown_provider_name_sets_no_span_of_its_own() -> None:
    assert parse_window({"since": "33d"}, provider="no-such-provider", now=NOW).begin == NOW - timedelta(days=33)
