"""Contract: ``unverified_sends``, the shared count behind ``send_allowed``'s per-number and per-prefix limits."""

from __future__ import annotations

import uuid

import pytest
from store_helpers import HOUR0, send, verify

from flask_otp_conversion.store import Store, open_store
from flask_otp_conversion.store.base import Verification
from tests.servers.postgresql import DATABASE, PostgreSQLServer

UK = "+447700900123"
SINCE = HOUR0 - 900


def unverified(store: Store, prefix: str, *, since: float = SINCE, limit: int = 100) -> int:
    return store.unverified_sends(prefix=prefix, since=since, limit=limit)


def test_sends_to_a_number_count_until_one_is_verified(store: Store) -> None:
    for n in range(3):
        send(store, UK, f"m{n}", HOUR0 - 100 + n)
    before = unverified(store, UK)
    verify(store, UK, HOUR0, message_id="m2")
    assert (before, unverified(store, UK)) == (3, 0)


def test_a_verification_leaves_later_sends_counted(store: Store) -> None:
    send(store, UK, "old", HOUR0 - 300)
    send(store, UK, "typed", HOUR0 - 200)
    send(store, UK, "after", HOUR0 - 100)
    verify(store, UK, HOUR0, message_id="typed")
    assert unverified(store, UK) == 1


def test_a_send_recorded_late_behind_a_verified_one_is_not_counted(store: Store) -> None:
    send(store, UK, "typed", HOUR0 - 100)
    verify(store, UK, HOUR0, message_id="typed")
    send(store, UK, "held-back", HOUR0 - 200)  # recorded after the verification, sent before the verified one
    assert unverified(store, UK) == 0


def test_sends_before_since_do_not_count(store: Store) -> None:
    send(store, UK, "old", SINCE - 1)
    send(store, UK, "edge", SINCE)
    send(store, UK, "new", SINCE + 30.5)
    assert unverified(store, UK) == 2


def test_a_prefix_counts_every_number_starting_with_it(store: Store) -> None:
    for n, phone in enumerate(("+447700900001", "+447700900002", "+447700800003", "+447800900004")):
        send(store, phone, f"m{n}", HOUR0 - 60)
    assert [unverified(store, p) for p in ("+447700", "+4477009", "+4478", "+44", "+4")] == [3, 2, 1, 4, 4]


def test_a_prefix_ending_in_nine_takes_its_own_numbers_only(store: Store) -> None:
    """The range's end is the prefix with its last digit raised: past ``9`` that is ``:``, in byte order."""
    for n, phone in enumerate(("+447900900001", "+447990900002", "+448000900003", "+447899999999")):
        send(store, phone, f"m{n}", HOUR0 - 60)
    assert [unverified(store, p) for p in ("+4479", "+44799", "+4478")] == [2, 1, 1]


def test_the_count_stops_at_the_limit(store: Store) -> None:
    for n in range(12):
        send(store, f"+4477009000{n:02d}", f"m{n}", HOUR0 - 60 + n)
    assert [unverified(store, "+447700", limit=k) for k in (0, 1, 5, 12, 50)] == [0, 1, 5, 12, 12]


def test_a_settled_send_still_counts_until_verified(store: Store) -> None:
    send(store, UK, "m1", HOUR0 - 100, provider="alibaba")
    store.enqueue_unverified(
        provider="alibaba", account=None, sent_after=0, sent_before=HOUR0, limit=10, now=HOUR0 + 1
    )
    counted = unverified(store, UK)
    verify(store, UK, HOUR0 + 2, message_id="m1", provider="alibaba")
    assert (counted, unverified(store, UK)) == (1, 0)


def test_verifications_applied_from_a_spool_batch_clear_sends(store: Store) -> None:
    send(store, UK, "m1", HOUR0 - 100)
    send(store, "+447700900999", "m2", HOUR0 - 100)
    store.apply_verifications(
        [Verification(UK, None, HOUR0)], provider="tencent", match_window=900, checkpoint=("spool-a", 0, 10)
    )
    assert unverified(store, "+447700900") == 1


def test_pruned_sends_are_not_counted(store: Store) -> None:
    send(store, UK, "old", HOUR0 - 7200)
    send(store, UK, "new", HOUR0 - 10)
    store.prune(before=HOUR0 - 3600)
    assert unverified(store, UK, since=0) == 1


@pytest.mark.parametrize(
    "prefix",
    [
        "447700",  # no "+"
        "+",
        "+0447",  # E.164 never starts with 0
        "+44%",  # a LIKE wildcard
        "+44_7",
        "+44' OR '1'='1",
        "+44\x00",
        "+\uff14\uff14",  # fullwidth digits
        "+1234567890123456",  # 16 digits
        44,
        None,
    ],
    ids=repr,
)
def test_a_prefix_that_is_not_digits_is_refused(store: Store, prefix: object) -> None:
    send(store, UK, "m1", HOUR0 - 10)
    with pytest.raises(ValueError, match="prefix"):
        store.unverified_sends(prefix=prefix, since=SINCE, limit=5)  # type: ignore[arg-type]


def test_a_bad_limit_or_time_is_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="limit"):
        store.unverified_sends(prefix=UK, since=SINCE, limit=-1)
    with pytest.raises(ValueError, match="since"):
        store.unverified_sends(prefix=UK, since=float("nan"), limit=1)


def test_a_postgresql_database_of_another_collation_counts_in_byte_order(postgresql_server: PostgreSQLServer) -> None:
    """Under ICU's en-US, ``:`` sorts before the digits, so "+4479" <= phone < "+447:" would be empty there: the
    store compares in the C collation whatever the database's."""
    name = f"otp_icu_{uuid.uuid4().hex[:8]}"
    postgresql_server.psql(
        f"CREATE DATABASE {name} TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C'",
        database="postgres",
    )
    url = postgresql_server.url()  # ends with the database's name: no query string
    store = open_store(url.removesuffix(DATABASE) + name)
    try:
        for n, phone in enumerate(("+447900900001", "+447990900002", "+448000900003")):
            send(store, phone, f"m{n}", HOUR0 - 60)
        assert [unverified(store, p) for p in ("+4479", "+44799", "+44")] == [2, 1, 3]
    finally:
        store.close()
        postgresql_server.psql(f"DROP DATABASE {name} WITH (FORCE)", database="postgres")
