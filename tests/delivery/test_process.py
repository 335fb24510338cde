"""Delivery in a process of its own (``delivery/process.py``, ``delivery/child.py``): real child processes."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from flask_otp_conversion import ConfigurationError, OTPConversion, signals
from flask_otp_conversion.delivery.process import (
    GIVE_UP_AFTER,
    READY_TIMEOUT,
    RESTART_MOST,
    DeliveryProcess,
    child_config,
    for_app,
    interpreter,
    restart_delay,
)
from flask_otp_conversion.store.base import OutboxItem
from flask_otp_conversion.testing import ProviderEmulator

ProcessApp = Callable[..., tuple[Flask, OTPConversion]]


def wait_for(condition: Callable[[], object], timeout: float = 15.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError("condition not met in time")
        time.sleep(0.02)


def gone(pid: int) -> bool:
    """Whether the process has exited (a zombie nobody reaps counts as exited)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def child_pid_of(stdout: bytes) -> int:
    """The pid a child announced in its ``ready`` line."""
    for line in stdout.splitlines():
        if "ready" in (message := json.loads(line)):
            return int(message["ready"])
    raise AssertionError("no ready line")


def verify_one(app: Flask, conversion: OTPConversion, emulator: ProviderEmulator, phone: str) -> None:
    message_id = emulator.issue_message_id("tencent", phone)
    with app.app_context():
        conversion.record_sent(phone, message_id)
    assert app.test_client().post("/verify", json={"phone": phone}).status_code == 200


def start_child(app: Flask) -> DeliveryProcess:
    """The app's delivery process, started by its first request and waited for until it delivers."""
    app.test_client().get("/nowhere")
    process = app.extensions["otp_conversion"].delivery_process
    assert process is not None
    assert process.wait_ready(20.0)
    return process


# Decisions -------------------------------------------------------------------------------------------------


def test_restart_delay_doubles_up_to_its_ceiling() -> None:
    assert [restart_delay(n) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 8.0]
    assert restart_delay(50) == RESTART_MOST


def test_child_config_carries_only_the_extensions_keys_and_the_resolved_store_url() -> None:
    config = {"OTP_CONVERSION_PROVIDER": "tencent", "SECRET_KEY": "app's own", "OTP_CONVERSION_STORE_URL": "x.db"}
    assert child_config(config, "sqlite:////abs/x.db") == {
        "OTP_CONVERSION_PROVIDER": "tencent",
        "OTP_CONVERSION_STORE_URL": "sqlite:////abs/x.db",
    }


def test_child_config_names_a_key_json_cannot_carry() -> None:
    with pytest.raises(ValueError, match="OTP_CONVERSION_RATE_LIMITS holds a object"):
        child_config({"OTP_CONVERSION_RATE_LIMITS": object()}, "memory://")


@pytest.mark.parametrize(
    ("wanted", "testing", "expected"),
    [(None, False, True), (None, True, False), (False, False, False), (True, True, True)],
)
def test_for_app_chooses_a_process_unless_told_or_testing(
    make_process_app: ProcessApp, wanted: bool | None, testing: bool, expected: bool
) -> None:
    app, _ = make_process_app(TESTING=testing, OTP_CONVERSION_DELIVERY_PROCESS=wanted)
    settings = app.extensions["otp_conversion"].settings
    made = for_app(app, settings, shutdown_timeout=1.0, sender=lambda: app, logger=logging.getLogger("t"))
    assert (made is not None) is expected


def test_a_memory_store_delivers_from_threads(make_process_app: ProcessApp) -> None:
    app, _ = make_process_app(OTP_CONVERSION_STORE_URL="memory://")
    assert app.extensions["otp_conversion"].delivery_process is None


def test_init_app_refuses_a_key_the_asked_for_process_cannot_take(make_process_app: ProcessApp) -> None:
    limits = {"ReportConversion": Decimal("10")}  # a valid cap that JSON cannot carry
    with pytest.raises(ConfigurationError, match="DELIVERY_PROCESS: OTP_CONVERSION_RATE_LIMITS holds a dict"):
        make_process_app(OTP_CONVERSION_DELIVERY_PROCESS=True, OTP_CONVERSION_RATE_LIMITS=limits)


def test_an_unpassable_key_keeps_delivery_on_threads_by_default(make_process_app: ProcessApp) -> None:
    app, _ = make_process_app(OTP_CONVERSION_RATE_LIMITS={"ReportConversion": Decimal("10")})
    assert app.extensions["otp_conversion"].delivery_process is None


# The child at work ---------------------------------------------------------------------------------------------


