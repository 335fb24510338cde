"""The contract's coordination part (``base.Coordination``), on every store: flags, named leases, and the shared
token buckets every process draws a provider's rate cap from."""

from __future__ import annotations

import pytest
from store_helpers import HOUR0

from flask_otp_conversion.store import Store

# Flags and leases ----------------------------------------------------------------------------------------


def test_a_flag_is_set_read_and_cleared(store: Store) -> None:
    assert store.get_flag("degraded") is None
    store.set_flag("degraded", "1")
    store.set_flag("other", "x")
    assert store.get_flag("degraded") == "1"
    store.set_flag("degraded", None)
    assert store.get_flag("degraded") is None
    assert store.get_flag("other") == "x"


def test_a_lease_is_held_by_one_owner_until_it_expires(store: Store) -> None:
    assert store.acquire_lease("drain", owner="a", ttl=5, now=HOUR0)
    assert not store.acquire_lease("drain", owner="b", ttl=5, now=HOUR0 + 4.9)
    assert store.acquire_lease("drain", owner="b", ttl=5, now=HOUR0 + 5)
    assert not store.acquire_lease("drain", owner="a", ttl=5, now=HOUR0 + 6)


def test_renewing_a_lease_extends_it(store: Store) -> None:
    assert store.acquire_lease("drain", owner="a", ttl=5, now=HOUR0)
    assert store.acquire_lease("drain", owner="a", ttl=5, now=HOUR0 + 4)
    assert not store.acquire_lease("drain", owner="b", ttl=5, now=HOUR0 + 8)


def test_leases_with_different_names_are_independent(store: Store) -> None:
    assert store.acquire_lease("drain", owner="a", ttl=60, now=HOUR0)
    assert store.acquire_lease("prune", owner="b", ttl=60, now=HOUR0)


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.acquire_lease("", owner="a", ttl=5, now=HOUR0),
        lambda s: s.acquire_lease("drain", owner="", ttl=5, now=HOUR0),
        lambda s: s.acquire_lease("drain", owner="a", ttl=-1, now=HOUR0),
        lambda s: s.set_flag("degraded", 1),
        lambda s: s.set_flag("x" * 201, "1"),
        lambda s: s.get_flag(""),
    ],
    ids=["empty lease name", "empty owner", "negative ttl", "non-string flag", "overlong flag name", "empty flag"],
)
def test_bad_coordination_arguments_raise_value_error(store: Store, call: object) -> None:
    with pytest.raises(ValueError):
        call(store)  # type: ignore[operator]


# Request-start schedules ---------------------------------------------------------------------------------


def take(store: Store, at: float, want: int = 100, interval: float = 0.1, horizon: float = 0.25) -> tuple[float, int]:
    return store.take_slots("rate:ReportConversion", want=want, interval=interval, horizon=horizon, now=at)


def test_a_new_schedule_reserves_from_now_up_to_the_horizon(store: Store) -> None:
    assert take(store, HOUR0) == (HOUR0, 3)  # HOUR0, +0.1, +0.2; +0.3 is past the horizon


def test_a_reservation_never_exceeds_what_was_asked(store: Store) -> None:
    assert take(store, HOUR0, want=2) == (HOUR0, 2)
    first, count = take(store, HOUR0, want=100)
    assert (first, count) == (pytest.approx(HOUR0 + 0.2), 1)


def test_a_full_schedule_reserves_nothing_and_names_the_next_free_slot(store: Store) -> None:
    take(store, HOUR0)
    first, count = take(store, HOUR0 + 0.01)
    assert count == 0
    assert first == pytest.approx(HOUR0 + 0.3)  # reservable from 0.3 - horizon = 0.05 on


def test_slots_follow_on_without_a_gap_and_idle_time_earns_no_burst(store: Store) -> None:
    take(store, HOUR0)
    assert take(store, HOUR0 + 0.1)[0] == pytest.approx(HOUR0 + 0.3)
    first, count = take(store, HOUR0 + 100)
    assert (first, count) == (HOUR0 + 100, 3)  # from now, as many as the horizon holds: none saved up


def test_a_clock_that_steps_back_takes_no_slot_back(store: Store) -> None:
    take(store, HOUR0 + 10)
    first, count = take(store, HOUR0)
    assert count == 0 and first == pytest.approx(HOUR0 + 10.3)


def test_schedules_of_different_names_are_independent(store: Store) -> None:
    take(store, HOUR0)
    assert store.take_slots("rate:Other", want=100, interval=0.1, horizon=0.25, now=HOUR0) == (HOUR0, 3)


def test_another_interval_continues_from_the_next_free_slot(store: Store) -> None:
    take(store, HOUR0, want=1)
    assert take(store, HOUR0, interval=0.5) == (pytest.approx(HOUR0 + 0.1), 1)


@pytest.mark.parametrize(
    ("want", "interval", "horizon", "message"),
    [
        (0, 0.1, 0.2, "want"),
        (True, 0.1, 0.2, "want"),
        (1, 0.0, 0.2, "interval"),
        (1, float("inf"), 0.2, "interval"),
        (1, 0.1, -1.0, "horizon"),
    ],
)
def test_bad_arguments_are_refused(store: Store, want: int, interval: float, horizon: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        store.take_slots("rate:x", want=want, interval=interval, horizon=horizon, now=HOUR0)
