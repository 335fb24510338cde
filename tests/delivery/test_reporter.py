"""The reporter, end to end: a real store (SQLite files under tmp_path), the real provider clients talking
HTTP to the provider emulator, real threads, real subprocesses and a real fork."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from flask_otp_conversion import signals
from flask_otp_conversion.config import Settings, load_settings, make_provider
from flask_otp_conversion.delivery.activity import BUSY_POLL
from flask_otp_conversion.delivery.reporter import Reporter, backoff_delay
from flask_otp_conversion.providers import Provider
from flask_otp_conversion.redaction import safe_text as redact
from flask_otp_conversion.store import Store, open_store
from flask_otp_conversion.testing import EmulatorServer, Fault, ProviderEmulator

REPO = Path(__file__).resolve().parent.parent
LOGGER = logging.getLogger("flask_otp_conversion.tests.reporter")

# Tencent, Alibaba international site (dysmsapi 2018-05-01 SmsConversion), Alibaba China site (2017-05-25
# SmsConversionIntl).
VARIANTS = {
    "tencent": ("tencent", "ReportConversion", {}),
    "alibaba-intl": ("alibaba", "SmsConversion", {"SITE": "intl"}),
    "alibaba-china": ("alibaba", "SmsConversionIntl", {"SITE": "china"}),
}


def provider_config(emu: ProviderEmulator, url: str, variant: str = "tencent") -> dict[str, Any]:
    name, _, extra = VARIANTS[variant]
    if name == "tencent":
        keys = {
            "SECRET_ID": emu.TENCENT_SECRET_ID,
            "SECRET_KEY": emu.TENCENT_SECRET_KEY,
            "SDK_APP_ID": emu.TENCENT_SDK_APP_ID,
            "ENDPOINT": url,
            "SIGN_NAME": "TestSign",
            "TEMPLATE_ID": "1110",
        }
    else:
        keys = {
            "ACCESS_KEY_ID": emu.ALIBABA_ACCESS_KEY_ID,
            "ACCESS_KEY_SECRET": emu.ALIBABA_ACCESS_KEY_SECRET,
            "ENDPOINT": url,
            "SIGN_NAME": "TestSign",
            "TEMPLATE_CODE": "SMS_123456",
            **extra,
        }
    config: dict[str, Any] = {"OTP_CONVERSION_PROVIDER": name}
    config.update({f"OTP_CONVERSION_{name.upper()}_{k}": v for k, v in keys.items()})
    return config


def base_config(
    emu: ProviderEmulator, url: str, db: Path, variant: str = "tencent", **overrides: Any
) -> dict[str, Any]:
    """Short timeouts so that leases (connect + read + 3 s) and breaker probes fit a fast suite."""
    config = provider_config(emu, url, variant)
    config.update(
        {
            "OTP_CONVERSION_STORE_URL": f"sqlite:///{db}",
            "OTP_CONVERSION_HTTP_CONNECT_TIMEOUT": 0.5,
            "OTP_CONVERSION_HTTP_READ_TIMEOUT": 1.0,
            "OTP_CONVERSION_BREAKER_RESET_TIMEOUT": 0.3,
            "OTP_CONVERSION_REPORT_CONCURRENCY": 8,
        }
    )
    config.update({f"OTP_CONVERSION_{k.upper()}": v for k, v in overrides.items()})
    return config


def make_provider_factory(settings: Settings) -> Callable[[], Provider]:
    return lambda: make_provider(settings)


class Env:
    """One app's worth of parts: settings, store, reporter, and the emulator they talk to."""

    def __init__(self, tmp_path: Path, emu: ProviderEmulator, url: str) -> None:
        self.tmp_path = tmp_path
        self.emu = emu
        self.url = url
        self.db = tmp_path / "otp.db"
        self.variant = "tencent"
        self.reporters: list[Reporter] = []
        self.stores: list[Store] = []
        self._sender: Provider | None = None
        self._seq = 0

    def config(self, variant: str | None = None, **overrides: Any) -> dict[str, Any]:
        return base_config(self.emu, self.url, self.db, variant or self.variant, **overrides)

    def store(self) -> Store:
        store = open_store(f"sqlite:///{self.db}")
        self.stores.append(store)
        return store

    def reporter(
        self,
        variant: str | None = None,
        *,
        store: Store | None = None,
        busy: Callable[[], bool] | None = None,
        **overrides: Any,
    ) -> tuple[Reporter, Store]:
        if variant is not None:
            self.variant = variant
        settings = load_settings(self.config(**overrides), instance_path=str(self.tmp_path))
        store = store or self.store()
        reporter = Reporter(
            store=store,
            provider_factory=make_provider_factory(settings),
            settings=settings,
            sender=self,
            logger=LOGGER,
            busy=busy,
        )
        self.reporters.append(reporter)
        return reporter, store

    def seed(self, store: Store, count: int, *, age: float = 0.0) -> list[str]:
        """Send ``count`` OTPs through the provider (the emulator only takes reports of messages it sent),
        record each send and its verification ``age`` seconds ago as the extension does; returns the ids."""
        if self._sender is None:
            settings = load_settings(self.config(), instance_path=str(self.tmp_path))
            self._sender = make_provider_factory(settings)()
        provider = VARIANTS[self.variant][0]
        ids = []
        for _ in range(count):
            self._seq += 1
            phone = f"+65{81000000 + self._seq}"
            message_id = self._sender.send_otp(phone, "123456").message_id
            now = time.time()
            assert store.record_sent(phone=phone, message_id=message_id, provider=provider, sent_at=now - age - 1)
            outcome = store.record_verified(
                phone=phone, message_id=message_id, provider=provider, verified_at=now - age, match_window=900
            )
            assert outcome.enqueued
            ids.append(message_id)
        return ids

    @property
    def action(self) -> str:
        return VARIANTS[self.variant][1]

    def calls(self) -> list[Any]:
        return self.emu.calls(action=self.action)

    def delivered(self) -> Counter[str]:
        """Message id -> number of successful report calls the provider received for it."""
        return Counter(reported_id(call) for call in self.calls() if call.ok)

    def close(self) -> None:
        for reporter in self.reporters:
            reporter.stop(0)
        for store in self.stores:
            store.close()
        if self._sender is not None:
            self._sender.close()


