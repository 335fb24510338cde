"""What the Twilio, AWS, Plivo and Vonage clients do alike over real HTTP against the emulator: each behaviour
once, run for every provider it holds for (``provider_factories.EMULATED``: each one's client, actions, phone)."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from provider_factories import EMULATED, EmulatedClient

from flask_otp_conversion.providers import PermanentError, RetryableError, ThrottledError
from flask_otp_conversion.providers.base import ConversionReport
from flask_otp_conversion.testing import EmulatorServer, Fault

pytestmark = pytest.mark.timeout(30)

ALL = list(EMULATED.values())
PLIVO, VONAGE = EMULATED["plivo"], EMULATED["vonage"]
TWILIO, AWS = EMULATED["twilio"], EMULATED["aws"]


def report(client: EmulatedClient, message_id: str) -> ConversionReport:
    return ConversionReport(message_id=message_id, phone=client.phone, verified_at=time.time(), converted=True)


@pytest.mark.parametrize("client", ALL, ids=str)
def test_a_malformed_send_answer_is_retryable(provider_emulator_server: EmulatorServer, client: EmulatedClient) -> None:
    provider_emulator_server.emulator.inject(client.send_action, Fault.malformed_json(times=1), provider=client.name)
    with client.make(provider_emulator_server) as provider, pytest.raises(RetryableError) as caught:
        provider.send_otp(client.phone, "482913")
    assert caught.value.code == "MalformedResponse"


@pytest.mark.parametrize(
    ("client", "fault", "code"),
    [
        (PLIVO, Fault.http_500(times=1), "500"),
        (PLIVO, Fault.malformed_json(times=1), "MalformedResponse"),
        (PLIVO, Fault.drop_connection(times=1), "ClientNetworkError"),
        (PLIVO, Fault.hang(5.0, times=1), "Timeout"),
        (VONAGE, Fault.http_500(times=1), "internal-error"),
        (VONAGE, Fault.malformed_json(times=1), "MalformedResponse"),
        (VONAGE, Fault.drop_connection(times=1), "ClientNetworkError"),
        (VONAGE, Fault.hang(5.0, times=1), "Timeout"),
    ],
    ids=lambda value: str(value) if isinstance(value, EmulatedClient | str) else None,
)
def test_server_errors_and_broken_report_answers_are_retryable(
    provider_emulator_server: EmulatorServer, client: EmulatedClient, fault: Fault, code: str
) -> None:
    emu = provider_emulator_server.emulator
    message_id = emu.issue_message_id(client.name, client.phone)
    emu.inject(client.report_action, fault)
    short = httpx.Timeout(0.5)
    with client.make(provider_emulator_server, timeout=short) as provider, pytest.raises(RetryableError) as caught:
        provider.report_conversion(report(client, message_id))
    assert type(caught.value) is RetryableError and caught.value.code == code
    emu.release_hangs()


@pytest.mark.parametrize(("client", "retry_after"), [(PLIVO, 4.0), (VONAGE, 3.0)], ids=["plivo", "vonage"])
def test_a_throttled_report_carries_the_retry_after(
    provider_emulator_server: EmulatorServer, client: EmulatedClient, retry_after: float
) -> None:
    emu = provider_emulator_server.emulator
    emu.inject(client.report_action, Fault.throttle(retry_after=retry_after, times=1))
    with client.make(provider_emulator_server) as provider, pytest.raises(ThrottledError) as caught:
        provider.report_conversion(report(client, emu.issue_message_id(client.name, client.phone)))
    assert (caught.value.status, caught.value.retry_after) == (429, retry_after)


@pytest.mark.parametrize("client", [TWILIO, AWS], ids=str)
def test_the_emulators_rate_limit_answers_the_providers_throttle(
    provider_emulator_server: EmulatorServer, client: EmulatedClient
) -> None:
    emu = provider_emulator_server.emulator
    emu.set_rate_limit(client.report_action, 1)
    message_id = emu.issue_message_id(client.name, client.phone)
    with client.make(provider_emulator_server) as provider:
        provider.report_conversion(report(client, message_id))
        with pytest.raises(ThrottledError):
            provider.report_conversion(report(client, message_id))


@pytest.mark.parametrize(("client", "code"), [(TWILIO, "21610"), (AWS, "ConflictException")], ids=["twilio", "aws"])
def test_a_send_to_an_opted_out_number_is_permanent(
    provider_emulator_server: EmulatorServer, client: EmulatedClient, code: str
) -> None:
    provider_emulator_server.emulator.refuse_phone(client.phone)
    with client.make(provider_emulator_server) as provider, pytest.raises(PermanentError) as caught:
        provider.send_otp(client.phone, "123456")
    assert caught.value.code == code


@pytest.mark.parametrize("client", [PLIVO, VONAGE], ids=str)
def test_a_number_the_provider_can_never_take_is_refused_before_sending(
    provider_emulator_server: EmulatorServer, client: EmulatedClient
) -> None:
    with client.make(provider_emulator_server) as provider, pytest.raises(PermanentError) as caught:
        provider.send_otp("+12", "482913")
    assert caught.value.code == "InvalidParameter"
    assert provider_emulator_server.emulator.calls() == []


@pytest.mark.parametrize("client", [PLIVO, VONAGE], ids=str)
def test_declares_its_account_report_action_and_negative_outcome(
    provider_emulator_server: EmulatorServer, client: EmulatedClient
) -> None:
    with client.make(provider_emulator_server) as provider:
        assert provider.account == provider_emulator_server.emulator.credentials(client.name)[client.account_key]
        assert provider.report_action == client.report_action
        assert provider.reports_unverified is True
        assert provider.report_deadline is None
        now = datetime.now(timezone.utc)
        assert provider.statistics(now - timedelta(hours=1), now) is None  # type: ignore[func-returns-value]


@pytest.mark.parametrize(
    ("client", "documented", "override"),
    [(PLIVO, 60.0, 20), (VONAGE, 30.0, 5)],  # Plivo: 300 per 5 seconds; Vonage: 30 per second
    ids=["plivo", "vonage"],
)
def test_rate_limits_are_the_documented_ones_and_configurable(
    provider_emulator_server: EmulatorServer, client: EmulatedClient, documented: float, override: int
) -> None:
    with client.make(provider_emulator_server) as provider:
        assert dict(provider.rate_limits) == {client.send_action: documented, client.report_action: documented}
    with client.make(provider_emulator_server, conversion_rate_limit=override) as provider:
        assert provider.rate_limits[client.report_action] == float(override)


@pytest.mark.parametrize("client", [PLIVO, VONAGE], ids=str)
def test_a_report_deadline_is_kept_when_configured(
    provider_emulator_server: EmulatorServer, client: EmulatedClient
) -> None:
    with client.make(provider_emulator_server, report_deadline=3600) as provider:
        assert provider.report_deadline == 3600.0