def test_the_child_applies_the_spool_and_delivers(
    make_process_app: ProcessApp, provider_emulator: ProviderEmulator
) -> None:
    app, conversion = make_process_app()
    process = start_child(app)
    for i in range(3):
        verify_one(app, conversion, provider_emulator, f"+861380000000{i}")
    wait_for(lambda: len(provider_emulator.conversions()) == 3)
    state = app.extensions["otp_conversion"]
    assert not state.reporter.running  # the web worker ran no delivery thread
    assert process.child_pid not in (None, os.getpid())


def thread_priorities(pid: int) -> set[tuple[int, int]]:
    """(scheduling policy, niceness) of every thread of ``pid``: Linux schedules each thread on its own."""
    return {
        (os.sched_getscheduler(int(tid)), os.getpriority(os.PRIO_PROCESS, int(tid)))
        for tid in os.listdir(f"/proc/{pid}/task")
    }


def test_every_thread_of_the_child_runs_under_sched_idle(
    make_process_app: ProcessApp, provider_emulator: ProviderEmulator
) -> None:
    app, conversion = make_process_app()
    process = start_child(app)
    verify_one(app, conversion, provider_emulator, "+8613800000001")
    wait_for(lambda: provider_emulator.conversions())  # its sender threads have started
    assert process.child_pid is not None
    assert {policy for policy, _ in thread_priorities(process.child_pid)} == {os.SCHED_IDLE}


def test_without_sched_idle_the_child_is_niced(
    make_process_app: ProcessApp, provider_emulator: ProviderEmulator
) -> None:
    app, conversion = make_process_app(OTP_CONVERSION_DELIVERY_IDLE=False, OTP_CONVERSION_DELIVERY_NICE=7)
    process = start_child(app)
    verify_one(app, conversion, provider_emulator, "+8613800000001")
    wait_for(lambda: provider_emulator.conversions())
    assert process.child_pid is not None
    mine = os.getpriority(os.PRIO_PROCESS, 0)
    assert thread_priorities(process.child_pid) == {(os.SCHED_OTHER, mine + 7)}


def test_the_apps_receivers_get_the_childs_signals(
    make_process_app: ProcessApp, provider_emulator: ProviderEmulator
) -> None:
    app, conversion = make_process_app()
    reports: list[OutboxItem] = []

    def receiver(sender: Flask, report: OutboxItem) -> None:
        reports.append(report)

    with signals.conversion_reported.connected_to(receiver, sender=app):
        start_child(app)
        verify_one(app, conversion, provider_emulator, "+8613800000001")
        wait_for(lambda: reports)
    assert isinstance(reports[0], OutboxItem)
    assert reports[0].phone == "+8613800000001"


def test_a_receiver_connected_after_the_start_is_picked_up(
    make_process_app: ProcessApp, provider_emulator: ProviderEmulator
) -> None:
    app, conversion = make_process_app()
    start_child(app)
    reports: list[OutboxItem] = []

    def receiver(sender: Flask, report: OutboxItem) -> None:
        reports.append(report)

    with signals.conversion_reported.connected_to(receiver, sender=app):
        time.sleep(1.1)  # past FORWARD_CHECK_EVERY: the next request tells the child
        verify_one(app, conversion, provider_emulator, "+8613800000002")
        wait_for(lambda: reports)


def test_the_childs_log_records_reach_the_apps_logger(
    make_process_app: ProcessApp, provider_emulator: ProviderEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="flask_otp_conversion")  # the app's logging, set up before the child
    app, conversion = make_process_app()
    start_child(app)
    verify_one(app, conversion, provider_emulator, "+8613800000003")
    wait_for(lambda: provider_emulator.conversions())
    app.extensions["otp_conversion"].shutdown()  # the child logs its summary as it stops
    assert any("1 reported" in r.getMessage() for r in caplog.records), caplog.text


def test_stop_lets_the_child_exit_cleanly(make_process_app: ProcessApp) -> None:
    app, _ = make_process_app()
    process = start_child(app)
    pid = process.child_pid
    assert pid is not None
    process.stop(2.0)
    assert gone(pid)
    assert not process.running


def test_a_killed_child_is_restarted_and_delivers(
    make_process_app: ProcessApp, provider_emulator: ProviderEmulator
) -> None:
    app, conversion = make_process_app()
    process = start_child(app)
    first = process.child_pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: not process.running)
    client = app.test_client()
    wait_for(lambda: client.get("/nowhere") and process.running, timeout=10)  # after the restart delay
    assert process.wait_ready(20.0)
    assert process.child_pid != first
    verify_one(app, conversion, provider_emulator, "+8613800000004")
    wait_for(lambda: provider_emulator.conversions())


