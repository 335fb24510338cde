"""The worker end to end: a real SQLite outbox, the real provider clients over HTTP to the provider emulator,
real threads, subprocesses and a fork."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections import Counter
from typing import Any

import pytest
from delivery_helpers import (
    LOGGER,
    VARIANTS,
    Env,
    make_provider_factory,
    max_per_second,
    pending,
    run_child,
    spawn,
    wait_for,
)

from flask_otp_conversion import signals
from flask_otp_conversion.config import Settings
from flask_otp_conversion.providers import Provider
from flask_otp_conversion.testing import Fault

Received = dict[str, list[dict[str, Any]]]

# Delivery ------------------------------------------------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_the_loop_reports_every_row_exactly_once(env: Env, variant: str, received: Received) -> None:
    reporter, store = env.reporter(variant)
    ids = env.seed(store, 60)
    reporter.ensure_running()
    assert wait_for(lambda: pending(store) == 0)
    assert env.delivered() == Counter({i: 1 for i in ids})
    assert sorted(r["report"].message_id for r in received["conversion-reported"]) == sorted(ids)
    assert reporter.breaker_state == "closed"


@pytest.mark.timeout(60)
def test_flush_delivers_without_starting_the_loop_thread(env: Env) -> None:
    reporter, store = env.reporter()
    ids = env.seed(store, 20)
    assert reporter.flush(20) == 0
    assert not reporter.running
    assert env.delivered() == Counter({i: 1 for i in ids})


@pytest.mark.timeout(60)
def test_flush_beside_a_running_loop_waits_until_nothing_is_due(env: Env) -> None:
    reporter, store = env.reporter()
    reporter.ensure_running()
    ids = env.seed(store, 30)
    assert reporter.flush(20) == 0
    assert set(env.delivered()) == set(ids)


@pytest.mark.timeout(60)
def test_while_the_worker_serves_requests_only_reports_older_than_the_window_go(env: Env) -> None:
    reporter, store = env.reporter(busy=lambda: True, yield_to_requests=30)
    old = env.seed(store, 3, age=40)
    fresh = env.seed(store, 3)
    reporter.ensure_running()
    assert wait_for(lambda: set(env.delivered()) == set(old))
    time.sleep(0.5)
    assert set(env.delivered()) == set(old)  # the fresh ones wait out the window
    assert pending(store) == len(fresh)


@pytest.mark.timeout(60)
def test_a_flush_does_not_hold_back_for_the_requests(env: Env) -> None:
    reporter, store = env.reporter(busy=lambda: True, yield_to_requests=30)
    reporter.ensure_running()
    ids = env.seed(store, 5)
    assert reporter.flush(20) == 0
    assert set(env.delivered()) == set(ids)


@pytest.mark.timeout(60)
def test_a_quiet_worker_delivers_at_once(env: Env) -> None:
    reporter, store = env.reporter(busy=lambda: False, yield_to_requests=30)
    ids = env.seed(store, 5)
    reporter.ensure_running()
    assert wait_for(lambda: pending(store) == 0)
    assert set(env.delivered()) == set(ids)


def senders() -> int:
    return sum(thread.name.startswith("otp-conversion-sender-") for thread in threading.enumerate())


@pytest.mark.timeout(60)
def test_a_fast_provider_is_served_without_starting_every_sender(env: Env) -> None:
    before = senders()
    reporter, store = env.reporter(report_concurrency=64)
    env.seed(store, 40)
    assert reporter.flush(20) == 0
    assert 1 <= senders() - before < 64  # they start as rows wait for them, not all at once


@pytest.mark.timeout(60)
def test_flush_returns_what_is_still_pending_at_its_deadline(env: Env) -> None:
    reporter, store = env.reporter(rate_limits={"ReportConversion": 4})
    env.seed(store, 30)
    left = reporter.flush(0.5)
    assert 0 < left < 30
    assert left == pending(store)


@pytest.mark.timeout(60)
def test_stop_makes_no_calls_in_a_process_that_never_started_delivering(env: Env) -> None:
    reporter, store = env.reporter()
    env.seed(store, 5)
    reporter.stop(2)
    assert env.calls() == []
    assert pending(store) == 5


@pytest.mark.timeout(60)
def test_stop_hands_claimed_rows_back_to_the_outbox(env: Env) -> None:
    reporter, store = env.reporter(rate_limits={"ReportConversion": 4})
    env.seed(store, 30)
    reporter.ensure_running()
    assert wait_for(lambda: len(env.calls()) >= 1)
    reporter.stop(0.2)
    stats = store.outbox_stats(now=time.time())
    assert stats.in_flight == 0  # nothing left under this process's lease
    assert stats.pending == 30 - len(env.delivered())


@pytest.mark.timeout(60)
def test_a_raising_signal_receiver_does_not_stop_delivery(env: Env) -> None:
    def explode(sender: object, **kwargs: Any) -> None:
        raise RuntimeError("receiver bug")

    signals.conversion_reported.connect(explode, sender=env)
    try:
        reporter, store = env.reporter()
        ids = env.seed(store, 10)
        reporter.ensure_running()
        assert wait_for(lambda: pending(store) == 0)
        assert set(env.delivered()) == set(ids)
        assert reporter.running
    finally:
        signals.conversion_reported.disconnect(explode, sender=env)


@pytest.mark.timeout(60)
def test_rows_older_than_max_report_age_are_dead_lettered_without_a_call(env: Env, received: Received) -> None:
    reporter, store = env.reporter(max_report_age=3600)
    env.seed(store, 3, age=7200)
    assert reporter.flush(10) == 0
    assert env.calls() == []
    dead = store.dead_letters()
    assert len(dead) == 3
    assert all(d.reason.startswith("expired") for d in dead)
    assert len(received["conversion-dead-lettered"]) == 3


@pytest.mark.timeout(60)
def test_stop_logs_a_summary_of_what_was_delivered(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    reporter, store = env.reporter()
    env.seed(store, 4)
    with caplog.at_level(logging.INFO, logger=LOGGER.name):
        reporter.flush(10)
        reporter.stop(1)
    summaries = [r.getMessage() for r in caplog.records if "reported" in r.getMessage()]
    assert summaries == [summaries[0]] and summaries[0].startswith("otp-conversion: 4 reported, 0 retried")


# Failures ------------------------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_rows_are_retried_after_500s_and_hangs_and_all_delivered(env: Env, received: Received) -> None:
    reporter, store = env.reporter()
    ids = env.seed(store, 10)
    env.emu.inject(env.action, Fault.http_500(times=6))
    env.emu.inject(env.action, Fault.hang(3.0, times=2))
    assert reporter.flush(45) == 0
    assert set(env.delivered()) == set(ids)
    assert received["conversion-failed"]
    assert received["breaker-opened"]
    assert received["breaker-closed"]
    assert reporter.breaker_state == "closed"


@pytest.mark.timeout(60)
def test_the_breaker_opens_and_stops_calls_until_its_probe(env: Env, received: Received) -> None:
    reporter, store = env.reporter(breaker_threshold=3, breaker_reset_timeout=30)
    env.seed(store, 40)
    env.emu.inject(env.action, Fault.http_500())
    reporter.flush(1.5)
    assert reporter.breaker_state == "open"
    assert len(received["breaker-opened"]) == 1
    calls = len(env.calls())
    assert calls < 3 + 8  # the threshold, and what was already in flight when it opened
    time.sleep(0.5)
    assert len(env.calls()) == calls


@pytest.mark.timeout(60)
def test_a_probe_that_gets_no_token_in_its_window_does_not_jam_the_breaker(env: Env) -> None:
    """The probe jam. At 1 report/s, after one failure opens the breaker, the probe's sender starts late (its
    client is slow to build) and finds no rate-limit token within the row's send window, so the row is handed
    back. The reporter used to leave the breaker half-open then, and never deliver again; now the hand-back
    settles the probe, a later probe goes, and everything is delivered."""
    reporter, store = env.reporter(
        report_concurrency=2,
        breaker_threshold=1,
        breaker_reset_timeout=0.3,
        rate_limits={"ReportConversion": 1},
        factory=slow_after_two,
    )
    ids = env.seed(store, 2)
    env.emu.inject(env.action, Fault.http_500(times=1))
    assert reporter.flush(20) == 0
    assert set(env.delivered()) == set(ids)
    assert reporter.breaker_state == "closed"


def slow_after_two(settings: Settings) -> Any:
    """A factory whose third and later clients take 0.1 s to build: the first sender starts on time, the
    next one's first request starts well after its row was claimed."""
    inner = make_provider_factory(settings)
    built = [0]

    def factory() -> Provider:
        built[0] += 1
        if built[0] > 2:
            time.sleep(0.1)
        return inner()

    return factory


