"""The store servers the hosts share: a fresh store per test, on PostgreSQL or on Redis."""

from __future__ import annotations

import pytest

from tests.servers.redis import RedisServer, fresh_prefix


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """A fresh store (a prefix of its own) on the session's server."""
    return redis_server.url(fresh_prefix())


@pytest.fixture(params=["postgresql", "redis"])
def shared_store_url(request: pytest.FixtureRequest) -> str:
    """A fresh store on a server every host reaches: each test that takes it runs on PostgreSQL and on Redis."""
    url: str = request.getfixturevalue(f"{request.param}_url")
    return url
