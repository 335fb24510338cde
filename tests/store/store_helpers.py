"""Shared constants and helpers for the store tests (a plain module: conftest is for fixtures)."""

from __future__ import annotations

from flask_otp_conversion.store import OutboxStats, Store, VerifyOutcome

#: The start of an hour (epoch seconds), so tests can place events in known hour buckets.
HOUR0 = 1_699_999_200
WINDOW = 900.0
CN = "+8613711112222"
SG = "+6581234567"
US = "+14155550123"


def send(store: Store, phone: str, message_id: str, at: float, provider: str = "tencent") -> bool:
    return store.record_sent(phone=phone, message_id=message_id, provider=provider, sent_at=at)


def verify(
    store: Store,
    phone: str,
    at: float,
    message_id: str | None = None,
    provider: str = "tencent",
    window: float = WINDOW,
) -> VerifyOutcome:
    return store.record_verified(
        phone=phone, message_id=message_id, provider=provider, verified_at=at, match_window=window
    )


def empty_stats() -> OutboxStats:
    return OutboxStats(pending=0, in_flight=0, dead=0, reported=0, oldest_pending_at=None)
