"""``rediss://``: the store over TLS to a server whose certificate the URL's CA signed, and a clear error at open
for a certificate it cannot verify."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from store_helpers import CN, HOUR0, send, verify

from flask_otp_conversion.store import open_store
from flask_otp_conversion.store.redis import RedisStoreError, RedisUnavailableError
from tests.servers.redis import RedisServer, fresh_prefix, running


@pytest.fixture(scope="module")
def tls_server() -> Iterator[RedisServer]:
    with running(tls=True) as server:
        yield server


def test_a_rediss_url_with_the_servers_ca_records_and_matches(tls_server: RedisServer) -> None:
    url = tls_server.url(fresh_prefix())
    assert url.startswith("rediss://")
    store = open_store(url)
    assert send(store, CN, "m1", HOUR0)
    assert verify(store, CN, HOUR0 + 5).enqueued
    store.close()


def test_a_certificate_that_cannot_be_verified_fails_at_open_not_as_an_outage(tls_server: RedisServer) -> None:
    url = tls_server.url(fresh_prefix()).split("?", 1)[0]  # no ssl_ca_certs: the system's CAs do not know it
    with pytest.raises(RedisStoreError, match="CERTIFICATE_VERIFY_FAILED") as info:
        open_store(url)
    assert not isinstance(info.value, RedisUnavailableError)
