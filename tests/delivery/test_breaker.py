"""CircuitBreaker: pure state machine on a fake clock."""

from __future__ import annotations

import threading

import pytest

from flask_otp_conversion.delivery.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Events:
    def __init__(self) -> None:
        self.opened: list[tuple[str, float]] = []
        self.closed = 0

    def on_open(self, reason: str, retry_at: float) -> None:
        self.opened.append((reason, retry_at))

    def on_close(self) -> None:
        self.closed += 1


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def events() -> Events:
    return Events()


@pytest.fixture
def breaker(clock: FakeClock, events: Events) -> CircuitBreaker:
    return CircuitBreaker(
        threshold=3,
        reset_timeout=30,
        max_reset_timeout=100,
        clock=clock,
        on_open=events.on_open,
        on_close=events.on_close,
    )


def fail(breaker: CircuitBreaker, times: int, error: str = "InternalError") -> None:
    for _ in range(times):
        breaker.record_failure(error)


def open_and_probe(breaker: CircuitBreaker, clock: FakeClock) -> None:
    fail(breaker, breaker.threshold)
    clock.advance(breaker.current_reset_timeout)
    assert breaker.allow()


def test_starts_closed_and_allows_calls(breaker: CircuitBreaker) -> None:
    assert breaker.state == CLOSED
    assert breaker.allow()
    assert breaker.retry_at is None


def test_stays_closed_below_threshold(breaker: CircuitBreaker) -> None:
    fail(breaker, 2)
    assert breaker.state == CLOSED
    assert breaker.allow()


def test_opens_after_threshold_consecutive_failures(breaker: CircuitBreaker, events: Events) -> None:
    fail(breaker, 3, "InternalError.Timeout")
    assert breaker.state == OPEN
    assert events.opened == [("InternalError.Timeout", 1030.0)]


def test_success_resets_the_consecutive_count(breaker: CircuitBreaker) -> None:
    fail(breaker, 2)
    breaker.record_success()
    fail(breaker, 2)
    assert breaker.state == CLOSED


def test_auth_failure_opens_at_once(breaker: CircuitBreaker, events: Events) -> None:
    breaker.record_failure("AuthFailure.SecretIdNotFound", auth=True)
    assert breaker.state == OPEN
    assert breaker.last_error == "AuthFailure.SecretIdNotFound"
    assert len(events.opened) == 1


def test_open_breaker_refuses_calls_until_reset_timeout(breaker: CircuitBreaker, clock: FakeClock) -> None:
    fail(breaker, 3)
    clock.advance(29.9)
    assert not breaker.allow()
    assert breaker.retry_at == 1030.0


def test_after_reset_timeout_exactly_one_probe_is_allowed(breaker: CircuitBreaker, clock: FakeClock) -> None:
    fail(breaker, 3)
    clock.advance(30)
    assert breaker.allow()
    assert breaker.state == HALF_OPEN
    assert not breaker.allow()
    assert not breaker.allow()


def test_probe_success_closes_and_fires_on_close(breaker: CircuitBreaker, clock: FakeClock, events: Events) -> None:
    open_and_probe(breaker, clock)
    breaker.record_success()
    assert breaker.state == CLOSED
    assert breaker.last_error is None
    assert events.closed == 1
    assert breaker.allow()


def test_probe_failure_reopens_with_doubled_timeout(breaker: CircuitBreaker, clock: FakeClock, events: Events) -> None:
    open_and_probe(breaker, clock)
    breaker.record_failure("still down")
    assert breaker.state == OPEN
    assert breaker.retry_at == clock.now + 60
    assert len(events.opened) == 2


def test_reset_timeout_doubling_stops_at_the_cap(breaker: CircuitBreaker, clock: FakeClock) -> None:
    fail(breaker, 3)
    timeouts = []
    for _ in range(4):
        clock.advance(breaker.current_reset_timeout)
        assert breaker.allow()
        breaker.record_failure("down")
        timeouts.append(breaker.current_reset_timeout)
    assert timeouts == [60, 100, 100, 100]


def test_closing_restores_the_base_timeout(breaker: CircuitBreaker, clock: FakeClock) -> None:
    open_and_probe(breaker, clock)
    breaker.record_failure("down")
    clock.advance(60)
    assert breaker.allow()
    breaker.record_success()
    fail(breaker, 3)
    assert breaker.retry_at == clock.now + 30


def test_cancelled_probe_lets_the_next_caller_probe(breaker: CircuitBreaker, clock: FakeClock) -> None:
    open_and_probe(breaker, clock)
    breaker.cancel()
    assert breaker.state == OPEN
    assert breaker.allow()


def test_late_failures_do_not_extend_an_open_breaker(breaker: CircuitBreaker, clock: FakeClock, events: Events) -> None:
    fail(breaker, 3)
    clock.advance(10)
    fail(breaker, 5)
    assert breaker.retry_at == 1030.0
    assert len(events.opened) == 1


def test_late_success_does_not_close_an_open_breaker(breaker: CircuitBreaker, events: Events) -> None:
    fail(breaker, 3)
    breaker.record_success()
    assert breaker.state == OPEN
    assert events.closed == 0


def test_callbacks_may_reenter_the_breaker(clock: FakeClock) -> None:
    seen: list[str] = []
    breaker: CircuitBreaker

    def on_open(reason: str, retry_at: float) -> None:
        seen.append(breaker.state)
        breaker.allow()

    breaker = CircuitBreaker(threshold=1, clock=clock, on_open=on_open)
    breaker.record_failure("x")
    assert seen == [OPEN]


def test_concurrent_callers_get_a_single_probe(breaker: CircuitBreaker, clock: FakeClock) -> None:
    fail(breaker, 3)
    clock.advance(30)
    results: list[bool] = []
    lock = threading.Lock()
    start = threading.Barrier(16)

    def call() -> None:
        start.wait()
        allowed = breaker.allow()
        with lock:
            results.append(allowed)

    threads = [threading.Thread(target=call) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == 1


@pytest.mark.parametrize(
    "kwargs",
    [{"threshold": 0}, {"reset_timeout": 0}, {"reset_timeout": 10, "max_reset_timeout": 5}],
)
def test_rejects_nonsense_settings(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        CircuitBreaker(**kwargs)  # type: ignore[arg-type]
