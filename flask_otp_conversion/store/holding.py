"""Records held in memory while both the spool and the store refuse writes (a full or read-only volume, a store
that is down): bounded, counted, written in order as soon as the store takes them again, so that an answer the
app already gave (a 200 for a verification, a 202 for a sent SMS) is not undone by the disk.

What does not fit is counted as lost, with one ERROR line per episode (an episode lasts from the first record
held to the moment all are written). Held records live in this process only: a crash or ``kill -9`` loses them,
which is why this is the last resort behind the spool, not a replacement for it.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from .._forks import ForkLocal
from ..redaction import describe_error
from .base import Store, Verification

#: Records held at most per process (a few MB of memory).
CAPACITY = 10_000
#: Seconds between attempts to write what is held.
RETRY_EVERY = 1.0


@dataclass(frozen=True, slots=True)
class HeldSend:
    phone: str
    message_id: str
    provider: str
    sent_at: float
    account: str


@dataclass(frozen=True, slots=True)
class Counts:
    held: int
    lost: int
    written: int


class Holding(ForkLocal):
    """One per app and process. ``hold`` never raises and never blocks on the store; a thread of its own, started
    on the first record held and ended once all are written, retries every ``RETRY_EVERY``."""

    def __init__(
        self,
        store: Store,
        *,
        provider: str,
        match_window: float,
        logger: logging.Logger,
        capacity: int = CAPACITY,
        retry_every: float = RETRY_EVERY,
        spool: Callable[[Verification], None] | None = None,
    ) -> None:
        self._store = store
        self._spool = spool
        self._provider = provider
        self._match_window = match_window
        self._logger = logger
        self._capacity = capacity
        self._retry_every = retry_every
        self._init_process_state()
        self._watch_forks()

    def _init_process_state(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._writing = threading.Lock()
        self._items: deque[HeldSend | Verification] = deque()
        self._lost = 0
        self._written = 0
        self._episode_logged = False
        self._episode = (0, 0)  # (written, lost) when the episode began
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def _after_fork_in_child(self) -> None:
        # The parent writes what it holds; a child writing its copy too would record each one twice.
        self._init_process_state()

    def __repr__(self) -> str:
        return f"<Holding held={len(self._items)} lost={self._lost}>"

    @property
    def active(self) -> bool:
        """Records are held: a new one must queue behind them (in order), not overtake them."""
        return bool(self._items)

    def counts(self) -> Counts:
        self._check_fork()
        with self._lock:
            return Counts(held=len(self._items), lost=self._lost, written=self._written)

    def hold(self, item: HeldSend | Verification, error: BaseException) -> bool:
        """Keep ``item`` until the store takes it; False (and counted lost) when full."""
        self._check_fork()
        with self._lock:
            first = not self._episode_logged
            self._episode_logged = True
            if first:
                self._episode = (self._written, self._lost)
            kept = len(self._items) < self._capacity
            if kept:
                self._items.append(item)
            else:
                self._lost += 1
            start = self._thread is None  # the thread clears it, under this lock, as it ends
            if start:
                self._thread = threading.Thread(target=self._retry_forever, name="otp-conversion-holding", daemon=True)
        if first:
            self._logger.error(
                "otp-conversion: the spool and the store refuse writes (%s); holding up to %d record(s) in memory"
                " until they are written, counting the rest as lost",
                describe_error(error),
                self._capacity,
            )
        if start:
            assert self._thread is not None
            self._thread.start()
        return kept

    def write_held(self) -> bool:
        """Write what is held, in order, until the store refuses; True once nothing is left. One writer at a time
        (the thread and a caller), or two would write the same record."""
        self._check_fork()
        with self._writing:
            return self._write_in_order()

    def _write_in_order(self) -> bool:
        while True:
            with self._lock:
                if not self._items:
                    return True
                item = self._items[0]
            try:
                self._write(item)
            except ValueError as exc:  # cannot become valid by waiting: drop it, say so
                self._logger.warning("otp-conversion: a held record was refused and dropped: %s", exc)
            except Exception:
                return False
            with self._lock:
                self._items.popleft()
                self._written += 1
                if not self._items:
                    self._end_episode()
                    return True

    def _write(self, item: HeldSend | Verification) -> None:
        if isinstance(item, HeldSend):
            self._store.record_sent(
                phone=item.phone,
                message_id=item.message_id,
                provider=item.provider,
                sent_at=item.sent_at,
                account=item.account,
            )
        elif self._spool is not None:
            # The spool's applier waits, after an outage, for a send still held elsewhere; a verification
            # written to the store directly could be counted unmatched before its send arrives.
            self._spool(item)
        else:
            self._store.record_verified(
                phone=item.phone,
                message_id=item.message_id,
                provider=self._provider,
                verified_at=item.verified_at,
                match_window=self._match_window,
            )

    def _end_episode(self) -> None:
        """With the lock held: every held record is written."""
        self._logger.warning(
            "otp-conversion: the store takes writes again; %d held record(s) written, %d lost",
            self._written - self._episode[0],
            self._lost - self._episode[1],
        )
        self._episode_logged = False

    def _retry_forever(self) -> None:
        while not self._stop.wait(self._retry_every):
            self.write_held()
            with self._lock:
                if not self._items:
                    self._thread = None
                    return

    def close(self, timeout: float) -> None:
        """At exit: one last attempt; what is still held is lost (logged)."""
        if self._pid != os.getpid():
            return
        self._stop.set()
        thread = self._thread
        if thread is not None and thread.is_alive():
            thread.join(timeout)
        if not self.write_held():
            with self._lock:
                left = len(self._items)
            self._logger.error("otp-conversion: %d held record(s) could not be written before exit: lost", left)
