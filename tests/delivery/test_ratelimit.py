"""SharedTokenBucket: grants drawn from a real (memory) store, spent on a fake clock whose sleep advances time."""

from __future__ import annotations

import threading

import pytest

from flask_otp_conversion.delivery.ratelimit import (
    GRANT_TTL,
    JITTER_ALLOWANCE,
    START_WINDOW,
    SharedTokenBucket,
    Take,
    bucket_for_cap,
)
from flask_otp_conversion.store import MemoryStore

EPOCH = 1_700_000_000.0


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


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


def taker(store: MemoryStore, t: FakeTime, draws: list[int] | None = None) -> Take:
    def take(want: int, rate: float, burst: float) -> tuple[int, float]:
        if draws is not None:
            draws.append(want)
        return store.take_tokens("rate:test", want=want, rate=rate, burst=burst, now=EPOCH + t.now)

    return take


def bucket(store: MemoryStore, t: FakeTime, rate: float, burst: float = 1.0) -> SharedTokenBucket:
    return SharedTokenBucket(taker(store, t), rate, burst, clock=t.clock, sleep=t.sleep)


def grant_times(t: FakeTime, buckets: list[SharedTokenBucket], n: int) -> list[float]:
    """Acquire ``n`` tokens round-robin over ``buckets`` (processes sharing one store budget)."""
    times = []
    for i in range(n):
        assert buckets[i % len(buckets)].acquire()
        times.append(t.now)
    return times


def max_in_window(times: list[float], window: float) -> int:
    """The most grants in any closed interval of length ``window`` (two pointers over sorted times)."""
    times = sorted(times)
    best, lo = 0, 0
    for hi, x in enumerate(times):
        while times[lo] < x - window - 1e-9:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def test_starts_with_a_full_burst(store: MemoryStore, t: FakeTime) -> None:
    b = bucket(store, t, rate=10, burst=5)
    assert grant_times(t, [b], 5) == [0.0] * 5
    assert t.sleeps == []


def test_waits_for_the_shared_budget_once_the_burst_is_spent(store: MemoryStore, t: FakeTime) -> None:
    b = bucket(store, t, rate=10, burst=2)
    # abs: epoch-sized store times are coarse (~2e-7 s), and a wait is never shorter than 1 ms
    assert grant_times(t, [b], 5) == pytest.approx([0.0, 0.0, 0.1, 0.2, 0.3], abs=2e-3)


def test_draws_from_the_store_in_grants_not_per_token(store: MemoryStore, t: FakeTime) -> None:
    draws: list[int] = []
    b = SharedTokenBucket(taker(store, t, draws), 1000, 20, clock=t.clock, sleep=t.sleep)
    for left in range(20, 0, -1):
        assert b.acquire(upcoming=left)
    assert draws == [20]  # 1000/s * GRANT_TTL = 20 tokens in one draw


def test_a_grant_is_never_larger_than_the_caller_can_spend(store: MemoryStore, t: FakeTime) -> None:
    draws: list[int] = []
    b = SharedTokenBucket(taker(store, t, draws), 1000, 20, clock=t.clock, sleep=t.sleep)
    assert b.acquire(upcoming=3)
    assert draws == [3]


def test_an_unspent_grant_expires_instead_of_being_spent_late(store: MemoryStore, t: FakeTime) -> None:
    draws: list[int] = []
    b = SharedTokenBucket(taker(store, t, draws), 1000, 20, clock=t.clock, sleep=t.sleep)
    assert b.acquire(upcoming=5)
    t.now += GRANT_TTL * 1.5
    assert b.acquire()
    assert draws == [5, 1]


def test_a_request_may_start_on_a_token_until_the_start_window_after_its_grant(store: MemoryStore, t: FakeTime) -> None:
    b = SharedTokenBucket(taker(store, t), 1000, 20, clock=t.clock, sleep=t.sleep)
    first = b.acquire(upcoming=2)
    t.now += GRANT_TTL / 2
    second = b.acquire()  # from the same grant: no fresher than the first
    assert first is not None and second is not None
    t.now = START_WINDOW
    assert b.fresh(first) and b.fresh(second)
    t.now = START_WINDOW + 0.001
    assert not b.fresh(first) and not b.fresh(second)