def reported_id(call: Any) -> str:
    params = call.params
    return str(params.get("SerialNo") or params.get("MessageId"))


@pytest.fixture
def env(tmp_path: Path, provider_emulator: ProviderEmulator, provider_emulator_server: EmulatorServer) -> Iterator[Env]:
    e = Env(tmp_path, provider_emulator, provider_emulator_server.url)
    yield e
    e.close()


@pytest.fixture
def received() -> Iterator[dict[str, list[dict[str, Any]]]]:
    """Every reporter signal sent while the test runs, by signal name."""
    seen: dict[str, list[dict[str, Any]]] = {}
    sigs = [
        signals.conversion_reported,
        signals.conversion_failed,
        signals.conversion_dead_lettered,
        signals.breaker_opened,
        signals.breaker_closed,
    ]
    receivers = []
    for sig in sigs:

        def receiver(sender: object, _name: str = sig.name, **kwargs: Any) -> None:
            seen.setdefault(_name, []).append(kwargs)

        sig.connect(receiver)
        receivers.append((sig, receiver))
    yield seen
    for sig, receiver in receivers:
        sig.disconnect(receiver)


def wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def pending(store: Store) -> int:
    return store.outbox_stats(now=time.time()).pending


def max_per_second(times: list[float]) -> int:
    """The most calls received within any window shorter than one second."""
    times = sorted(times)
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while t - times[lo] >= 1.0:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


# Subprocesses run this with a JSON job: build the same parts from the same config and do one thing.
CHILD = textwrap.dedent(
    """
    import atexit, json, logging, sys, time
    from flask_otp_conversion.config import load_settings, make_provider
    from flask_otp_conversion.delivery.reporter import Reporter
    from flask_otp_conversion.store import open_store

    job = json.loads(sys.argv[1])
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    settings = load_settings(job["config"], instance_path=job["instance_path"])
    store = open_store(job["config"]["OTP_CONVERSION_STORE_URL"])

    def factory():
        return make_provider(settings)

    reporter = Reporter(store=store, provider_factory=factory, settings=settings, sender=None,
                        logger=logging.getLogger("child"))
    action = job["action"]
    if action == "degrade":
        reporter.set_degraded(job["on"])
    elif action == "drain":
        reporter.ensure_running()
        print("running", flush=True)
        while True:
            time.sleep(1)
    elif action == "exit-with-rows":
        atexit.register(reporter.stop)
        reporter.ensure_running()
        sender = factory()
        for n in range(job["count"]):
            phone = "+6582%06d" % n
            message_id = sender.send_otp(phone, "123456").message_id
            now = time.time()
            store.record_sent(phone=phone, message_id=message_id, provider="tencent", sent_at=now - 1)
            store.record_verified(phone=phone, message_id=message_id, provider="tencent", verified_at=now,
                                  match_window=900)
        print("exiting", flush=True)
        sys.exit(0)
    """
)


def spawn(env: Env, action: str, **job: Any) -> subprocess.Popen[str]:
    job = {
        "config": env.config(**job.pop("overrides", {})),
        "instance_path": str(env.tmp_path),
        "action": action,
        **job,
    }
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, json.dumps(job)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_child(env: Env, action: str, **job: Any) -> subprocess.CompletedProcess[str]:
    proc = spawn(env, action, **job)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


