"""Several hosts on one Redis: each a gunicorn of its own with its own instance folder (spool, deliverer lock),
nothing shared but the Redis server; the provider emulator counts what reaches it."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from flask_otp_conversion.store import open_store
from flask_otp_conversion.testing import EmulatorServer, Fault, ProviderEmulator
from tests.multihost.harness import (
    max_in_window,
    messages,
    reported_serials,
    reports,
    running_hosts,
    start_host,
    stop_host,
    wait_reported,
)
from tests.servers.redis import PASSWORD, RedisServer, fresh_prefix

#: Short provider timeouts, so that a row's lease (send window + connect + read + ack margin) is a few seconds.
FAST = {"HTTP_CONNECT_TIMEOUT": 1.0, "HTTP_READ_TIMEOUT": 1.0}


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """A fresh store (a prefix of its own) on the session's server."""
    return redis_server.url(fresh_prefix())


def settle(emulator: ProviderEmulator, quiet: float = 0.5) -> None:
    """Until no new call has reached the emulator for ``quiet`` seconds."""
    seen = -1
    while (count := len(emulator.calls())) != seen:
        seen = count
        time.sleep(quiet)


def assert_reported_once(server: EmulatorServer, serials: list[str]) -> None:
    time.sleep(1.5)  # room for a duplicate to show up
    assert Counter(reported_serials(server.emulator)) == Counter(serials)


@pytest.mark.timeout(90)
def test_a_send_through_one_host_verified_through_another_is_reported_once(
    tmp_path: Path, provider_emulator_server: EmulatorServer, redis_url: str
) -> None:
    phones, serials = messages(provider_emulator_server.emulator, "+861371111", 20)
    with running_hosts(tmp_path, provider_emulator_server, redis_url, 2) as (a, b):
        for phone, serial in zip(phones, serials, strict=True):
            a.send(phone, serial)
        for phone in phones:
            b.verify(phone)
        wait_reported(provider_emulator_server.emulator, serials)
        assert_reported_once(provider_emulator_server, serials)


@pytest.mark.timeout(90)
def test_degrade_on_through_one_host_stops_delivery_on_another(
    tmp_path: Path, provider_emulator_server: EmulatorServer, redis_url: str
) -> None:
    emulator = provider_emulator_server.emulator
    phones, serials = messages(emulator, "+861372222", 60)
    # 10 reports/s: the backlog takes six seconds, so it is still draining when A switches delivery off.
    with running_hosts(tmp_path, provider_emulator_server, redis_url, 2, RATE_LIMITS={"ReportConversion": 10}) as (
        a,
        b,
    ):
        for phone, serial in zip(phones, serials, strict=True):  # sends first: nothing to deliver yet
            b.send(phone, serial)
        for phone in phones:  # then the verifications, quick to post: most rows are still due at degrade
            b.verify(phone)
        while len(reports(emulator)) < 5:
            time.sleep(0.05)
        a.post("/degrade", {"on": True})
        switched = time.time()
        time.sleep(4)
        late = [call for call in reports(emulator, ok=None) if call.received_at > switched + 2.0]
        assert late == [], "delivery went on more than 2 s after degrade on"
        assert b.get("/status").json()["degraded"] is True
        assert len(reports(emulator)) < len(serials)
        a.post("/degrade", {"on": False})
        wait_reported(emulator, serials)
        assert_reported_once(provider_emulator_server, serials)


@pytest.mark.timeout(90)
def test_a_rate_cap_of_20_per_second_holds_across_four_delivering_hosts(
    tmp_path: Path, provider_emulator_server: EmulatorServer, redis_url: str
) -> None:
    emulator = provider_emulator_server.emulator
    phones, serials = messages(emulator, "+861373333", 120)
    with running_hosts(tmp_path, provider_emulator_server, redis_url, 4, RATE_LIMITS={"ReportConversion": 20}) as hosts:
        for host in hosts:  # every host delivers from its first request
            assert host.get("/status").status_code == 200
        for n, (phone, serial) in enumerate(zip(phones, serials, strict=True)):
            hosts[n % 4].send(phone, serial)
            hosts[(n + 1) % 4].verify(phone)
        wait_reported(emulator, serials, timeout=40)
        assert_reported_once(provider_emulator_server, serials)
        delivering = [host.get("/status").json()["delivering"] for host in hosts]
    assert delivering == [True] * 4
    assert max_in_window([call.received_at for call in reports(emulator, ok=None)], 1.0) <= 20