def test_acquire_gives_up_after_the_timeout_without_taking(store: MemoryStore, t: FakeTime) -> None:
    b = bucket(store, t, rate=2)
    assert b.acquire()
    assert b.acquire(timeout=0.2) is None
    assert t.now == pytest.approx(0.2)
    assert b.acquire(timeout=1.0)
    assert t.now == pytest.approx(0.5)


def test_two_processes_share_one_budget(store: MemoryStore, t: FakeTime) -> None:
    first, second = bucket(store, t, rate=10, burst=2), bucket(store, t, rate=10, burst=2)
    assert grant_times(t, [first, second], 6) == pytest.approx([0.0, 0.0, 0.1, 0.2, 0.3, 0.4], abs=2e-3)


def test_concurrent_threads_never_share_a_token() -> None:
    store = MemoryStore()
    granted: list[int] = []
    lock = threading.Lock()
    clock = [0.0]

    def take(want: int, rate: float, burst: float) -> tuple[int, float]:
        got, wait = store.take_tokens("rate:test", want=want, rate=rate, burst=burst, now=EPOCH + clock[0])
        with lock:
            granted.append(got)
        return got, wait

    b = SharedTokenBucket(take, 100, 50, clock=lambda: clock[0], sleep=lambda s: None)
    start = threading.Barrier(10)
    taken = []

    def run() -> None:
        start.wait()
        taken.append(sum(b.acquire(timeout=0) is not None for _ in range(10)))

    threads = [threading.Thread(target=run) for _ in range(10)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sum(taken) == sum(granted) == 50  # the frozen clock never refills: exactly the burst, once


@pytest.mark.parametrize("cap", [1, 3, 20, 1000, 5000])
@pytest.mark.parametrize("processes", [1, 3])
def test_for_cap_never_exceeds_the_cap_in_any_window_of_a_second_plus_jitter(
    store: MemoryStore, t: FakeTime, cap: float, processes: int
) -> None:
    buckets = [SharedTokenBucket.for_cap(taker(store, t), cap, clock=t.clock, sleep=t.sleep) for _ in range(processes)]
    times = grant_times(t, buckets, int(cap * 3) + 2)
    assert max_in_window(times, 1.0 + JITTER_ALLOWANCE - 1e-9) <= cap


def test_for_cap_keeps_most_of_the_cap_as_sustained_rate() -> None:
    rate, burst = bucket_for_cap(1000)
    assert burst + rate * (1 + START_WINDOW + JITTER_ALLOWANCE) == pytest.approx(1000)
    assert rate >= 850


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (float("inf"), 1), (1, 0.5)])
def test_rejects_nonsense_settings(store: MemoryStore, t: FakeTime, rate: float, burst: float) -> None:
    with pytest.raises(ValueError):
        SharedTokenBucket(taker(store, t), rate, burst)


@pytest.mark.parametrize("cap", [0, -1, float("inf")])
def test_rejects_a_nonsense_cap(cap: float) -> None:
    with pytest.raises(ValueError):
        bucket_for_cap(cap)


def test_at_the_cap_a_store_draw_still_buys_a_whole_grant(store: MemoryStore, t: FakeTime) -> None:
    """With the shared budget spent, the waiter sleeps until a grant's worth is due rather than the next
    token: a store write per grant, not per token, even when the cap is what limits delivery."""
    draws: list[int] = []
    b = SharedTokenBucket(taker(store, t, draws), 1000, 20, clock=t.clock, sleep=t.sleep)
    for _ in range(20):
        assert b.acquire(upcoming=100)  # the whole shared budget, in one grant
    granted = [b.acquire(upcoming=100) for _ in range(20)]
    assert all(granted)
    assert draws[0] == 20
    assert len(draws) <= 5  # store calls for 40 tokens, empty ones included; one per token before
