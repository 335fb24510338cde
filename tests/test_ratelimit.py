"""TokenBucket: pure logic on a fake clock whose sleep advances time."""

from __future__ import annotations

import threading

import pytest

from flask_otp_conversion.ratelimit import JITTER_ALLOWANCE, TokenBucket


class FakeTime:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def t() -> FakeTime:
    return FakeTime()


def bucket(t: FakeTime, rate: float, burst: float = 1.0) -> TokenBucket:
    return TokenBucket(rate, burst, clock=t.clock, sleep=t.sleep)


def grant_times(t: FakeTime, b: TokenBucket, n: int) -> list[float]:
    times = []
    for _ in range(n):
        assert b.acquire()
        times.append(t.now)
    return times


def max_in_window(times: list[float], window: float) -> int:
    """The most grants in any closed interval of length ``window`` (two pointers over sorted times)."""
    best, lo = 0, 0
    for hi, x in enumerate(times):
        while times[lo] < x - window - 1e-9:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def test_starts_with_a_full_burst(t: FakeTime) -> None:
    b = bucket(t, rate=10, burst=5)
    assert grant_times(t, b, 5) == [0.0] * 5
    assert t.sleeps == []


def test_waits_one_interval_per_token_once_the_burst_is_spent(t: FakeTime) -> None:
    b = bucket(t, rate=10, burst=2)
    times = grant_times(t, b, 5)
    assert times == pytest.approx([0.0, 0.0, 0.1, 0.2, 0.3])


def test_refills_with_elapsed_time_up_to_the_burst(t: FakeTime) -> None:
    b = bucket(t, rate=10, burst=3)
    grant_times(t, b, 3)
    t.now += 100
    assert b.available == pytest.approx(3)


def test_acquire_refuses_without_taking_when_the_wait_exceeds_the_timeout(t: FakeTime) -> None:
    b = bucket(t, rate=2)
    assert b.acquire()
    assert not b.acquire(timeout=0.4)
    assert t.sleeps == []
    assert b.acquire(timeout=0.5)
    assert t.sleeps == pytest.approx([0.5])


def test_try_acquire_never_waits(t: FakeTime) -> None:
    b = bucket(t, rate=1)
    assert b.try_acquire()
    assert not b.try_acquire()
    t.now += 1
    assert b.try_acquire()


def test_concurrent_callers_reserve_distinct_tokens(t: FakeTime) -> None:
    # The clock is frozen, so every reservation shows in the wait it was given: no two callers may get the
    # same token, and the waits must be exactly 1/rate apart.
    frozen_sleeps: list[float] = []
    lock = threading.Lock()

    def sleep(seconds: float) -> None:
        with lock:
            frozen_sleeps.append(seconds)

    b = TokenBucket(100, 1, clock=lambda: 0.0, sleep=sleep)
    start = threading.Barrier(20)

    def take() -> None:
        start.wait()
        for _ in range(10):
            b.acquire()

    threads = [threading.Thread(target=take) for _ in range(20)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sorted(frozen_sleeps) == pytest.approx([k / 100 for k in range(1, 200)])


@pytest.mark.parametrize("cap", [1, 3, 20, 1000, 5000])
def test_for_cap_never_exceeds_the_cap_in_any_window_of_a_second_plus_jitter(t: FakeTime, cap: float) -> None:
    b = TokenBucket.for_cap(cap, clock=t.clock, sleep=t.sleep)
    times = grant_times(t, b, int(cap * 3) + 2)
    assert max_in_window(times, 1.0 + JITTER_ALLOWANCE - 1e-9) <= cap


def test_for_cap_keeps_most_of_the_cap_as_sustained_rate() -> None:
    b = TokenBucket.for_cap(1000)
    assert b.burst + b.rate * (1 + JITTER_ALLOWANCE) == pytest.approx(1000)
    assert b.rate >= 890


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (float("inf"), 1), (1, 0.5)])
def test_rejects_nonsense_settings(rate: float, burst: float) -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate, burst)
