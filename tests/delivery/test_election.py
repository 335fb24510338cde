"""The lock that makes one process the store's deliverer: real ``flock`` on a real file, real processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from flask_otp_conversion.delivery import election as deliverer
from flask_otp_conversion.delivery.election import DeliveryLock, lock_path
from tests.conftest import FakeClock

HOLD = """
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def path(tmp_path: Path) -> str:
    return lock_path(str(tmp_path / "outbox.db"))


def hold_in_other_process(path: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, path], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stdout.readline() == "held\n"
    return proc


def test_lock_file_is_beside_the_store() -> None:
    assert lock_path("/srv/app/outbox.db") == "/srv/app/outbox.db-deliverer.lock"


def test_first_to_acquire_is_the_deliverer(path: str) -> None:
    first, second = DeliveryLock(path), DeliveryLock(path)
    assert first.acquire() and first.held()
    assert not second.acquire() and not second.held()
    first.release()
    second.release()


def test_lock_held_by_another_process_is_refused(path: str) -> None:
    proc = hold_in_other_process(path)
    try:
        assert not DeliveryLock(path).acquire()
    finally:
        proc.kill()
        proc.wait()


def test_lock_of_a_killed_process_is_taken_at_the_next_attempt(path: str, clock: FakeClock) -> None:
    proc = hold_in_other_process(path)
    lock = DeliveryLock(path, clock=clock)
    assert not lock.acquire()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    clock.advance(deliverer.RETRY_EVERY)
    assert lock.acquire()
    lock.release()


def test_failed_attempt_is_not_repeated_within_the_retry_interval(path: str, clock: FakeClock) -> None:
    holder, lock = DeliveryLock(path), DeliveryLock(path, clock=clock)
    assert holder.acquire()
    assert not lock.acquire()
    holder.release()
    clock.advance(deliverer.RETRY_EVERY / 2)
    assert not lock.acquire()  # free now, but not asked again yet
    clock.advance(deliverer.RETRY_EVERY / 2)
    assert lock.acquire()
    lock.release()


def test_release_lets_another_process_take_it(path: str) -> None:
    lock = DeliveryLock(path)
    assert lock.acquire()
    lock.release()
    assert not lock.held()
    proc = subprocess.run(
        [sys.executable, "-c", "import fcntl, os, sys; fcntl.flock(os.open(sys.argv[1], os.O_RDWR), "
         "fcntl.LOCK_EX | fcntl.LOCK_NB)", path],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_does_not_hold_the_lock_and_leaves_it_with_the_parent(path: str) -> None:
    lock = DeliveryLock(path)
    assert lock.acquire()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        answer = b"%d%d" % (lock.held(), DeliveryLock(path).acquire())
        os.write(write, answer)
        os._exit(0)
    os.close(write)
    answer = os.read(read, 2)
    os.close(read)
    os.waitpid(pid, 0)
    assert answer == b"00"  # the child holds nothing and cannot take what the parent holds
    assert lock.held()
    assert not DeliveryLock(path).acquire()  # the child's exit left the parent's lock in place
    lock.release()