@pytest.mark.timeout(60)
def test_the_rate_cap_holds_in_every_second_at_the_provider(env: Env) -> None:
    reporter, store = env.reporter(rate_limits={"ReportConversion": 10})
    env.seed(store, 40)
    assert reporter.flush(30) == 0
    assert len(env.calls()) == 40
    assert max_per_second([c.received_at for c in env.calls()]) <= 10


@pytest.mark.timeout(60)
def test_processes_sharing_a_store_share_one_rate_budget(env: Env) -> None:
    _, store = env.reporter()
    env.seed(store, 40)
    children = [spawn(env, "drain", overrides={"rate_limits": {"ReportConversion": 10}}) for _ in range(3)]
    try:
        assert wait_for(lambda: pending(store) == 0, timeout=40)
    finally:
        for child in children:
            child.kill()
            child.communicate()
    assert len(env.calls()) == 40
    assert max_per_second([c.received_at for c in env.calls()]) <= 10


@pytest.mark.timeout(60)
def test_throttling_pauses_and_retries_without_opening_the_breaker(env: Env, received: Received) -> None:
    reporter, store = env.reporter()
    ids = env.seed(store, 8)
    env.emu.inject(env.action, Fault.throttle(retry_after=0.2, times=6))
    assert reporter.flush(30) == 0
    assert set(env.delivered()) == set(ids)
    assert len(received["conversion-failed"]) == 6
    assert "breaker-opened" not in received


