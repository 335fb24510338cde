"""AwsProvider over real HTTP against the project's emulator, which recomputes SigV4 from the received bytes
and answers in AWS's JSON 1.0 shapes, success and failure alike."""

from __future__ import annotations

import time
from datetime import datetime, timezone

import pytest
from provider_factories import aws

from flask_otp_conversion.providers import AuthError, PermanentError, RetryableError, ThrottledError, provider_class
from flask_otp_conversion.providers.aws import FEEDBACK_ACTION, SEND_ACTION, AwsProvider
from flask_otp_conversion.providers.base import ConversionReport
from flask_otp_conversion.testing import EmulatorServer, Fault, ProviderEmulator

pytestmark = pytest.mark.timeout(30)

PHONE = "+12065550150"


def report(message_id: str, *, converted: bool = True) -> ConversionReport:
    return ConversionReport(message_id, PHONE, time.time(), converted=converted)


def test_registry_resolves_aws_to_this_client() -> None:
    assert provider_class("aws") is AwsProvider


def test_send_returns_the_message_id_the_emulator_issued(emu: ProviderEmulator, server: EmulatorServer) -> None:
    with aws(server) as client:
        sent = client.send_otp(PHONE, "123456")
    [message] = emu.messages("aws")
    assert (sent.message_id, message.phone, message.code) == (message.message_id, PHONE, "123456")


def test_send_enables_feedback(emu: ProviderEmulator, server: EmulatorServer) -> None:
    with aws(server) as client:
        client.send_otp(PHONE, "123456")
    [call] = emu.calls(SEND_ACTION)
    assert (call.ok, call.params["MessageFeedbackEnabled"], call.region) == (True, True, "us-east-1")


def test_feedback_reports_the_conversion_as_received(emu: ProviderEmulator, server: EmulatorServer) -> None:
    with aws(server) as client:
        sent = client.send_otp(PHONE, "123456")
        client.report_conversion(report(sent.message_id))
    [call] = emu.calls(FEEDBACK_ACTION)
    assert call.params == {"MessageId": sent.message_id, "MessageFeedbackStatus": "RECEIVED"}
    [conversion] = emu.conversions("aws")
    assert (conversion.message_id, conversion.phone, conversion.delivered) == (sent.message_id, PHONE, True)


def test_negative_outcome_is_recorded_as_not_delivered(emu: ProviderEmulator, server: EmulatorServer) -> None:
    with aws(server) as client:
        client.report_conversion(report(emu.issue_message_id("aws", PHONE), converted=False))
    [call] = emu.calls(FEEDBACK_ACTION)
    assert call.params["MessageFeedbackStatus"] == "FAILED"
    assert [c.delivered for c in emu.conversions("aws")] == [False]


def temporary_credentials(emu: ProviderEmulator) -> dict[str, str]:
    """The emulator's temporary (STS) key pair and its session token, as settings."""
    account = emu.credentials("aws")
    return {
        "access_key_id": account["temporary_access_key_id"],
        "secret_access_key": account["temporary_secret_access_key"],
        "session_token": account["session_token"],
    }


def test_temporary_credentials_with_their_session_token_are_accepted(
    emu: ProviderEmulator, server: EmulatorServer
) -> None:
    with aws(server, **temporary_credentials(emu)) as client:
        client.report_conversion(report(emu.issue_message_id("aws", PHONE)))
    assert len(emu.conversions("aws")) == 1


def test_temporary_credentials_without_the_token_are_an_auth_error(
    emu: ProviderEmulator, server: EmulatorServer
) -> None:
    without_token = {**temporary_credentials(emu), "session_token": None}
    with aws(server, **without_token) as client, pytest.raises(AuthError) as raised:
        client.report_conversion(report(emu.issue_message_id("aws", PHONE)))
    assert raised.value.code == "UnrecognizedClientException"


def test_wrong_secret_is_an_auth_error(emu: ProviderEmulator, server: EmulatorServer) -> None:
    with aws(server, secret_access_key="W" * 40) as client, pytest.raises(AuthError) as raised:
        client.report_conversion(report(emu.issue_message_id("aws", PHONE)))
    assert (raised.value.code, raised.value.status) == ("InvalidSignatureException", 400)


def test_wrong_secret_is_not_in_the_error(emu: ProviderEmulator, server: EmulatorServer) -> None:
    with aws(server, secret_access_key="NotToLeak" * 5) as client, pytest.raises(AuthError) as raised:
        client.report_conversion(report(emu.issue_message_id("aws", PHONE)))
    assert "NotToLeak" not in f"{raised.value} {raised.value!r}"


