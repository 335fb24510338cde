"""``conversion.send_allowed(phone)``: advisory answers with a reason, through the extension on a SQLite store."""

from __future__ import annotations

import logging
import time

import pytest
from flask import Flask

from flask_otp_conversion import OTPConversion
from flask_otp_conversion.alarm import Alarms, AlarmSettings, SendLimits
from flask_otp_conversion.store import open_store
from tests.alarm.ranges import PREFIX, PREFIX_CONFIG, pump_a_range
from tests.conftest import AppFactory

PUMPED = "+2348031234567"
NUMBER = "+447700900123"


def sent(app: Flask, conversion: OTPConversion, phone: str, count: int, *, verified: int = 0, ago: float = 300) -> None:
    with app.app_context():
        for i in range(count):
            mid = f"{phone}-{i}-{time.monotonic_ns()}"
            conversion.record_sent(phone, mid, sent_at=time.time() - ago)
            if i < verified:
                conversion.record_verified(phone, mid, verified_at=time.time() - ago + 10)


def test_a_number_of_a_calling_code_under_alarm_is_refused(make_app: AppFactory) -> None:
    app, conversion = make_app()
    sent(app, conversion, PUMPED, 40)
    with app.app_context():
        decision = conversion.send_allowed("+2348039999999")
    assert (bool(decision), decision.reason, decision.calling_code) == (False, "calling-code-alarm", "234")


def test_a_number_elsewhere_is_allowed_during_an_alarm(make_app: AppFactory) -> None:
    app, conversion = make_app()
    sent(app, conversion, PUMPED, 40)
    with app.app_context():
        assert conversion.send_allowed("+8613711112222")


def test_a_number_in_a_range_under_alarm_is_refused(make_app: AppFactory) -> None:
    app, conversion = make_app(**PREFIX_CONFIG)
    pump_a_range(app, conversion)
    with app.app_context():
        decision = conversion.send_allowed("+447911000000")
    assert (decision.allowed, decision.reason, decision.calling_code) == (False, "prefix-alarm", "44")
    assert f"{PREFIX}..." in (decision.detail or "")


def test_a_number_of_the_same_code_outside_the_range_is_allowed(make_app: AppFactory) -> None:
    app, conversion = make_app(**PREFIX_CONFIG)
    pump_a_range(app, conversion)
    with app.app_context():
        assert conversion.send_allowed("+447700111222")


def test_too_many_unverified_sends_to_one_number_are_refused(make_app: AppFactory) -> None:
    app, conversion = make_app(OTP_CONVERSION_SEND_LIMIT_NUMBER=3)
    sent(app, conversion, NUMBER, 3, ago=30)
    with app.app_context():
        decision = conversion.send_allowed(NUMBER)
    assert (decision.allowed, decision.reason) == (False, "number-limit")
    assert NUMBER not in (decision.detail or "")  # the number is masked


def test_a_verification_lifts_the_number_limit(make_app: AppFactory) -> None:
    app, conversion = make_app(OTP_CONVERSION_SEND_LIMIT_NUMBER=3)
    sent(app, conversion, NUMBER, 3, verified=1, ago=30)
    with app.app_context():
        assert conversion.send_allowed(NUMBER)


def test_too_many_unverified_sends_to_one_prefix_are_refused(make_app: AppFactory) -> None:
    app, conversion = make_app(OTP_CONVERSION_SEND_LIMIT_PREFIX=4, OTP_CONVERSION_SEND_LIMIT_PREFIX_DIGITS=4)
    for last in range(4):
        sent(app, conversion, f"+44770090010{last}", 1, ago=30)
    with app.app_context():
        decision = conversion.send_allowed("+447700900199")
    assert (decision.allowed, decision.reason) == (False, "prefix-limit")


def test_sends_older_than_the_window_do_not_count(make_app: AppFactory) -> None:
    app, conversion = make_app(OTP_CONVERSION_SEND_LIMIT_NUMBER=3)
    sent(app, conversion, NUMBER, 3, ago=1000)
    with app.app_context():
        assert conversion.send_allowed(NUMBER)


def test_a_bad_phone_is_a_value_error(make_app: AppFactory) -> None:
    app, conversion = make_app()
    with app.app_context(), pytest.raises(ValueError):
        conversion.send_allowed("12345")


def test_a_disabled_app_always_allows(make_app: AppFactory) -> None:
    app, conversion = make_app(OTP_CONVERSION_ENABLED=False)
    with app.app_context():
        assert conversion.send_allowed(NUMBER)


def test_a_store_that_cannot_answer_allows_and_says_so_once(caplog: pytest.LogCaptureFixture) -> None:
    """Advisory: a PostgreSQL store on a closed port (a real driver, refused) never stops the app's sends, and the
    outage is one warning per read, not one per send."""
    store = open_store("postgresql://otp@127.0.0.1:9/otp?connect_timeout=1")
    limits = SendLimits(Alarms(store, AlarmSettings()), store)
    with caplog.at_level(logging.WARNING):
        decisions = [limits.decide(NUMBER, time.time()) for _ in range(3)]
    store.close()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert [bool(d) for d in decisions] == [True, True, True]
    assert (len(warnings), "the alarm could not be read" in warnings[0], "could not be counted" in warnings[1]) == (
        2,
        True,
        True,
    )


def test_a_send_recorded_by_another_app_on_the_store_counts(make_app: AppFactory, tmp_path: object) -> None:
    """Two apps (as two workers would be) on one SQLite file: the limit is the store's, not a process's."""
    url = f"sqlite:///{tmp_path}/shared.db"
    app_a, conversion_a = make_app("a", OTP_CONVERSION_STORE_URL=url, OTP_CONVERSION_SEND_LIMIT_NUMBER=3)
    app_b, conversion_b = make_app("b", OTP_CONVERSION_STORE_URL=url, OTP_CONVERSION_SEND_LIMIT_NUMBER=3)
    sent(app_a, conversion_a, NUMBER, 3, ago=30)
    with app_b.app_context():
        assert conversion_b.send_allowed(NUMBER).reason == "number-limit"
