"""``delivery/terms.py``: what delivery reads once from the provider, and the rate schedule built from it."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import pytest
from pydantic import BaseModel

from flask_otp_conversion.config import Settings, load_settings, make_provider
from flask_otp_conversion.delivery.ratelimit import interval_for_cap
from flask_otp_conversion.delivery.terms import FALLBACK_RATE, read_terms, shared_schedule
from flask_otp_conversion.providers.base import ConversionReport, Provider, SentMessage
from flask_otp_conversion.store import Store
from tests.conftest import TENCENT_KEYS

LOGGER = logging.getLogger("flask_otp_conversion.tests.terms")


class Uncapped(Provider):
    """A provider that documents no cap for its report action, counts its closes, and takes negative reports."""

    name = "uncapped"
    settings_model = BaseModel
    reports_unverified = True
    closed = 0

    @property
    def rate_limits(self) -> Mapping[str, float]:
        return {"Send": 10.0}

    @property
    def account(self) -> str:
        return "acct-1"

    @property
    def report_action(self) -> str:
        return "Report"

    def send_otp(self, phone: str, code: str) -> SentMessage:
        raise NotImplementedError

    def report_conversion(self, report: ConversionReport) -> None:
        raise NotImplementedError

    def statistics(self, begin: datetime, end: datetime) -> BaseModel | None:
        return None

    def close(self) -> None:
        Uncapped.closed += 1


def settings(**keys: Any) -> Settings:
    return load_settings({**TENCENT_KEYS, **{f"OTP_CONVERSION_{k}": v for k, v in keys.items()}}, instance_path="/i")


def test_the_providers_documented_cap_is_the_report_actions() -> None:
    config = settings()
    terms = read_terms(lambda: make_provider(config), config, LOGGER)
    assert (terms.name, terms.action, terms.cap) == ("tencent", "ReportConversion", 1000.0)
    assert terms.account == make_provider(config).account
    assert terms.rate_key == "rate:tencent:ReportConversion"


def test_the_apps_rate_limit_overrides_the_documented_one() -> None:
    config = settings(RATE_LIMITS={"ReportConversion": 20})
    assert read_terms(lambda: make_provider(config), config, LOGGER).cap == 20.0


def test_a_report_action_with_no_known_cap_is_warned_about_and_gets_the_fallback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger=LOGGER.name):
        terms = read_terms(Uncapped, settings(), LOGGER)
    assert terms.cap == FALLBACK_RATE
    assert "no rate limit known for uncapped Report" in caplog.text


def test_the_client_asked_is_closed() -> None:
    before = Uncapped.closed
    read_terms(Uncapped, settings(), LOGGER)
    assert Uncapped.closed == before + 1


def test_negative_reports_need_both_the_app_and_the_provider() -> None:
    assert read_terms(Uncapped, settings(REPORT_UNVERIFIED=True), LOGGER).negative
    assert not read_terms(Uncapped, settings(), LOGGER).negative
    config = settings(REPORT_UNVERIFIED=True)
    assert not read_terms(lambda: make_provider(config), config, LOGGER).negative  # Tencent has no negative form


def test_rows_carry_the_configured_provider_name() -> None:
    terms = read_terms(Uncapped, settings(), LOGGER)
    assert (terms.name, terms.rows_provider) == ("uncapped", "tencent")


def test_two_schedules_on_one_store_share_one_budget(sqlite_store: Store) -> None:
    config = settings(RATE_LIMITS={"ReportConversion": 50})
    terms = read_terms(lambda: make_provider(config), config, LOGGER)
    one, two = shared_schedule(sqlite_store, terms), shared_schedule(sqlite_store, terms)
    assert one.interval == interval_for_cap(50.0)
    slots = []
    for _ in range(6):
        for schedule in (one, two):
            slot = schedule.acquire(timeout=2.0)
            assert slot is not None
            slots.append(slot.at)
    slots.sort()
    gaps = [b - a for a, b in itertools.pairwise(slots)]
    assert min(gaps) >= one.interval * 0.999  # no two processes on one slot
    assert slots[-1] - slots[0] < len(slots) * one.interval + 1.0  # and none skipped far ahead
