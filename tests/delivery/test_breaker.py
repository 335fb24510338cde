"""The breaker as a pure state machine, driven with explicit times."""

from __future__ import annotations

import pytest

from flask_otp_conversion.delivery.breaker import CLOSED, HALF_OPEN, OPEN, Breaker, Closed, Opened, Probe

T0 = 1_000.0


def opened(threshold: int = 2, reset: float = 10.0, cap: float = 40.0, probe_timeout: float = 5.0) -> Breaker:
    breaker = Breaker(threshold=threshold, reset_timeout=reset, max_reset_timeout=cap, probe_timeout=probe_timeout)
    for _ in range(threshold):
        breaker.failure(T0, "boom")
    assert breaker.state == OPEN
    return breaker


def test_a_closed_breaker_admits_every_call() -> None:
    breaker = Breaker(threshold=3)
    assert all(breaker.admit(T0) is True for _ in range(10))


def test_it_opens_after_threshold_consecutive_failures() -> None:
    breaker = Breaker(threshold=3, reset_timeout=10.0)
    assert breaker.failure(T0, "a") is None
    assert breaker.failure(T0, "b") is None
    assert breaker.failure(T0, "c") == Opened("c", T0 + 10.0)
    assert breaker.admit(T0 + 1) is None


def test_a_success_resets_the_failure_count() -> None:
    breaker = Breaker(threshold=2)
    breaker.failure(T0, "a")
    breaker.success(T0)
    assert breaker.failure(T0, "b") is None
    assert breaker.state == CLOSED


def test_an_auth_failure_opens_at_once() -> None:
    breaker = Breaker(threshold=5, reset_timeout=10.0)
    assert isinstance(breaker.failure(T0, "auth", auth=True), Opened)


def test_after_the_reset_timeout_exactly_one_probe_is_admitted() -> None:
    breaker = opened(reset=10.0)
    assert breaker.admit(T0 + 9.9) is None
    probe = breaker.admit(T0 + 10.0)
    assert isinstance(probe, Probe)
    assert breaker.state == HALF_OPEN
    assert breaker.admit(T0 + 10.1) is None


def test_a_successful_probe_closes_the_breaker() -> None:
    breaker = opened()
    probe = breaker.admit(T0 + 10)
    assert isinstance(probe, Probe)
    assert breaker.success(T0 + 10.1, probe) == Closed()
    assert breaker.admit(T0 + 10.2) is True


def test_a_failed_probe_reopens_with_the_timeout_doubled_up_to_the_cap() -> None:
    breaker = opened(reset=10.0, cap=25.0)
    now = T0 + 10
    retry_ats = []
    for _ in range(3):
        probe = breaker.admit(now)
        assert isinstance(probe, Probe)
        transition = breaker.failure(now, "still down", probe)
        assert isinstance(transition, Opened)
        retry_ats.append(transition.retry_at - now)
        now = transition.retry_at
    assert retry_ats == [20.0, 25.0, 25.0]


def test_a_cancelled_probe_lets_the_next_one_out_at_once() -> None:
    breaker = opened()
    probe = breaker.admit(T0 + 10)
    assert isinstance(probe, Probe)
    breaker.cancel(probe)
    assert isinstance(breaker.admit(T0 + 10), Probe)


def test_a_probe_never_settled_expires_after_the_probe_timeout() -> None:
    breaker = opened(probe_timeout=5.0)
    forgotten = breaker.admit(T0 + 10)
    assert isinstance(forgotten, Probe)
    assert breaker.admit(T0 + 14.9) is None
    assert isinstance(breaker.admit(T0 + 15.0), Probe)


def test_the_answer_of_an_expired_probe_does_not_move_the_breaker() -> None:
    breaker = opened(probe_timeout=5.0)
    old = breaker.admit(T0 + 10)
    new = breaker.admit(T0 + 15)
    assert isinstance(old, Probe) and isinstance(new, Probe)
    assert breaker.success(T0 + 15.1, old) is None
    assert breaker.state == HALF_OPEN
    assert breaker.success(T0 + 15.2, new) == Closed()


def test_answers_to_calls_made_before_it_opened_do_not_move_it() -> None:
    breaker = opened()
    assert breaker.success(T0 + 1) is None
    assert breaker.failure(T0 + 1, "late") is None
    assert breaker.retry_at == T0 + 10


def test_blocked_for_counts_down_to_the_probe() -> None:
    breaker = opened(reset=10.0)
    assert breaker.blocked_for(T0 + 4) == pytest.approx(6.0)
    assert breaker.blocked_for(T0 + 10) == 0.0


def test_a_non_probe_call_may_not_go_out_while_it_is_not_closed() -> None:
    breaker = opened()
    assert not breaker.current(None)
    probe = breaker.admit(T0 + 10)
    assert isinstance(probe, Probe)
    assert breaker.current(probe)
    assert not breaker.current(None)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"threshold": 0}, "threshold"),
        ({"reset_timeout": 0}, "reset_timeout"),
        ({"reset_timeout": 10, "max_reset_timeout": 5}, "reset_timeout"),
        ({"probe_timeout": 0}, "probe_timeout"),
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Breaker(**kwargs)  # type: ignore[arg-type]
