"""The PostgreSQL store when the database goes away: calls fail within the URL's timeouts as
``PostgreSQLUnavailableError`` (never hanging), spooled verifications wait and are applied once it answers, and
a pool that outlived a restart carries on. On a server of this module's own, which the tests stop and start."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from store_helpers import CN, HOUR0, SG, send, verify

from flask_otp_conversion.store import open_store
from flask_otp_conversion.store.base import Verification
from flask_otp_conversion.store.postgresql import PostgreSQLStore, PostgreSQLUnavailableError
from flask_otp_conversion.store.quarantine import quarantined
from flask_otp_conversion.store.spool import Spool, unapplied
from tests.servers.postgresql import PostgreSQLServer

QUICK = {"connect_timeout": "1", "statement_timeout": "1", "lock_timeout": "0.5", "pool_timeout": "1"}


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
