"""Fixtures for the store tests: the contract suite runs once per store factory.

A new engine plugs in by adding one ``StoreFactory`` to ``FACTORIES``: its ``url`` may ask for fixtures of
its own (a server started for the session) through ``request.getfixturevalue``. Factories whose store is shared
by processes also run the multi-process test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from flask_otp_conversion.store import Store, open_store
from tests.servers.redis import fresh_prefix


@dataclass(frozen=True)
class StoreFactory:
    name: str
    #: The URL of a fresh, empty store for one test.
    url: Callable[[pytest.FixtureRequest, Path], str]
    #: Several processes opening the URL share one store (the concurrency test runs on these).
    shared_by_processes: bool


FACTORIES = [
    StoreFactory("sqlite", lambda request, tmp_path: f"sqlite:///{tmp_path / 'store.db'}", shared_by_processes=True),
    StoreFactory("memory", lambda request, tmp_path: "memory://", shared_by_processes=False),
    StoreFactory(
        "postgresql",
        lambda request, tmp_path: request.getfixturevalue("postgresql_server").fresh_url(),
        shared_by_processes=True,
    ),
    StoreFactory(
        "redis",
        lambda request, tmp_path: request.getfixturevalue("redis_server").url(fresh_prefix()),
        shared_by_processes=True,
    ),
]


@pytest.fixture(params=FACTORIES, ids=lambda factory: factory.name)
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    factory: StoreFactory = request.param
    return factory.url(request, tmp_path)


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    opened = open_store(store_url)
    yield opened
    opened.close()


@pytest.fixture(
    params=[factory for factory in FACTORIES if factory.shared_by_processes], ids=lambda factory: factory.name
)
def shared_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of a fresh store that several processes can open at once."""
    factory: StoreFactory = request.param
    return factory.url(request, tmp_path)
