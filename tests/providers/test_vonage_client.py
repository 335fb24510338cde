"""The Vonage client over real HTTP against the emulator's Vonage dialect (which checks Basic, parameter and
signed authentication and answers in Vonage's shapes), its declarations, and its settings as ``init_app``
reads them."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from provider_factories import vonage

from flask_otp_conversion.config import ConfigurationError, load_settings
from flask_otp_conversion.providers import AuthError, PermanentError, ThrottledError
from flask_otp_conversion.providers.base import ConversionReport
from flask_otp_conversion.providers.settings import VonageSettings
from flask_otp_conversion.providers.vonage import VonageProvider
from flask_otp_conversion.testing import EmulatorServer, Fault, ProviderEmulator

pytestmark = pytest.mark.timeout(30)

PHONE = "+447700900000"
WRONG = "WrongSecret00000"
WRONG_SIG = "NotTheAccountsSignatureSecret000"


def signed(server: EmulatorServer, method: str = "sha256", **overrides: Any) -> VonageProvider:
    values = {"signature_secret": server.emulator.credentials("vonage")["signature_secret"], **overrides}
    return vonage(server, api_secret=None, signature_method=method, **values)


def report(message_id: str, *, converted: bool = True) -> ConversionReport:
    return ConversionReport(message_id=message_id, phone=PHONE, verified_at=time.time(), converted=converted)


@pytest.fixture
def md5_server() -> Iterator[EmulatorServer]:
    """An emulated account whose dashboard signature method is the default "MD5 hash"."""
    with EmulatorServer(ProviderEmulator(credentials={"vonage": {"signature_method": "md5hash"}})) as server:
        yield server


# ---- send, then report -----------------------------------------------------------------------------------


@pytest.mark.parametrize("auth", ["basic", "body"])
def test_send_then_report_reaches_the_emulator_in_vonage_units(
    provider_emulator_server: EmulatorServer, auth: str
) -> None:
    emu = provider_emulator_server.emulator
    before = int(time.time())
    with vonage(provider_emulator_server, auth=auth) as provider:
        sent = provider.send_otp(PHONE, "482913")
        provider.report_conversion(report(sent.message_id))
    assert emu.code_for(PHONE) == "482913"
    (conversion,) = emu.conversions("vonage")
    assert (conversion.message_id, conversion.phone, conversion.delivered) == (sent.message_id, PHONE, True)
    assert conversion.conversion_time is not None and before <= conversion.conversion_time <= time.time()
    (call,) = emu.calls("SmsConversion")
    assert call.params["delivered"] == "true"


def test_signed_send_and_report_are_accepted(provider_emulator_server: EmulatorServer) -> None:
    with signed(provider_emulator_server) as provider:
        sent = provider.send_otp(PHONE, "482913")
        provider.report_conversion(report(sent.message_id))
    assert [c.ok for c in provider_emulator_server.emulator.calls()] == [True, True]
    assert all("sig" in c.params for c in provider_emulator_server.emulator.calls())


def test_signed_with_the_md5hash_default_method_is_accepted(md5_server: EmulatorServer) -> None:
    with signed(md5_server, "md5hash") as provider:
        provider.report_conversion(report(provider.send_otp(PHONE, "482913").message_id))
    assert len(md5_server.emulator.conversions("vonage")) == 1


def test_signed_report_without_the_conversion_time_signs_with_a_unix_timestamp(
    provider_emulator_server: EmulatorServer,
) -> None:
    with signed(provider_emulator_server, conversion_timestamp=False) as provider:
        provider.report_conversion(report(provider.send_otp(PHONE, "482913").message_id))
    (conversion,) = provider_emulator_server.emulator.conversions("vonage")
    assert conversion.conversion_time is None
    assert provider_emulator_server.emulator.calls("SmsConversion")[0].params["timestamp"].isdigit()


def test_negative_outcome_is_reported_as_delivered_false(provider_emulator_server: EmulatorServer) -> None:
    with vonage(provider_emulator_server) as provider:
        provider.report_conversion(report(provider.send_otp(PHONE, "482913").message_id, converted=False))
    (conversion,) = provider_emulator_server.emulator.conversions("vonage")
    assert conversion.delivered is False


# ---- each error class ------------------------------------------------------------------------------------


def test_wrong_secret_is_an_auth_error_on_send(provider_emulator_server: EmulatorServer) -> None:
    with vonage(provider_emulator_server, api_secret=WRONG) as provider, pytest.raises(AuthError) as caught:
        provider.send_otp(PHONE, "482913")
    assert caught.value.code == "4"
    assert WRONG not in str(caught.value)


def test_wrong_secret_is_an_auth_error_on_report(provider_emulator_server: EmulatorServer) -> None:
    message_id = provider_emulator_server.emulator.issue_message_id("vonage", PHONE)
    with vonage(provider_emulator_server, api_secret=WRONG) as provider, pytest.raises(AuthError) as caught:
        provider.report_conversion(report(message_id))
    assert caught.value.status == 401


def test_wrong_signature_secret_is_an_auth_error(provider_emulator_server: EmulatorServer) -> None:
    with signed(provider_emulator_server, signature_secret=WRONG_SIG) as provider, pytest.raises(AuthError) as caught:
        provider.send_otp(PHONE, "482913")
    assert caught.value.code == "14"


def test_conversion_not_enabled_on_the_account_is_an_auth_error(provider_emulator_server: EmulatorServer) -> None:
    emu = provider_emulator_server.emulator
    emu.inject("SmsConversion", Fault.error("402"))
    with vonage(provider_emulator_server) as provider, pytest.raises(AuthError) as caught:
        provider.report_conversion(report(emu.issue_message_id("vonage", PHONE)))
    assert caught.value.status == 402


def test_unknown_message_is_a_permanent_error(provider_emulator_server: EmulatorServer) -> None:
    with vonage(provider_emulator_server) as provider, pytest.raises(PermanentError) as caught:
        provider.report_conversion(report("0C000000DEADBEEF"))
    assert caught.value.status == 420


def test_refused_number_is_a_permanent_error_on_send(provider_emulator_server: EmulatorServer) -> None:
    provider_emulator_server.emulator.refuse_phone(PHONE, "29", "Non White-listed Destination")
    with vonage(provider_emulator_server) as provider, pytest.raises(PermanentError) as caught:
        provider.send_otp(PHONE, "482913")
    assert caught.value.code == "29"


def test_throttled_send_says_how_long_to_wait(provider_emulator_server: EmulatorServer) -> None:
    provider_emulator_server.emulator.inject("SendSms", Fault.throttle(retry_after=2.0, times=1))
    with vonage(provider_emulator_server) as provider, pytest.raises(ThrottledError) as caught:
        provider.send_otp(PHONE, "482913")
    assert caught.value.retry_after == 2.0


# ---- declarations and settings ---------------------------------------------------------------------------


def test_repr_shows_no_secret(provider_emulator_server: EmulatorServer) -> None:
    with signed(provider_emulator_server) as provider:
        secret = provider_emulator_server.emulator.credentials("vonage")["signature_secret"]
        assert secret not in repr(provider)


def config(**keys: Any) -> dict[str, Any]:
    return {"OTP_CONVERSION_PROVIDER": "vonage", **{f"OTP_CONVERSION_VONAGE_{k}": v for k, v in keys.items()}}


def test_settings_are_read_from_the_vonage_keys() -> None:
    keys = config(API_KEY="a1b2c3d4", SIGNATURE_SECRET="s" * 32, SIGNATURE_METHOD="SHA512")
    settings = load_settings(keys, instance_path="/i")
    vonage_settings = settings.provider_settings
    assert isinstance(vonage_settings, VonageSettings)
    assert (vonage_settings.auth, vonage_settings.signature_method) == ("signature", "sha512")


def test_settings_without_any_secret_name_the_key_to_set() -> None:
    with pytest.raises(ConfigurationError, match=r"OTP_CONVERSION_VONAGE_AUTH: .*OTP_CONVERSION_VONAGE_API_SECRET"):
        load_settings(config(API_KEY="a1b2c3d4"), instance_path="/i")


def test_settings_error_never_shows_the_secret() -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_settings(config(API_KEY="not a key!", API_SECRET="TopSecretValue01"), instance_path="/i")
    assert "OTP_CONVERSION_VONAGE_API_KEY" in str(caught.value)
    assert "TopSecretValue01" not in str(caught.value)


def test_text_template_without_the_code_placeholder_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="OTP_CONVERSION_VONAGE_TEXT_TEMPLATE"):
        load_settings(config(API_KEY="a1b2c3d4", API_SECRET="x", TEXT_TEMPLATE="Your code"), instance_path="/i")
