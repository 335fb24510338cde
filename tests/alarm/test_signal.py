"""The ``conversion-anomaly`` signal, its log line, and where else an alarm shows: stats and config."""

from __future__ import annotations

import time
from typing import Any

import pytest

from flask_otp_conversion import ConfigurationError, conversion_anomaly
from tests.alarm.ranges import PREFIX, PREFIX_CONFIG, pump_a_range
from tests.conftest import AppFactory

PUMPED = "+2348031234567"
TOKEN = "alarm-test-token"


def pump(app: Any, conversion: Any, count: int = 40) -> None:
    with app.app_context():
        for i in range(count):
            conversion.record_sent(PUMPED, f"p-{i}", sent_at=time.time() - 300)


def test_an_alarm_sends_conversion_anomaly_once_with_its_figures(make_app: AppFactory) -> None:
    app, conversion = make_app()
    received: list[dict[str, Any]] = []

    def receiver(sender: object, **kwargs: Any) -> None:
        received.append({"sender": sender, **kwargs})

    with conversion_anomaly.connected_to(receiver):
        pump(app, conversion)
        with app.app_context():
            conversion.send_allowed("+2348030000000")
            app.extensions["otp_conversion"].alarms.evaluate(fresh=True)  # evaluated again: no second signal
    assert len(received) == 1
    got = received[0]
    assert (got["sender"], got["calling_code"], got["sends"], got["rate"], got["window"]) == (app, "234", 40, 0.0, 900)


def test_the_deliverer_opens_an_episode_with_no_one_reading(make_app: AppFactory) -> None:
    app, conversion = make_app()
    received: list[str] = []

    def receiver(sender: object, **kwargs: Any) -> None:
        received.append(kwargs["calling_code"])

    with conversion_anomaly.connected_to(receiver):
        pump(app, conversion)
        with app.app_context():
            conversion.flush(timeout=5)  # the delivery loop's pass, no stats, dashboard or send_allowed read
    assert received == ["234"]


def test_an_open_alarm_is_in_the_stats(make_app: AppFactory) -> None:
    app, conversion = make_app(OTP_CONVERSION_STATS_TOKEN=TOKEN, OTP_CONVERSION_TENCENT_ENDPOINT="http://127.0.0.1:9")
    pump(app, conversion)
    body = app.test_client().get("/otp-conversion/stats", headers={"Authorization": f"Bearer {TOKEN}"}).get_json()
    assert [a["calling_code"] for a in body["alarms"]["open"]] == ["234"]


def test_a_clear_ratio_not_above_the_ratio_is_refused_at_init(make_app: AppFactory) -> None:
    with pytest.raises(ConfigurationError, match="OTP_CONVERSION_ALARM_CLEAR_RATIO"):
        make_app(OTP_CONVERSION_ALARM_RATIO=0.6, OTP_CONVERSION_ALARM_CLEAR_RATIO=0.6)


def test_a_bad_threshold_names_its_key(make_app: AppFactory) -> None:
    with pytest.raises(ConfigurationError, match="OTP_CONVERSION_ALARM_MIN_SENDS"):
        make_app(OTP_CONVERSION_ALARM_MIN_SENDS=0)


def test_a_prefix_alarm_sends_conversion_anomaly_with_its_prefix(make_app: AppFactory) -> None:
    app, conversion = make_app(**PREFIX_CONFIG)
    received: list[dict[str, Any]] = []

    def receiver(sender: object, **kwargs: Any) -> None:
        received.append(kwargs)

    with conversion_anomaly.connected_to(receiver):
        pump_a_range(app, conversion)
        with app.app_context():
            app.extensions["otp_conversion"].alarms.evaluate(fresh=True)
    assert [(r["calling_code"], r["prefix"], r["sends"], r["rate"]) for r in received] == [("44", PREFIX, 40, 0.0)]


def test_a_receiver_without_a_prefix_parameter_still_gets_whole_code_alarms(make_app: AppFactory) -> None:
    """A receiver written before the per-prefix alarm, with exactly the keywords documented then."""
    app, conversion = make_app(**PREFIX_CONFIG)
    received: list[str] = []

    def receiver(
        sender: object, calling_code: str, rate: float, baseline: float, sends: int, window: float, since: float
    ) -> None:
        received.append(calling_code)

    with conversion_anomaly.connected_to(receiver):
        pump(app, conversion)
        with app.app_context():
            app.extensions["otp_conversion"].alarms.evaluate(fresh=True)
    assert received == ["234"]


def test_an_open_prefix_alarm_is_in_the_stats(make_app: AppFactory) -> None:
    app, conversion = make_app(
        OTP_CONVERSION_STATS_TOKEN=TOKEN, OTP_CONVERSION_TENCENT_ENDPOINT="http://127.0.0.1:9", **PREFIX_CONFIG
    )
    pump_a_range(app, conversion)
    body = app.test_client().get("/otp-conversion/stats", headers={"Authorization": f"Bearer {TOKEN}"}).get_json()
    alarms = body["alarms"]
    assert (alarms["open"], [(a["calling_code"], a["prefix"]) for a in alarms["open_prefixes"]]) == (
        [],
        [("44", PREFIX)],
    )
    assert [(p["prefix"], p["sends"], p["alarm"]) for p in alarms["prefixes"]] == [
        ("+44770", 200, False),
        (PREFIX, 40, True),
    ]


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("OTP_CONVERSION_ALARM_PREFIX_DIGITS", 13),
        ("OTP_CONVERSION_ALARM_PREFIX_DIGITS", -1),
        ("OTP_CONVERSION_ALARM_PREFIX_MIN_SENDS", 0),
    ],
)
def test_a_bad_prefix_alarm_setting_names_its_key(make_app: AppFactory, key: str, value: int) -> None:
    with pytest.raises(ConfigurationError, match=key):
        make_app(**{key: value})
