"""Settings and clients for the provider tests, pointed at a local server. Credentials are fake, or the
emulator's own for the clients built on an ``EmulatorServer``."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import SecretStr

from flask_otp_conversion.providers import Provider
from flask_otp_conversion.providers.alibaba import AlibabaProvider
from flask_otp_conversion.providers.aws import AwsProvider
from flask_otp_conversion.providers.plivo import PlivoProvider
from flask_otp_conversion.providers.settings import (
    AlibabaSettings,
    AwsSettings,
    PlivoSettings,
    TencentSettings,
    TwilioSettings,
    VonageSettings,
)
from flask_otp_conversion.providers.tencent import TencentProvider
from flask_otp_conversion.providers.twilio import TwilioProvider
from flask_otp_conversion.providers.vonage import VonageProvider
from flask_otp_conversion.testing import EmulatorServer

TENCENT_SECRET_ID = "AKIDtestSecretId00000000000000000000"
TENCENT_SECRET_KEY = "testTencentSecretKeyValue0000000"
ALIBABA_KEY_ID = "LTAI5tTestKeyId00000000"
ALIBABA_KEY_SECRET = "TestAlibabaSecretValue000000"
SECRETS = (TENCENT_SECRET_ID, TENCENT_SECRET_KEY, ALIBABA_KEY_ID, ALIBABA_KEY_SECRET)
SDK_APP_ID = "1400006666"
FAST = httpx.Timeout(2.0)


def tencent_settings(url: str, **overrides: Any) -> TencentSettings:
    values: dict[str, Any] = {
        "secret_id": SecretStr(TENCENT_SECRET_ID),
        "secret_key": SecretStr(TENCENT_SECRET_KEY),
        "sdk_app_id": SDK_APP_ID,
        "endpoint": url,
        "send_region": "ap-guangzhou",
        "sign_name": "TestSign",
        "template_id": "1110",
    }
    values.update(overrides)
    return TencentSettings(**values)


def tencent(url: str, *, timeout: httpx.Timeout = FAST, **overrides: Any) -> TencentProvider:
    return TencentProvider.from_settings(tencent_settings(url, **overrides), timeout=timeout)


def alibaba_settings(url: str, **overrides: Any) -> AlibabaSettings:
    values: dict[str, Any] = {
        "access_key_id": SecretStr(ALIBABA_KEY_ID),
        "access_key_secret": SecretStr(ALIBABA_KEY_SECRET),
        "site": "intl",
        "endpoint": url,
        "cams_endpoint": url,
        "sign_name": "TestSign",
        "template_code": "SMS_154950909",
    }
    values.update(overrides)
    return AlibabaSettings(**values)


def alibaba(url: str, *, timeout: httpx.Timeout = FAST, **overrides: Any) -> AlibabaProvider:
    return AlibabaProvider.from_settings(alibaba_settings(url, **overrides), timeout=timeout)


def twilio(server: EmulatorServer, *, timeout: httpx.Timeout = FAST, **overrides: Any) -> TwilioProvider:
    """On the emulator's Twilio account; an override of None leaves that setting out."""
    account = server.emulator.credentials("twilio")
    values: dict[str, Any] = {
        "account_sid": account["account_sid"],
        "auth_token": account["auth_token"],
        "endpoint": server.url,
        "sender": account["sender"],
        **overrides,
    }
    return TwilioProvider(TwilioSettings(**{k: v for k, v in values.items() if v is not None}), timeout=timeout)


def aws(
    server: EmulatorServer,
    *,
    timeout: httpx.Timeout = FAST,
    clock: Callable[[], float] = time.time,
    **overrides: Any,
) -> AwsProvider:
    """On the emulator's AWS account; an override of None leaves that setting out."""
    account = server.emulator.credentials("aws")
    values: dict[str, Any] = {
        "region": account["region"],
        "access_key_id": account["access_key_id"],
        "secret_access_key": account["secret_access_key"],
        "endpoint": server.url,
        "origination_identity": account["origination_identity"],
        **overrides,
    }
    settings = AwsSettings(**{k: v for k, v in values.items() if v is not None})
    return AwsProvider(settings, timeout=timeout, clock=clock)


def plivo(server: EmulatorServer, *, timeout: httpx.Timeout = FAST, **overrides: Any) -> PlivoProvider:
    credentials = server.emulator.credentials("plivo")
    values: dict[str, Any] = {
        "auth_id": credentials["auth_id"],
        "auth_token": credentials["auth_token"],
        "endpoint": server.url,
        "sender": "+14155551111",
        **overrides,
    }
    return PlivoProvider.from_settings(PlivoSettings(**values), timeout=timeout)


def vonage(server: EmulatorServer, *, timeout: httpx.Timeout = FAST, **overrides: Any) -> VonageProvider:
    credentials = server.emulator.credentials("vonage")
    values: dict[str, Any] = {
        "api_key": credentials["api_key"],
        "api_secret": credentials["api_secret"],
        "sms_endpoint": server.url,
        "conversion_endpoint": server.url,
        "sender": "AcmeInc",
        **overrides,
    }
    return VonageProvider.from_settings(VonageSettings(**values), timeout=timeout)


@dataclass(frozen=True)
class EmulatedClient:
    """One provider's client on the emulator, as the tests shared by several providers drive it."""

    name: str
    make: Callable[..., Provider]  # (server, *, timeout=FAST, **settings)
    phone: str
    send_action: str
    report_action: str
    account_key: str  # the emulator credential the client's ``account`` is

    def __str__(self) -> str:
        return self.name


EMULATED = {
    client.name: client
    for client in (
        EmulatedClient("twilio", twilio, "+15558675310", "CreateMessage", "CreateMessageFeedback", "account_sid"),
        EmulatedClient("aws", aws, "+12065550150", "SendTextMessage", "PutMessageFeedback", "region"),
        EmulatedClient("plivo", plivo, "+14155552222", "Message", "Conversion", "auth_id"),
        EmulatedClient("vonage", vonage, "+447700900000", "SendSms", "SmsConversion", "api_key"),
    )
}
