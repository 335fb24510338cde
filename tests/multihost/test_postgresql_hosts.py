"""Several hosts on one PostgreSQL: each a gunicorn of its own with its own instance folder (spool, deliverer
lock), nothing shared but the database; the provider emulator counts what reaches it."""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from flask_otp_conversion.store import open_store
from flask_otp_conversion.testing import EmulatorServer, Fault
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
from tests.servers.postgresql import PostgreSQLServer

#: Short provider timeouts, so that a row's lease (send window + connect + read + ack margin) is a few seconds.
FAST = {"HTTP_CONNECT_TIMEOUT": 1.0, "HTTP_READ_TIMEOUT": 1.0}


def assert_reported_once(server: EmulatorServer, serials: list[str]) -> None:
    time.sleep(1.5)  # room for a duplicate to show up
    assert Counter(reported_serials(server.emulator)) == Counter(serials)


@pytest.mark.timeout(90)
def test_a_send_through_one_host_verified_through_another_is_reported_once(
    tmp_path: Path, provider_emulator_server: EmulatorServer, postgresql_url: str
) -> None:
    phones, serials = messages(provider_emulator_server.emulator, "+861371111", 20)
    with running_hosts(tmp_path, provider_emulator_server, postgresql_url, 2) as (a, b):
        for phone, serial in zip(phones, serials, strict=True):
            a.send(phone, serial)
        for phone in phones:
            b.verify(phone)
        wait_reported(provider_emulator_server.emulator, serials)
        assert_reported_once(provider_emulator_server, serials)


@pytest.mark.timeout(90)
def test_degrade_on_through_one_host_stops_delivery_on_another(
    tmp_path: Path, provider_emulator_server: EmulatorServer, postgresql_url: str
) -> None:
    emulator = provider_emulator_server.emulator
    phones, serials = messages(emulator, "+861372222", 60)
    # 10 reports/s: the backlog takes six seconds, so it is still draining when A switches delivery off.
    with running_hosts(tmp_path, provider_emulator_server, postgresql_url, 2, RATE_LIMITS={"ReportConversion": 10}) as (
        a,
        b,
    ):
        for phone, serial in zip(phones, serials, strict=True):
            b.send(phone, serial)
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
    tmp_path: Path, provider_emulator_server: EmulatorServer, postgresql_url: str
) -> None:
    emulator = provider_emulator_server.emulator
    phones, serials = messages(emulator, "+861373333", 120)
    with running_hosts(
        tmp_path, provider_emulator_server, postgresql_url, 4, RATE_LIMITS={"ReportConversion": 20}
    ) as hosts:
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
    tmp_path: Path, provider_emulator_server: EmulatorServer, postgresql_url: str
) -> None:
    emulator = provider_emulator_server.emulator
    phones, serials = messages(emulator, "+861374444", 10)
    emulator.inject("ReportConversion", Fault.hang(30))  # A claims, sends, and never hears back
    a = start_host(tmp_path, "a", provider_emulator_server, postgresql_url, **FAST)
    for phone, serial in zip(phones, serials, strict=True):
        a.send(phone, serial)
        a.verify(phone)
    store = open_store(postgresql_url)
    deadline = time.monotonic() + 20
    # Every verification applied (none left in A's spool, which dies with the host) and requests hanging.
    while time.monotonic() < deadline and not (
        store.outbox_stats(now=time.time()).pending == len(serials) and emulator.calls(action="ReportConversion")
    ):
        time.sleep(0.05)
    store.close()
    a.kill()
    emulator.clear_faults()
    emulator.release_hangs()
    with running_hosts(tmp_path / "then", provider_emulator_server, postgresql_url, 1, **FAST):
        wait_reported(emulator, serials)
        assert_reported_once(provider_emulator_server, serials)


@pytest.mark.timeout(120)
def test_a_postgresql_restart_in_the_middle_of_traffic_loses_nothing(
    tmp_path: Path, provider_emulator_server: EmulatorServer, private_postgresql_server: PostgreSQLServer
) -> None:
    emulator = provider_emulator_server.emulator
    phones, serials = messages(emulator, "+861375555", 60)
    before, during, after = range(0, 20), range(20, 40), range(40, 60)
    url = private_postgresql_server.fresh_url(connect_timeout="1", statement_timeout="2")
    down = threading.Event()

    def outage() -> None:
        private_postgresql_server.stop("immediate")  # as after a crash: recovery from the WAL at the start
        down.set()
        time.sleep(3)
        private_postgresql_server.start()

    restart = threading.Thread(target=outage)
    with running_hosts(tmp_path, provider_emulator_server, url, 2, **FAST) as (a, b):
        for n in before:
            a.send(phones[n], serials[n])
        restart.start()
        down.wait()
        for n in before:  # spooled on b while the database is down
            b.verify(phones[n])
        for n in during:  # sent through a (held in its memory), verified through b (spooled there)
            a.send(phones[n], serials[n])
            b.verify(phones[n])
        restart.join()
        # No waiting for a to write what it held: b's applier waits for a send still on its way after an outage.
        for n in after:
            (a if n % 2 else b).send(phones[n], serials[n])
            (b if n % 2 else a).verify(phones[n])
        wait_reported(emulator, serials, timeout=60)
        assert_reported_once(provider_emulator_server, serials)
        logs = [stop_host(host) for host in (a, b)]
    assert all("unavailable" in log for log in logs), "the outage was never noticed"
    assert all(private_postgresql_server.url() not in log for log in logs)


@pytest.mark.timeout(120)
def test_two_hosts_of_four_gunicorn_workers_under_load_report_each_verification_once(
    tmp_path: Path, provider_emulator_server: EmulatorServer, postgresql_url: str
) -> None:
    emulator = provider_emulator_server.emulator
    phones, serials = messages(emulator, "+861376666", 200)
    with running_hosts(tmp_path, provider_emulator_server, postgresql_url, 2, workers=4) as (a, b):

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
