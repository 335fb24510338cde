"""Hosts on one PostgreSQL through a restart of the server (what every store shares is in
``test_hosts_sharing_a_store.py``)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from flask_otp_conversion.testing import EmulatorServer
from tests.multihost.harness import FAST, assert_reported_once, messages, running_hosts, stop_host, wait_reported
from tests.servers.postgresql import PostgreSQLServer


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
        assert_reported_once(emulator, serials)
        logs = [stop_host(host) for host in (a, b)]
    assert all("unavailable" in log for log in logs), "the outage was never noticed"
    assert all(private_postgresql_server.url() not in log for log in logs)
