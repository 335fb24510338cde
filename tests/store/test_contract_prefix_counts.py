"""Contract: ``prefix_counts``, the window's sends and verifications per number prefix (the per-prefix alarm)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import psycopg
import pytest
from store_helpers import HOUR0, send, verify

from flask_otp_conversion.store import PrefixCount, SQLiteStore, Store, open_store
from flask_otp_conversion.store.postgresql import PREFIX_COUNTS_SQL as PG_PREFIX_COUNTS
from flask_otp_conversion.store.sqlite import PREFIX_COUNTS_SQL as SQLITE_PREFIX_COUNTS
from tests.servers.postgresql import PostgreSQLServer

SINCE = HOUR0 - 900


def counted(store: Store, digits: int = 2, *, since: float = SINCE, until: float = HOUR0) -> list[tuple[str, int, int]]:
    return [(c.prefix, c.sends, c.verified) for c in store.prefix_counts(since=since, until=until, digits=digits)]


def test_sends_are_grouped_by_calling_code_and_the_next_digits(store: Store) -> None:
    phones = ("+447700900001", "+447700800002", "+447800900003", "+14155550123", "+14165550123", "+2348031234567")
    for n, phone in enumerate(phones):
        send(store, phone, f"m{n}", HOUR0 - 60)
    assert counted(store) == [("+141", 2, 0), ("+23480", 1, 0), ("+4477", 2, 0), ("+4478", 1, 0)]


def test_each_prefix_names_its_calling_code(store: Store) -> None:
    send(store, "+2348031234567", "m1", HOUR0 - 60)
    send(store, "+14155550123", "m2", HOUR0 - 60)
    assert store.prefix_counts(since=SINCE, until=HOUR0, digits=3) == [
        PrefixCount("+1415", "1", 1, 0),
        PrefixCount("+234803", "234", 1, 0),
    ]


def test_verified_sends_are_counted_per_prefix(store: Store) -> None:
    for n, phone in enumerate(("+447700900001", "+447700900002", "+447800900003")):
        send(store, phone, f"m{n}", HOUR0 - 60)
    verify(store, "+447700900002", HOUR0 - 30, message_id="m1")
    assert counted(store) == [("+4477", 2, 1), ("+4478", 1, 0)]


def test_the_range_takes_sends_from_since_up_to_but_not_at_until(store: Store) -> None:
    for n, at in enumerate((SINCE - 0.5, SINCE, HOUR0 - 0.5, HOUR0)):
        send(store, f"+44770090000{n}", f"m{n}", at)
    assert counted(store) == [("+4477", 2, 0)]


def test_a_send_verified_after_the_window_counts_as_verified(store: Store) -> None:
    """The window is of sends: a verification that came later still converts its send, as in ``counts``."""
    send(store, "+447700900001", "m1", HOUR0 - 60)
    verify(store, "+447700900001", HOUR0 + 600, message_id="m1")
    assert counted(store) == [("+4477", 1, 1)]


def test_a_settled_send_verified_late_counts_as_verified(store: Store) -> None:
    send(store, "+447700900001", "m1", HOUR0 - 60, provider="alibaba")
    store.enqueue_unverified(provider="alibaba", account=None, sent_after=0, sent_before=HOUR0, limit=5, now=HOUR0)
    before = counted(store)
    verify(store, "+447700900001", HOUR0 + 5, message_id="m1", provider="alibaba")
    assert (before, counted(store)) == ([("+4477", 1, 0)], [("+4477", 1, 1)])


def test_a_number_shorter_than_the_prefix_counts_under_the_whole_number(store: Store) -> None:
    send(store, "+4477009001", "short", HOUR0 - 60)
    send(store, "+447700900123", "long", HOUR0 - 60)
    assert counted(store, digits=12) == [("+4477009001", 1, 0), ("+447700900123", 1, 0)]


def test_pruned_sends_are_not_counted(store: Store) -> None:
    send(store, "+447700900001", "old", HOUR0 - 7200)
    send(store, "+447700900002", "new", HOUR0 - 60)
    store.prune(before=HOUR0 - 3600)
    assert counted(store, since=0) == [("+4477", 1, 0)]


def test_an_empty_or_reversed_range_has_no_prefixes(store: Store) -> None:
    send(store, "+447700900001", "m1", HOUR0 - 60)
    assert counted(store, since=HOUR0, until=HOUR0) == counted(store, since=HOUR0, until=SINCE) == []


@pytest.mark.parametrize("digits", [0, -1, 13, 2.0, "2", True, None], ids=repr)
def test_digits_out_of_range_or_not_an_int_are_refused(store: Store, digits: object) -> None:
    with pytest.raises(ValueError, match="digits"):
        store.prefix_counts(since=SINCE, until=HOUR0, digits=digits)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), "0", None], ids=repr)
def test_a_time_that_is_not_finite_seconds_is_refused(store: Store, bad: object) -> None:
    with pytest.raises(ValueError, match="since"):
        store.prefix_counts(since=bad, until=HOUR0, digits=2)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="until"):
        store.prefix_counts(since=SINCE, until=bad, digits=2)  # type: ignore[arg-type]


def test_sqlite_reads_the_window_by_the_sent_at_index(tmp_path: Path) -> None:
    """Bounded cost: the query is a range of ``messages_sent``, never a scan of the retention's sends."""
    SQLiteStore(tmp_path / "store.db").close()
    conn = sqlite3.connect(tmp_path / "store.db")
    try:
        plan = conn.execute("EXPLAIN QUERY PLAN " + SQLITE_PREFIX_COUNTS, (6, SINCE, HOUR0)).fetchall()
    finally:
        conn.close()
    details = " | ".join(str(row[-1]) for row in plan)
    assert "USING INDEX messages_sent (sent_at>? AND sent_at<?)" in details, details


def test_postgresql_can_read_the_window_by_the_sent_at_index(postgresql_server: PostgreSQLServer) -> None:
    """With sequential scans priced out, the plan is a range of ``otp_sends_sent``: the index serves the query
    (on a table of a week's sends the planner picks it for a 15-minute window by itself)."""
    url = postgresql_server.fresh_url()
    store = open_store(url)
    store.close()
    schema = url.rsplit("schema=", 1)[1]
    with psycopg.connect(postgresql_server.url(), autocommit=True) as conn:
        conn.execute(f"SET search_path TO {schema}")
        conn.execute("SET enable_seqscan = off")
        plan = "\n".join(str(row[0]) for row in conn.execute("EXPLAIN " + PG_PREFIX_COUNTS, (6, SINCE, HOUR0)))
    assert "otp_sends_sent" in plan, plan