def test_a_child_that_cannot_build_the_app_hands_delivery_back(
    make_process_app: ProcessApp, caplog: pytest.LogCaptureFixture
) -> None:
    app, _ = make_process_app()
    state = app.extensions["otp_conversion"]
    process = state.delivery_process
    process._start["config"]["OTP_CONVERSION_BREAKER_THRESHOLD"] = 0  # the child's validation refuses it
    with caplog.at_level(logging.ERROR, logger="flask_otp_conversion"):
        assert process.ensure_running()
        wait_for(lambda: not process.ensure_running())
    assert "BREAKER_THRESHOLD" in caplog.text
    app.test_client().get("/nowhere")
    assert state.reporter.running  # the web worker delivers itself now


@pytest.mark.parametrize(
    "code",
    [
        # a line the parent cannot act on first: its reader must survive it to see the death
        "print('{\"log\": \"loud\"}', flush=True); raise SystemExit(3)",
        "import time; time.sleep(120)",  # never ready, never gone: killed after READY_TIMEOUT
    ],
    ids=["exits", "hangs"],
)
def test_a_child_that_never_gets_ready_is_given_up_after_three_tries(tmp_path: Path, code: str) -> None:
    now = [0.0]
    process = DeliveryProcess(
        config={},
        instance_path=str(tmp_path),
        nice=0,
        idle=False,
        shutdown_timeout=1.0,
        sender=lambda: None,
        logger=logging.getLogger("flask_otp_conversion"),
        clock=lambda: now[0],
        command=[sys.executable, "-c", code],
    )
    children = set()
    while process.ensure_running():
        if process._proc is not None:
            children.add(process._proc.pid)
        now[0] += max(RESTART_MOST, READY_TIMEOUT) + 1  # past any restart delay, and any wait for readiness
        time.sleep(0.01)
    assert len(children) == GIVE_UP_AFTER
    assert all(gone(pid) for pid in children)


def test_the_child_runs_on_a_python_even_where_sys_executable_is_not_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "executable", "/usr/bin/uwsgi")
    found = interpreter()
    assert os.path.basename(found).startswith("python")
    assert subprocess.run([found, "-c", "import flask_otp_conversion"], check=False).returncode == 0


def test_the_child_stops_when_its_parent_is_killed(
    tmp_path: Path, provider_emulator: ProviderEmulator, provider_emulator_server: Any
) -> None:
    config = provider_emulator.app_config("tencent", provider_emulator_server.url)
    config["OTP_CONVERSION_PROVIDER"] = "tencent"
    script = textwrap.dedent(
        f"""
        import json, logging, sys, time
        from flask_otp_conversion.delivery.process import DeliveryProcess
        p = DeliveryProcess(config={json.dumps(config)!r} and json.loads({json.dumps(json.dumps(config))}),
                            instance_path={str(tmp_path)!r}, nice=0, idle=False, shutdown_timeout=1.0,
                            sender=lambda: None, logger=logging.getLogger("x"))
        p._start["config"]["OTP_CONVERSION_STORE_URL"] = "sqlite:///" + {str(tmp_path / "o.db")!r}
        p.ensure_running()
        assert p.wait_ready(20)
        print(p.child_pid, flush=True)
        time.sleep(60)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        parent.kill()
        parent.wait()
        wait_for(lambda: gone(child), timeout=10)
    finally:
        parent.kill()


def test_the_child_exits_cleanly_when_its_stdin_ends(
    tmp_path: Path, provider_emulator: ProviderEmulator, provider_emulator_server: Any
) -> None:
    config = {
        **provider_emulator.app_config("tencent", provider_emulator_server.url),
        "OTP_CONVERSION_PROVIDER": "tencent",
        "OTP_CONVERSION_STORE_URL": f"sqlite:///{tmp_path / 'o.db'}",
    }
    start = {"config": config, "instance_path": str(tmp_path), "nice": 0, "forward": [], "log_level": 20}
    child = subprocess.run(
        [sys.executable, "-m", "flask_otp_conversion.delivery.child"],
        input=json.dumps(start).encode() + b"\n",
        capture_output=True,
        timeout=60,
    )
    assert child.returncode == 0, child.stderr.decode()
    assert child.stderr == b""
    assert child_pid_of(child.stdout) not in (0, os.getpid())  # it came up, then stopped on the end of stdin


def test_the_deliverers_stats_say_it_delivers_through_its_child(make_process_app: ProcessApp) -> None:
    app, _ = make_process_app(OTP_CONVERSION_STATS_TOKEN="token")
    start_child(app)
    shown = app.test_client().get("/otp-conversion/stats", headers={"Authorization": "Bearer token"}).get_json()
    assert shown["reporter"]["delivering"] is True
    assert not app.extensions["otp_conversion"].reporter.running
