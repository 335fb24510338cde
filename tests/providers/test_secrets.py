"""Credentials never show in reprs, error messages or logs; phone numbers only masked."""

from __future__ import annotations

import json
import logging
import time

import httpx
import pytest
from provider_factories import (
    ALIBABA_KEY_ID,
    ALIBABA_KEY_SECRET,
    SECRETS,
    TENCENT_SECRET_ID,
    alibaba,
    alibaba_settings,
    tencent,
    tencent_settings,
)
from wire_server import Reply, recording_server

from flask_otp_conversion.providers import AuthError, PermanentError, ProviderError, RetryableError
from flask_otp_conversion.providers.base import ConversionReport

pytestmark = pytest.mark.timeout(30)

PHONE = "+6581234567"
PHONE_DIGITS = "6581234567"


def assert_clean(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text
    assert PHONE_DIGITS not in text


def test_tencent_repr_and_str_hold_no_secret() -> None:
    with tencent("http://127.0.0.1:9") as provider:
        assert_clean(repr(provider))
        assert_clean(str(provider))
        assert "TencentProvider" in repr(provider)


@pytest.mark.parametrize("signature", ["acs3", "v1"])
def test_alibaba_repr_and_str_hold_no_secret(signature: str) -> None:
    with alibaba("http://127.0.0.1:9", signature=signature) as provider:
        assert_clean(repr(provider))
        assert_clean(str(provider))
        assert "AlibabaProvider" in repr(provider)


def test_settings_reprs_hold_no_secret() -> None:
    assert_clean(repr(tencent_settings("http://127.0.0.1:9")))
    assert_clean(repr(alibaba_settings("http://127.0.0.1:9")))


def test_tencent_error_echoing_our_secret_id_and_phone_is_redacted() -> None:
    message = f"SecretId {TENCENT_SECRET_ID} may not send to {PHONE}"
    body = {
        "Response": {"Error": {"Code": "AuthFailure.SecretIdNotFound", "Message": message}, "RequestId": "r"}
    }
    with (
        recording_server(Reply(body=json.dumps(body).encode())) as server,
        tencent(server.url) as provider,
        pytest.raises(AuthError) as info,
    ):
        provider.send_otp(PHONE, "1234")
    assert_clean(str(info.value))
    assert_clean(repr(info.value))
    assert "+65******67" in str(info.value)


def test_tencent_per_number_failure_message_masks_the_phone() -> None:
    status = {"SerialNo": "", "PhoneNumber": PHONE, "Code": "InvalidParameterValue.IncorrectPhoneNumber"}
    status["Message"] = f"{PHONE} is not a valid number"
    body = {"Response": {"SendStatusSet": [status], "RequestId": "r"}}
    with (
        recording_server(Reply(body=json.dumps(body).encode())) as server,
        tencent(server.url) as provider,
        pytest.raises(PermanentError) as info,
    ):
        provider.send_otp(PHONE, "1234")
    assert_clean(str(info.value))


def test_alibaba_error_echoing_our_key_id_is_redacted() -> None:
    body = {
        "Code": "InvalidAccessKeyId.NotFound",
        "Message": f"Specified access key {ALIBABA_KEY_ID} is not found.",
    }
    with (
        recording_server(Reply(status=404, body=json.dumps(body).encode())) as server,
        alibaba(server.url) as provider,
        pytest.raises(AuthError) as info,
    ):
        provider.report_conversion(ConversionReport("1", PHONE, verified_at=time.time()))
    assert_clean(str(info.value))


@pytest.mark.parametrize("signature", ["acs3", "v1"])
def test_alibaba_transport_error_message_drops_the_url_query(signature: str) -> None:
    timeout = httpx.Timeout(connect=2.0, read=0.2, write=2.0, pool=2.0)
    with (
        recording_server(Reply(delay=1.0)) as server,
        alibaba(server.url, signature=signature, timeout=timeout) as provider,
        pytest.raises(RetryableError) as info,
    ):
        provider.report_conversion(ConversionReport("1", PHONE, verified_at=time.time()))
    assert_clean(str(info.value))


def _traffic(caplog: pytest.LogCaptureFixture, signature: str) -> str:
    ok_tc = {"Response": {"ReportConversionStatus": {"Code": "ok"}, "RequestId": "r"}}
    ok_ali = {"ResponseCode": "OK", "RequestId": "r", "MessageId": "m-1"}
    fail_ali = {"ResponseCode": "isv.MOBILE_NUMBER_ILLEGAL", "ResponseDescription": f"bad number {PHONE}"}
    with caplog.at_level(logging.DEBUG):
        with recording_server(Reply(body=json.dumps(ok_tc).encode())) as server, tencent(server.url) as tc:
            tc.report_conversion(ConversionReport("5000:1", PHONE, verified_at=time.time()))
        replies = [Reply(body=json.dumps(b).encode()) for b in (ok_ali, ok_ali, fail_ali)]
        with recording_server(*replies) as server, alibaba(server.url, signature=signature) as ali:
            ali.send_otp(PHONE, "1234")
            ali.report_conversion(ConversionReport("m-1", PHONE, verified_at=time.time()))
            with pytest.raises(ProviderError):
                ali.send_otp(PHONE, "1234")
    return "\n".join(record.getMessage() for record in caplog.records)


@pytest.mark.parametrize("signature", ["acs3", "v1"])
def test_debug_logs_of_every_library_hold_no_secret_and_no_phone(
    caplog: pytest.LogCaptureFixture, signature: str
) -> None:
    logged = _traffic(caplog, signature)
    assert logged.count("answered HTTP 200") == 3  # every library's debug lines were captured...
    assert_clean(logged)  # ...and none carries the query with the numbers and (v1) the key id


def test_an_access_key_secret_is_never_sent() -> None:
    with recording_server(Reply(body=b'{"ResponseCode": "OK"}')) as server, alibaba(server.url) as provider:
        provider.report_conversion(ConversionReport("1", PHONE, verified_at=time.time()))
    recorded = server.last
    assert ALIBABA_KEY_SECRET not in recorded.target
    assert all(ALIBABA_KEY_SECRET not in value for _, value in recorded.headers)
