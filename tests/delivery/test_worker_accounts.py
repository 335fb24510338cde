"""Rows know their account (#22): a row is only ever reported to the provider account that sent it; rows of
another account wait, are shown, and expire into dead letters. Real SQLite outbox, real clients, the emulator."""

from __future__ import annotations

import time

import pytest
from delivery_helpers import Env, pending, wait_for

from flask_otp_conversion.delivery.status import DeliveryRecord, status_flag
from flask_otp_conversion.testing import Fault

OTHER_APP_ID = "1400999999"


@pytest.mark.timeout(60)
def test_rows_of_another_account_are_never_sent_to_the_configured_one(env: Env) -> None:
    _, store = env.reporter()
    env.seed(store, 5)
    reporter, _ = env.reporter(store=store, tencent_sdk_app_id=OTHER_APP_ID)
    assert reporter.flush(3) == 0  # nothing it may send is left
    assert env.calls() == []
    assert pending(store) == 5
    assert {(row.account, row.pending) for row in store.backlog()} == {(env.emu.TENCENT_SDK_APP_ID, 5)}


@pytest.mark.timeout(60)
def test_rows_of_another_account_expire_into_dead_letters_naming_it(env: Env) -> None:
    _, store = env.reporter()
    env.seed(store, 3, age=5)
    reporter, _ = env.reporter(store=store, tencent_sdk_app_id=OTHER_APP_ID, max_report_age=2)
    assert reporter.flush(3) == 0
    assert env.calls() == []
    dead = store.dead_letters()
    assert len(dead) == 3 and pending(store) == 0
    assert all(env.emu.TENCENT_SDK_APP_ID in letter.reason and "expired" in letter.reason for letter in dead)


@pytest.mark.timeout(60)
def test_the_account_that_sent_the_rows_delivers_them_beside_a_new_one(env: Env) -> None:
    _, store = env.reporter()
    ids = env.seed(store, 4)
    other, _ = env.reporter(store=store, tencent_sdk_app_id=OTHER_APP_ID)
    other.flush(2)
    own, _ = env.reporter(store=store)
    assert own.flush(10) == 0
    assert sorted(env.delivered()) == sorted(ids)


@pytest.mark.timeout(60)
def test_the_deliverers_breaker_state_and_last_error_are_kept_in_the_store(env: Env) -> None:
    reporter, store = env.reporter(breaker_threshold=2, breaker_reset_timeout=30)
    env.seed(store, 4)
    env.emu.inject(env.action, Fault.http_500())
    reporter.flush(3)
    assert reporter.breaker_state == "open"
    record = DeliveryRecord.load(store.get_flag(status_flag("tencent")))
    assert record is not None
    assert record.breaker == "open" and record.last_error and "500" in record.last_error
    assert abs(record.at - time.time()) < 30


@pytest.mark.timeout(60)
def test_a_closed_breaker_is_written_back_once_the_provider_recovers(env: Env) -> None:
    reporter, store = env.reporter(breaker_threshold=1, breaker_reset_timeout=0.3)
    env.seed(store, 2)
    env.emu.inject(env.action, Fault.http_500(times=1))
    reporter.ensure_running()
    assert wait_for(lambda: pending(store) == 0)

    def closed() -> bool:
        record = DeliveryRecord.load(store.get_flag(status_flag("tencent")))
        return record is not None and record.breaker == "closed"

    assert wait_for(closed, timeout=10)