@pytest.mark.timeout(60)
def test_an_auth_failure_opens_the_breaker_and_logs_once(
    env: Env, caplog: pytest.LogCaptureFixture, received: Received
) -> None:
    reporter, store = env.reporter(report_concurrency=2, tencent_secret_key="not-the-key")
    env.seed(store, 30)
    with caplog.at_level(logging.ERROR, logger=LOGGER.name):
        left = reporter.flush(1.5)  # long enough for a few half-open probes at 0.3 s, 0.6 s, ...
    assert left == 30
    assert reporter.breaker_state in ("open", "half-open")
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "credentials" in errors[0].getMessage()
    assert "not-the-key" not in caplog.text
    assert len(env.calls()) < 10
    assert received["breaker-opened"]


@pytest.mark.timeout(60)
def test_a_permanent_error_dead_letters_and_a_replay_delivers(env: Env, received: Received) -> None:
    reporter, store = env.reporter()
    ids = env.seed(store, 3)
    env.emu.inject(env.action, Fault.error("InvalidParameterValue.IncorrectPhoneNumber", "bad number", times=3))
    assert reporter.flush(10) == 0
    dead = store.dead_letters()
    assert sorted(d.message_id for d in dead) == sorted(ids)
    assert all("InvalidParameterValue.IncorrectPhoneNumber" in d.reason for d in dead)
    assert len(received["conversion-dead-lettered"]) == 3
    assert store.replay_dead_letters(now=time.time()) == 3
    assert reporter.flush(10) == 0
    assert set(env.delivered()) == set(ids)


@pytest.mark.timeout(60)
def test_a_dead_letter_reason_and_last_error_show_the_tencent_serial_number(env: Env) -> None:
    reporter, store = env.reporter()
    [serial] = env.seed(store, 1)
    env.emu.inject(env.action, Fault.error("FailedOperation", f"serial {serial} refused", times=1))
    assert reporter.flush(10) == 0
    [dead] = store.dead_letters()
    assert serial in dead.reason
    env.seed(store, 1)
    env.emu.inject(env.action, Fault.error("InternalError", f"serial {serial} failed", times=1))
    reporter.flush(0.2)
    assert reporter.last_error is not None and serial in reporter.last_error


# Degradation ---------------------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_configured_degradation_sets_the_flag_and_makes_no_calls(env: Env) -> None:
    reporter, store = env.reporter(degraded=True)
    env.seed(store, 5)
    assert reporter.flush(5) == 5
    assert env.calls() == []
    assert store.get_flag("degraded") == "1"
    reporter.set_degraded(False)
    assert reporter.flush(10) == 0
    assert len(env.delivered()) == 5


@pytest.mark.timeout(60)
def test_a_stored_degrade_switch_survives_a_restart_with_degraded_false(env: Env) -> None:
    first, store = env.reporter()
    first.set_degraded(True)
    second, _ = env.reporter(store=store)
    env.seed(store, 3)
    assert second.flush(2) == 3
    assert env.calls() == []


@pytest.mark.timeout(60)
def test_another_process_degrading_stops_and_resumes_delivery(env: Env) -> None:
    reporter, store = env.reporter()
    reporter.ensure_running()
    run_child(env, "degrade", on=True)
    assert wait_for(lambda: reporter.degraded, timeout=5)
    env.seed(store, 10)
    time.sleep(1.5)  # the running loop gets several chances to (wrongly) send
    assert env.calls() == []
    assert pending(store) == 10
    run_child(env, "degrade", on=False)
    assert wait_for(lambda: pending(store) == 0)
    assert len(env.delivered()) == 10


