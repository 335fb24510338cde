"""The extension under a real multi-process gunicorn: sends and verifications served by different sync
workers, sharing one SQLite outbox, are each reported to the provider exactly once, by the one worker that
delivers; when that worker is killed, another takes over; a graceful stop in the middle of a drain and a
restart report every row exactly once."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from flask_otp_conversion.store import OutboxStats, open_store
from flask_otp_conversion.testing import EmulatorServer, Fault, ProviderEmulator
from tests.multihost.harness import free_port, gunicorn, messages, tencent_env, wait_reported

MESSAGES = 20
MAX_ATTEMPTS = 400  # per request, to land on (or avoid) a given worker; 4 workers make a miss vanishingly rare


def _post(base: str, path: str, body: dict[str, object]) -> httpx.Response:
    """A fresh client (so a fresh connection) per request: the kernel picks the accepting worker anew."""
    with httpx.Client(base_url=base, timeout=5) as client:
        return client.post(path, json=body)


def _post_until_ok(base: str, path: str, body: dict[str, object]) -> int:
    """POST until a worker accepts (2xx, not the 409 of a worker the body steers away from); its pid."""
    for _ in range(MAX_ATTEMPTS):
        response = _post(base, path, body)
        if response.status_code != 409:
            assert response.status_code == 200, response.text
            pid: int = response.json()["pid"]
            return pid
    raise AssertionError(f"no suitable gunicorn worker answered {path} in {MAX_ATTEMPTS} tries")


def _wait_until_serving(base: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"gunicorn exited early:\n{log.read_text()}"
        try:
            with httpx.Client(base_url=base, timeout=1) as client:
                client.get("/")
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError(f"gunicorn did not start listening:\n{log.read_text()}")


@contextlib.contextmanager
def serving(
    tmp_path: Path, server: EmulatorServer, *, workers: int = 4, run: str = "gunicorn", **settings: object
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``tests/gunicorn_app.py`` under gunicorn (``workers`` sync workers) on the emulator and a SQLite file in
    tmp_path, with ``settings`` as extra ``OTP_CONVERSION_*`` keys; its output goes to ``{run}.log``. Checks
    at the end that it stopped cleanly."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = tencent_env(server, f"sqlite:///{tmp_path / 'outbox.db'}", **settings)
    log = tmp_path / f"{run}.log"
    proc = gunicorn("tests.gunicorn_app:create_app()", port, workers, env, log)
    try:
        _wait_until_serving(base, proc, log)
        yield base, proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            returncode = proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
    output = log.read_text()
    assert returncode == 0, output
    assert "Traceback" not in output, output


def _deliverers(base: str, *, workers: int = 4) -> set[int]:
    """The pids of the workers delivering, asked (fresh connections) until all ``workers`` have answered."""
    answers: dict[int, bool] = {}
    for _ in range(MAX_ATTEMPTS):
        body = httpx.get(base + "/delivering", timeout=5).json()
        answers[body["pid"]] = body["delivering"]
        if len(answers) == workers:
            break
    assert len(answers) == workers, answers
    return {pid for pid, delivering in answers.items() if delivering}


@pytest.mark.timeout(90)
def test_reports_once_per_serial_when_send_and_verify_hit_different_gunicorn_workers(
    tmp_path: Path, provider_emulator_server: EmulatorServer
) -> None:
    emulator = provider_emulator_server.emulator
    with serving(tmp_path, provider_emulator_server) as (base, _):
        phones, serials = messages(emulator, "+861371111", MESSAGES)
        send_pid = _post_until_ok(base, "/send", {"phone": phones[0], "message_id": serials[0]})
        for phone, serial in zip(phones[1:], serials[1:], strict=True):
            _post_until_ok(base, "/send", {"phone": phone, "message_id": serial, "only_pid": send_pid})
        verify_pids = {_post_until_ok(base, "/verify", {"phone": phone, "avoid_pid": send_pid}) for phone in phones}
        assert send_pid not in verify_pids

        wait_reported(emulator, serials, timeout=20)
        time.sleep(1.5)  # room for a duplicate to show up
        calls = emulator.calls(action="ReportConversion")
        assert all(c.ok for c in calls), [(c.params.get("SerialNo"), c.error_code) for c in calls]
        assert Counter(c.params["SerialNo"] for c in calls) == Counter(serials)


@pytest.mark.timeout(90)
def test_one_gunicorn_worker_delivers(tmp_path: Path, provider_emulator_server: EmulatorServer) -> None:
    with serving(tmp_path, provider_emulator_server) as (base, _):
        assert len(_deliverers(base)) == 1


@pytest.mark.timeout(120)
def test_another_worker_delivers_after_the_deliverer_is_killed(
    tmp_path: Path, provider_emulator_server: EmulatorServer
) -> None:
    emulator = provider_emulator_server.emulator
    with serving(tmp_path, provider_emulator_server) as (base, _):
        (killed,) = _deliverers(base)
        os.kill(killed, signal.SIGKILL)  # gunicorn starts a new worker in its place
        deadline = time.monotonic() + 30
        while True:  # requests keep coming, as they would: a worker takes the lock at one of them
            survivors = _deliverers(base)
            if survivors or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        assert len(survivors) == 1 and killed not in survivors
        phones, serials = messages(emulator, "+861372222", MESSAGES)
        for phone, serial in zip(phones, serials, strict=True):
            _post_until_ok(base, "/send", {"phone": phone, "message_id": serial})
            _post_until_ok(base, "/verify", {"phone": phone})
        wait_reported(emulator, serials, timeout=20)
        reported = {c.params["SerialNo"] for c in emulator.calls(action="ReportConversion", ok=True)}
        assert reported == set(serials)


def _gone(pid: int) -> bool:
    """Whether the process has exited (a zombie nobody reaps counts as exited)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def _delivery_child(base: str, worker: int) -> int:
    """The pid of ``worker``'s delivery process, asked until that worker answers with one."""
    for _ in range(MAX_ATTEMPTS * 4):
        body = httpx.get(base + "/delivering", timeout=5).json()
        if body["pid"] == worker and body["child"]:
            return int(body["child"])
        time.sleep(0.05)
    raise AssertionError(f"worker {worker} named no delivery process")


