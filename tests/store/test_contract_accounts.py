"""Contract: rows know the provider account that sent them, and are only ever claimed for it (every engine)."""

from __future__ import annotations

from store_helpers import CN, HOUR0, SG, US, send, verify

from flask_otp_conversion.store import Store
from flask_otp_conversion.store.base import Backlog

LEASE = 30.0


def queued(store: Store, phone: str, message_id: str, at: float, *, provider: str = "tencent", account: str) -> None:
    send(store, phone, message_id, at, provider=provider, account=account)
    assert verify(store, phone, at + 5, message_id=message_id, provider=provider).enqueued


def test_a_claimed_row_carries_the_account_of_its_send(store: Store) -> None:
    queued(store, CN, "m1", HOUR0, account="1400000001")
    (item,) = store.claim(provider="tencent", limit=5, lease_seconds=LEASE, now=HOUR0 + 10)
    assert item.account == "1400000001"


def test_a_claim_for_an_account_skips_rows_of_another(store: Store) -> None:
    queued(store, CN, "old", HOUR0, account="1400000001")
    queued(store, SG, "new", HOUR0, account="1400000002")
    items = store.claim(provider="tencent", account="1400000002", limit=5, lease_seconds=LEASE, now=HOUR0 + 10)
    assert [item.message_id for item in items] == ["new"]


def test_a_claim_for_an_account_takes_rows_of_unknown_account(store: Store) -> None:
    queued(store, CN, "legacy", HOUR0, account="")
    items = store.claim(provider="tencent", account="1400000002", limit=5, lease_seconds=LEASE, now=HOUR0 + 10)
    assert [item.message_id for item in items] == ["legacy"]


def test_expire_foreign_dead_letters_old_rows_of_other_accounts_and_providers_only(store: Store) -> None:
    queued(store, CN, "other-account", HOUR0, account="1400000001")
    queued(store, SG, "other-provider", HOUR0, provider="alibaba", account="LTAIkey")
    queued(store, US, "mine", HOUR0, account="1400000002")
    queued(store, "+8613700000000", "legacy", HOUR0, account="")
    queued(store, "+8613700000001", "young", HOUR0 + 500, account="1400000001")
    moved = store.expire_foreign(provider="tencent", account="1400000002", created_before=HOUR0 + 100, now=HOUR0 + 600)
    assert moved == 2
    dead = {letter.message_id: letter for letter in store.dead_letters()}
    assert set(dead) == {"other-account", "other-provider"}
    assert "1400000001" in dead["other-account"].reason and "tencent" in dead["other-account"].reason
    assert dead["other-provider"].account == "LTAIkey" and "alibaba" in dead["other-provider"].reason
    left = store.claim(provider="tencent", limit=9, lease_seconds=LEASE, now=HOUR0 + 700)
    assert sorted(item.message_id for item in left) == ["legacy", "mine", "young"]


def test_expire_foreign_leaves_a_row_under_lease_alone(store: Store) -> None:
    queued(store, CN, "leased", HOUR0, account="1400000001")
    store.claim(provider="tencent", limit=1, lease_seconds=LEASE, now=HOUR0 + 10)
    assert store.expire_foreign(provider="tencent", account="2", created_before=HOUR0 + 100, now=HOUR0 + 20) == 0


def test_expire_foreign_counts_the_rows_dead_lettered_under_their_own_provider(store: Store) -> None:
    queued(store, CN, "m1", HOUR0, provider="alibaba", account="LTAIkey")
    store.expire_foreign(provider="tencent", account="1", created_before=HOUR0 + 100, now=HOUR0 + 200)
    (row,) = store.delivery_counts(since=HOUR0, until=HOUR0 + 3600)
    assert (row.provider, row.dead_lettered) == ("alibaba", 1)


def test_backlog_counts_pending_rows_per_provider_and_account(store: Store) -> None:
    queued(store, CN, "a", HOUR0, account="1")
    queued(store, SG, "b", HOUR0 + 50, account="1")
    queued(store, US, "c", HOUR0 + 20, account="2")
    queued(store, "+8613700000000", "d", HOUR0, provider="alibaba", account="k")
    (done,) = store.claim(provider="alibaba", limit=1, lease_seconds=LEASE, now=HOUR0 + 100)
    store.ack([done], now=HOUR0 + 101)
    assert store.backlog() == [
        Backlog("tencent", "1", 2, HOUR0 + 5),
        Backlog("tencent", "2", 1, HOUR0 + 25),
    ]


def test_a_dead_letter_keeps_the_account(store: Store) -> None:
    queued(store, CN, "m1", HOUR0, account="1400000001")
    (item,) = store.claim(provider="tencent", limit=1, lease_seconds=LEASE, now=HOUR0 + 10)
    store.dead_letter(item, reason="bad", now=HOUR0 + 11)
    (letter,) = store.dead_letters()
    assert (letter.account, letter.converted) == ("1400000001", True)
