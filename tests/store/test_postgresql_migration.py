"""The deployment page's move from SQLite to PostgreSQL: its snippet, run as printed, copies the sends a
verification may still match, and only those."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from store_helpers import CN, SG, US, send, verify

from flask_otp_conversion.store import open_store

PAGE = Path(__file__).resolve().parents[2] / "docs" / "deployment.md"


def snippet() -> Any:
    (code,) = re.findall(r"^```python\n(.*?)^```", PAGE.read_text(encoding="utf-8"), re.MULTILINE | re.DOTALL)[-1:]
    namespace: dict[str, Any] = {}
    exec(compile(code, str(PAGE), "exec"), namespace)
    return namespace["copy_recent_sends"]


def test_the_pages_snippet_copies_the_unverified_sends_of_the_last_window(tmp_path: Path, postgresql_url: str) -> None:
    now = time.time()
    old = open_store(f"sqlite:///{tmp_path / 'otp_conversion.db'}")
    send(old, CN, "recent", now - 60)
    send(old, SG, "verified", now - 60)
    verify(old, SG, now - 30, message_id="verified")
    send(old, US, "too-old", now - 3600)
    old.close()

    assert snippet()(str(tmp_path / "otp_conversion.db"), postgresql_url) == 1

    new = open_store(postgresql_url)
    assert verify(new, CN, now, message_id="recent").enqueued
    assert verify(new, US, now, message_id="too-old").message_id is None
    new.close()
