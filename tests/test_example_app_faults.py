"""The example app while its recording refuses writes (#22): the store's write lock held by another connection
(the store really refuses) and the spool folder replaced by a file (the spool really refuses). Every answer the
user got stands: sends 202, verifications 200, and every conversion is reported once the disk takes writes."""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from flask_otp_conversion.extension import ConversionState

from .conftest import ExampleAppFactory
from .test_example_app import emulator_of, sent_code, state_of, verify

PHONES = [f"+861371111{n:04d}" for n in range(6)]


class Refusing:
    """The store's file locked for writing, and the spool's folder gone (a file in its place)."""

    def __init__(self, db: Path, spool_dir: str) -> None:
        self.spool_dir = spool_dir
        self.lock = sqlite3.connect(db, isolation_level=None)
        self.lock.execute("BEGIN EXCLUSIVE")
        os.rename(spool_dir, spool_dir + ".away")
        Path(spool_dir).write_text("not a folder")

    def end(self) -> None:
        os.remove(self.spool_dir)
        os.rename(self.spool_dir + ".away", self.spool_dir)
        self.lock.execute("COMMIT")
        self.lock.close()


@pytest.fixture
def app(make_example_app: ExampleAppFactory, tmp_path: Path) -> Flask:
    db = tmp_path / "conversion0.db"
    return make_example_app(OTP_CONVERSION_STORE_URL=f"sqlite:///{db}?busy_timeout=0.05")


@pytest.fixture
def refusing(app: Flask, tmp_path: Path) -> Iterator[Refusing]:
    state = conversion_state(app)
    assert state.spool is not None
    fault = Refusing(tmp_path / "conversion0.db", state.spool.directory)
    yield fault
    if os.path.isfile(fault.spool_dir):
        fault.end()


def conversion_state(app: Flask) -> ConversionState:
    state: ConversionState = app.extensions["otp_conversion"]
    return state


def wait_for_written(state: ConversionState, timeout: float = 10.0) -> None:
    assert state.holding is not None
    end = time.monotonic() + timeout
    while state.holding.counts().held and time.monotonic() < end:
        time.sleep(0.05)
    assert state.holding.counts().held == 0


def test_sends_and_verifications_answer_as_usual_while_recording_refuses(app: Flask, refusing: Refusing) -> None:
    client = app.test_client()
    for phone in PHONES:
        code = sent_code(app, phone)  # asserts the 202
        assert verify(client, code, phone).status_code == 200
    counts = conversion_state(app).holding.counts()  # type: ignore[union-attr]
    assert (counts.held, counts.lost) == (2 * len(PHONES), 0)


def test_what_was_held_is_reported_once_the_disk_takes_writes_again(app: Flask, refusing: Refusing) -> None:
    client = app.test_client()
    for phone in PHONES:
        code = sent_code(app, phone)
        assert verify(client, code, phone).status_code == 200
    ids = [m.message_id for m in emulator_of(app).messages()]
    refusing.end()
    state = conversion_state(app)
    wait_for_written(state)
    conversion = state_of(app).conversion
    assert conversion is not None
    with app.app_context():
        assert conversion.flush(10) == 0
    assert sorted(c.message_id for c in emulator_of(app).conversions()) == sorted(ids)


def reporter_stats(app: Flask) -> dict[str, object]:
    state = conversion_state(app)
    token = state_of(app).shown_stats_token
    answer = app.test_client().get(state.settings.url_prefix + "/stats", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200
    reporter: dict[str, object] = answer.get_json()["reporter"]
    return reporter


def test_the_stats_show_what_is_held_then_that_it_was_written(app: Flask, refusing: Refusing) -> None:
    code = sent_code(app, PHONES[0])
    assert verify(app.test_client(), code, PHONES[0]).status_code == 200
    assert (reporter_stats(app)["held_in_memory"], reporter_stats(app)["lost"]) == (2, 0)
    refusing.end()
    wait_for_written(conversion_state(app))
    assert reporter_stats(app)["held_in_memory"] == 0


def test_the_metrics_show_what_is_held(app: Flask, refusing: Refusing) -> None:
    code = sent_code(app, PHONES[0])
    assert verify(app.test_client(), code, PHONES[0]).status_code == 200
    state = conversion_state(app)
    token = state_of(app).shown_stats_token
    text = app.test_client().get(state.settings.url_prefix + "/metrics", headers={"Authorization": f"Bearer {token}"})
    assert text.status_code == 200
    assert "otp_conversion_records_held 2.0" in text.get_data(as_text=True)
    assert "otp_conversion_records_lost 0.0" in text.get_data(as_text=True)


def test_a_refusing_spool_is_logged_once_not_once_per_verification(
    app: Flask, refusing: Refusing, caplog: pytest.LogCaptureFixture
) -> None:
    client = app.test_client()
    with caplog.at_level(logging.WARNING, logger="flask_otp_conversion"):
        for phone in PHONES:
            code = sent_code(app, phone)
            assert verify(client, code, phone).status_code == 200
        refusing.end()
        code = sent_code(app, "+8613722220000")  # a number not sent to yet: no resend wait
        assert verify(client, code, "+8613722220000").status_code == 200
    messages = [record.getMessage() for record in caplog.records]
    assert sum("spool refuses verifications" in message for message in messages) == 1
    assert sum("spool takes verifications again" in message for message in messages) == 1