def test_unknown_access_key_is_an_auth_error(emu: ProviderEmulator, server: EmulatorServer) -> None:
    with aws(server, access_key_id="AKIAUNKNOWN000000000") as client, pytest.raises(AuthError) as raised:
        client.report_conversion(report(emu.issue_message_id("aws", PHONE)))
    assert raised.value.code == "UnrecognizedClientException"


def test_a_clock_six_minutes_slow_is_retryable(emu: ProviderEmulator, server: EmulatorServer) -> None:
    with aws(server, clock=lambda: time.time() - 360) as client, pytest.raises(RetryableError) as raised:
        client.report_conversion(report(emu.issue_message_id("aws", PHONE)))
    assert (type(raised.value), raised.value.code) == (RetryableError, "InvalidSignatureException")


def test_feedback_to_another_region_is_permanent(emu: ProviderEmulator, server: EmulatorServer) -> None:
    message_id = emu.issue_message_id("aws", PHONE)  # sent in us-east-1
    with aws(server, region="eu-west-1") as client, pytest.raises(PermanentError) as raised:
        client.report_conversion(report(message_id))
    assert raised.value.code == "ResourceNotFoundException"


def test_feedback_for_an_unknown_message_is_permanent(emu: ProviderEmulator, server: EmulatorServer) -> None:
    with aws(server) as client, pytest.raises(PermanentError) as raised:
        client.report_conversion(report("a1b2c3d4-5678-90ab-cdef-000000000001"))
    assert raised.value.code == "ResourceNotFoundException"


def test_feedback_past_the_hour_does_not_take_and_is_permanent() -> None:
    now = [time.time()]
    emu = ProviderEmulator(clock=lambda: now[0])
    with EmulatorServer(emu) as other, aws(other, clock=lambda: now[0]) as client:
        sent = client.send_otp(PHONE, "123456")
        now[0] += 3601  # AWS has failed the record by itself
        with pytest.raises(PermanentError) as raised:
            client.report_conversion(report(sent.message_id))
    assert raised.value.code == "FeedbackNotApplied"
    assert emu.conversions("aws") == []


def test_a_configuration_set_the_account_lacks_is_permanent(emu: ProviderEmulator, server: EmulatorServer) -> None:
    with aws(server, configuration_set_name="nope") as client, pytest.raises(PermanentError) as raised:
        client.send_otp(PHONE, "123456")
    assert raised.value.code == "ResourceNotFoundException"


def test_throttling_is_a_400_classified_as_throttled(emu: ProviderEmulator, server: EmulatorServer) -> None:
    emu.inject(FEEDBACK_ACTION, Fault.throttle(retry_after=3), provider="aws")
    with aws(server) as client, pytest.raises(ThrottledError) as raised:
        client.report_conversion(report(emu.issue_message_id("aws", PHONE)))
    # AWS sends no retry-after hint: the reporter backs off on its own schedule.
    assert (raised.value.code, raised.value.status, raised.value.retry_after) == ("ThrottlingException", 400, None)


def test_server_error_is_retryable(emu: ProviderEmulator, server: EmulatorServer) -> None:
    emu.inject(SEND_ACTION, Fault.http_500(), provider="aws")
    with aws(server) as client, pytest.raises(RetryableError) as raised:
        client.send_otp(PHONE, "123456")
    assert (type(raised.value), raised.value.code, raised.value.status) == (
        RetryableError,
        "InternalServerException",
        500,
    )


def test_a_dropped_connection_is_retryable(emu: ProviderEmulator, server: EmulatorServer) -> None:
    emu.inject(FEEDBACK_ACTION, Fault.drop_connection(), provider="aws")
    with aws(server) as client, pytest.raises(RetryableError):
        client.report_conversion(report(emu.issue_message_id("aws", PHONE)))


def test_client_declares_account_actions_and_deadline(emu: ProviderEmulator, server: EmulatorServer) -> None:
    with aws(server, account_id="123456789012", report_deadline=1800, feedback_rate_limit=5) as client:
        assert client.account == "us-east-1:123456789012"
        assert dict(client.rate_limits) == {SEND_ACTION: 20.0, FEEDBACK_ACTION: 5.0}
        assert (client.report_action, client.report_deadline, client.reports_unverified) == (
            FEEDBACK_ACTION,
            1800.0,
            True,
        )
        assert client.statistics(datetime(2024, 6, 1, tzinfo=timezone.utc), datetime.now(timezone.utc)) is None


def test_deadline_defaults_to_55_minutes_and_the_account_to_the_region(
    emu: ProviderEmulator, server: EmulatorServer
) -> None:
    with aws(server) as client:
        assert (client.report_deadline, client.account) == (3300.0, "us-east-1")