# Pure helpers ---------------------------------------------------------------------------------------------


def test_backoff_is_full_jitter_under_an_exponential_ceiling() -> None:
    assert backoff_delay(3, rng=lambda: 0.999) == pytest.approx(8 * 0.999)
    assert backoff_delay(3, rng=lambda: 0.0) == 0.0


def test_backoff_ceiling_is_capped() -> None:
    assert backoff_delay(40, rng=lambda: 1.0, cap=300) == 300


def test_backoff_never_undercuts_the_providers_retry_after() -> None:
    assert backoff_delay(0, 7.5, rng=lambda: 0.5) == 7.5


def test_redact_masks_phone_numbers_and_drops_url_queries() -> None:
    text = redact("bad number +8613711112222 at https://x.example/?AccessKeyId=LTAIabc&Signature=zzz")
    assert "13711112222" not in text
    assert "+86*********22" in text
    assert "LTAIabc" not in text
    assert "Signature" not in text


# Delivery ------------------------------------------------------------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_background_thread_reports_every_row_exactly_once(
    env: Env, variant: str, received: dict[str, list[dict[str, Any]]]
) -> None:
    reporter, store = env.reporter(variant)
    ids = env.seed(store, 60)
    reporter.ensure_running()
    assert wait_for(lambda: pending(store) == 0)
    assert env.delivered() == Counter({i: 1 for i in ids})
    assert sorted(r["report"].message_id for r in received["conversion-reported"]) == sorted(ids)
    assert reporter.breaker_state == "closed"


@pytest.mark.timeout(60)
def test_while_requests_are_in_flight_fresh_reports_wait_and_go_when_they_end(env: Env) -> None:
    in_flight = threading.Event()
    in_flight.set()
    reporter, store = env.reporter(busy=in_flight.is_set, yield_to_requests=30)
    ids = env.seed(store, 5)
    reporter.ensure_running()
    time.sleep(1.0)
    assert env.delivered() == Counter()
    in_flight.clear()
    assert wait_for(lambda: pending(store) == 0)
    assert set(env.delivered()) == set(ids)


@pytest.mark.timeout(60)
def test_reports_held_back_for_the_whole_window_go_out_while_requests_continue(env: Env) -> None:
    reporter, store = env.reporter(busy=lambda: True, yield_to_requests=3)
    old = env.seed(store, 3, age=10.0)
    fresh = env.seed(store, 3)
    reporter.ensure_running()
    assert wait_for(lambda: set(env.delivered()) == set(old), timeout=2.0)
    assert wait_for(lambda: set(env.delivered()) == set(old + fresh), timeout=10.0)


@pytest.mark.timeout(60)
def test_the_drain_thread_looks_at_a_busy_worker_once_a_busy_poll(env: Env) -> None:
    looks: list[float] = []

    def busy() -> bool:
        looks.append(time.monotonic())
        return True

    reporter, store = env.reporter(busy=busy, yield_to_requests=30)
    ids = env.seed(store, 2)
    reporter.ensure_running()
    time.sleep(2.5 * BUSY_POLL)
    seen = len(looks)
    assert 1 <= seen <= 3  # every 0.1 s, it would have been ~25
    assert env.delivered() == Counter()
    assert reporter.flush(20) == 0
    assert set(env.delivered()) == set(ids)


@pytest.mark.timeout(60)
def test_flush_does_not_hold_back_for_requests_in_flight(env: Env) -> None:
    reporter, store = env.reporter(busy=lambda: True, yield_to_requests=30)
    ids = env.seed(store, 5)
    assert reporter.flush(20) == 0
    assert set(env.delivered()) == set(ids)


@pytest.mark.timeout(60)
def test_flush_delivers_from_the_callers_thread_without_starting_the_reporter(env: Env) -> None:
    reporter, store = env.reporter()
    ids = env.seed(store, 20)
    assert reporter.flush(20) == 0
    assert not reporter.running
    assert set(env.delivered()) == set(ids)


@pytest.mark.timeout(60)
def test_stop_makes_no_calls_in_a_process_that_never_started_delivering(env: Env) -> None:
    reporter, store = env.reporter()
    env.seed(store, 5)
    reporter.stop(2)
    assert env.calls() == []
    assert pending(store) == 5


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
def test_rows_older_than_max_report_age_are_dead_lettered_without_a_call(
    env: Env, received: dict[str, list[dict[str, Any]]]
) -> None:
    reporter, store = env.reporter(max_report_age=3600)
    env.seed(store, 3, age=7200)
    assert reporter.flush(10) == 0
    assert env.calls() == []
    dead = store.dead_letters()
    assert len(dead) == 3
    assert all(d.reason.startswith("expired") for d in dead)
    assert len(received["conversion-dead-lettered"]) == 3


