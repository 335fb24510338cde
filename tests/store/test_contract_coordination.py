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


# Token buckets --------------------------------------------------------------------------------------------


def take(store: Store, at: float, want: int = 100, rate: float = 10.0, burst: float = 5.0) -> tuple[int, float]:
    return store.take_tokens("rate:ReportConversion", want=want, rate=rate, burst=burst, now=at)


def test_a_new_bucket_starts_full_and_grants_at_most_its_burst(store: Store) -> None:
    assert take(store, HOUR0) == (5, 0.0)


def test_a_grant_never_exceeds_what_was_asked(store: Store) -> None:
    assert take(store, HOUR0, want=2) == (2, 0.0)
    assert take(store, HOUR0, want=100) == (3, 0.0)


def test_an_empty_bucket_grants_nothing_and_says_when_the_next_token_is_due(store: Store) -> None:
    take(store, HOUR0)
    granted, wait = take(store, HOUR0 + 0.04)
    assert granted == 0
    assert wait == pytest.approx(0.06)


def test_the_bucket_refills_at_its_rate_up_to_the_burst(store: Store) -> None:
    take(store, HOUR0)
    assert take(store, HOUR0 + 0.35)[0] == 3
    assert take(store, HOUR0 + 100)[0] == 5


def test_a_clock_that_steps_back_refills_nothing(store: Store) -> None:
    take(store, HOUR0 + 10)
    assert take(store, HOUR0)[0] == 0
    assert take(store, HOUR0 + 10.15)[0] == 1


def test_buckets_of_different_names_are_independent(store: Store) -> None:
    take(store, HOUR0)
    assert store.take_tokens("rate:Other", want=100, rate=10.0, burst=5.0, now=HOUR0) == (5, 0.0)


def test_a_smaller_burst_applies_at_once(store: Store) -> None:
    assert take(store, HOUR0, want=1, burst=5.0) == (1, 0.0)
    assert take(store, HOUR0, burst=2.0)[0] == 2


@pytest.mark.parametrize(
    ("want", "rate", "burst", "message"),
    [(0, 10.0, 5.0, "want"), (True, 10.0, 5.0, "want"), (1, 0.0, 5.0, "rate"), (1, float("inf"), 5.0, "rate"),
     (1, 10.0, 0.5, "burst")],
)
def test_bad_arguments_are_refused(store: Store, want: int, rate: float, burst: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        store.take_tokens("rate:x", want=want, rate=rate, burst=burst, now=HOUR0)
