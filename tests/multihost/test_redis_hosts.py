"""Hosts on one Redis through a crash and restart of the server (what every store shares is in
``test_hosts_sharing_a_store.py``)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from flask_otp_conversion.store import open_store
from flask_otp_conversion.testing import EmulatorServer
from tests.multihost.harness import FAST, assert_reported_once, messages, running_hosts, stop_host, wait_reported
from tests.servers.redis import PASSWORD, RedisServer, fresh_prefix


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
        assert_reported_once(emulator, serials)
        logs = [stop_host(host) for host in (a, b)]
    assert any("ConnectionError" in log for log in logs), "the outage was never noticed"
    assert all(PASSWORD not in log for log in logs)
