from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from flask import Flask

from flask_otp_conversion.store import SQLiteStore
from flask_otp_conversion.store.base import Verification
from flask_otp_conversion.store.quarantine import quarantined
from flask_otp_conversion.store.spool import SUFFIX, encode
from flask_otp_conversion.testing import EmulatorServer
from tests.conftest import TENCENT_KEYS, AppFactory
from tests.store.store_helpers import damage_an_index

ROOT = Path(__file__).resolve().parent.parent

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


@pytest.mark.timeout(60)
@pytest.mark.parametrize(("flags", "priority"), [(["--idle"], "SCHED_IDLE"), (["--nice", "5"], "nice 5")])
def test_deliver_runs_the_reporter_in_its_own_process_until_sigterm(
    make_app: AppFactory, provider_emulator_server: EmulatorServer, tmp_path: Path, flags: list[str], priority: str
) -> None:
    db = tmp_path / "shared.db"
    app, _ = make_app(
        OTP_CONVERSION_TENCENT_ENDPOINT=provider_emulator_server.url, OTP_CONVERSION_STORE_URL=f"sqlite:///{db}"
    )
    serials = [provider_emulator_server.emulator.issue_message_id("tencent", PHONE[:-1] + str(n)) for n in range(3)]
    for n, serial in enumerate(serials):
        app.extensions["otp_conversion"].record_sent(PHONE[:-1] + str(n), serial)
        app.extensions["otp_conversion"].record_verified(PHONE[:-1] + str(n), serial)
    env = {
        **os.environ,
        **{f"FLASK_{key}": value for key, value in TENCENT_KEYS.items()},
        "FLASK_OTP_CONVERSION_TENCENT_ENDPOINT": provider_emulator_server.url,
        "FLASK_OTP_CONVERSION_STORE_URL": f"sqlite:///{db}",
        "FLASK_OTP_CONVERSION_REPORTER_AUTOSTART": "false",
        "FLASK_OTP_CONVERSION_STATS_TOKEN": "unused",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "tests.gunicorn_app", "otp-conversion", "deliver", *flags],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while len(provider_emulator_server.emulator.calls(action="ReportConversion", ok=True)) < 3:
            assert proc.poll() is None and time.monotonic() < deadline, "deliver did not report"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, output
    assert f"delivering conversion reports at {priority} " in output
    assert "stopped; pending: 0" in output


@pytest.mark.parametrize(
    "command",
    [
        ["degrade", "status"],
        ["flush", "--timeout", "0"],
        ["deliver"],
        ["dead-letters"],
        ["prune"],
        ["stats"],
        ["check"],
    ],
)
def test_with_the_extension_disabled_every_command_says_so(make_app: AppFactory, command: list[str]) -> None:
    app, _ = make_app(OTP_CONVERSION_ENABLED=False)
    result = app.test_cli_runner().invoke(args=["otp-conversion", *command])
    assert result.exit_code == 1
    assert "flask-otp-conversion is disabled on this app (OTP_CONVERSION_ENABLED is false)" in result.output


def test_flush_while_degraded_says_why_nothing_was_delivered(make_app: AppFactory) -> None:
    app, _ = make_app()
    enqueue(app)
    runner = app.test_cli_runner()
    runner.invoke(args=["otp-conversion", "degrade", "on"])
    result = runner.invoke(args=["otp-conversion", "flush", "--timeout", "5"])
    assert result.exit_code == 1
    assert "degraded mode is on (no provider calls are made)" in result.output
    assert "degrade off` resumes delivery" in result.output


def dead_letter_all(app: Flask) -> list[int]:
    store = app.extensions["otp_conversion"].store
    items = store.claim(provider="tencent", limit=10, lease_seconds=5, now=time.time())
    for item in items:
        store.dead_letter(item, reason="InvalidParameterValue bad serial", now=time.time())
    return [item.id for item in items]


def test_dead_letters_listing_starts_with_a_header_row(make_app: AppFactory) -> None:
    app, _ = make_app()
    enqueue(app)
    dead_letter_all(app)
    lines = app.test_cli_runner().invoke(args=["otp-conversion", "dead-letters"]).output.splitlines()
    assert lines[0].split("\t") == ["id", "dead at", "provider", "message id", "phone", "attempts", "reason"]
    assert len(lines[1].split("\t")) == 7


def test_replay_with_id_requeues_only_the_chosen_dead_letters(make_app: AppFactory) -> None:
    app, _ = make_app()
    for n in range(3):
        app.extensions["otp_conversion"].record_sent(PHONE[:-1] + str(n), f"m-{n}")
        app.extensions["otp_conversion"].record_verified(PHONE[:-1] + str(n))
    first, second, third = dead_letter_all(app)
    result = app.test_cli_runner().invoke(
        args=["otp-conversion", "dead-letters", "--replay", "--id", str(first), "--id", str(third)]
    )
    assert result.exit_code == 0 and "requeued 2" in result.output
    store = app.extensions["otp_conversion"].store
    assert [row.id for row in store.dead_letters(limit=10)] == [second]
    assert store.outbox_stats(now=time.time()).pending == 2


def test_id_without_replay_is_a_usage_error(make_app: AppFactory) -> None:
    app, _ = make_app()
    result = app.test_cli_runner().invoke(args=["otp-conversion", "dead-letters", "--id", "1"])
    assert result.exit_code == 2 and "add --replay" in result.output


