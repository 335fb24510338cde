"""Fixtures for the store tests: every behaviour test runs against both stores."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from flask_otp_conversion.store import Store, open_store


@pytest.fixture(params=["sqlite", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    url = f"sqlite:///{tmp_path / 'store.db'}" if request.param == "sqlite" else "memory://"
    opened = open_store(url)
    yield opened
    opened.close()
