from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from flask_otp_conversion import OTPConversion
from flask_otp_conversion.config import ConfigurationError, load_settings
from tests.conftest import TENCENT_KEYS


def load(**extra: Any) -> Any:
    return load_settings({**TENCENT_KEYS, **extra}, instance_path="/srv/app/instance")


def test_defaults_match_the_documented_values() -> None:
    settings = load()
    assert settings.enabled and not settings.degraded
    assert settings.match_window == 900 and settings.retention == 7 and settings.stats_cache_ttl == 60
    assert settings.url_prefix == "/otp-conversion"
    assert settings.store_url == "sqlite:////srv/app/instance/otp_conversion.db"


def test_relative_sqlite_path_is_inside_the_instance_folder() -> None:
    assert load(OTP_CONVERSION_STORE_URL="sqlite:///otp.db").store_url == "sqlite:////srv/app/instance/otp.db"


def test_env_decoded_sdk_app_id_int_is_coerced_to_string() -> None:
    settings = load(OTP_CONVERSION_TENCENT_SDK_APP_ID=1400006666)
    assert settings.provider_settings.sdk_app_id == "1400006666"


def test_bad_value_names_the_key() -> None:
    with pytest.raises(ConfigurationError, match=r"OTP_CONVERSION_MATCH_WINDOW: .*greater than 0"):
        load(OTP_CONVERSION_MATCH_WINDOW=-5)


def test_unknown_provider_key_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="OTP_CONVERSION_TENCENT_SECRT_KEY: unknown key"):
        load(OTP_CONVERSION_TENCENT_SECRT_KEY="x")


def test_missing_provider_credential_names_the_key() -> None:
    keys = dict(TENCENT_KEYS)
    del keys["OTP_CONVERSION_TENCENT_SECRET_KEY"]
    with pytest.raises(ConfigurationError, match="OTP_CONVERSION_TENCENT_SECRET_KEY"):
        load_settings(keys, instance_path="/i")


def test_unknown_provider_lists_the_choices() -> None:
    with pytest.raises(ConfigurationError, match=r"available: alibaba, .*plivo, tencent, .*vonage"):
        load(OTP_CONVERSION_PROVIDER="nope")


def test_provider_is_required_when_enabled() -> None:
    with pytest.raises(ConfigurationError, match="OTP_CONVERSION_PROVIDER is required"):
        load_settings({}, instance_path="/i")


def test_disabled_needs_no_provider() -> None:
    assert not load_settings({"OTP_CONVERSION_ENABLED": False}, instance_path="/i").enabled


def test_unsupported_store_scheme_does_not_echo_the_url() -> None:
    with pytest.raises(ConfigurationError) as info:
        load(OTP_CONVERSION_STORE_URL="postgres://user:hunter2@db/otp")
    assert "hunter2" not in str(info.value)


def test_a_bad_redis_store_url_fails_init_with_a_clear_error_and_no_password() -> None:
    with pytest.raises(ConfigurationError, match="unknown option 'colour'") as info:
        load(OTP_CONVERSION_STORE_URL="redis://user:hunter2@cache:6379/0?colour=hunter2")
    assert "hunter2" not in str(info.value)


def test_a_redis_store_url_is_kept_as_given() -> None:
    url = "rediss://:hunter2@cache:6380/2?prefix=shop:"
    assert load(OTP_CONVERSION_STORE_URL=url).store_url == url


def test_secret_values_never_appear_in_errors_or_repr() -> None:
    with pytest.raises(ConfigurationError) as info:
        load(OTP_CONVERSION_TENCENT_SECRET_KEY=["s3cr3t-value"])
    assert "s3cr3t-value" not in str(info.value)
    settings = load(OTP_CONVERSION_STATS_TOKEN="tok-s3cr3t")
    assert "tok-s3cr3t" not in repr(settings)
    assert TENCENT_KEYS["OTP_CONVERSION_TENCENT_SECRET_KEY"] not in repr(settings)


