"""Settings and clients for the provider tests, pointed at a local server. Credentials are fake."""

from __future__ import annotations

from typing import Any

import httpx
from pydantic import SecretStr

from flask_otp_conversion.providers.alibaba import AlibabaProvider
from flask_otp_conversion.providers.settings import AlibabaSettings, TencentSettings
from flask_otp_conversion.providers.tencent import TencentProvider

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
