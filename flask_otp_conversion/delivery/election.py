"""Which process of a host delivers: the one holding an ``flock`` on the host's deliverer lock file.

The web workers of one host share one spool folder; one of them is enough to apply it and to deliver, and the
others then spend no CPU on background threads. It stays with shared stores too: delivery scales across hosts
(each host's deliverer claims from the shared outbox and draws on the shared rate budget), and within a host one
process per store is what the CPU allows anyway. The lock sits beside a SQLite store file, or in the instance
folder for a shared store (``state.ConversionState._host_base``).

The kernel drops the lock when its holder exits, however it exits (``kill -9`` included), and the other workers try
again at most once per ``RETRY_EVERY``, so another one takes over about a second after the deliverer dies. A forked
child shares its parent's open file description, and with it the lock: the child closes its copy, which leaves the
parent's lock in place.
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
import threading
import time
from collections.abc import Callable

from .._forks import ForkLocal

#: Seconds between a non-deliverer's attempts to take the lock (an attempt is a syscall). The extension's
#: middleware asks on every request; this limit keeps a non-deliverer's ``acquire()`` to a clock read.
RETRY_EVERY = 1.0


def lock_path(store_path: str) -> str:
    return store_path + "-deliverer.lock"


class DeliveryLock(ForkLocal):
    """This process's claim to be the store's deliverer. ``acquire()`` is cheap enough for every request."""

    def __init__(self, path: str, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self._clock = clock
        self._init_process_state()
        self._watch_forks()

    def _init_process_state(self) -> None:
        self._pid = os.getpid()
        self._fd: int | None = None
        self._next_try = -math.inf
        self._mutex = threading.Lock()

    def __repr__(self) -> str:
        return f"<DeliveryLock {self.path!r} held={self.held()}>"

    def held(self) -> bool:
        # the pid check also covers forks that run no at-fork hooks (uWSGI's C fork)
        return self._fd is not None and not self._check_fork()

    def acquire(self) -> bool:
        """Whether this process is the deliverer, taking the lock if nobody holds it. A failed attempt is not
        repeated for ``RETRY_EVERY`` seconds. ``OSError`` if the lock file cannot be opened."""
        if self.held():
            return True
        now = self._clock()
        if now < self._next_try:
            return False
        with self._mutex:
            if self._fd is not None:
                return True
            self._next_try = now + RETRY_EVERY
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            except BaseException:
                os.close(fd)
                raise
            self._fd = fd
            return True

    def release(self) -> None:
        """Give the lock up (closing the last descriptor of its open file description drops it)."""
        with self._mutex:
            fd, self._fd = self._fd, None
            self._next_try = -math.inf
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)

    def _after_fork_in_child(self) -> None:
        """Close our copy of the parent's descriptor (the parent keeps the lock) and start over. Never touches
        the mutex, which a parent thread may have held at the fork."""
        fd = self._fd
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._init_process_state()