@pytest.mark.timeout(120)
def test_the_deliverers_delivery_process_ends_with_it_and_the_next_deliverer_starts_its_own(
    tmp_path: Path, provider_emulator_server: EmulatorServer
) -> None:
    with serving(tmp_path, provider_emulator_server) as (base, _):
        (deliverer,) = _deliverers(base)
        child = _delivery_child(base, deliverer)
        assert child != deliverer
        os.kill(deliverer, signal.SIGKILL)
        deadline = time.monotonic() + 15
        while not _gone(child):  # its pipe closed with the worker: it stops by itself
            assert time.monotonic() < deadline, "the dead deliverer's delivery process is still running"
            time.sleep(0.1)
        deadline = time.monotonic() + 30
        while not (survivors := _deliverers(base)):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        (successor,) = survivors
        assert _delivery_child(base, successor) not in (child, successor)


#: A slow provider, and few senders, so that a drain takes seconds and a stop finds requests in flight.
SLOW_ANSWER = 0.4
BACKLOG = 120
DRAIN_SETTINGS: dict[str, object] = {
    "REPORT_CONCURRENCY": 8,
    "HTTP_CONNECT_TIMEOUT": 1.0,
    "HTTP_READ_TIMEOUT": 2.0,  # a row's lease is then 6 s: a row sent twice shows up within the test
    "SHUTDOWN_TIMEOUT": 2.0,
}