# Failures ------------------------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_outage_of_500s_then_hangs_delivers_everything_after_recovery(
    env: Env, received: dict[str, list[dict[str, Any]]]
) -> None:
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
def test_observed_rate_never_exceeds_the_configured_cap(env: Env) -> None:
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
def test_workers_that_start_after_their_token_expired_still_deliver_everything(env: Env) -> None:
    settings = load_settings(env.config(report_concurrency=2), instance_path=str(env.tmp_path))
    inner = make_provider_factory(settings)
    late: list[float] = []

    def slow_factory() -> Provider:  # each worker's first request starts well after its token's grant
        time.sleep(0.1)
        late.append(time.monotonic())
        return inner()

    store = env.store()
    reporter = Reporter(store=store, provider_factory=slow_factory, settings=settings, sender=env, logger=LOGGER)
    env.reporters.append(reporter)
    ids = env.seed(store, 6)
    assert reporter.flush(20) == 0
    assert len(late) == 3  # the reporter's own client and one per worker
    assert set(env.delivered()) == set(ids)


@pytest.mark.timeout(60)
def test_throttling_answers_are_retried_without_opening_the_breaker(
    env: Env, received: dict[str, list[dict[str, Any]]]
) -> None:
    reporter, store = env.reporter()
    ids = env.seed(store, 8)
    env.emu.inject(env.action, Fault.throttle(retry_after=0.2, times=6))
    assert reporter.flush(30) == 0
    assert set(env.delivered()) == set(ids)
    assert len(received["conversion-failed"]) == 6
    assert "breaker-opened" not in received


@pytest.mark.timeout(60)
def test_auth_failure_opens_the_breaker_and_logs_once(
    env: Env, caplog: pytest.LogCaptureFixture, received: dict[str, list[dict[str, Any]]]
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
    # Two in flight when the first failure came back, then one probe per reopening: far fewer than the rows.
    assert len(env.calls()) < 10
    assert received["breaker-opened"]


@pytest.mark.timeout(60)
def test_permanent_error_dead_letters_and_replay_delivers(env: Env, received: dict[str, list[dict[str, Any]]]) -> None:
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
    time.sleep(1.5)  # the running thread gets several chances to (wrongly) send
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
    twice = [i for i, n in delivered.items() if n > 1]
    assert len(twice) <= in_flight_at_kill


@pytest.mark.timeout(60)
def test_exit_flushes_rows_left_in_the_outbox(env: Env) -> None:
    run_child(env, "exit-with-rows", count=20)
    _, store = env.reporter()
    assert pending(store) == 0
    assert len(env.delivered()) == 20


@pytest.mark.timeout(60)
def test_exit_leaves_what_cannot_go_within_the_deadline(env: Env) -> None:
    run_child(
        env,
        "exit-with-rows",
        count=30,
        overrides={"rate_limits": {"ReportConversion": 4}, "shutdown_timeout": 0.5},
    )
    _, store = env.reporter()
    left = pending(store)
    assert 0 < left < 30
    assert len(env.delivered()) + left >= 30


@pytest.mark.timeout(60)
def test_a_forked_child_reports_with_its_own_thread_store_connection_and_client(env: Env) -> None:
    built: list[int] = []
    settings = load_settings(env.config(), instance_path=str(env.tmp_path))
    inner = make_provider_factory(settings)

    def factory() -> Provider:
        built.append(os.getpid())
        return inner()

    store = env.store()
    reporter = Reporter(store=store, provider_factory=factory, settings=settings, sender=env, logger=LOGGER)
    env.reporters.append(reporter)
    env.seed(store, 5)
    reporter.ensure_running()
    assert wait_for(lambda: pending(store) == 0)

    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 1
        try:
            reported: list[object] = []
            signals.conversion_reported.connect(lambda s, **kw: reported.append(kw["report"]), sender=env, weak=False)
            env._sender = None  # the parent's keep-alive sockets are not ours to use
            child_ids = env.seed(store, 5)
            reporter.ensure_running()
            ok = wait_for(lambda: len(reported) == 5, timeout=20)
            mine = sorted(r.message_id for r in reported)  # type: ignore[attr-defined]
            code = 0 if ok and reporter.running and built[-1] == os.getpid() and mine == sorted(child_ids) else 2
        finally:
            os._exit(code)
    reporter.stop(5)  # the parent stops before the child delivers
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert len(env.delivered()) == 10
    assert all(n == 1 for n in env.delivered().values())
