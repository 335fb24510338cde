"""What the Redis store adds to the contract: its URL, persistence check, data format, errors without the
password, bounded waits, restarts, forks, and the schedule script agreeing with ``rules.draw_slots``."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from store_helpers import CN, HOUR0, send, verify

from flask_otp_conversion.store import open_store
from flask_otp_conversion.store.redis import RedisStore, RedisStoreError, RedisUnavailableError
from flask_otp_conversion.store.redis_url import parse_url
from flask_otp_conversion.store.rules import draw_slots
from tests.servers.redis import PASSWORD, RedisServer, fresh_prefix, running


@pytest.fixture
def store(redis_server: RedisServer) -> Iterator[RedisStore]:
    opened = open_store(redis_server.url(fresh_prefix()))
    assert isinstance(opened, RedisStore)
    yield opened
    opened.close()


def test_the_url_gives_host_port_database_prefix_and_timeouts() -> None:
    options = parse_url("rediss://app:p%40ss@cache.internal:6380/3?prefix=shop:&connect_timeout=0.5&socket_timeout=2")
    assert (options.host, options.port, options.db, options.tls) == ("cache.internal", 6380, 3, True)
    assert (options.username, options.password, options.prefix) == ("app", "p@ss", "shop:")
    assert (options.connect_timeout, options.socket_timeout) == (0.5, 2.0)
    assert "p@ss" not in repr(options)


def test_the_url_defaults_to_the_documented_prefix_and_database_0() -> None:
    options = parse_url("redis://localhost")
    assert (options.port, options.db, options.prefix) == (6379, 0, "otp-conversion:")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://:s3cret@host/zero", "database number"),
        ("redis://:s3cret@host:port/0", "malformed"),
        ("redis://:s3cret@host/0?socket_timeout=never", "socket_timeout must be a number"),
        ("redis://:s3cret@host/0?connect_timeout=0", "connect_timeout must be > 0"),
        ("redis://:s3cret@host/0?prefix=", "prefix must be 1 to 200"),
        ("redis://:s3cret@host/0?ssl_ca_certs=/ca.pem", "unknown option 'ssl_ca_certs'"),
        ("redis://:s3cret@host/0?password=s3cret", "unknown option 'password'"),
    ],
)
def test_a_bad_url_is_refused_without_echoing_the_password(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        open_store(url)
    assert "s3cret" not in str(info.value)


def test_two_prefixes_on_one_server_are_two_stores(redis_server: RedisServer) -> None:
    first, second = (open_store(redis_server.url(fresh_prefix())) for _ in range(2))
    send(first, CN, "m1", HOUR0)
    assert verify(second, CN, HOUR0 + 5).message_id is None
    assert verify(first, CN, HOUR0 + 5).enqueued
    assert second.outbox_stats(now=HOUR0 + 10).pending == 0


def test_every_key_is_under_the_prefix(redis_server: RedisServer, store: RedisStore) -> None:
    send(store, CN, "m1", HOUR0)
    verify(store, CN, HOUR0 + 5)
    store.set_flag("degraded", "1")
    client = redis_server.client()
    assert client.keys(store.prefix + "*")
    assert not [key for key in client.keys("*") if not key.startswith("test-")]


def test_a_newer_data_format_is_refused(redis_server: RedisServer) -> None:
    prefix = fresh_prefix()
    redis_server.client().set(prefix + "format", "2")
    with pytest.raises(RuntimeError, match="data format version 2 is newer"):
        open_store(redis_server.url(prefix))


def test_a_wrong_password_fails_at_open_without_printing_either_password(redis_server: RedisServer) -> None:
    url = redis_server.url(fresh_prefix()).replace(":rd-", ":wrong-rd-", 1)
    with pytest.raises(RedisStoreError) as info:
        open_store(url)
    assert "rd-s3cret" not in str(info.value)
    assert "AuthenticationError" in str(info.value) or "WRONGPASS" in str(info.value)


def test_a_server_that_is_down_at_start_is_logged_and_each_call_fails_as_unavailable(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens there once closed
    with caplog.at_level(logging.ERROR, logger="flask_otp_conversion"):
        store = open_store(f"redis://:{quote(PASSWORD, safe='')}@127.0.0.1:{port}/0")
    with pytest.raises(RedisUnavailableError) as info:
        send(store, CN, "m1", HOUR0)
    assert isinstance(info.value, OSError)  # what the spool takes for store trouble: it keeps the lines
    assert "127.0.0.1" in str(info.value)
    assert PASSWORD not in str(info.value) + caplog.text
    assert "sends fail" in caplog.text


@pytest.mark.timeout(20)
def test_a_server_that_never_answers_fails_the_call_after_the_socket_timeout() -> None:
    with socket.socket() as listener:  # accepts connections (the kernel's backlog) but never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        store = open_store(f"redis://127.0.0.1:{port}/0?socket_timeout=0.2&connect_timeout=0.2")
        with pytest.raises(RedisUnavailableError, match="Timeout"):
            store.get_flag("degraded")


def test_the_repr_names_the_server_and_prefix_but_not_the_password(store: RedisStore) -> None:
    assert PASSWORD not in repr(store)
    assert store.prefix in repr(store)


@pytest.mark.parametrize(
    ("appendonly", "appendfsync", "warning"),
    [
        ("yes", "always", None),
        ("yes", "everysec", "may lose the last second"),
        ("no", "always", "appendonly is off"),
    ],
)
def test_the_persistence_settings_are_checked_at_start(
    appendonly: str, appendfsync: str, warning: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        running(appendonly=appendonly, appendfsync=appendfsync) as server,
        caplog.at_level(logging.WARNING, logger="flask_otp_conversion"),
    ):
        open_store(server.url(fresh_prefix())).close()
    found = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    if warning is None:
        assert found == []
    else:
        assert len(found) == 1 and warning in found[0]


def test_an_evicting_server_is_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    with running() as server:
        server.client().config_set("maxmemory-policy", "allkeys-lru")
        with caplog.at_level(logging.WARNING, logger="flask_otp_conversion"):
            open_store(server.url(fresh_prefix())).close()
    assert "maxmemory-policy allkeys-lru" in caplog.text


def test_a_server_that_refuses_config_get_is_noted_not_refused(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    prefix = fresh_prefix()
    admin = redis_server.client()
    admin.acl_setuser("app", enabled=True, passwords=["+app-pw"], keys=[f"{prefix}*"], commands=["+@all", "-config"])
    try:
        with caplog.at_level(logging.INFO, logger="flask_otp_conversion"):
            store = open_store(f"redis://app:app-pw@127.0.0.1:{redis_server.port}/0?prefix={prefix}")
        assert send(store, CN, "m1", HOUR0)
        assert "refuses CONFIG GET" in caplog.text
        store.close()
    finally:
        admin.acl_deluser("app")


@pytest.mark.timeout(60)
def test_the_store_carries_on_across_a_server_restart_with_its_data() -> None:
    with running() as server:
        store = open_store(server.url(fresh_prefix()))
        send(store, CN, "m1", HOUR0)
        server.kill()  # a crash: with appendfsync always, everything acknowledged is in the AOF
        with pytest.raises(RedisUnavailableError):
            verify(store, CN, HOUR0 + 5)
        server.start()
        assert verify(store, CN, HOUR0 + 5).enqueued  # the same store object, its pooled connection dead
        assert store.outbox_stats(now=HOUR0 + 10).pending == 1
        store.close()


def test_a_forked_child_uses_connections_of_its_own(store: RedisStore) -> None:
    for n in range(50):
        send(store, f"+86137000{n:05d}", f"m{n}", HOUR0)
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: verifies the even sends while the parent verifies the odd ones
        try:
            ok = all(verify(store, f"+86137000{n:05d}", HOUR0 + 5).enqueued for n in range(0, 50, 2))
            os.write(writer, b"1" if ok else b"0")
        finally:
            os._exit(0)
    os.close(writer)
    assert all(verify(store, f"+86137000{n:05d}", HOUR0 + 5).enqueued for n in range(1, 50, 2))
    os.waitpid(pid, 0)
    assert os.read(reader, 1) == b"1"
    os.close(reader)
    assert store.outbox_stats(now=HOUR0 + 10).pending == 50


@settings(max_examples=150, deadline=None)
@given(
    state=st.one_of(st.none(), st.floats(min_value=HOUR0 - 100, max_value=HOUR0 + 100)),
    want=st.integers(min_value=1, max_value=50),
    interval=st.floats(min_value=0.001, max_value=5),
    horizon=st.floats(min_value=0, max_value=30),
    now=st.floats(min_value=HOUR0 - 100, max_value=HOUR0 + 100),
)
def test_the_schedule_script_draws_the_slots_rules_draw_slots_does(
    redis_server: RedisServer, state: float | None, want: int, interval: float, horizon: float, now: float
) -> None:
    store = open_store(redis_server.url(fresh_prefix()))
    if state is not None:
        redis_server.client().hset(store.prefix + "schedules", "rate", repr(state))
    first, count, following = draw_slots(state, want=want, interval=interval, horizon=horizon, now=now)
    assert store.take_slots("rate", want=want, interval=interval, horizon=horizon, now=now) == (first, count)
    assert store.take_slots("rate", want=1, interval=interval, horizon=1e9, now=0.0)[0] == following
    store.close()


def test_a_missing_driver_is_an_init_error_naming_the_extra() -> None:
    code = (
        "import sys; sys.modules['redis'] = None\n"
        "from flask_otp_conversion.config import load_settings, ConfigurationError\n"
        "try:\n"
        "    load_settings({'OTP_CONVERSION_PROVIDER': 'tencent', 'OTP_CONVERSION_STORE_URL': 'redis://:pw@h/0',"
        " 'OTP_CONVERSION_TENCENT_SECRET_ID': 'i', 'OTP_CONVERSION_TENCENT_SECRET_KEY': 'k',"
        " 'OTP_CONVERSION_TENCENT_SDK_APP_ID': '1400000000'}, instance_path='/i')\n"
        "except ConfigurationError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "flask-otp-conversion[redis]" in out