def _seed_backlog(db: Path, emulator: ProviderEmulator, prefix: str, count: int = BACKLOG) -> list[str]:
    """``count`` verified sends in the outbox, written before gunicorn starts; the serials, in order."""
    store = open_store(f"sqlite:///{db}")
    try:
        serials = []
        now = time.time()
        for n in range(count):
            phone = f"{prefix}{n:04d}"
            serial = emulator.issue_message_id("tencent", phone)
            store.record_sent(phone=phone, message_id=serial, provider="tencent", sent_at=now)
            store.record_verified(phone=phone, message_id=serial, provider="tencent", verified_at=now, match_window=300)
            serials.append(serial)
        return serials
    finally:
        store.close()


def _outbox(db: Path) -> OutboxStats:
    store = open_store(f"sqlite:///{db}")
    try:
        return store.outbox_stats(now=time.time())
    finally:
        store.close()


def _wait_calls(emulator: ProviderEmulator, count: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while len(emulator.calls(action="ReportConversion")) < count:
        assert time.monotonic() < deadline, f"fewer than {count} reports arrived in {timeout} s"
        time.sleep(0.05)


def _wait_outbox_empty(db: Path, timeout: float = 25) -> None:
    """Until no row is pending, leased ones included (a row sent at a stop and never acked is pending until
    its lease expires and it is sent again)."""
    deadline = time.monotonic() + timeout
    while (stats := _outbox(db)).pending > 0:
        assert time.monotonic() < deadline, f"outbox not drained in {timeout} s: {stats}"
        time.sleep(0.2)


@pytest.mark.timeout(90)
def test_sigterm_mid_drain_and_a_restart_report_every_row_exactly_once(
    tmp_path: Path, provider_emulator_server: EmulatorServer
) -> None:
    emulator = provider_emulator_server.emulator
    db = tmp_path / "outbox.db"
    serials = _seed_backlog(db, emulator, "+861373333")
    emulator.latency = SLOW_ANSWER
    with serving(tmp_path, provider_emulator_server, workers=2, run="first", **DRAIN_SETTINGS) as (base, proc):
        _deliverers(base, workers=2)  # requests come in: a worker takes the deliverer lock and starts
        _wait_calls(emulator, BACKLOG // 6)
        proc.send_signal(signal.SIGTERM)  # a deploy: gunicorn stops its workers gracefully
    left = _outbox(db)
    assert left.pending > 0, "the stop did not come mid-drain"  # else the test proves nothing

    with serving(tmp_path, provider_emulator_server, workers=2, run="second", **DRAIN_SETTINGS) as (base, _):
        _deliverers(base, workers=2)
        _wait_outbox_empty(db)

    sent = Counter(c.params["SerialNo"] for c in emulator.calls(action="ReportConversion"))
    duplicates = {serial: n for serial, n in sent.items() if n > 1}
    lost = set(serials) - set(sent)
    assert (duplicates, lost) == ({}, set()), f"{len(duplicates)} sent twice, {len(lost)} never sent"
    assert _outbox(db).dead == 0


@pytest.mark.timeout(60)
def test_a_stop_that_leaves_a_request_in_flight_logs_a_warning_with_the_count(
    tmp_path: Path, provider_emulator_server: EmulatorServer
) -> None:
    emulator = provider_emulator_server.emulator
    _seed_backlog(tmp_path / "outbox.db", emulator, "+861374444", count=1)
    emulator.inject("ReportConversion", Fault.hang(30))  # the provider has the report and never answers
    settings = {"SHUTDOWN_TIMEOUT": 0.5, "HTTP_READ_TIMEOUT": 10.0}
    with serving(tmp_path, provider_emulator_server, workers=2, run="hung", **settings) as (base, proc):
        _deliverers(base, workers=2)
        _wait_calls(emulator, 1)
        proc.send_signal(signal.SIGTERM)
    log = (tmp_path / "hung.log").read_text()
    assert "WARNING otp-conversion reporter stopped with 1 report request(s) in flight" in log, log
