"""The example app end to end on Twilio and AWS: its sandbox runs the real client against the shared emulator,
a verified code's report arrives there in the provider's own units."""

from __future__ import annotations

import pytest
from flask import Flask

from example_app import ExampleState
from flask_otp_conversion.testing.remote import RemoteEmulator

from .conftest import ExampleAppFactory

PHONE = "+15558675310"


def state_of(app: Flask) -> ExampleState:
    state: ExampleState = app.extensions["example_app"]
    return state


def emulator_of(app: Flask) -> RemoteEmulator:
    sandbox = state_of(app).sandbox
    assert sandbox is not None
    return sandbox.emulator


def send_verify_flush(app: Flask) -> RemoteEmulator:
    client = app.test_client()
    assert client.post("/otp/send", json={"phone": PHONE}).status_code == 202
    emulator = emulator_of(app)
    code = emulator.code_for(PHONE)
    assert code is not None
    assert client.post("/otp/verify", json={"phone": PHONE, "code": code}).status_code == 200
    conversion = state_of(app).conversion
    assert conversion is not None
    with app.app_context():
        assert conversion.flush(timeout=10) == 0
    return emulator


@pytest.mark.timeout(60)
def test_twilio_sandbox_sends_with_feedback_and_reports_confirmed(make_example_app: ExampleAppFactory) -> None:
    emulator = send_verify_flush(make_example_app(OTP_CONVERSION_PROVIDER="twilio"))
    [sent] = emulator.calls("CreateMessage")
    assert (sent.ok, sent.provider, sent.params["ProvideFeedback"]) == (True, "twilio", "true")
    [report] = emulator.calls("CreateMessageFeedback")
    assert report.ok and report.params == {"MessageSid": emulator.messages()[0].message_id, "Outcome": "confirmed"}


@pytest.mark.timeout(60)
def test_twilio_sandbox_conversion_is_the_sent_message(make_example_app: ExampleAppFactory) -> None:
    emulator = send_verify_flush(make_example_app(OTP_CONVERSION_PROVIDER="twilio"))
    [conversion] = emulator.conversions("twilio")
    assert (conversion.message_id, conversion.phone, conversion.delivered) == (
        emulator.messages()[0].message_id,
        PHONE,
        True,
    )


@pytest.mark.timeout(60)
def test_aws_sandbox_sends_with_feedback_and_reports_received(make_example_app: ExampleAppFactory) -> None:
    emulator = send_verify_flush(make_example_app(OTP_CONVERSION_PROVIDER="aws"))
    [sent] = emulator.calls("SendTextMessage")
    assert (sent.ok, sent.provider, sent.params["MessageFeedbackEnabled"]) == (True, "aws", True)
    [report] = emulator.calls("PutMessageFeedback")
    message_id = emulator.messages()[0].message_id
    assert report.ok and report.params == {"MessageId": message_id, "MessageFeedbackStatus": "RECEIVED"}


@pytest.mark.timeout(60)
def test_aws_sandbox_conversion_is_the_sent_message(make_example_app: ExampleAppFactory) -> None:
    emulator = send_verify_flush(make_example_app(OTP_CONVERSION_PROVIDER="aws"))
    [conversion] = emulator.conversions("aws")
    assert (conversion.message_id, conversion.phone, conversion.delivered) == (
        emulator.messages()[0].message_id,
        PHONE,
        True,
    )
