from __future__ import annotations

import time

from flask import Flask

from flask_otp_conversion.testing import EmulatorServer
from tests.conftest import AppFactory

PHONE = "+8613711112222"


def enqueue(app: Flask, message_id: str = "m-1") -> None:
    ext = app.extensions["otp_conversion"]
    ext.record_sent(PHONE, message_id)
    ext.record_verified(PHONE)


def test_degrade_on_off_status(make_app: AppFactory) -> None:
    app, _ = make_app()
    runner = app.test_cli_runner()
    assert "degraded: on" in runner.invoke(args=["otp-conversion", "degrade", "on"]).output
    assert "degraded: on" in runner.invoke(args=["otp-conversion", "degrade", "status"]).output
    assert "degraded: off" in runner.invoke(args=["otp-conversion", "degrade", "off"]).output


def test_flush_delivers_and_exits_zero(make_app: AppFactory, provider_emulator_server: EmulatorServer) -> None:
    app, _ = make_app(OTP_CONVERSION_TENCENT_ENDPOINT=provider_emulator_server.url)
    serial = provider_emulator_server.emulator.issue_message_id("tencent", PHONE)
    enqueue(app, serial)
    result = app.test_cli_runner().invoke(args=["otp-conversion", "flush", "--timeout", "10"])
    assert result.exit_code == 0, result.output
    assert "pending: 0" in result.output
    assert len(provider_emulator_server.emulator.calls(action="ReportConversion", ok=True)) == 1


def test_flush_exits_non_zero_when_reports_are_left(make_app: AppFactory) -> None:
    app, _ = make_app()
    enqueue(app)
    runner = app.test_cli_runner()
    runner.invoke(args=["otp-conversion", "degrade", "on"])
    result = runner.invoke(args=["otp-conversion", "flush", "--timeout", "0.5"])
    assert result.exit_code == 1
    assert "pending: 1" in result.output


def test_dead_letters_list_masks_phones_and_replay_requeues(make_app: AppFactory) -> None:
    app, _ = make_app()
    enqueue(app)
    store = app.extensions["otp_conversion"].store
    (item,) = store.claim(provider="tencent", limit=1, lease_seconds=5, now=time.time())
    store.dead_letter(item, reason="InvalidParameterValue bad serial", now=time.time())
    runner = app.test_cli_runner()
    listing = runner.invoke(args=["otp-conversion", "dead-letters"]).output
    assert "InvalidParameterValue" in listing and PHONE not in listing and "+86" in listing
    assert "requeued 1" in runner.invoke(args=["otp-conversion", "dead-letters", "--replay"]).output
    assert store.outbox_stats(now=time.time()).pending == 1


def test_prune_keeps_pending_reports(make_app: AppFactory) -> None:
    app, _ = make_app(OTP_CONVERSION_RETENTION=1)
    enqueue(app)
    result = app.test_cli_runner().invoke(args=["otp-conversion", "prune"])
    assert result.exit_code == 0 and "pruned" in result.output
    assert app.extensions["otp_conversion"].store.outbox_stats(now=time.time()).pending == 1
