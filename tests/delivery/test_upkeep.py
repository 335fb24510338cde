"""The deliverer's periodic jobs on a real SQLite store (the alarm's evaluation here)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from flask_otp_conversion.config import Settings
from flask_otp_conversion.delivery import upkeep as U
from flask_otp_conversion.store.sqlite import SQLiteStore


def make_upkeep(tmp_path: Path, check: object) -> U.Upkeep:
    store = SQLiteStore(str(tmp_path / "otp.sqlite3"))
    settings = Settings.model_validate({"provider": "tencent"})
    return U.Upkeep(store, settings, logging.getLogger("test-upkeep"), "owner-1", alarm_check=check)  # type: ignore[arg-type]


def test_the_alarm_is_evaluated_once_per_period(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    upkeep = make_upkeep(tmp_path, lambda: calls.append(1))
    clock = [1000.0]
    monkeypatch.setattr(U.time, "monotonic", lambda: clock[0])
    upkeep.check_alarm_if_due()
    upkeep.check_alarm_if_due()
    clock[0] += U.ALARM_EVERY
    upkeep.check_alarm_if_due()
    assert len(calls) == 2


def test_a_failing_alarm_is_logged_and_delivery_goes_on(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    def broken() -> None:
        raise OSError("database is locked")

    upkeep = make_upkeep(tmp_path, broken)
    with caplog.at_level(logging.WARNING, logger="test-upkeep"):
        upkeep.check_alarm_if_due()
    assert "the alarm could not be evaluated: " in caplog.text and "database is locked" in caplog.text
