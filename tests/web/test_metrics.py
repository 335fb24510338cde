"""``GET /otp-conversion/metrics``: Prometheus text read from a real SQLite store, reports delivered to the
emulator over HTTP, parsed back with prometheus_client's own parser."""

from __future__ import annotations

import time
from typing import Any

import pytest
from flask import Flask
from prometheus_client.parser import text_string_to_metric_families
from recorded import CN, deliver_one_report, record_four_sends

from flask_otp_conversion import OTPConversion
from flask_otp_conversion.store import SQLiteStore
from flask_otp_conversion.testing import EmulatorServer
from flask_otp_conversion.web.metrics import StoreCollector, counting_since
from tests.alarm.ranges import PREFIX, PREFIX_CONFIG, pump_a_range
from tests.conftest import AppFactory, FakeClock

TOKEN = "metrics-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
OFFLINE = "http://127.0.0.1:9"


def metrics_app(
    make_app: AppFactory, server: EmulatorServer | None = None, **config: Any
) -> tuple[Flask, OTPConversion]:
    config.setdefault("OTP_CONVERSION_STATS_TOKEN", TOKEN)
    config["OTP_CONVERSION_TENCENT_ENDPOINT"] = OFFLINE if server is None else server.url
    if server is not None:
        config.update(OTP_CONVERSION_TENCENT_TEMPLATE_ID="1110", OTP_CONVERSION_TENCENT_SIGN_NAME="Example")
    return make_app(**config)


