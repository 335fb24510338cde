"""Several hosts on one store server (PostgreSQL, then Redis): each a gunicorn of its own with its own instance
folder (spool, deliverer lock), nothing shared but the store; the provider emulator counts what reaches it."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from flask import Flask

from flask_otp_conversion import OTPConversion
from flask_otp_conversion.store import open_store
from flask_otp_conversion.testing import EmulatorServer, Fault
from tests.multihost.harness import (
    FAST,
    assert_reported_once,
    max_in_window,
    messages,
    reports,
    running_hosts,
    settle,
    start_host,
    wait_reported,
)


@pytest.mark.timeout(90)
def test_a_send_through_one_host_verified_through_another_is_reported_once(
    tmp_path: Path, provider_emulator_server: EmulatorServer, shared_store_url: str
) -> None:
    emulator = provider_emulator_server.emulator
    phones, serials = messages(emulator, "+861371111", 20)
    with running_hosts(tmp_path, provider_emulator_server, shared_store_url, 2) as (a, b):
        for phone, serial in zip(phones, serials, strict=True):
            a.send(phone, serial)
        for phone in phones:
            b.verify(phone)
        wait_reported(emulator, serials)
        assert_reported_once(emulator, serials)


@pytest.mark.timeout(90)
def test_degrade_on_through_one_host_stops_delivery_on_another(
    tmp_path: Path, provider_emulator_server: EmulatorServer, shared_store_url: str
) -> None:
    emulator = provider_emulator_server.emulator
    phones, serials = messages(emulator, "+861372222", 60)
    # 10 reports/s: the backlog takes six seconds, so it is still draining when A switches delivery off.
    limits = {"ReportConversion": 10}
    with running_hosts(tmp_path, provider_emulator_server, shared_store_url, 2, RATE_LIMITS=limits) as (a, b):
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
        assert_reported_once(emulator, serials)


@pytest.mark.timeout(90)
def test_a_rate_cap_of_20_per_second_holds_across_four_delivering_hosts(
    tmp_path: Path, provider_emulator_server: EmulatorServer, shared_store_url: str
) -> None:
    emulator = provider_emulator_server.emulator
    phones, serials = messages(emulator, "+861373333", 120)
    limits = {"ReportConversion": 20}
    with running_hosts(tmp_path, provider_emulator_server, shared_store_url, 4, RATE_LIMITS=limits) as hosts:
        for host in hosts:  # every host delivers from its first request
            assert host.get("/status").status_code == 200
        for n, (phone, serial) in enumerate(zip(phones, serials, strict=True)):
            hosts[n % 4].send(phone, serial)
            hosts[(n + 1) % 4].verify(phone)
        wait_reported(emulator, serials, timeout=40)
        assert_reported_once(emulator, serials)
        delivering = [host.get("/status").json()["delivering"] for host in hosts]
    assert delivering == [True] * 4
    assert max_in_window([call.received_at for call in reports(emulator, ok=None)], 1.0) <= 20


@pytest.mark.timeout(90)
def test_rows_claimed_by_a_killed_host_are_delivered_by_another_after_their_lease(
    tmp_path: Path, provider_emulator_server: EmulatorServer, shared_store_url: str
) -> None:
    emulator = provider_emulator_server.emulator
    phones, serials = messages(emulator, "+861374444", 10)
    emulator.inject("ReportConversion", Fault.hang(30))  # A claims, sends, and never hears back
    a = start_host(tmp_path, "a", provider_emulator_server, shared_store_url, **FAST)
    for phone, serial in zip(phones, serials, strict=True):
        a.send(phone, serial)
        a.verify(phone)
    store = open_store(shared_store_url)
    while not emulator.calls(action="ReportConversion") or store.outbox_stats(now=time.time()).pending < len(serials):
        time.sleep(0.05)  # every verification applied (none left in A's spool, which no other host reads)
    store.close()
    a.kill()
    settle(emulator)  # a request A wrote just before dying must meet the hang too, or it would count as sent
    emulator.clear_faults()
    emulator.release_hangs()
    with running_hosts(tmp_path / "then", provider_emulator_server, shared_store_url, 1, **FAST):
        wait_reported(emulator, serials)
        assert_reported_once(emulator, serials)


@pytest.mark.timeout(120)
def test_two_hosts_of_four_gunicorn_workers_under_load_report_each_verification_once(
    tmp_path: Path, provider_emulator_server: EmulatorServer, shared_store_url: str
) -> None:
    emulator = provider_emulator_server.emulator
    phones, serials = messages(emulator, "+861376666", 200)
    with running_hosts(tmp_path, provider_emulator_server, shared_store_url, 2, workers=4) as (a, b):

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
        assert_reported_once(emulator, serials)


@pytest.mark.timeout(90)
def test_sends_through_one_host_count_toward_send_allowed_on_another(
    tmp_path: Path, provider_emulator_server: EmulatorServer, shared_store_url: str
) -> None:
    emulator = provider_emulator_server.emulator
    phones, serials = messages(emulator, "+861373333", 1)
    phone = phones[0]
    with running_hosts(tmp_path, provider_emulator_server, shared_store_url, 1) as (a,):
        for i in range(3):
            a.send(phone, f"{serials[0]}-{i}")
        # Host B: an app of its own (its own instance folder) on the same store, in this process.
        b = Flask("host-b", instance_path=str(tmp_path / "host-b"))
        b.config.update(
            OTP_CONVERSION_PROVIDER="tencent",
            OTP_CONVERSION_TENCENT_ENDPOINT=provider_emulator_server.url,
            OTP_CONVERSION_TENCENT_SECRET_ID=emulator.TENCENT_SECRET_ID,
            OTP_CONVERSION_TENCENT_SECRET_KEY=emulator.TENCENT_SECRET_KEY,
            OTP_CONVERSION_TENCENT_SDK_APP_ID=emulator.TENCENT_SDK_APP_ID,
            OTP_CONVERSION_STORE_URL=shared_store_url,
            OTP_CONVERSION_REPORTER_AUTOSTART=False,
            OTP_CONVERSION_SEND_LIMIT_NUMBER=3,
        )
        conversion = OTPConversion(b)
        try:
            with b.app_context():
                decision = conversion.send_allowed(phone)
                other = conversion.send_allowed(phones[0][:-1] + ("1" if phone[-1] != "1" else "2"))
        finally:
            b.extensions["otp_conversion"].shutdown()
    assert (decision.allowed, decision.reason) == (False, "number-limit")
    assert other.allowed
