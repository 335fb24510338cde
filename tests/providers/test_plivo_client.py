"""The Plivo client over real HTTP against the emulator's Plivo dialect (JSON only, Basic auth_id:auth_token
matched to the path, errors as ``{"api_id", "error"}``), its declarations, and its settings as ``init_app``
reads them."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
from provider_factories import plivo
from wire_server import Reply, Retarget, recording_server

from flask_otp_conversion.config import ConfigurationError, load_settings
from flask_otp_conversion.providers import AuthError, PermanentError, ThrottledError
from flask_otp_conversion.providers.base import ConversionReport
from flask_otp_conversion.providers.plivo import PlivoProvider
from flask_otp_conversion.providers.settings import PlivoSettings
from flask_otp_conversion.testing import EmulatorServer

pytestmark = pytest.mark.timeout(30)

PHONE = "+14155552222"
TIMEOUT = httpx.Timeout(2.0)
WRONG = "NotTheAccountsAuthToken"


def report(message_id: str, *, converted: bool = True) -> ConversionReport:
    return ConversionReport(message_id=message_id, phone=PHONE, verified_at=time.time(), converted=converted)


# ---- send, then report -----------------------------------------------------------------------------------


def test_send_then_report_reaches_the_emulator_in_plivo_units(provider_emulator_server: EmulatorServer) -> None:
    emu = provider_emulator_server.emulator
    before = int(time.time())
    with plivo(provider_emulator_server) as provider:
        sent = provider.send_otp(PHONE, "482913")
        provider.report_conversion(report(sent.message_id))
    assert emu.code_for(PHONE) == "482913"
    send_call, report_call = emu.calls()
    assert send_call.params["trackable"] is True and send_call.params["src"] == "14155551111"
    assert report_call.params["status"] == "CONVERTED"
    assert report_call.params["timestamp"].endswith("Z")
    (conversion,) = emu.conversions("plivo")
    assert (conversion.message_id, conversion.phone, conversion.delivered) == (sent.message_id, PHONE, True)
    assert conversion.conversion_time is not None and before <= conversion.conversion_time <= time.time()


def test_negative_outcome_is_reported_as_not_converted(provider_emulator_server: EmulatorServer) -> None:
    with plivo(provider_emulator_server) as provider:
        provider.report_conversion(report(provider.send_otp(PHONE, "482913").message_id, converted=False))
    (conversion,) = provider_emulator_server.emulator.conversions("plivo")
    assert conversion.delivered is False
    assert provider_emulator_server.emulator.calls("Conversion")[0].params["status"] == "NOT_CONVERTED"


def test_send_through_a_powerpack_sends_no_src(provider_emulator_server: EmulatorServer) -> None:
    powerpack = "d51e5d5e-c4b4-4d5b-a2b6-aaaaaaaaaaaa"
    with plivo(provider_emulator_server, sender=None, powerpack_uuid=powerpack) as provider:
        provider.send_otp(PHONE, "482913")
    (call,) = provider_emulator_server.emulator.calls("Message")
    assert call.ok and "src" not in call.params


# ---- each error class ------------------------------------------------------------------------------------


def test_wrong_token_is_an_auth_error_without_the_token_in_it(provider_emulator_server: EmulatorServer) -> None:
    with plivo(provider_emulator_server, auth_token=WRONG) as provider, pytest.raises(AuthError) as caught:
        provider.send_otp(PHONE, "482913")
    assert caught.value.status == 401
    assert WRONG not in str(caught.value)


def test_unknown_message_is_a_permanent_error(provider_emulator_server: EmulatorServer) -> None:
    with plivo(provider_emulator_server) as provider, pytest.raises(PermanentError) as caught:
        provider.report_conversion(report("db3ce55a-7f1d-11e1-8ea7-1231380bc196"))
    assert caught.value.status == 404


def test_rate_limited_send_is_throttled(provider_emulator_server: EmulatorServer) -> None:
    provider_emulator_server.emulator.set_rate_limit("Message", 1)
    with plivo(provider_emulator_server) as provider:
        provider.send_otp(PHONE, "482913")
        with pytest.raises(ThrottledError):
            provider.send_otp(PHONE, "482913")


def test_message_uuid_cannot_leave_its_path_segment() -> None:
    settings = PlivoSettings(auth_id="MASETAEXAMPLE0000001", auth_token="t")
    with recording_server(Reply(status=200, body=b"{}")) as server:
        with PlivoProvider(settings, timeout=TIMEOUT, transport=Retarget(server.port)) as provider:
            provider.report_conversion(report("../../Message"))
        assert server.last.target == "/v1/account/MASETAEXAMPLE0000001/message/..%2F..%2FMessage/conversion/"


# ---- declarations and settings ---------------------------------------------------------------------------


def test_repr_shows_no_token(provider_emulator_server: EmulatorServer) -> None:
    with plivo(provider_emulator_server) as provider:
        assert provider_emulator_server.emulator.credentials("plivo")["auth_token"] not in repr(provider)


def config(**keys: Any) -> dict[str, Any]:
    return {"OTP_CONVERSION_PROVIDER": "plivo", **{f"OTP_CONVERSION_PLIVO_{k}": v for k, v in keys.items()}}


def test_settings_are_read_from_the_plivo_keys() -> None:
    settings = load_settings(
        config(AUTH_ID="MASETAEXAMPLE0000001", AUTH_TOKEN="t", SENDER=14155551111), instance_path="/i"
    )
    plivo_settings = settings.provider_settings
    assert isinstance(plivo_settings, PlivoSettings)
    assert plivo_settings.sender == "14155551111"  # from the environment a number arrives as an int


def test_auth_id_of_the_wrong_shape_is_refused_by_its_key() -> None:
    with pytest.raises(ConfigurationError, match="OTP_CONVERSION_PLIVO_AUTH_ID"):
        load_settings(config(AUTH_ID="XX123", AUTH_TOKEN="t"), instance_path="/i")


def test_sender_and_powerpack_together_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="OTP_CONVERSION_PLIVO_POWERPACK_UUID"):
        load_settings(
            config(AUTH_ID="MASETAEXAMPLE0000001", AUTH_TOKEN="t", SENDER="14155551111", POWERPACK_UUID="p"),
            instance_path="/i",
        )


def test_conversion_path_must_hold_both_placeholders() -> None:
    with pytest.raises(ConfigurationError, match="OTP_CONVERSION_PLIVO_CONVERSION_PATH"):
        load_settings(
            config(AUTH_ID="MASETAEXAMPLE0000001", AUTH_TOKEN="t", CONVERSION_PATH="/v1/{auth_id}/conversion/"),
            instance_path="/i",
        )


def test_send_body_is_json_with_trackable_a_boolean(provider_emulator_server: EmulatorServer) -> None:
    with plivo(provider_emulator_server) as provider:
        provider.send_otp(PHONE, "482913")
    (call,) = provider_emulator_server.emulator.calls("Message")
    assert json.loads(call.body)["trackable"] is True
    assert call.headers["content-type"] == "application/json"
