"""The stats of a process that does not deliver tell what the deliverer sees (#22): breaker state and last error
come from the store, written there by whichever process delivers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Flask

from flask_otp_conversion.testing import EmulatorServer, Fault
from tests.conftest import AppFactory

TOKEN = "s3cret-stats-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CN = "+8613711112222"


def reporter_of(app: Flask) -> Any:
    answer = app.test_client().get("/otp-conversion/stats", headers=AUTH)
    assert answer.status_code == 200
    return answer.get_json()["reporter"]


def two_apps(make_app: AppFactory, tmp_path: Path, server: EmulatorServer) -> tuple[Flask, Flask]:
    """A deliverer and a web worker that never delivers, on one store."""
    config = {
        "OTP_CONVERSION_STORE_URL": f"sqlite:///{tmp_path / 'shared.db'}",
        "OTP_CONVERSION_TENCENT_ENDPOINT": server.url,
        "OTP_CONVERSION_STATS_TOKEN": TOKEN,
        "OTP_CONVERSION_BREAKER_THRESHOLD": 1,
        "OTP_CONVERSION_BREAKER_RESET_TIMEOUT": 60,
        "OTP_CONVERSION_HTTP_READ_TIMEOUT": 1.0,
    }
    deliverer, _ = make_app("deliverer", **config)
    worker, _ = make_app("worker", **config)
    return deliverer, worker


def test_a_worker_that_does_not_deliver_shows_the_deliverers_open_breaker(
    make_app: AppFactory, tmp_path: Path, provider_emulator_server: EmulatorServer
) -> None:
    deliverer, worker = two_apps(make_app, tmp_path, provider_emulator_server)
    emulator = provider_emulator_server.emulator
    ext = deliverer.extensions["otp_conversion"]
    ext.record_sent(CN, emulator.issue_message_id("tencent", CN))
    ext.record_verified(CN)
    emulator.inject("ReportConversion", Fault.http_500())
    ext.reporter.flush(2)
    shown = reporter_of(worker)
    assert shown["delivering"] is False
    assert shown["breaker_state"] == "open"
    assert "500" in shown["last_error"]
    assert shown["status_age_seconds"] is not None and shown["status_age_seconds"] < 60


def test_before_any_process_delivered_the_breaker_shows_closed_with_no_status_age(
    make_app: AppFactory, tmp_path: Path, provider_emulator_server: EmulatorServer
) -> None:
    _, worker = two_apps(make_app, tmp_path, provider_emulator_server)
    shown = reporter_of(worker)
    assert (shown["breaker_state"], shown["last_error"], shown["status_age_seconds"]) == ("closed", None, None)


def test_the_stats_say_whether_the_provider_has_figures_of_its_own_and_ask_only_then(
    make_app: AppFactory, tmp_path: Path, provider_emulator_server: EmulatorServer
) -> None:
    from flask_otp_conversion.providers import provider_class

    assert [
        name
        for name in ("tencent", "alibaba", "twilio", "aws", "vonage", "plivo")
        if provider_class(name).has_statistics
    ] == ["tencent", "alibaba"]
    emulator = provider_emulator_server.emulator
    app, _ = make_app(
        **emulator.app_config("twilio", provider_emulator_server.url),
        OTP_CONVERSION_PROVIDER="twilio",
        OTP_CONVERSION_STORE_URL=f"sqlite:///{tmp_path / 'twilio.db'}",
        OTP_CONVERSION_STATS_TOKEN=TOKEN,
    )
    answer = app.test_client().get("/otp-conversion/stats", headers=AUTH).get_json()
    assert (answer["provider_statistics"], answer["provider"], answer["provider_error"]) == (False, None, None)
    assert emulator.calls() == []  # nothing asked of a provider that has no figures to give