def scrape(app: Flask) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample as {(name, sorted labels): value}."""
    response = app.test_client().get("/otp-conversion/metrics", headers=AUTH)
    assert response.status_code == 200, response.data
    out = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_metrics_refuse_a_request_without_the_token(make_app: AppFactory) -> None:
    app, _ = metrics_app(make_app)
    response = app.test_client().get("/otp-conversion/metrics")
    assert (response.status_code, response.headers["WWW-Authenticate"]) == (401, 'Bearer realm="otp-conversion-stats"')


def test_metrics_accept_the_apps_stats_auth_callable(make_app: AppFactory) -> None:
    app, conversion = metrics_app(make_app, OTP_CONVERSION_STATS_TOKEN="")
    conversion.stats_auth(lambda: True)
    assert app.test_client().get("/otp-conversion/metrics").status_code == 200


def test_metrics_are_in_the_prometheus_text_format(make_app: AppFactory) -> None:
    app, _ = metrics_app(make_app)
    response = app.test_client().get("/otp-conversion/metrics", headers=AUTH)
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")


def test_metrics_answer_openmetrics_to_a_scraper_that_asks(make_app: AppFactory) -> None:
    app, _ = metrics_app(make_app)
    headers = {**AUTH, "Accept": "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"}
    response = app.test_client().get("/otp-conversion/metrics", headers=headers)
    assert response.headers["Content-Type"].startswith("application/openmetrics-text")
    assert response.get_data(as_text=True).endswith("# EOF\n")


def test_requested_and_verified_are_counted_by_provider_and_calling_code(make_app: AppFactory) -> None:
    app, conversion = metrics_app(make_app)
    record_four_sends(app, conversion)
    samples = scrape(app)
    cn = (("calling_code", "86"), ("provider", "tencent"))
    us = (("calling_code", "1"), ("provider", "tencent"))
    got = [
        samples[(name, labels)]
        for name in ("otp_conversion_requested_total", "otp_conversion_verified_total")
        for labels in (cn, us)
    ]
    assert got == [3, 1, 2, 0]


def test_no_phone_number_is_ever_a_label(make_app: AppFactory) -> None:
    app, conversion = metrics_app(make_app)
    record_four_sends(app, conversion)
    text = app.test_client().get("/otp-conversion/metrics", headers=AUTH).get_data(as_text=True)
    assert "13711112" not in text and "4155550" not in text


def test_pending_reports_and_their_age_are_gauges(make_app: AppFactory) -> None:
    app, conversion = metrics_app(make_app)
    record_four_sends(app, conversion)
    samples = scrape(app)
    assert samples[("otp_conversion_outbox_pending", ())] == 2
    assert samples[("otp_conversion_outbox_oldest_pending_age_seconds", ())] >= 29


def test_delivered_reports_and_their_latency_are_counted(
    make_app: AppFactory, provider_emulator_server: EmulatorServer
) -> None:
    app, conversion = metrics_app(make_app, provider_emulator_server)
    deliver_one_report(app, conversion, CN)
    samples = scrape(app)
    tencent = (("provider", "tencent"),)
    assert samples[("otp_conversion_reports_total", (("outcome", "delivered"), *tencent))] == 1
    assert samples[("otp_conversion_report_latency_seconds_count", tencent)] == 1
    assert samples[("otp_conversion_report_latency_seconds_bucket", (("le", "+Inf"), *tencent))] == 1


def test_rate_limit_waits_are_counters_of_requests_and_seconds(make_app: AppFactory) -> None:
    app, _ = metrics_app(make_app)
    store = app.extensions["otp_conversion"].store
    store.count_rate_waits(provider="tencent", waits=4, wait_seconds=1.5, now=time.time())
    samples = scrape(app)
    assert samples[("otp_conversion_rate_limit_waits_total", (("provider", "tencent"),))] == 4
    assert samples[("otp_conversion_rate_limit_wait_seconds_total", (("provider", "tencent"),))] == 1.5


def test_the_breaker_state_is_one_of_three(make_app: AppFactory) -> None:
    app, _ = metrics_app(make_app)
    samples = scrape(app)
    states = {
        dict(labels)["state"]: value
        for (name, labels), value in samples.items()
        if name == "otp_conversion_breaker_state"
    }
    assert states == {"closed": 1, "open": 0, "half-open": 0}


def test_the_degraded_switch_is_a_gauge(make_app: AppFactory) -> None:
    app, conversion = metrics_app(make_app)
    with app.app_context():
        conversion.degrade(True)
    assert scrape(app)[("otp_conversion_degraded", ())] == 1


def test_an_open_alarm_is_a_gauge_of_its_calling_code(make_app: AppFactory) -> None:
    app, conversion = metrics_app(make_app)
    with app.app_context():
        for i in range(40):
            conversion.record_sent("+2348031234567", f"p-{i}", sent_at=time.time() - 300)
    samples = scrape(app)
    assert samples[("otp_conversion_alarm_active", (("calling_code", "234"),))] == 1
    assert samples[("otp_conversion_window_sends", (("calling_code", "234"),))] == 40


def test_an_open_prefix_alarm_is_a_gauge_of_its_prefix_alone(make_app: AppFactory) -> None:
    app, conversion = metrics_app(make_app, **PREFIX_CONFIG)
    pump_a_range(app, conversion)
    samples = scrape(app)
    labels = (("calling_code", "44"), ("prefix", PREFIX))
    assert samples[("otp_conversion_prefix_alarm_active", labels)] == 1
    assert samples[("otp_conversion_prefix_window_sends", labels)] == 40
    assert [key for key in samples if key[0].startswith("otp_conversion_prefix_")] == [
        ("otp_conversion_prefix_alarm_active", labels),
        ("otp_conversion_prefix_window_conversion_ratio", labels),
        ("otp_conversion_prefix_window_sends", labels),
    ]  # the healthy prefix +44770 has no series: only prefixes under alarm are labels


def test_every_worker_on_one_store_serves_the_same_counts(make_app: AppFactory, tmp_path: Any) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    first, conversion = metrics_app(make_app, OTP_CONVERSION_STORE_URL=url)
    second, _ = metrics_app(make_app, name="second", OTP_CONVERSION_STORE_URL=url)
    record_four_sends(first, conversion)
    key = ("otp_conversion_requested_total", (("calling_code", "86"), ("provider", "tencent")))
    assert scrape(first)[key] == scrape(second)[key] == 3


def test_a_scrape_is_reused_for_a_second(tmp_path: Any, clock: FakeClock) -> None:
    store = SQLiteStore(str(tmp_path / "cache.db"))
    collector = StoreCollector(store=store, provider="tencent", reporter=lambda: {}, clock=clock)
    first = [m.samples for m in collector.collect()]
    store.record_sent(phone=CN, message_id="later", provider="tencent", sent_at=clock.now)
    assert [m.samples for m in collector.collect()] == first
    clock.advance(2)
    assert [m.samples for m in collector.collect()] != first
    store.close()


@pytest.mark.parametrize(("retention", "period"), [(7.0, 86400), (0.5, 3600)])
def test_counters_count_from_the_day_or_the_hour_the_store_keeps(retention: float, period: int) -> None:
    now = 1_780_000_000.0 + 12345
    assert counting_since(now, retention) == int(now // period) * period