@pytest.mark.timeout(90)
def test_rows_claimed_by_a_killed_host_are_delivered_by_another_after_their_lease(
    tmp_path: Path, provider_emulator_server: EmulatorServer, redis_url: str
) -> None:
    emulator = provider_emulator_server.emulator
    phones, serials = messages(emulator, "+861374444", 10)
    emulator.inject("ReportConversion", Fault.hang(30))  # A claims, sends, and never hears back
    a = start_host(tmp_path, "a", provider_emulator_server, redis_url, **FAST)
    for phone, serial in zip(phones, serials, strict=True):
        a.send(phone, serial)
        a.verify(phone)
    store = open_store(redis_url)
    while not emulator.calls(action="ReportConversion") or store.outbox_stats(now=time.time()).pending < len(serials):
        time.sleep(0.05)  # every verification applied (none left in A's spool, which no other host reads)
    store.close()
    a.kill()
    settle(emulator)  # a request A wrote just before dying must meet the hang too, or it would count as sent
    emulator.clear_faults()
    emulator.release_hangs()
    with running_hosts(tmp_path / "then", provider_emulator_server, redis_url, 1, **FAST):
        wait_reported(emulator, serials)
        assert_reported_once(provider_emulator_server, serials)


@pytest.mark.timeout(120)
def test_a_redis_crash_and_restart_from_its_aof_in_the_middle_of_traffic_loses_nothing(
    tmp_path: Path, provider_emulator_server: EmulatorServer, private_redis_server: RedisServer
) -> None:
    emulator = provider_emulator_server.emulator
    phones, serials = messages(emulator, "+861375555", 60)
    url = private_redis_server.url(fresh_prefix(), connect_timeout="0.5", socket_timeout="1")
    with running_hosts(tmp_path, provider_emulator_server, url, 2, **FAST) as (a, b):
        for n, (phone, serial) in enumerate(zip(phones, serials, strict=True)):
            if n == 20:
                private_redis_server.kill()  # kill -9: what it acknowledged is in the AOF (appendfsync always)
                threading.Timer(2.0, private_redis_server.start).start()  # back after two seconds of traffic
            # Sends are refused (503) while Redis is down and tried again; verifications are spooled.
            (a if n % 2 else b).send(phone, serial)
            (b if n % 2 else a).verify(phone)
        wait_reported(emulator, serials, timeout=60)
        store = open_store(url)
        counted = store.counts(since=0, until=time.time() + 3600)
        store.close()
        unmatched = sum(row.unmatched for row in counted)
        assert unmatched == 0, f"{unmatched} verification(s) were applied before the send they verify was recorded"
        assert_reported_once(provider_emulator_server, serials)
        logs = [stop_host(host) for host in (a, b)]
    assert any("ConnectionError" in log for log in logs), "the outage was never noticed"
    assert all(PASSWORD not in log for log in logs)


@pytest.mark.timeout(120)
def test_two_hosts_of_four_gunicorn_workers_under_load_report_each_verification_once(
    tmp_path: Path, provider_emulator_server: EmulatorServer, redis_url: str
) -> None:
    emulator = provider_emulator_server.emulator
    phones, serials = messages(emulator, "+861376666", 200)
    with running_hosts(tmp_path, provider_emulator_server, redis_url, 2, workers=4) as (a, b):

        def client(lane: int) -> None:
            for n in range(lane, len(phones), 8):
                (a if n % 2 else b).send(phones[n], serials[n])
                (b if n % 2 else a).verify(phones[n])

        lanes = [threading.Thread(target=client, args=(lane,)) for lane in range(8)]
        for lane in lanes:
            lane.start()
        for lane in lanes:
            lane.join()
        wait_reported(emulator, serials, timeout=60)
        assert_reported_once(provider_emulator_server, serials)
