"""The PostgreSQL store when the database goes away: calls fail within the URL's timeouts as
``PostgreSQLUnavailableError`` (never hanging), spooled verifications wait and are applied once it answers, and
a pool that outlived a restart carries on. On a server of this module's own, which the tests stop, start and
freeze (``SIGSTOP``: a server process that never answers, while the kernel still acknowledges its TCP)."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from flask import Flask, request
from store_helpers import CN, HOUR0, SG, send, verify, wait_for

from flask_otp_conversion import OTPConversion
from flask_otp_conversion.store import open_store
from flask_otp_conversion.store.base import Verification
from flask_otp_conversion.store.postgresql import PostgreSQLStore, PostgreSQLUnavailableError
from flask_otp_conversion.store.quarantine import quarantined
from flask_otp_conversion.store.spool import Spool, unapplied
from tests.conftest import AppFactory
from tests.servers.postgresql import PASSWORD, PostgreSQLServer

QUICK = {"connect_timeout": "1", "statement_timeout": "1", "lock_timeout": "0.5", "pool_timeout": "1"}
#: The client-side deadline of the frozen-server tests, in seconds; a call is "not hanging" well within 10 of them.
CALL_TIMEOUT = 1.0


@pytest.fixture
def server(private_postgresql_server: PostgreSQLServer) -> Iterator[PostgreSQLServer]:
    yield private_postgresql_server
    if private_postgresql_server.process is None or private_postgresql_server.process.poll() is not None:
        private_postgresql_server.start()  # a test that failed with the server down leaves it up for the next


@pytest.fixture
def pg(server: PostgreSQLServer) -> Iterator[PostgreSQLStore]:
    store = open_store(server.fresh_url(**QUICK))
    assert isinstance(store, PostgreSQLStore)
    yield store
    store.close()


@pytest.fixture
def pg_one(server: PostgreSQLServer) -> Iterator[PostgreSQLStore]:
    """A store on one pooled connection, so the backend a test freezes is the one its next call uses."""
    store = open_store(server.fresh_url(**QUICK, call_timeout=str(CALL_TIMEOUT), pool_size="1"))
    assert isinstance(store, PostgreSQLStore)
    yield store
    store.close()


@contextlib.contextmanager
def frozen(pids: list[int]) -> Iterator[None]:
    """Stop the processes (``SIGSTOP``) for the block; always resumed after, whatever the block raised."""
    try:
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        yield
    finally:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


def backend_of(store: PostgreSQLStore) -> int:
    """The pid of the server process behind the store's (only) pooled connection."""
    return int(store._execute("SELECT pg_backend_pid()")[0][0])


def every_server_process(server: PostgreSQLServer) -> list[int]:
    """The postmaster and every process it forked: freezing them all is a host that stopped running anything."""
    assert server.process is not None
    postmaster = server.process.pid
    found = [postmaster]
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == postmaster:
                found.append(int(stat.parent.name))
    return found


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never says a word, as a server that hung or a black-holed route."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    listener.close()


@pytest.mark.timeout(30)
def test_a_send_while_the_server_is_down_raises_unavailable(server: PostgreSQLServer, pg: PostgreSQLStore) -> None:
    server.stop()
    with pytest.raises(PostgreSQLUnavailableError):
        send(pg, CN, "m1", HOUR0)
    server.start()
    assert send(pg, CN, "m1", HOUR0)  # nothing was written by the failed call


@pytest.mark.timeout(30)
def test_a_pool_that_outlived_a_restart_carries_on(server: PostgreSQLServer, pg: PostgreSQLStore) -> None:
    send(pg, CN, "m1", HOUR0)  # the pool now holds a connection, which the restart breaks
    server.restart("immediate")
    assert verify(pg, CN, HOUR0 + 10, message_id="m1").enqueued
    assert pg.outbox_stats(now=HOUR0 + 20).pending == 1  # survived the crash: committed before it


@pytest.mark.timeout(30)
def test_a_server_that_never_answers_fails_the_call_within_the_connect_timeout(silent_port: int) -> None:
    store = open_store(f"postgresql://otp:x@127.0.0.1:{silent_port}/otp?connect_timeout=1")
    with pytest.raises(PostgreSQLUnavailableError):
        send(store, CN, "m1", HOUR0)
    store.close()


@pytest.mark.timeout(30)
def test_a_row_lock_held_elsewhere_fails_the_call_after_the_lock_timeout(
    server: PostgreSQLServer, pg: PostgreSQLStore
) -> None:
    pg.take_slots("ReportConversion", want=1, interval=0.1, horizon=1, now=HOUR0)
    with psycopg.connect(server.url()) as other:  # another process holding the schedule row
        other.execute(f"SET search_path = {pg.schema}")
        other.execute("SELECT * FROM otp_schedules FOR UPDATE")
        with pytest.raises(PostgreSQLUnavailableError, match="lock"):
            pg.take_slots("ReportConversion", want=1, interval=0.1, horizon=1, now=HOUR0)
    assert pg.take_slots("ReportConversion", want=1, interval=0.1, horizon=1, now=HOUR0)[1] == 1


