"""The reporter end to end on Twilio and AWS (#20): real SQLite outbox, the real clients over HTTP to the
emulator. AWS's one-hour deadline, the negative outcome in each provider's own form, and throttling or an
outage with nothing lost."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from delivery_helpers import pending

from flask_otp_conversion.config import load_settings, make_provider
from flask_otp_conversion.delivery.worker import Reporter
from flask_otp_conversion.providers import Provider
from flask_otp_conversion.store import Store, open_store
from flask_otp_conversion.testing import EmulatorServer, Fault, ProviderEmulator

LOGGER = logging.getLogger("flask_otp_conversion.tests.worker")
REPORT = {"twilio": "CreateMessageFeedback", "aws": "PutMessageFeedback"}
STATUS = {"twilio": ("Outcome", "confirmed", "unconfirmed"), "aws": ("MessageFeedbackStatus", "RECEIVED", "FAILED")}


class Parts:
    """A store, reporters and a sending client for one provider, pointed at the emulator."""

    def __init__(self, tmp_path: Path, emu: ProviderEmulator, url: str, provider: str) -> None:
        self.tmp_path, self.emu, self.url, self.provider = tmp_path, emu, url, provider
        self.db = tmp_path / "otp.db"
        self.store: Store = open_store(f"sqlite:///{self.db}")
        self.reporters: list[Reporter] = []
        self.sender: Provider = make_provider(self.settings())
        self.seq = 0

    def settings(self, **overrides: Any) -> Any:
        config: dict[str, Any] = {
            "OTP_CONVERSION_PROVIDER": self.provider,
            **self.emu.app_config(self.provider, self.url),
            "OTP_CONVERSION_STORE_URL": f"sqlite:///{self.db}",
            "OTP_CONVERSION_HTTP_CONNECT_TIMEOUT": 0.5,
            "OTP_CONVERSION_HTTP_READ_TIMEOUT": 1.0,
            "OTP_CONVERSION_BREAKER_RESET_TIMEOUT": 0.3,
            "OTP_CONVERSION_REPORT_CONCURRENCY": 4,
        }
        config.update({f"OTP_CONVERSION_{k.upper()}": v for k, v in overrides.items()})
        return load_settings(config, instance_path=str(self.tmp_path))

    def reporter(self, **overrides: Any) -> Reporter:
        settings = self.settings(**overrides)
        reporter = Reporter(
            store=self.store,
            provider_factory=lambda: make_provider(settings),
            settings=settings,
            sender=None,
            logger=LOGGER,
        )
        self.reporters.append(reporter)
        return reporter

    def send(self, count: int, *, age: float = 0.0, verified: bool = True) -> list[str]:
        """Send ``count`` OTPs through the provider, recorded as sent ``age`` seconds ago and a second more
        (and verified ``age`` seconds ago, unless not ``verified``), as the extension records them."""
        ids = []
        for _ in range(count):
            self.seq += 1
            phone = f"+1206555{self.seq:04d}"
            message_id = self.sender.send_otp(phone, "123456").message_id
            now = time.time()
            assert self.store.record_sent(
                phone=phone, message_id=message_id, provider=self.provider, sent_at=now - age - 1,
                account=self.sender.account,
            )
            if verified:
                outcome = self.store.record_verified(
                    phone=phone, message_id=message_id, provider=self.provider, verified_at=now - age,
                    match_window=900,
                )
                assert outcome.enqueued
            ids.append(message_id)
        return ids

    def reports(self) -> list[Any]:
        return [call for call in self.emu.calls(REPORT[self.provider]) if call.ok]

    def reported_ids(self) -> list[str]:
        key = "MessageSid" if self.provider == "twilio" else "MessageId"
        return sorted(str(call.params[key]) for call in self.reports())

    def close(self) -> None:
        for reporter in self.reporters:
            reporter.stop(0)
        self.sender.close()
        self.store.close()


@pytest.fixture
def make_parts(
    tmp_path: Path, provider_emulator: ProviderEmulator, provider_emulator_server: EmulatorServer
) -> Iterator[Callable[[str], Parts]]:
    """``Parts`` for a provider, closed after the test."""
    made: list[Parts] = []

    def make(provider: str) -> Parts:
        made.append(Parts(tmp_path, provider_emulator, provider_emulator_server.url, provider))
        return made[-1]

    yield make
    for parts in made:
        parts.close()


@pytest.fixture(params=["twilio", "aws"])
def parts(request: pytest.FixtureRequest, make_parts: Callable[[str], Parts]) -> Parts:
    return make_parts(request.param)


@pytest.mark.timeout(60)
def test_verified_otps_are_reported_in_the_providers_own_positive_form(parts: Parts) -> None:
    ids = parts.send(3)
    assert parts.reporter().flush(10) == 0
    assert parts.reported_ids() == sorted(ids)
    field, positive, _ = STATUS[parts.provider]
    assert {call.params[field] for call in parts.reports()} == {positive}


@pytest.mark.timeout(60)
def test_an_otp_never_verified_is_reported_once_in_the_providers_negative_form(parts: Parts) -> None:
    reporter = parts.reporter(report_unverified=True, match_window=1)
    ids = parts.send(2, age=2, verified=False)
    assert reporter.flush(10) == 0
    field, _, negative = STATUS[parts.provider]
    assert parts.reported_ids() == sorted(ids)
    assert {call.params[field] for call in parts.reports()} == {negative}
    assert [c.delivered for c in parts.emu.conversions(parts.provider)] == [False, False]
    assert reporter.flush(2) == 0
    assert len(parts.reports()) == 2  # once


@pytest.mark.timeout(60)
def test_throttling_delays_reports_but_loses_none(parts: Parts) -> None:
    parts.emu.inject(REPORT[parts.provider], Fault.throttle(retry_after=1, times=2), provider=parts.provider)
    ids = parts.send(3)
    assert parts.reporter().flush(20) == 0
    assert parts.reported_ids() == sorted(ids)
    assert pending(parts.store) == 0 and parts.store.dead_letters() == []


@pytest.mark.timeout(60)
def test_an_outage_delays_reports_but_loses_none(parts: Parts) -> None:
    parts.emu.inject(REPORT[parts.provider], Fault.http_500(times=4), provider=parts.provider)
    ids = parts.send(2)
    assert parts.reporter().flush(30) == 0
    assert parts.reported_ids() == sorted(ids)
    assert parts.store.dead_letters() == []


@pytest.mark.timeout(60)
def test_aws_report_past_its_deadline_is_dead_lettered_never_sent(make_parts: Callable[[str], Parts]) -> None:
    aws = make_parts("aws")
    late = aws.send(2, age=56 * 60)  # past the default 55-minute deadline
    on_time = aws.send(1, age=10)
    assert aws.reporter().flush(10) == 0
    assert aws.reported_ids() == sorted(on_time)
    dead = {letter.message_id: letter.reason for letter in aws.store.dead_letters()}
    assert sorted(dead) == sorted(late)
    assert all("3300 s after the send" in reason for reason in dead.values())


@pytest.mark.timeout(60)
def test_aws_deadline_follows_its_setting(make_parts: Callable[[str], Parts]) -> None:
    aws = make_parts("aws")
    ids = aws.send(2, age=120)
    assert aws.reporter(aws_report_deadline=60).flush(10) == 0
    assert aws.reports() == []
    assert sorted(letter.message_id for letter in aws.store.dead_letters()) == sorted(ids)


@pytest.mark.timeout(60)
def test_twilio_has_no_deadline_so_an_old_report_is_still_sent(make_parts: Callable[[str], Parts]) -> None:
    twilio = make_parts("twilio")
    ids = twilio.send(2, age=2 * 3600)
    assert twilio.reporter().flush(10) == 0
    assert twilio.reported_ids() == sorted(ids)
