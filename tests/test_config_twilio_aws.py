"""Twilio and AWS keys are validated at init_app: a bad one is a ConfigurationError naming it, never a 500."""

from __future__ import annotations

from typing import Any

import pytest

from flask_otp_conversion.config import ConfigurationError, load_settings
from flask_otp_conversion.providers.settings import AwsSettings, TwilioSettings

TWILIO = {
    "OTP_CONVERSION_PROVIDER": "twilio",
    "OTP_CONVERSION_TWILIO_ACCOUNT_SID": "AC" + "a" * 32,
    "OTP_CONVERSION_TWILIO_AUTH_TOKEN": "twilio-token-value-0000000000000",
}
AWS = {
    "OTP_CONVERSION_PROVIDER": "aws",
    "OTP_CONVERSION_AWS_REGION": "eu-west-1",
    "OTP_CONVERSION_AWS_ACCESS_KEY_ID": "AKIATESTKEYID0000001",
    "OTP_CONVERSION_AWS_SECRET_ACCESS_KEY": "aws-secret-value-000000000000000000000001",
}


def load(base: dict[str, Any], **config: Any) -> Any:
    return load_settings({**base, **config}, instance_path="/i").provider_settings


def test_twilio_keys_load_into_its_settings() -> None:
    assert isinstance(load(TWILIO), TwilioSettings)


def test_aws_keys_load_into_its_settings() -> None:
    settings = load(AWS)
    assert isinstance(settings, AwsSettings)
    assert (settings.base_url, settings.report_deadline) == ("https://sms-voice.eu-west-1.amazonaws.com", 3300.0)


def test_a_malformed_account_sid_names_the_key() -> None:
    with pytest.raises(ConfigurationError, match="OTP_CONVERSION_TWILIO_ACCOUNT_SID"):
        load(TWILIO, OTP_CONVERSION_TWILIO_ACCOUNT_SID="SK" + "a" * 32)


def test_twilio_without_a_token_or_an_api_key_is_refused() -> None:
    config = {k: v for k, v in TWILIO.items() if k != "OTP_CONVERSION_TWILIO_AUTH_TOKEN"}
    with pytest.raises(ConfigurationError, match="AUTH_TOKEN"):
        load(config)


def test_twilio_api_key_sid_without_its_secret_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="API_KEY_SECRET"):
        load(TWILIO, OTP_CONVERSION_TWILIO_API_KEY_SID="SK" + "b" * 32)


def test_twilio_sender_and_messaging_service_together_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="not both"):
        service = {"OTP_CONVERSION_TWILIO_MESSAGING_SERVICE_SID": "MG" + "c" * 32}
        load(TWILIO, OTP_CONVERSION_TWILIO_SENDER="+15017122661", **service)


def test_twilio_edge_and_region_pick_the_host() -> None:
    settings = load(TWILIO, OTP_CONVERSION_TWILIO_EDGE="sydney", OTP_CONVERSION_TWILIO_REGION="au1")
    assert settings.base_url == "https://api.sydney.au1.twilio.com"


def test_a_text_template_without_the_code_placeholder_names_the_key() -> None:
    with pytest.raises(ConfigurationError, match=r"OTP_CONVERSION_AWS_TEXT_TEMPLATE: .*\{code\}"):
        load(AWS, OTP_CONVERSION_AWS_TEXT_TEMPLATE="Your code")


def test_a_malformed_region_names_the_key() -> None:
    with pytest.raises(ConfigurationError, match="OTP_CONVERSION_AWS_REGION"):
        load(AWS, OTP_CONVERSION_AWS_REGION="Ireland")


def test_an_aws_deadline_past_the_hour_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="OTP_CONVERSION_AWS_REPORT_DEADLINE"):
        load(AWS, OTP_CONVERSION_AWS_REPORT_DEADLINE=4000)


def test_an_env_decoded_account_id_int_is_taken_as_a_string() -> None:
    assert load(AWS, OTP_CONVERSION_AWS_ACCOUNT_ID=123456789012).account_id == "123456789012"


def test_secrets_never_appear_in_errors() -> None:
    with pytest.raises(ConfigurationError) as info:
        load(AWS, OTP_CONVERSION_AWS_SECRET_ACCESS_KEY=["s3cr3t-aws-value"])
    assert "s3cr3t-aws-value" not in str(info.value)
    with pytest.raises(ConfigurationError) as info:
        load(TWILIO, OTP_CONVERSION_TWILIO_AUTH_TOKEN=["s3cr3t-twilio-value"])
    assert "s3cr3t-twilio-value" not in str(info.value)


def test_a_credential_mismatch_names_a_key_and_echoes_no_token() -> None:
    with pytest.raises(ConfigurationError, match="OTP_CONVERSION_TWILIO_API_KEY_SECRET") as info:
        load(TWILIO, OTP_CONVERSION_TWILIO_API_KEY_SID="SK" + "b" * 32)
    assert TWILIO["OTP_CONVERSION_TWILIO_AUTH_TOKEN"] not in str(info.value)
