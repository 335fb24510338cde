"""Plivo end to end through the example app on its sandbox: the send goes out through the real client, the
verify is recorded, and the conversion the reporter delivers reaches the emulator in Plivo's units."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timezone

import pytest
from flask import Flask

from example_app import ExampleState
from flask_otp_conversion.testing import EmulatorServer, Fault
from flask_otp_conversion.testing.remote import RemoteEmulator

pytestmark = pytest.mark.timeout(60)

PHONE = "+14155552222"
ExampleAppFactory = Callable[..., Flask]  # the root conftest's make_example_app


def emulator_of(app: Flask) -> RemoteEmulator:
    state: ExampleState = app.extensions["example_app"]
    assert state.sandbox is not None
    return state.sandbox.emulator


def flush(app: Flask) -> int:
    state: ExampleState = app.extensions["example_app"]
    assert state.conversion is not None
    with app.app_context():
        return state.conversion.flush(timeout=10)


def send_and_verify(app: Flask) -> str:
    client = app.test_client()
    assert client.post("/otp/send", json={"phone": PHONE}).status_code == 202
    code = emulator_of(app).code_for(PHONE)
    assert code is not None
    assert client.post("/otp/verify", json={"phone": PHONE, "code": code}).status_code == 200
    return code


def test_verified_otp_reaches_the_emulator_as_a_plivo_conversion(make_example_app: ExampleAppFactory) -> None:
    app = make_example_app(OTP_CONVERSION_PROVIDER="plivo")
    send_and_verify(app)
    assert flush(app) == 0
    emulator = emulator_of(app)
    [message] = emulator.messages()
    [report] = emulator.calls("Conversion")
    assert report.ok and report.provider == "plivo"
    assert report.params["message_uuid"] == message.message_id
    assert report.params["status"] == "CONVERTED"
    stamp = datetime.strptime(report.params["timestamp"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    assert abs(stamp.timestamp() - message.sent_at) < 60


def test_a_throttled_conversion_is_retried_and_nothing_is_lost(
    make_example_app: ExampleAppFactory, provider_emulator_server: EmulatorServer
) -> None:
    emulator = provider_emulator_server.emulator
    config = emulator.app_config("plivo", provider_emulator_server.url)
    app = make_example_app(OTP_CONVERSION_PROVIDER="plivo", **config)
    emulator.inject("Conversion", Fault.throttle(retry_after=1.0, times=1))
    client = app.test_client()
    assert client.post("/otp/send", json={"phone": PHONE}).status_code == 202
    code = emulator.code_for(PHONE)
    assert client.post("/otp/verify", json={"phone": PHONE, "code": code}).status_code == 200
    assert flush(app) == 0
    assert [c.http_status for c in emulator.calls("Conversion")] == [429, 200]
    assert [c.message_id for c in emulator.conversions()] == [emulator.messages()[0].message_id]


def test_an_otp_never_verified_is_reported_as_not_converted_once(
    make_example_app: ExampleAppFactory, provider_emulator_server: EmulatorServer
) -> None:
    emulator = provider_emulator_server.emulator
    config = emulator.app_config("plivo", provider_emulator_server.url)
    app = make_example_app(
        OTP_CONVERSION_PROVIDER="plivo", OTP_CONVERSION_REPORT_UNVERIFIED=True, OTP_CONVERSION_MATCH_WINDOW=1, **config
    )
    assert app.test_client().post("/otp/send", json={"phone": PHONE}).status_code == 202
    time.sleep(1.2)  # the match window ends unverified
    assert flush(app) == 0
    assert flush(app) == 0
    [report] = emulator.calls("Conversion")
    assert report.ok
    assert report.params["status"] == "NOT_CONVERTED"
    [conversion] = emulator.conversions("plivo")
    assert conversion.delivered is False and conversion.message_id == emulator.messages()[0].message_id
