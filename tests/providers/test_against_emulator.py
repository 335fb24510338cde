"""Both clients over real HTTP against the project's provider emulator, which verifies signatures, clocks,
nonces and the wire exactly as the clouds do, and answers with realistic success and error bodies."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from flask_otp_conversion.providers import (
    AuthError,
    PermanentError,
    ProviderError,
    RetryableError,
    ThrottledError,
)
from flask_otp_conversion.providers.alibaba import AlibabaProvider
from flask_otp_conversion.providers.alibaba_models import ChatappSyncPhoneNumberResponse
from flask_otp_conversion.providers.base import ConversionReport
from flask_otp_conversion.providers.settings import AlibabaSettings, TencentSettings
from flask_otp_conversion.providers.tencent import TencentProvider
from flask_otp_conversion.providers.tencent_models import TencentStatistics
from flask_otp_conversion.testing import EmulatorServer, Fault, ProviderEmulator

pytestmark = pytest.mark.timeout(30)

PHONE = "+6581234567"
CN_PHONE = "+8613711112222"
TIMEOUT = httpx.Timeout(connect=2.0, read=2.0, write=2.0, pool=2.0)


@pytest.fixture(scope="module")
def emulator_server() -> Iterator[tuple[ProviderEmulator, Any]]:
    emulator = ProviderEmulator()
    with EmulatorServer(emulator) as server:
        yield emulator, server


@pytest.fixture
def emu(emulator_server: tuple[ProviderEmulator, Any]) -> Iterator[ProviderEmulator]:
    emulator, _ = emulator_server
    emulator.reset()
    yield emulator
    emulator.reset()


@pytest.fixture
def url(emulator_server: tuple[ProviderEmulator, Any]) -> str:
    return str(emulator_server[1].url)


def make_tencent(emu: ProviderEmulator, url: str, **kwargs: Any) -> TencentProvider:
    settings = TencentSettings(
        secret_id=SecretStr(kwargs.pop("secret_id", emu.TENCENT_SECRET_ID)),
        secret_key=SecretStr(kwargs.pop("secret_key", emu.TENCENT_SECRET_KEY)),
        sdk_app_id=emu.TENCENT_SDK_APP_ID,
        endpoint=url,
        sign_name="TestSign",
        template_id="1110",
    )
    return TencentProvider(settings, timeout=kwargs.pop("timeout", TIMEOUT), **kwargs)


def make_alibaba(
    emu: ProviderEmulator, url: str, *, site: str = "intl", signature: str = "acs3", **kwargs: Any
) -> AlibabaProvider:
    settings = AlibabaSettings(
        access_key_id=SecretStr(emu.ALIBABA_ACCESS_KEY_ID),
        access_key_secret=SecretStr(kwargs.pop("secret", emu.ALIBABA_ACCESS_KEY_SECRET)),
        site=site,
        endpoint=url,
        cams_endpoint=url,
        cust_space_id=emu.ALIBABA_CUST_SPACE_ID,
        sign_name="TestSign",
        template_code="SMS_154950909",
        signature=signature,
    )
    return AlibabaProvider(settings, timeout=kwargs.pop("timeout", TIMEOUT), **kwargs)


def report_for(message_id: str, phone: str) -> ConversionReport:
    """Verified now: after the send, as in life (a second earlier fell before the send when both ran in 1 ms)."""
    return ConversionReport(message_id=message_id, phone=phone, verified_at=time.time())


# ---- send, then report ---------------------------------------------------------------------------------


def test_tencent_send_then_report(emu: ProviderEmulator, url: str) -> None:
    with make_tencent(emu, url) as provider:
        sent = provider.send_otp(CN_PHONE, "482913")
        provider.report_conversion(report_for(sent.message_id, CN_PHONE))
    assert emu.code_for(CN_PHONE) == "482913"
    (call,) = emu.calls(action="ReportConversion")
    assert call.ok and call.provider == "tencent" and call.region == "ap-singapore"
    assert call.params["SerialNo"] == sent.message_id
    assert isinstance(call.params["ConversionTime"], int)


SITES = [
    ("intl", "acs3", "SendMessageWithTemplate", "SmsConversion", "2018-05-01"),
    ("intl", "v1", "SendMessageWithTemplate", "SmsConversion", "2018-05-01"),
    ("china", "acs3", "SendSms", "SmsConversionIntl", "2017-05-25"),
    ("china", "v1", "SendSms", "SmsConversionIntl", "2017-05-25"),
]


@pytest.mark.parametrize(("site", "signature", "send_action", "report_action", "version"), SITES)
def test_alibaba_send_then_report(
    emu: ProviderEmulator,
    url: str,
    site: str,
    signature: str,
    send_action: str,
    report_action: str,
    version: str,
) -> None:
    with make_alibaba(emu, url, site=site, signature=signature) as provider:
        sent = provider.send_otp(PHONE, "482913")
        provider.report_conversion(report_for(sent.message_id, PHONE))
    assert emu.code_for(PHONE) == "482913"
    (send,) = emu.calls(action=send_action)
    (report,) = emu.calls(action=report_action)
    assert send.ok and report.ok
    assert report.version == version
    assert report.params["MessageId"] == sent.message_id
    assert report.params["Delivered"] == "true"


def test_tencent_statistics(emu: ProviderEmulator, url: str) -> None:
    end = datetime.now(timezone.utc)
    with make_tencent(emu, url) as provider:
        stats = provider.statistics(end - timedelta(days=2), end)
    assert isinstance(stats, TencentStatistics)
    assert all(
        call.ok
        for call in emu.calls(action="SendStatusStatistics") + emu.calls(action="CallbackStatusStatistics")
    )


@pytest.mark.parametrize("signature", ["acs3", "v1"])
def test_alibaba_statistics_lists_cams_numbers(emu: ProviderEmulator, url: str, signature: str) -> None:
    end = datetime.now(timezone.utc)
    with make_alibaba(emu, url, signature=signature) as provider:
        numbers = provider.statistics(end - timedelta(days=1), end)
    assert isinstance(numbers, ChatappSyncPhoneNumberResponse)
    (call,) = emu.calls(action="ChatappSyncPhoneNumber")
    assert call.ok and call.params["CustSpaceId"] == emu.ALIBABA_CUST_SPACE_ID


# ---- each error class ----------------------------------------------------------------------------------

REPORTS = {
    "tencent": ("ReportConversion", lambda emu, url, **kw: make_tencent(emu, url, **kw)),
    "alibaba": ("SmsConversion", lambda emu, url, **kw: make_alibaba(emu, url, **kw)),
}


def _report_error(emu: ProviderEmulator, url: str, name: str, **kwargs: Any) -> ProviderError:
    _, build = REPORTS[name]
    with build(emu, url, **kwargs) as provider, pytest.raises(ProviderError) as info:
        provider.report_conversion(report_for("5000:1045710669157053657849499619", PHONE))
    return info.value


@pytest.mark.parametrize("name", sorted(REPORTS))
def test_http_500_is_retryable(emu: ProviderEmulator, url: str, name: str) -> None:
    emu.inject(REPORTS[name][0], Fault.http_500(times=1))
    error = _report_error(emu, url, name)
    assert type(error) is RetryableError


@pytest.mark.parametrize("name", sorted(REPORTS))
def test_throttle_is_throttled(emu: ProviderEmulator, url: str, name: str) -> None:
    emu.inject(REPORTS[name][0], Fault.throttle(times=1))
    assert type(_report_error(emu, url, name)) is ThrottledError


def test_alibaba_throttle_retry_after_is_in_seconds(emu: ProviderEmulator, url: str) -> None:
    emu.inject("SmsConversion", Fault.throttle(retry_after=2.5, times=1))
    error = _report_error(emu, url, "alibaba")
    assert type(error) is ThrottledError and error.retry_after == pytest.approx(2.5)


def test_tencent_wrong_secret_is_auth_error(emu: ProviderEmulator, url: str) -> None:
    error = _report_error(emu, url, "tencent", secret_key="not-the-key")
    assert type(error) is AuthError and error.code == "AuthFailure.SignatureFailure"


def test_alibaba_wrong_secret_is_auth_error(emu: ProviderEmulator, url: str) -> None:
    error = _report_error(emu, url, "alibaba", secret="not-the-secret")
    assert type(error) is AuthError and error.code == "SignatureDoesNotMatch"


@pytest.mark.parametrize(
    ("name", "code"), [("tencent", "InvalidParameter"), ("alibaba", "isv.INVALID_PARAMETERS")]
)
def test_injected_request_error_is_permanent(emu: ProviderEmulator, url: str, name: str, code: str) -> None:
    emu.inject(REPORTS[name][0], Fault.error(code, "bad request", times=1))
    error = _report_error(emu, url, name)
    assert type(error) is PermanentError and error.code == code


@pytest.mark.parametrize("name", sorted(REPORTS))
def test_malformed_json_is_retryable(emu: ProviderEmulator, url: str, name: str) -> None:
    emu.inject(REPORTS[name][0], Fault.malformed_json(times=1))
    error = _report_error(emu, url, name)
    assert type(error) is RetryableError and error.code == "MalformedResponse"


@pytest.mark.parametrize("name", sorted(REPORTS))
def test_hang_past_the_read_timeout_is_retryable_timeout(emu: ProviderEmulator, url: str, name: str) -> None:
    emu.inject(REPORTS[name][0], Fault.hang(1.0, times=1))
    timeout = httpx.Timeout(connect=2.0, read=0.2, write=2.0, pool=2.0)
    error = _report_error(emu, url, name, timeout=timeout)
    assert type(error) is RetryableError and error.code == "Timeout"


@pytest.mark.parametrize("name", sorted(REPORTS))
def test_dropped_connection_is_retryable(emu: ProviderEmulator, url: str, name: str) -> None:
    emu.inject(REPORTS[name][0], Fault.drop_connection(times=1))
    error = _report_error(emu, url, name)
    assert type(error) is RetryableError and error.code == "ClientNetworkError"


def test_tencent_clock_skew_is_retryable(emu: ProviderEmulator, url: str) -> None:
    error = _report_error(emu, url, "tencent", clock=lambda: time.time() - 600)
    assert type(error) is RetryableError and error.code == "AuthFailure.SignatureExpire"


def test_alibaba_reused_nonce_is_retryable(emu: ProviderEmulator, url: str) -> None:
    with make_alibaba(emu, url, nonce=lambda: "0123456789abcdef0123456789abcdef") as provider:
        sent = provider.send_otp(PHONE, "482913")
        with pytest.raises(ProviderError) as info:
            provider.report_conversion(report_for(sent.message_id, PHONE))
    assert type(info.value) is RetryableError and info.value.code == "SignatureNonceUsed"


@pytest.mark.parametrize("name", sorted(REPORTS))
def test_recovery_after_a_fault_clears(emu: ProviderEmulator, url: str, name: str) -> None:
    action, build = REPORTS[name]
    emu.inject(action, Fault.http_500(times=1))
    with build(emu, url) as provider:
        sent = provider.send_otp(PHONE, "482913")
        with pytest.raises(RetryableError):
            provider.report_conversion(report_for(sent.message_id, PHONE))
        provider.report_conversion(report_for(sent.message_id, PHONE))
    assert [c.ok for c in emu.calls(action=action)] == [False, True]