def test_flush_applies_a_spool_with_a_line_the_store_cannot_take_and_delivers_the_rest(
    make_app: AppFactory, provider_emulator_server: EmulatorServer
) -> None:
    app, _ = make_app(OTP_CONVERSION_TENCENT_ENDPOINT=provider_emulator_server.url)
    state = app.extensions["otp_conversion"]
    serial = provider_emulator_server.emulator.issue_message_id("tencent", PHONE)
    state.record_sent(PHONE, serial)
    # A segment left by a process that died: the verification, and a time SQLite cannot hold (1e300).
    segment = Path(state.spool.directory) / ("dead" + SUFFIX)
    segment.write_bytes(encode(Verification(PHONE, None, time.time())) + b'["+6590000001",null,1e300]\n')
    result = app.test_cli_runner().invoke(args=["otp-conversion", "flush", "--timeout", "10"])
    assert result.exception is None, result.output
    assert result.exit_code == 0 and "pending: 0" in result.output
    assert len(provider_emulator_server.emulator.calls(action="ReportConversion", ok=True)) == 1
    assert quarantined(state.spool.directory) == 1


def test_flush_with_the_store_locked_says_why_and_exits_one_without_a_traceback(
    make_app: AppFactory, tmp_path: Path
) -> None:
    db = tmp_path / "locked.db"
    app, _ = make_app(OTP_CONVERSION_STORE_URL=f"sqlite:///{db}?busy_timeout=0.2")
    enqueue(app)
    state = app.extensions["otp_conversion"]
    segment = Path(state.spool.directory) / ("dead" + SUFFIX)  # to apply: a write the lock refuses
    segment.write_bytes(encode(Verification(PHONE, None, time.time())))
    blocker = sqlite3.connect(db, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")  # another process holds the database: every read and write times out
    try:
        result = app.test_cli_runner().invoke(args=["otp-conversion", "flush", "--timeout", "0.5"])
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert isinstance(result.exception, SystemExit) and result.exit_code == 1
    assert "spooled verifications not all applied: OperationalError" in result.output
    assert "Traceback" not in result.output


def test_check_on_a_sound_store_exits_zero(make_app: AppFactory) -> None:
    app, _ = make_app()
    enqueue(app)
    result = app.test_cli_runner().invoke(args=["otp-conversion", "check"])
    assert result.exit_code == 0, result.output
    assert "store: ok" in result.output and "spool: 0 quarantined" in result.output


def test_check_lists_what_the_full_integrity_check_finds_and_exits_one(make_app: AppFactory, tmp_path: Path) -> None:
    db = tmp_path / "indexed.db"
    store = SQLiteStore(db)
    for i in range(20):
        store.record_sent(phone=f"+86137{i:08d}", message_id=f"m{i}", provider="tencent", sent_at=time.time())
    store.close()
    damage_an_index(db)  # pages and rows still read: only the full check finds it
    app, _ = make_app(OTP_CONVERSION_STORE_URL=f"sqlite:///{db}")  # the quick check at start passes
    result = app.test_cli_runner().invoke(args=["otp-conversion", "check"])
    assert result.exit_code == 1
    assert "missing from index messages_phone_sent" in result.output and "backup" in result.output


def test_stats_names_rows_of_another_account_and_flush_does_not_fail_on_them(
    make_app: AppFactory, tmp_path: Path
) -> None:
    store_url = f"sqlite:///{tmp_path / 'shared.db'}"
    old, _ = make_app("old", OTP_CONVERSION_STORE_URL=store_url)
    enqueue(old)
    new, _ = make_app("new", OTP_CONVERSION_STORE_URL=store_url, OTP_CONVERSION_TENCENT_SDK_APP_ID="1400999999")
    runner = new.test_cli_runner()
    shown = runner.invoke(args=["otp-conversion", "stats"])
    assert f"not the configured account: tencent {TENCENT_KEYS['OTP_CONVERSION_TENCENT_SDK_APP_ID']} pending=1" in (
        shown.output
    )
    result = runner.invoke(args=["otp-conversion", "flush", "--timeout", "1"])
    assert result.exit_code == 0, result.output
    assert "pending: 0" in result.output


def test_rows_of_another_account_expire_into_dead_letters_naming_it(make_app: AppFactory, tmp_path: Path) -> None:
    store_url = f"sqlite:///{tmp_path / 'shared.db'}"
    old, _ = make_app("old", OTP_CONVERSION_STORE_URL=store_url)
    ext = old.extensions["otp_conversion"]
    ext.record_sent(PHONE, "m-1", sent_at=time.time() - 120)
    ext.record_verified(PHONE, verified_at=time.time() - 100)
    new, _ = make_app(
        "new",
        OTP_CONVERSION_STORE_URL=store_url,
        OTP_CONVERSION_TENCENT_SDK_APP_ID="1400999999",
        OTP_CONVERSION_MAX_REPORT_AGE=60,
    )
    runner = new.test_cli_runner()
    assert runner.invoke(args=["otp-conversion", "flush", "--timeout", "1"]).exit_code == 0
    letters = runner.invoke(args=["otp-conversion", "dead-letters"]).output
    assert "expired: the row belongs to tencent account" in letters
    assert "not the configured account" not in runner.invoke(args=["otp-conversion", "stats"]).output
