"""SharedSchedule: slots reserved in a real (memory) store, handed out on a fake clock whose sleep advances time."""

from __future__ import annotations

import threading
import time

import pytest

from flask_otp_conversion.delivery.ratelimit import (
    HORIZON,
    JITTER_ALLOWANCE,
    LATENESS,
    MARGIN,
    SharedSchedule,
    Slot,
    TakeSlots,
    interval_for_cap,
)
from flask_otp_conversion.store import MemoryStore

EPOCH = 1_700_000_000.0


class FakeTime:
    """The store's clock (epoch seconds) that moves only when something sleeps."""

    def __init__(self) -> None:
        self.now = EPOCH
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


def taker(store: MemoryStore, clock: object, draws: list[int] | None = None) -> TakeSlots:
    def take(want: int, interval: float, horizon: float) -> tuple[float, int]:
        if draws is not None:
            draws.append(want)
        return store.take_slots("rate:test", want=want, interval=interval, horizon=horizon, now=clock())  # type: ignore[operator]

    return take


def schedule(store: MemoryStore, t: FakeTime, interval: float, draws: list[int] | None = None) -> SharedSchedule:
    return SharedSchedule(taker(store, t.clock, draws), interval, clock=t.clock, sleep=t.sleep)


def start_times(t: FakeTime, schedules: list[SharedSchedule], n: int) -> list[float]:
    """``n`` requests started round-robin over ``schedules`` (processes sharing one store), each on its slot."""
    starts = []
    for i in range(n):
        sched = schedules[i % len(schedules)]
        slot = sched.acquire()
        assert slot is not None and sched.wait(slot)
        starts.append(t.now)
    return starts


def max_in_window(times: list[float], window: float) -> int:
    """The most times in any closed interval of length ``window`` (two pointers over sorted times)."""
    times = sorted(times)
    best, lo = 0, 0
    for hi, x in enumerate(times):
        while times[lo] < x - window - 1e-9:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def test_requests_start_one_interval_apart(store: MemoryStore, t: FakeTime) -> None:
    starts = start_times(t, [schedule(store, t, 0.1)], 5)
    assert [s - EPOCH for s in starts] == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4], abs=1e-6)


def test_one_store_write_reserves_what_the_horizon_holds(store: MemoryStore, t: FakeTime) -> None:
    draws: list[int] = []
    sched = schedule(store, t, 0.001, draws)
    for _ in range(10):
        assert sched.acquire(upcoming=100) is not None
    assert draws == [int(HORIZON / 0.001) + 1]  # one reservation served all ten


def test_a_reservation_is_never_larger_than_the_caller_can_use(store: MemoryStore, t: FakeTime) -> None:
    draws: list[int] = []
    assert schedule(store, t, 0.001, draws).acquire(upcoming=3) is not None
    assert draws == [3]


def test_a_slot_nobody_took_in_time_is_dropped_not_spent_late(store: MemoryStore, t: FakeTime) -> None:
    draws: list[int] = []
    sched = schedule(store, t, 0.001, draws)
    first = sched.acquire(upcoming=5)
    assert first is not None
    t.now += LATENESS + 0.01  # the four others reserved with it can no longer be met
    later = sched.acquire()
    assert later is not None and later.at >= t.now
    assert draws == [5, 1]


def test_after_a_pause_the_first_slot_leaving_the_margin_is_given(store: MemoryStore, t: FakeTime) -> None:
    draws: list[int] = []
    sched = schedule(store, t, 0.001, draws)
    assert sched.acquire(upcoming=21) is not None
    t.now += 0.0105  # the slots up to 10 ms have less than the margin left to reach their first byte
    slot = sched.acquire()
    assert slot is not None and slot.at == pytest.approx(EPOCH + 0.0105 - LATENESS + MARGIN, abs=0.001)
    assert slot.start_by - t.now >= MARGIN
    assert draws == [21]


def test_wait_sleeps_until_the_slot(store: MemoryStore, t: FakeTime) -> None:
    sched = schedule(store, t, 1.0)
    assert sched.wait(Slot(EPOCH + 0.5))
    assert t.now == pytest.approx(EPOCH + 0.5)


def test_a_caller_too_late_for_its_slot_forfeits_it(store: MemoryStore, t: FakeTime) -> None:
    sched = schedule(store, t, 1.0)
    t.now = EPOCH + LATENESS + 0.001
    assert not sched.wait(Slot(EPOCH))


