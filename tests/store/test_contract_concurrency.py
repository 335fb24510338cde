"""The contract's atomicity under real concurrency: threads of one process, and processes sharing one store."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from store_helpers import CN, HOUR0, send, verify

from flask_otp_conversion.store import Store, VerifyOutcome, open_store

WORKER = Path(__file__).with_name("store_worker.py")


@pytest.mark.timeout(30)
def test_threads_verifying_the_same_send_at_once_enqueue_it_once(store: Store) -> None:
    send(store, CN, "m1", HOUR0 + 100)
    barrier = threading.Barrier(8)
    outcomes: list[VerifyOutcome] = []

    def verify_at_once(by_id: bool) -> None:
        barrier.wait()
        outcomes.append(verify(store, CN, HOUR0 + 200, message_id="m1" if by_id else None))

    threads = [threading.Thread(target=verify_at_once, args=(n % 2 == 0,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(o.enqueued for o in outcomes) == [False] * 7 + [True]
    assert all(o.message_id == "m1" for o in outcomes)
    assert store.outbox_stats(now=HOUR0 + 300).pending == 1


@pytest.mark.timeout(30)
def test_threads_claiming_at_once_never_share_a_row(store: Store) -> None:
    for n in range(200):
        send(store, f"+6581{n:06d}", f"m{n}", HOUR0)
        verify(store, f"+6581{n:06d}", HOUR0 + 1, message_id=f"m{n}")
    barrier = threading.Barrier(8)
    claimed: list[int] = []

    def claim_at_once() -> None:
        barrier.wait()
        while items := store.claim(provider="tencent", limit=7, lease_seconds=600, now=HOUR0 + 2):
            claimed.extend(item.id for item in items)

    threads = [threading.Thread(target=claim_at_once) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(claimed) == len(set(claimed)) == 200


def race(count: int, body: Any) -> list[Any]:
    """``body(n)`` in ``count`` threads released at once; their results."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def run_one(n: int) -> None:
        barrier.wait()
        results[n] = body(n)

    threads = [threading.Thread(target=run_one, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


@pytest.mark.timeout(30)
def test_threads_racing_for_a_lease_give_it_to_one_owner(store: Store) -> None:
    won = race(8, lambda n: store.acquire_lease("drain", owner=f"owner-{n}", ttl=60, now=HOUR0))
    assert won.count(True) == 1


@pytest.mark.timeout(30)
def test_threads_reserving_on_one_schedule_never_get_the_same_slot(store: Store) -> None:
    def draw(n: int) -> list[float]:
        slots: list[float] = []
        for _ in range(20):
            first, count = store.take_slots("rate:x", want=3, interval=0.01, horizon=10.0, now=HOUR0)
            slots += [round(first + i * 0.01, 6) for i in range(count)]
        return slots

    reserved = [slot for slots in race(8, draw) for slot in slots]
    assert len(reserved) == len(set(reserved)) == 8 * 20 * 3  # every slot once, none lost to the race


class Workers:
    """Worker processes started together and released phase by phase through their stdin."""

    def __init__(self, args: list[list[str]]) -> None:
        self.procs = [
            subprocess.Popen(
                [sys.executable, str(WORKER), *a],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for a in args
        ]

    def release(self) -> None:
        for proc in self.procs:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "ready"
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()

    def results(self) -> list[dict[str, Any]]:
        out = []
        for proc in self.procs:
            stdout, _ = proc.communicate(timeout=90)
            assert proc.returncode == 0
            out.append(json.loads(stdout.strip().splitlines()[-1]))
        return out

    def kill(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def run(args: list[list[str]], phases: int) -> list[dict[str, Any]]:
    workers = Workers(args)
    try:
        for _ in range(phases):
            workers.release()
        return workers.results()
    finally:
        workers.kill()


@pytest.mark.timeout(150)
def test_four_processes_of_four_threads_record_verify_and_claim_every_report_exactly_once(
    shared_store_url: str,
) -> None:
    processes, threads, per_thread = 4, 4, 150
    base = time.time() - 3600
    expected = Counter(f"p{p}t{t}m{i}" for p in range(processes) for t in range(threads) for i in range(per_thread))

    recorded = run(
        [["record", shared_store_url, str(p), str(threads), str(per_thread), str(base)] for p in range(processes)],
        phases=3,
    )
    assert [r["errors"] for r in recorded] == [[]] * processes
    assert Counter(mid for r in recorded for mid in r["enqueued"]) == expected
    assert sum(r["batches_applied"] for r in recorded) == 1
    assert sum(r["unmatched"] for r in recorded) == 0
    store = open_store(shared_store_url)
    totals = [sum(getattr(row, f) for row in store.counts(since=0, until=1e11)) for f in ("requested", "verified")]
    assert totals == [expected.total(), expected.total()]
    assert store.outbox_stats(now=time.time()).pending == expected.total()

    claimed = run([["claim", shared_store_url, "2", "7"] for _ in range(processes)], phases=1)
    assert [r["errors"] for r in claimed] == [[]] * processes
    assert sum(r["released"] for r in claimed) > 0
    acked = Counter(row_id for r in claimed for row_id, _ in r["acked"])
    assert set(acked.values()) == {1}
    assert Counter(mid for r in claimed for _, mid in r["acked"]) == expected
    stats = store.outbox_stats(now=time.time())
    assert (stats.pending, stats.reported) == (0, expected.total())
    store.close()
