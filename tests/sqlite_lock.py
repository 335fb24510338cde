"""Another connection holding a real SQLite file's write lock: the store's refusal, not a stand-in for it."""

from __future__ import annotations

import sqlite3
from pathlib import Path


class WriteLock:
    """Every write of a store on ``db`` fails (after its busy timeout) until ``release``."""

    def __init__(self, db: Path) -> None:
        self.conn = sqlite3.connect(db, isolation_level=None)
        self.conn.execute("BEGIN EXCLUSIVE")

    def release(self) -> None:
        self.conn.execute("COMMIT")
        self.conn.close()