@pytest.mark.timeout(60)
def test_verifications_spooled_during_an_outage_are_applied_once_it_answers(
    server: PostgreSQLServer, pg: PostgreSQLStore, tmp_path: Path
) -> None:
    send(pg, CN, "m1", HOUR0)
    send(pg, SG, "m2", HOUR0)
    spool = Spool(
        pg,
        str(tmp_path / "spool"),
        provider="tencent",
        match_window=900,
        logger=logging.getLogger("t"),
        autostart=False,
    )
    server.stop()
    spool.append(Verification(CN, None, HOUR0 + 10))
    spool.append(Verification(SG, "m2", HOUR0 + 11))
    with pytest.raises(OSError):  # store trouble: the pass stops, nothing is set aside as bad
        spool.apply_pending(everyone=True)
    assert quarantined(str(tmp_path / "spool")) == 0
    server.start()
    assert spool.apply_pending(everyone=True) == 2
    assert unapplied(pg, str(tmp_path / "spool")) == 0
    assert {item.message_id for item in pg.claim(provider="tencent", limit=5, lease_seconds=60, now=HOUR0 + 20)} == {
        "m1",
        "m2",
    }
    spool.close(1.0)


# A frozen server process: the client's own deadline (call_timeout) ---------------------------------------


@pytest.mark.timeout(60)
def test_a_call_whose_server_process_is_frozen_fails_at_its_deadline(pg_one: PostgreSQLStore) -> None:
    send(pg_one, CN, "m1", HOUR0)
    with frozen([backend_of(pg_one)]):
        started = time.monotonic()
        with pytest.raises(PostgreSQLUnavailableError, match="call_timeout") as info:
            send(pg_one, CN, "m2", HOUR0)
        waited = time.monotonic() - started
    assert waited < 10 * CALL_TIMEOUT  # bounded, not for ever (timings are not asserted any tighter)
    assert PASSWORD not in str(info.value)


@pytest.mark.timeout(60)
def test_a_call_cut_at_its_deadline_is_not_run_again_on_a_fresh_connection(pg_one: PostgreSQLStore) -> None:
    # Only the one backend is frozen: a second try on a fresh connection would succeed, so the raise shows none.
    frozen_backend = backend_of(pg_one)
    with frozen([frozen_backend]), pytest.raises(PostgreSQLUnavailableError):
        pg_one.take_slots("ReportConversion", want=1, interval=0.1, horizon=1, now=HOUR0)


@pytest.mark.timeout(60)
def test_the_pool_carries_on_on_a_fresh_connection_after_a_call_was_cut(pg_one: PostgreSQLStore) -> None:
    frozen_backend = backend_of(pg_one)
    with frozen([frozen_backend]):
        with pytest.raises(PostgreSQLUnavailableError):
            send(pg_one, CN, "m1", HOUR0)
        assert backend_of(pg_one) != frozen_backend  # still frozen: the cut connection was dropped
        assert verify(pg_one, SG, HOUR0 + 10).message_id is None  # and the store works on the fresh one


@pytest.mark.timeout(90)
def test_an_app_answers_sends_and_spools_verifications_while_its_server_is_frozen(
    server: PostgreSQLServer, make_app: AppFactory
) -> None:
    url = server.fresh_url(**QUICK, call_timeout=str(CALL_TIMEOUT), pool_size="1")
    app, conversion = make_app(OTP_CONVERSION_STORE_URL=url)
    add_send_and_verify_routes(app, conversion)
    client = app.test_client()
    assert client.post("/send", json={"phone": CN, "message_id": "m1"}).status_code == 202  # a pooled connection
    with frozen(every_server_process(server)):
        started = time.monotonic()
        sent = client.post("/send", json={"phone": SG, "message_id": "m2"})
        verified = client.post("/verify", json={"phone": CN})
        waited = time.monotonic() - started
        assert (sent.status_code, verified.status_code) == (202, 200)  # the documented failure: held, spooled
        assert waited < 10 * CALL_TIMEOUT
    state = app.extensions["otp_conversion"]
    assert wait_for(lambda: not state.holding.active, timeout=30)  # the held send written once it answers
    assert state.spool.apply_pending(everyone=True) == 1
    store = state.store
    assert not send(store, SG, "m2", HOUR0)  # m2 is there already
    claimed = store.claim(provider="tencent", limit=5, lease_seconds=60, now=time.time() + 1)
    assert [item.message_id for item in claimed] == ["m1"]


def add_send_and_verify_routes(app: Flask, conversion: OTPConversion) -> None:
    """``POST /send`` records a send as an app's own SMS code would; ``POST /verify`` is a verify route."""

    @app.post("/send")
    def send_route() -> tuple[dict[str, bool], int]:
        body = request.get_json()
        conversion.record_sent(body["phone"], body["message_id"])
        return {"sent": True}, 202

    @app.post("/verify")
    @conversion.verify_route(phone="phone")
    def verify_route() -> dict[str, bool]:
        return {"verified": True}
