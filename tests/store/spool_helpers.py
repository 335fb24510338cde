"""Helpers for the spool tests (a plain module: conftest is for fixtures): spools on a real SQLite store,
segments as a process that died left them, and a process that spools and is killed."""

from __future__ import annotations

import json
import logging
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import strategies as st
from store_helpers import send

from flask_otp_conversion.store import SQLiteStore
from flask_otp_conversion.store.base import Verification
from flask_otp_conversion.store.quarantine import BAD_SUFFIX, QUARANTINE
from flask_otp_conversion.store.spool import Spool
from flask_otp_conversion.store.spool_format import SUFFIX, encode

WORKER = Path(__file__).with_name("spool_worker.py")
LOGGER = logging.getLogger("test_spool")
NOW = time.time()


def make_spool(store: SQLiteStore, tmp_path: Path, **kwargs: object) -> Spool:
    options: dict[str, object] = {"autostart": False, **kwargs}
    return Spool(store, str(tmp_path / "spool"), provider="tencent", match_window=900.0, logger=LOGGER, **options)  # type: ignore[arg-type]


def phone(i: int) -> str:
    return f"+{6590000000 + i}"


def segments(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "spool").glob("*" + SUFFIX))


def line(i: int) -> bytes:
    return encode(Verification(phone(i), None, NOW))


def dead_segment(tmp_path: Path, content: bytes, name: str = "dead") -> Path:
    """A segment no process holds, as a process that died (or an operator) left it."""
    path = tmp_path / "spool" / (name + SUFFIX)
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(content)
    return path


def quarantine_records(tmp_path: Path, name: str) -> list[dict[str, Any]]:
    path = tmp_path / "spool" / QUARANTINE / (name + BAD_SUFFIX)
    return [json.loads(text) for text in path.read_text().splitlines()] if path.exists() else []


def pending(store: SQLiteStore) -> int:
    return store.outbox_stats(now=time.time()).pending


def wait_until_pending(store: SQLiteStore, count: int, timeout: float = 10.0) -> int:
    """Poll until the outbox holds ``count`` pending reports (or the timeout); returns what it holds."""
    deadline = time.monotonic() + timeout
    while pending(store) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    return pending(store)


def sent(store: SQLiteStore, count: int) -> None:
    for i in range(count):
        send(store, phone(i), f"m{i}", NOW - 60)


def spool_in_worker(store: SQLiteStore, tmp_path: Path, count: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, str(WORKER), store.path, str(tmp_path / "spool"), str(count)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "spooled"
    return proc


def refused_once(store: SQLiteStore, spool: Spool) -> None:
    """Have the store refuse the applier (a write lock held elsewhere), as in an outage, then answer again."""
    blocker = sqlite3.connect(store.path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(sqlite3.OperationalError):
            spool.apply_pending()
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()


def killed_after_spooling(store: SQLiteStore, tmp_path: Path, count: int) -> None:
    """A process that spooled ``count`` verifications of sent OTPs, then got ``kill -9``."""
    sent(store, count)
    proc = spool_in_worker(store, tmp_path, count)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


#: Any valid verification, as the spool writes them.
VERIFICATIONS = st.builds(
    Verification,
    phone=st.integers(0, 99).map(phone),
    message_id=st.none() | st.text(min_size=1, max_size=128),
    verified_at=st.floats(NOW - 86400 * 365, NOW + 86400, allow_nan=False),
)
