"""Twilio and AWS credentials never show in reprs, error messages or logs; phone numbers only masked."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

import httpx
import pytest
from wire_server import Reply, recording_server

from flask_otp_conversion.providers import PermanentError, Provider
from flask_otp_conversion.providers.aws import AwsProvider
from flask_otp_conversion.providers.base import ConversionReport
from flask_otp_conversion.providers.settings import AwsSettings, TwilioSettings
from flask_otp_conversion.providers.twilio import TwilioProvider

pytestmark = pytest.mark.timeout(30)

TOKEN = "TwilioAuthTokenSecret00000000000"
KEY_SECRET = "TwilioApiKeySecretValue000000000"
AWS_KEY = "AKIATESTKEYID0000001"
AWS_SECRET = "AwsSecretAccessKeyValueForTests000000001"
AWS_TOKEN = "AwsSessionTokenValueForTests//000001"
SECRETS = (TOKEN, KEY_SECRET, AWS_SECRET, AWS_TOKEN)
PHONE = "+15558675310"
TIMEOUT = httpx.Timeout(2.0)


def assert_clean(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text
    assert PHONE.lstrip("+") not in text


def twilio_settings(url: str, **extra: str) -> TwilioSettings:
    return TwilioSettings(account_sid="AC" + "a" * 32, auth_token=TOKEN, endpoint=url, sender="+15017122661", **extra)


def aws_settings(url: str) -> AwsSettings:
    return AwsSettings(
        region="us-east-1", access_key_id=AWS_KEY, secret_access_key=AWS_SECRET, session_token=AWS_TOKEN, endpoint=url
    )


def clients(url: str) -> list[Provider]:
    return [TwilioProvider(twilio_settings(url), timeout=TIMEOUT), AwsProvider(aws_settings(url), timeout=TIMEOUT)]


def test_provider_reprs_and_strs_hold_no_secret() -> None:
    for client in clients("http://127.0.0.1:9"):
        with client:
            assert_clean(repr(client) + str(client))


def test_settings_reprs_hold_no_secret() -> None:
    api_key = {"api_key_sid": "SK" + "b" * 32, "api_key_secret": KEY_SECRET}
    twilio = TwilioSettings(account_sid="AC" + "a" * 32, endpoint="http://127.0.0.1:9", **api_key)
    assert_clean(repr(twilio) + repr(aws_settings("http://127.0.0.1:9")))


@pytest.mark.parametrize(
    ("body", "client"),
    [
        (
            {"code": 21211, "message": f"Invalid To {PHONE} for token {TOKEN}", "more_info": "", "status": 400},
            lambda url: TwilioProvider(twilio_settings(url), timeout=TIMEOUT),
        ),
        (
            {"__type": "ValidationException", "Message": f"bad {PHONE} signed with {AWS_SECRET} / {AWS_TOKEN}"},
            lambda url: AwsProvider(aws_settings(url), timeout=TIMEOUT),
        ),
    ],
    ids=["twilio", "aws"],
)
def test_an_error_echoing_a_secret_and_the_phone_is_redacted(
    body: dict[str, object], client: Callable[[str], Provider]
) -> None:
    with (
        recording_server(Reply(status=400, body=json.dumps(body).encode())) as server,
        client(server.url) as provider,
        pytest.raises(PermanentError) as e,
    ):
        provider.send_otp(PHONE, "123456")
    assert_clean(str(e.value) + repr(e.value))


def test_debug_logs_of_a_send_and_a_report_hold_no_secret_and_no_phone(caplog: pytest.LogCaptureFixture) -> None:
    twilio_ok = {"sid": "SM" + "c" * 32, "status": "queued"}
    aws_ok = {"MessageId": "m-1", "MessageFeedbackStatus": "RECEIVED"}
    twilio_reply = Reply(status=201, body=json.dumps(twilio_ok).encode())
    aws_reply = Reply(body=json.dumps(aws_ok).encode())
    replies = [twilio_reply, twilio_reply, aws_reply, aws_reply]
    caplog.set_level(logging.DEBUG)
    with recording_server(*replies) as server:
        for client in clients(server.url):
            with client:
                client.send_otp(PHONE, "123456")
                client.report_conversion(ConversionReport("SM" + "c" * 32, PHONE, 0.0))
    assert caplog.records
    assert_clean("\n".join(record.getMessage() for record in caplog.records))