def test_a_caller_within_the_lateness_still_starts(store: MemoryStore, t: FakeTime) -> None:
    sched = schedule(store, t, 1.0)
    t.now = EPOCH + LATENESS / 2
    assert sched.wait(Slot(EPOCH))


def test_the_start_deadline_a_slot_gives_the_transport_is_the_last_moment_wait_accepts(
    store: MemoryStore, t: FakeTime
) -> None:
    sched = schedule(store, t, 1.0)
    slot = Slot(EPOCH)
    assert slot.start_by == pytest.approx(EPOCH + LATENESS)
    t.now = slot.start_by
    assert sched.wait(slot)


def test_acquire_waits_for_the_schedule_to_come_within_the_horizon(store: MemoryStore, t: FakeTime) -> None:
    sched = schedule(store, t, 1.0)
    assert sched.acquire() is not None  # EPOCH; the next free slot is EPOCH + 1
    slot = sched.acquire()
    assert slot is not None and slot.at == pytest.approx(EPOCH + 1.0)
    assert t.now == pytest.approx(EPOCH + 1.0 - HORIZON)  # slept until it could be reserved, not until it starts


def test_acquire_gives_up_after_the_timeout_without_reserving(store: MemoryStore, t: FakeTime) -> None:
    sched = schedule(store, t, 10.0)
    assert sched.acquire() is not None
    assert sched.acquire(timeout=0.5) is None
    assert store.take_slots("rate:test", want=1, interval=10.0, horizon=0.0, now=EPOCH + 10.0) == (EPOCH + 10.0, 1)


def test_processes_sharing_a_store_never_share_a_slot(store: MemoryStore, t: FakeTime) -> None:
    starts = start_times(t, [schedule(store, t, 0.1), schedule(store, t, 0.1)], 6)
    assert [s - EPOCH for s in starts] == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4, 0.5], abs=1e-6)


def test_threads_never_share_a_slot() -> None:
    store = MemoryStore()
    sched = SharedSchedule(taker(store, time.time), 1e-4, horizon=60.0)
    slots: list[float] = []
    lock = threading.Lock()

    def run() -> None:
        for _ in range(50):
            slot = sched.acquire(upcoming=4)
            assert slot is not None
            with lock:
                slots.append(slot.at)

    threads = [threading.Thread(target=run) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(slots) == len(set(slots)) == 400


@pytest.mark.parametrize("cap", [1, 3, 20, 1000, 5000])
@pytest.mark.parametrize("processes", [1, 3])
def test_for_cap_never_exceeds_the_cap_in_any_window_of_a_second_plus_the_allowances(
    store: MemoryStore, t: FakeTime, cap: float, processes: int
) -> None:
    take = taker(store, t.clock)
    schedules = [SharedSchedule.for_cap(take, cap, clock=t.clock, sleep=t.sleep) for _ in range(processes)]
    starts = start_times(t, schedules, int(cap * 3) + 2)
    # a start may trail its slot by LATENESS and reach the provider JITTER_ALLOWANCE later still
    assert max_in_window(starts, 1.0 + LATENESS + JITTER_ALLOWANCE) <= cap


def test_for_cap_keeps_all_but_the_allowances_as_sustained_rate() -> None:
    assert 1 / interval_for_cap(1000) >= 0.95 * 1000


@pytest.mark.parametrize("cap", [0, -1, float("inf")])
def test_rejects_a_nonsense_cap(cap: float) -> None:
    with pytest.raises(ValueError):
        interval_for_cap(cap)


@pytest.mark.parametrize(("interval", "horizon"), [(0, 0.1), (-1, 0.1), (float("inf"), 0.1), (0.1, -1.0)])
def test_rejects_nonsense_settings(store: MemoryStore, t: FakeTime, interval: float, horizon: float) -> None:
    with pytest.raises(ValueError):
        SharedSchedule(taker(store, t.clock), interval, horizon=horizon)



def test_a_process_waiting_on_anothers_reservation_then_reserves_a_chunk_not_a_slot(
    store: MemoryStore, t: FakeTime
) -> None:
    interval = 0.001
    most = int(HORIZON / interval) + 1
    draws: list[int] = []
    other, ours = schedule(store, t, interval), schedule(store, t, interval, draws)
    assert other.acquire(upcoming=100) is not None  # the other process holds the horizon
    for _ in range(most // 2 + 1):
        assert ours.acquire(upcoming=100) is not None
    # the slot left at the horizon's edge, one draw that found none, then half a horizon's worth in one write
    assert len(draws) <= 3
