"""The sandbox's shared emulator: one process found through a record, restarted when dead, gone when unused."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from flask_otp_conversion.testing.remote import RemoteEmulator
from flask_otp_conversion.testing.shared import SharedEmulator, read_record

Attach = Callable[[], SharedEmulator]


def wait_until_silent(emulator: RemoteEmulator) -> bool:
    deadline = time.monotonic() + 20
    while emulator.answers():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.mark.timeout(60)
def test_the_first_attach_starts_an_emulator_that_answers(attach_shared: Attach) -> None:
    assert attach_shared().emulator.answers()


@pytest.mark.timeout(60)
def test_a_second_attach_finds_the_first_ones_emulator(attach_shared: Attach, tmp_path: Path) -> None:
    first, second = attach_shared(), attach_shared()
    assert second.url == first.url
    record = read_record(str(tmp_path / "sandbox.json"))
    assert record is not None and record["url"] == first.url


@pytest.mark.timeout(60)
def test_the_emulator_stays_while_one_attachment_is_left(attach_shared: Attach) -> None:
    first, second = attach_shared(), attach_shared()
    first.close()
    third = attach_shared()  # serialised with the emulator's exit check: it would have to start a new one
    assert third.url == second.url and second.emulator.answers()


@pytest.mark.timeout(60)
def test_the_emulator_exits_once_no_attachment_is_left(attach_shared: Attach, tmp_path: Path) -> None:
    shared = attach_shared()
    shared.close()
    assert wait_until_silent(shared.emulator)
    assert read_record(str(tmp_path / "sandbox.json")) is None


@pytest.mark.timeout(60)
def test_a_dead_emulator_is_started_again_on_its_port(attach_shared: Attach, tmp_path: Path) -> None:
    first = attach_shared()
    record = read_record(str(tmp_path / "sandbox.json"))
    assert record is not None
    os.kill(record["pid"], signal.SIGKILL)  # the emulator this test started
    assert wait_until_silent(first.emulator)
    second = attach_shared()
    assert second.url == first.url and first.emulator.answers()


@pytest.mark.timeout(60)
def test_the_emulator_logs_to_a_file_beside_the_record(attach_shared: Attach, tmp_path: Path) -> None:
    shared = attach_shared()
    assert f"export FLASK_OTP_CONVERSION_TENCENT_ENDPOINT={shared.url}" in (tmp_path / "sandbox.json.log").read_text()
