"""Contract: the negative outcome. Sends never verified are settled once, as reports with ``converted`` False."""

from __future__ import annotations

import pytest
from store_helpers import CN, HOUR0, SG, US, send, verify

from flask_otp_conversion.store import Store

LEASE = 30.0


def settle(store: Store, before: float, *, after: float = 0.0, account: str | None = None, limit: int = 100) -> int:
    return store.enqueue_unverified(
        provider="alibaba", account=account, sent_after=after, sent_before=before, limit=limit, now=before + 1
    )


def test_an_unverified_send_is_settled_as_a_negative_report(store: Store) -> None:
    send(store, CN, "m1", HOUR0, provider="alibaba", account="LTAIkey")
    assert settle(store, HOUR0 + 900) == 1
    (item,) = store.claim(provider="alibaba", limit=5, lease_seconds=LEASE, now=HOUR0 + 902)
    assert (item.message_id, item.converted, item.account, item.sent_at) == ("m1", False, "LTAIkey", HOUR0)
    assert item.verified_at == item.created_at == HOUR0 + 901


def test_a_send_is_settled_only_once(store: Store) -> None:
    send(store, CN, "m1", HOUR0, provider="alibaba")
    settle(store, HOUR0 + 900)
    assert settle(store, HOUR0 + 1900) == 0
    assert store.outbox_stats(now=HOUR0 + 2000).pending == 1


def test_verified_sends_and_sends_outside_the_window_are_not_settled(store: Store) -> None:
    send(store, CN, "verified", HOUR0, provider="alibaba")
    verify(store, CN, HOUR0 + 10, message_id="verified", provider="alibaba")
    send(store, SG, "too-early", HOUR0 - 10, provider="alibaba")
    send(store, US, "too-late", HOUR0 + 900, provider="alibaba")
    send(store, "+8613700000000", "other-provider", HOUR0 + 5, provider="tencent")
    assert settle(store, HOUR0 + 900, after=HOUR0) == 0


def test_settling_takes_the_oldest_sends_first_up_to_the_limit(store: Store) -> None:
    for n, phone in enumerate((US, SG, CN)):
        send(store, phone, f"m{n}", HOUR0 + 100 - n, provider="alibaba")
    assert settle(store, HOUR0 + 900, limit=2) == 2
    items = store.claim(provider="alibaba", limit=5, lease_seconds=LEASE, now=HOUR0 + 902)
    assert sorted(item.message_id for item in items) == ["m1", "m2"]


def test_settling_for_an_account_takes_only_its_sends(store: Store) -> None:
    send(store, CN, "mine", HOUR0, provider="alibaba", account="A")
    send(store, SG, "theirs", HOUR0, provider="alibaba", account="B")
    assert settle(store, HOUR0 + 900, account="A") == 1
    (item,) = store.claim(provider="alibaba", limit=5, lease_seconds=LEASE, now=HOUR0 + 902)
    assert item.message_id == "mine"


def test_a_settled_send_verified_late_is_counted_but_not_reported_again(store: Store) -> None:
    send(store, CN, "m1", HOUR0, provider="alibaba")
    settle(store, HOUR0 + 900)
    outcome = verify(store, CN, HOUR0 + 950, message_id="m1", provider="alibaba")
    assert (outcome.message_id, outcome.enqueued) == ("m1", False)
    assert store.outbox_stats(now=HOUR0 + 1000).pending == 1
    (row,) = store.counts(since=HOUR0, until=HOUR0 + 1)
    assert (row.requested, row.verified) == (1, 1)


def test_a_negative_report_dead_lettered_says_so(store: Store) -> None:
    send(store, CN, "m1", HOUR0, provider="alibaba")
    settle(store, HOUR0 + 900)
    (item,) = store.claim(provider="alibaba", limit=1, lease_seconds=LEASE, now=HOUR0 + 902)
    store.dead_letter(item, reason="no", now=HOUR0 + 903)
    (letter,) = store.dead_letters()
    assert letter.converted is False


@pytest.mark.parametrize("account", ["\x00", "a\nb", "x" * 129, 5])
def test_an_account_that_is_not_printable_text_is_refused(store: Store, account: object) -> None:
    with pytest.raises(ValueError, match="account"):
        store.record_sent(phone=CN, message_id="m1", provider="tencent", sent_at=HOUR0, account=account)  # type: ignore[arg-type]
    assert store.outbox_stats(now=HOUR0).pending == 0
    assert send(store, CN, "m1", HOUR0)  # nothing was recorded
