"""TwilioProvider over real HTTP against the project's emulator, which checks HTTP Basic, the path's account
and the form as Twilio does and answers in Twilio's shapes, success and failure alike."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from provider_factories import twilio

from flask_otp_conversion.providers import AuthError, PermanentError, RetryableError, ThrottledError, provider_class
from flask_otp_conversion.providers.base import ConversionReport
from flask_otp_conversion.providers.twilio import FEEDBACK_ACTION, SEND_ACTION, TwilioProvider
from flask_otp_conversion.testing import EmulatorServer, Fault, ProviderEmulator

pytestmark = pytest.mark.timeout(30)

PHONE = "+15558675310"


def report(message_id: str, *, converted: bool = True) -> ConversionReport:
    return ConversionReport(message_id, PHONE, 1_717_243_200.0, converted=converted)


def test_registry_resolves_twilio_to_this_client() -> None:
    assert provider_class("twilio") is TwilioProvider


def test_send_returns_a_message_sid_the_emulator_issued(emu: ProviderEmulator, server: EmulatorServer) -> None:
    with twilio(server) as client:
        sent = client.send_otp(PHONE, "123456")
    [message] = emu.messages("twilio")
    assert (sent.message_id, message.phone, message.code) == (message.message_id, PHONE, "123456")
    assert sent.message_id.startswith("SM") and len(sent.message_id) == 34


def test_send_asks_for_feedback(emu: ProviderEmulator, server: EmulatorServer) -> None:
    with twilio(server) as client:
        client.send_otp(PHONE, "123456")
    [call] = emu.calls(SEND_ACTION)
    assert call.params["ProvideFeedback"] == "true"


def test_send_through_a_messaging_service_sends_no_from(emu: ProviderEmulator, server: EmulatorServer) -> None:
    service = "MG" + "0" * 32
    with twilio(server, sender=None, messaging_service_sid=service) as client:
        client.send_otp(PHONE, "123456")
    [call] = emu.calls(SEND_ACTION)
    assert (call.ok, call.params["MessagingServiceSid"], "From" in call.params) == (True, service, False)


def test_feedback_reports_the_conversion_as_confirmed(emu: ProviderEmulator, server: EmulatorServer) -> None:
    with twilio(server) as client:
        sent = client.send_otp(PHONE, "123456")
        client.report_conversion(report(sent.message_id))
    [conversion] = emu.conversions("twilio")
    assert (conversion.message_id, conversion.phone, conversion.delivered) == (sent.message_id, PHONE, True)


def test_negative_outcome_is_recorded_as_not_delivered(emu: ProviderEmulator, server: EmulatorServer) -> None:
    message_id = emu.issue_message_id("twilio", PHONE)
    with twilio(server) as client:
        client.report_conversion(report(message_id, converted=False))
    [call] = emu.calls(FEEDBACK_ACTION)
    assert call.params["Outcome"] == "unconfirmed"
    assert [c.delivered for c in emu.conversions("twilio")] == [False]


def test_api_key_credentials_are_accepted(emu: ProviderEmulator, server: EmulatorServer) -> None:
    account = emu.credentials("twilio")
    key = {"auth_token": None, "api_key_sid": account["api_key_sid"], "api_key_secret": account["api_key_secret"]}
    with twilio(server, **key) as client:
        client.report_conversion(report(emu.issue_message_id("twilio", PHONE)))
    assert len(emu.conversions("twilio")) == 1


def test_wrong_auth_token_is_an_auth_error(emu: ProviderEmulator, server: EmulatorServer) -> None:
    with twilio(server, auth_token="0" * 32) as client, pytest.raises(AuthError) as raised:
        client.report_conversion(report(emu.issue_message_id("twilio", PHONE)))
    assert (raised.value.code, raised.value.status) == ("20003", 401)


def test_wrong_auth_token_is_not_in_the_error(emu: ProviderEmulator, server: EmulatorServer) -> None:
    with twilio(server, auth_token="S3cretTokenNotToLeak0000000000ab") as client, pytest.raises(AuthError) as raised:
        client.report_conversion(report(emu.issue_message_id("twilio", PHONE)))
    assert "S3cretTokenNotToLeak" not in f"{raised.value} {raised.value!r}"


def test_an_api_key_on_another_accounts_path_is_permanent(emu: ProviderEmulator, server: EmulatorServer) -> None:
    account = emu.credentials("twilio")
    key = {"auth_token": None, "api_key_sid": account["api_key_sid"], "api_key_secret": account["api_key_secret"]}
    with twilio(server, account_sid="AC" + "1" * 32, **key) as client, pytest.raises(PermanentError) as raised:
        client.report_conversion(report(emu.issue_message_id("twilio", PHONE)))
    assert raised.value.code == "20404"


def test_feedback_for_an_unknown_message_is_permanent(emu: ProviderEmulator, server: EmulatorServer) -> None:
    with twilio(server) as client, pytest.raises(PermanentError) as raised:
        client.report_conversion(report("SM" + "f" * 32))
    assert (raised.value.code, raised.value.status) == ("20404", 404)


def test_throttling_is_throttled_with_the_retry_after(emu: ProviderEmulator, server: EmulatorServer) -> None:
    emu.inject(FEEDBACK_ACTION, Fault.throttle(retry_after=7), provider="twilio")
    with twilio(server) as client, pytest.raises(ThrottledError) as raised:
        client.report_conversion(report(emu.issue_message_id("twilio", PHONE)))
    assert (raised.value.code, raised.value.retry_after) == ("20429", 7.0)


def test_server_error_is_retryable(emu: ProviderEmulator, server: EmulatorServer) -> None:
    emu.inject(FEEDBACK_ACTION, Fault.http_500(), provider="twilio")
    with twilio(server) as client, pytest.raises(RetryableError) as raised:
        client.report_conversion(report(emu.issue_message_id("twilio", PHONE)))
    assert (type(raised.value), raised.value.code) == (RetryableError, "20500")


def test_a_hang_is_a_retryable_timeout(emu: ProviderEmulator, server: EmulatorServer) -> None:
    emu.inject(FEEDBACK_ACTION, Fault.hang(seconds=10), provider="twilio")
    with twilio(server) as client, pytest.raises(RetryableError) as raised:
        client.report_conversion(report(emu.issue_message_id("twilio", PHONE)))
    emu.release_hangs()
    assert raised.value.code == "Timeout"


def test_an_injected_api_error_is_permanent(emu: ProviderEmulator, server: EmulatorServer) -> None:
    emu.inject(SEND_ACTION, Fault.error("21211", "Invalid 'To' Phone Number"), provider="twilio")
    with twilio(server) as client, pytest.raises(PermanentError) as raised:
        client.send_otp(PHONE, "123456")
    assert (raised.value.code, raised.value.status) == ("21211", 400)


def test_client_declares_account_actions_and_no_deadline(emu: ProviderEmulator, server: EmulatorServer) -> None:
    with twilio(server, message_rate_limit=10, feedback_rate_limit=5) as client:
        assert client.account == emu.credentials("twilio")["account_sid"]
        assert dict(client.rate_limits) == {SEND_ACTION: 10.0, FEEDBACK_ACTION: 5.0}
        assert (client.report_action, client.report_deadline) == (FEEDBACK_ACTION, None)
        assert client.reports_unverified
        assert client.statistics(datetime(2024, 6, 1, tzinfo=timezone.utc), datetime.now(timezone.utc)) is None


def test_send_without_a_sender_is_a_configuration_error(emu: ProviderEmulator, server: EmulatorServer) -> None:
    with twilio(server, sender=None) as client, pytest.raises(PermanentError) as raised:
        client.send_otp(PHONE, "123456")
    assert raised.value.code == "ClientConfiguration"
    assert emu.calls() == []
