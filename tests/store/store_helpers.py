"""Shared constants and helpers for the store tests (a plain module: conftest is for fixtures)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from flask_otp_conversion.store import OutboxStats, Store, VerifyOutcome

#: The start of an hour (epoch seconds), so tests can place events in known hour buckets.
HOUR0 = 1_699_999_200
WINDOW = 900.0
CN = "+8613711112222"
SG = "+6581234567"
US = "+14155550123"


def send(store: Store, phone: str, message_id: str, at: float, provider: str = "tencent", account: str = "") -> bool:
    return store.record_sent(phone=phone, message_id=message_id, provider=provider, sent_at=at, account=account)


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


def damage_an_index(path: Path) -> None:
    """Declare an index over other columns than it was built on: its entries no longer match the table, as
    after a change of collation; every page and row still reads."""
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA writable_schema = ON")
    conn.execute(
        "UPDATE sqlite_master SET sql = replace(sql, '(phone, sent_at)', '(sent_at, phone)') "
        "WHERE name = 'messages_phone_sent'"
    )
    conn.commit()
    conn.close()


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll ``condition`` until true or ``timeout`` seconds pass (for background threads)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.02)
    return condition()