def test_alibaba_endpoint_follows_the_site() -> None:
    settings = load_settings(
        {
            "OTP_CONVERSION_PROVIDER": "alibaba",
            "OTP_CONVERSION_ALIBABA_ACCESS_KEY_ID": "id",
            "OTP_CONVERSION_ALIBABA_ACCESS_KEY_SECRET": "secret",
            "OTP_CONVERSION_ALIBABA_SITE": "china",
        },
        instance_path="/i",
    )
    assert settings.provider_settings.dysms_endpoint == "https://dysmsapi.aliyuncs.com"


def test_misspelt_core_key_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="OTP_CONVERSION_RETENCTION: unknown key"):
        load(OTP_CONVERSION_RETENCTION=1)


@pytest.mark.parametrize(
    ("key", "example"),
    [
        ("OTP_CONVERSION_TENCENT_ENDPOINT", "https://sms.tencentcloudapi.com"),
        ("OTP_CONVERSION_ALIBABA_ENDPOINT", "https://dysmsapi.ap-southeast-1.aliyuncs.com"),
        ("OTP_CONVERSION_ALIBABA_CAMS_ENDPOINT", "https://cams.ap-southeast-1.aliyuncs.com"),
    ],
)
def test_bad_endpoint_says_what_is_expected_not_a_pattern(key: str, example: str) -> None:
    alibaba = {
        "OTP_CONVERSION_PROVIDER": "alibaba",
        "OTP_CONVERSION_ALIBABA_ACCESS_KEY_ID": "id",
        "OTP_CONVERSION_ALIBABA_ACCESS_KEY_SECRET": "secret",
    }
    keys = TENCENT_KEYS if key.startswith("OTP_CONVERSION_TENCENT_") else alibaba
    with pytest.raises(ConfigurationError) as info:
        load_settings({**keys, key: "sms.example.com/v1"}, instance_path="/i")
    message = str(info.value)
    assert f"{key}: must be an http(s) URL with a host and no path, like {example}" in message
    assert "pattern" not in message


@pytest.mark.parametrize(
    "token",
    [
        "caf\u00e9-token",
        "tok\u4e2d\u6587",
        "tok\nen",
        "tok\ten",
        "tok\x00en",
        "tok\x7fen",
        " token",
        "token ",
        "token\r\n",
    ],
)
def test_a_stats_token_that_cannot_be_sent_as_a_header_is_refused_without_echoing_it(token: str) -> None:
    with pytest.raises(ConfigurationError, match=r"OTP_CONVERSION_STATS_TOKEN: .*header") as caught:
        load(OTP_CONVERSION_STATS_TOKEN=token)
    assert token.strip() not in str(caught.value)


def test_a_stats_token_of_printable_ascii_with_inner_spaces_is_accepted() -> None:
    token = load(OTP_CONVERSION_STATS_TOKEN="s3cr3t ~!@#$%^&*()_+ token").stats_token
    assert token is not None and token.get_secret_value() == "s3cr3t ~!@#$%^&*()_+ token"


def test_init_app_refuses_a_stats_token_with_non_ascii_characters(tmp_path: Path) -> None:
    app = Flask("token", instance_path=str(tmp_path))
    app.config.update(TENCENT_KEYS, OTP_CONVERSION_STATS_TOKEN="t\u00f6ken-s3cret")
    with pytest.raises(ConfigurationError, match="OTP_CONVERSION_STATS_TOKEN") as caught:
        OTPConversion(app)
    assert "s3cret" not in str(caught.value)


def test_an_error_of_a_whole_provider_settings_model_never_echoes_its_input() -> None:
    from pydantic import BaseModel, ValidationError, model_validator

    from flask_otp_conversion.config import _format_errors

    class Settings3p(BaseModel):
        key: str
        secret: str

        @model_validator(mode="after")
        def _pair(self) -> Settings3p:
            raise ValueError("key and secret do not belong together")

    with pytest.raises(ValidationError) as caught:
        Settings3p(key="id", secret="hunter2-secret")
    text = _format_errors(caught.value, {}, set())
    assert "hunter2-secret" not in text
    assert "OTP_CONVERSION_*: Value error, key and secret do not belong together" in text
