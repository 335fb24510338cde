"""``open_store``: which URL gives which store, and errors that never echo a secret."""

from __future__ import annotations

from pathlib import Path

import pytest

from flask_otp_conversion.store import MemoryStore, SQLiteStore, open_store


def test_a_sqlite_url_with_an_absolute_path_opens_that_file(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path / 'x.db'}")
    assert isinstance(store, SQLiteStore)
    assert (tmp_path / "x.db").exists()
    store.close()


def test_memory_urls_open_a_memory_store() -> None:
    assert isinstance(open_store("memory://"), MemoryStore)
    assert isinstance(open_store("sqlite:///:memory:"), MemoryStore)


def test_an_unknown_scheme_is_named_but_the_url_is_not_echoed() -> None:
    with pytest.raises(ValueError, match="'mysql'") as info:
        open_store("mysql://app:s3cret@db/otp")
    assert "s3cret" not in str(info.value)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("app:s3cret@db", "no recognisable scheme"),
        ("", "no recognisable scheme"),
        ("sqlite:///", "needs a file path"),
        ("sqlite://s3cret/x.db", "three slashes"),
        ("memory://s3cret", "takes nothing"),
        ("sqlite:////tmp/x.db?synchronous=off", "synchronous must be one of normal, full"),
        ("sqlite:////tmp/x.db?busy_timeout=soon", "busy_timeout must be a number"),
        ("sqlite:////tmp/x.db?busy_timeout=0", "busy_timeout must be > 0"),
        ("sqlite:////tmp/x.db?journal=s3cret", "unknown option 'journal'"),
    ],
)
def test_a_bad_url_is_refused_with_a_clear_message(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        open_store(url)
    assert "s3cret" not in str(info.value)