# Processes -----------------------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_kill_9_with_rows_in_flight_then_a_restart_delivers_everything(env: Env) -> None:
    _, store = env.reporter()
    ids = env.seed(store, 40)
    env.emu.latency = 0.3
    child = spawn(env, "drain", overrides={"report_concurrency": 4, "http_read_timeout": 2.0})
    try:
        assert wait_for(lambda: len(env.calls()) >= 6)
    finally:
        child.send_signal(signal.SIGKILL)
        child.communicate()
    in_flight_at_kill = store.outbox_stats(now=time.time()).in_flight
    env.emu.latency = 0.0
    restarted, _ = env.reporter(store=store)
    assert restarted.flush(30) == 0
    delivered = env.delivered()
    assert set(delivered) == set(ids)
    assert len([i for i, n in delivered.items() if n > 1]) <= in_flight_at_kill


@pytest.mark.timeout(60)
def test_exit_flushes_rows_left_in_the_outbox(env: Env) -> None:
    run_child(env, "exit-with-rows", count=20)
    _, store = env.reporter()
    assert pending(store) == 0
    assert len(env.delivered()) == 20


@pytest.mark.timeout(60)
def test_exit_leaves_what_cannot_go_within_the_deadline_in_the_outbox(env: Env) -> None:
    run_child(
        env, "exit-with-rows", count=30, overrides={"rate_limits": {"ReportConversion": 4}, "shutdown_timeout": 2.0}
    )
    _, store = env.reporter()
    stats = store.outbox_stats(now=time.time())
    assert 0 < stats.pending < 30
    assert stats.in_flight == 0  # handed back, not left to a lease
    assert len(env.delivered()) + stats.pending == 30


@pytest.mark.timeout(60)
def test_a_forked_child_reports_with_its_own_threads_store_connection_and_client(env: Env) -> None:
    built: list[int] = []

    def counting(settings: Settings) -> Any:
        inner = make_provider_factory(settings)

        def factory() -> Provider:
            built.append(os.getpid())
            return inner()

        return factory

    reporter, store = env.reporter(factory=counting)
    env.seed(store, 5)
    reporter.ensure_running()
    assert wait_for(lambda: pending(store) == 0)

    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 1
        try:
            reported: list[Any] = []
            signals.conversion_reported.connect(lambda s, **kw: reported.append(kw["report"]), sender=env, weak=False)
            env._sender = None  # the parent's keep-alive sockets are not ours to use
            child_ids = env.seed(store, 5)
            reporter.ensure_running()
            ok = wait_for(lambda: len(reported) == 5, timeout=20)
            mine = sorted(r.message_id for r in reported)
            code = 0 if ok and reporter.running and built[-1] == os.getpid() and mine == sorted(child_ids) else 2
        finally:
            os._exit(code)
    reporter.stop(5)  # the parent stops before the child delivers
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert len(env.delivered()) == 10
    assert all(n == 1 for n in env.delivered().values())


@pytest.mark.timeout(60)
def test_requests_that_wait_for_the_rate_cap_are_counted_in_the_store(env: Env) -> None:
    reporter, store = env.reporter(rate_limits={"ReportConversion": 20.0})
    env.seed(store, 30)
    assert reporter.flush(20) == 0
    rows = store.delivery_counts(since=time.time() - 7200, until=time.time() + 3600)
    assert sum(row.rate_limit_waits for row in rows) >= 10  # 30 at 20/s: most wait for their slot
    assert sum(row.rate_limit_wait_seconds for row in rows) > 0.2


@pytest.mark.timeout(60)
def test_a_slow_provider_gets_its_senders_while_claimed_rows_wait(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    # The first claim (sized for a 0.25 s latency before any answer) takes all 128 rows; at 0.3 s the next claim
    # is smaller than what already waits, so the senders must grow without one. Two senders would leave most
    # rows unstarted past their send window, to be handed back and claimed again.
    reporter, store = env.reporter(report_concurrency=64)
    ids = env.seed(store, 128)
    env.emu.latency = 0.3
    with caplog.at_level(logging.DEBUG, logger="flask_otp_conversion"):
        assert reporter.flush(20) == 0
    assert [r.getMessage() for r in caplog.records if "handing back" in r.getMessage()] == []
    assert env.delivered() == Counter({i: 1 for i in ids})
