"""The example app end to end on Twilio, AWS, Plivo and Vonage: its sandbox runs the real client against the
shared emulator, the send goes out through it, the verify is recorded, and the conversion the reporter delivers
arrives there in the provider's own units."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

import pytest
from flask import Flask

from flask_otp_conversion.testing import EmulatorServer, Fault
from flask_otp_conversion.testing.remote import RemoteEmulator

from .conftest import ExampleAppFactory
from .test_example_app import emulator_of, state_of

pytestmark = pytest.mark.timeout(60)


def flush(app: Flask) -> int:
    conversion = state_of(app).conversion
    assert conversion is not None
    with app.app_context():
        return conversion.flush(timeout=10)


def send_and_verify(app: Flask, phone: str) -> RemoteEmulator:
    client = app.test_client()
    assert client.post("/otp/send", json={"phone": phone}).status_code == 202
    emulator = emulator_of(app)
    code = emulator.code_for(phone)
    assert code is not None
    assert client.post("/otp/verify", json={"phone": phone, "code": code}).status_code == 200
    return emulator


@dataclass(frozen=True)
class Feedback:
    """A provider whose send asks for feedback, and the report of a verified code it takes."""

    provider: str
    phone: str
    send_action: str
    feedback_param: str
    feedback_on: object
    report_action: str
    report_params: Callable[[str], dict[str, object]]  # of the sent message's id

    def __str__(self) -> str:
        return self.provider


FEEDBACK = [
    Feedback(
        "twilio",
        "+15558675310",
        "CreateMessage",
        "ProvideFeedback",
        "true",
        "CreateMessageFeedback",
        lambda message_id: {"MessageSid": message_id, "Outcome": "confirmed"},
    ),
    Feedback(
        "aws",
        "+15558675310",
        "SendTextMessage",
        "MessageFeedbackEnabled",
        True,
        "PutMessageFeedback",
        lambda message_id: {"MessageId": message_id, "MessageFeedbackStatus": "RECEIVED"},
    ),
]


@dataclass(frozen=True)
class Conversion:
    """A provider whose conversion report names the message, says converted or not, and is stamped."""

    provider: str
    phone: str
    action: str
    id_param: str
    status_param: str
    converted: str
    not_converted: str
    timestamp_format: str

    def __str__(self) -> str:
        return self.provider


CONVERSION = [
    Conversion(
        "plivo",
        "+14155552222",
        "Conversion",
        "message_uuid",
        "status",
        "CONVERTED",
        "NOT_CONVERTED",
        "%Y-%m-%dT%H:%M:%SZ",
    ),
    Conversion(
        "vonage", "+447700900000", "SmsConversion", "message-id", "delivered", "true", "false", "%Y-%m-%d %H:%M:%S"
    ),
]


@pytest.mark.parametrize("case", FEEDBACK, ids=str)
def test_sandbox_sends_with_feedback_and_reports_the_verified_code(
    make_example_app: ExampleAppFactory, case: Feedback
) -> None:
    app = make_example_app(OTP_CONVERSION_PROVIDER=case.provider)
    emulator = send_and_verify(app, case.phone)
    assert flush(app) == 0
    [sent] = emulator.calls(case.send_action)
    assert (sent.ok, sent.provider, sent.params[case.feedback_param]) == (True, case.provider, case.feedback_on)
    [report] = emulator.calls(case.report_action)
    assert report.ok and report.params == case.report_params(emulator.messages()[0].message_id)


@pytest.mark.parametrize("case", FEEDBACK, ids=str)
def test_sandbox_conversion_is_the_sent_message(make_example_app: ExampleAppFactory, case: Feedback) -> None:
    app = make_example_app(OTP_CONVERSION_PROVIDER=case.provider)
    emulator = send_and_verify(app, case.phone)
    assert flush(app) == 0
    [conversion] = emulator.conversions(case.provider)
    assert (conversion.message_id, conversion.phone, conversion.delivered) == (
        emulator.messages()[0].message_id,
        case.phone,
        True,
    )


@pytest.mark.parametrize("case", CONVERSION, ids=str)
def test_verified_otp_reaches_the_emulator_as_a_conversion(
    make_example_app: ExampleAppFactory, case: Conversion
) -> None:
    app = make_example_app(OTP_CONVERSION_PROVIDER=case.provider)
    emulator = send_and_verify(app, case.phone)
    assert flush(app) == 0
    [message] = emulator.messages()
    [report] = emulator.calls(case.action)
    assert report.ok and report.provider == case.provider
    assert report.params[case.id_param] == message.message_id
    assert report.params[case.status_param] == case.converted
    stamp = datetime.strptime(report.params["timestamp"], case.timestamp_format)
    assert abs(stamp.replace(tzinfo=timezone.utc).timestamp() - message.sent_at) < 60


@pytest.mark.parametrize("case", CONVERSION, ids=str)
def test_a_throttled_conversion_is_retried_and_nothing_is_lost(
    make_example_app: ExampleAppFactory, provider_emulator_server: EmulatorServer, case: Conversion
) -> None:
    emulator = provider_emulator_server.emulator
    config = emulator.app_config(case.provider, provider_emulator_server.url)
    app = make_example_app(OTP_CONVERSION_PROVIDER=case.provider, **config)
    emulator.inject(case.action, Fault.throttle(retry_after=1.0, times=1))
    client = app.test_client()
    assert client.post("/otp/send", json={"phone": case.phone}).status_code == 202
    code = emulator.code_for(case.phone)
    assert client.post("/otp/verify", json={"phone": case.phone, "code": code}).status_code == 200
    assert flush(app) == 0
    assert [c.http_status for c in emulator.calls(case.action)] == [429, 200]
    assert [c.message_id for c in emulator.conversions()] == [emulator.messages()[0].message_id]


@pytest.mark.parametrize("case", CONVERSION, ids=str)
def test_an_otp_never_verified_is_reported_as_not_converted_once(
    make_example_app: ExampleAppFactory, provider_emulator_server: EmulatorServer, case: Conversion
) -> None:
    emulator = provider_emulator_server.emulator
    config = emulator.app_config(case.provider, provider_emulator_server.url)
    app = make_example_app(
        OTP_CONVERSION_PROVIDER=case.provider,
        OTP_CONVERSION_REPORT_UNVERIFIED=True,
        OTP_CONVERSION_MATCH_WINDOW=1,
        **config,
    )
    assert app.test_client().post("/otp/send", json={"phone": case.phone}).status_code == 202
    time.sleep(1.2)  # the match window ends unverified
    assert flush(app) == 0
    assert flush(app) == 0
    [report] = emulator.calls(case.action)
    assert report.ok
    assert report.params[case.status_param] == case.not_converted
    [conversion] = emulator.conversions(case.provider)
    assert conversion.delivered is False and conversion.message_id == emulator.messages()[0].message_id
