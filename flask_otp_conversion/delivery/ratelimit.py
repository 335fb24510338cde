"""Keeping request starts under a provider's documented rate cap, for the whole app rather than per process.

The budget is one schedule of request starts in the store (``Store.take_slots``, a GCRA): slots ``interval``
seconds apart, shared by every process that delivers, so no two requests anywhere start on one slot. A process
reserves a few slots at a time (those within ``HORIZON`` seconds, and no more than its senders can use), hands
them out in order, and a sender waits for its slot and must start within ``LATENESS`` of it. "Start" is the
first byte of the request written to the socket: the sender makes its request inside
``starting_by(slot.start_by)`` and the transport checks that moment right before writing, so a request delayed
on its way (signing, the HTTP client, a thread scheduled late on a busy machine) is not sent at all, and the
sender takes another slot. So no process can sit on slots and spend them in a clump later.

The arithmetic: starts in any window of ``T`` seconds come from slots in a stretch of ``T + LATENESS``, so there are
at most ``(T + LATENESS) / interval + 1`` of them; the provider counts *arrivals*, which trail the first byte by
the kernel's and the network's delay, varying by up to ``JITTER_ALLOWANCE``. ``interval_for_cap`` makes one second
hold at most ``cap`` arrivals: ``(1 + LATENESS + JITTER_ALLOWANCE) / interval + 1 <= cap``. Unlike a token bucket
there is no burst to pay for, so the sustained rate is only those allowances under the cap; idle time earns
nothing.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

#: Seconds ahead a process reserves slots: one store write buys what this much of the rate is worth.
HORIZON = 0.02
#: Seconds after its slot by which a request's first byte must be written, or the slot is forfeited.
LATENESS = 0.01
#: Seconds a slot must still leave its caller to reach the first byte (signing, building the request), or it is
#: not handed out: a slot about to lapse would only be forfeited after that work, wasting it.
MARGIN = LATENESS / 5
#: Seconds by which first-byte-to-arrival jitter may squeeze requests together; ``interval_for_cap`` pays for it.
JITTER_ALLOWANCE = 0.03

#: ``take(want, interval, horizon) -> (first, count)``: one atomic reservation on the shared schedule.
TakeSlots = Callable[[int, float, float], "tuple[float, int]"]


#: Share added to the interval: slot times are epoch-sized floats (~2e-7 s apart), and thousands of rounded slots
#: in a row may otherwise squeeze one more into a second.
ROUNDING_MARGIN = 1e-3


def interval_for_cap(cap: float) -> float:
    """Seconds between slots such that no second sees more than ``cap`` arrivals (see the module docstring). Below
    2/s, ``cap - 1`` would leave no room: half the cap is kept then."""
    if not cap > 0 or math.isinf(cap):
        raise ValueError("cap must be a positive finite number of requests per second")
    return (1.0 + LATENESS + JITTER_ALLOWANCE) / max(cap - 1.0, cap / 2.0) * (1.0 + ROUNDING_MARGIN)


@dataclass(frozen=True)
class Slot:
    """The right to start one request at ``at`` (the store's clock), and no later than ``LATENESS`` after."""

    at: float

    @property
    def start_by(self) -> float:
        """The last moment the request may start: what the transport is given (``starting_by``)."""
        return self.at + LATENESS


class SharedSchedule:
    """This process's view of a shared schedule: reserves slots through ``take``, hands them out in order.

    ``acquire`` is thread-safe; while one caller waits for the schedule the others queue behind it.
    """

    def __init__(
        self,
        take: TakeSlots,
        interval: float,
        *,
        horizon: float = HORIZON,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not interval > 0 or math.isinf(interval):
            raise ValueError("interval must be a positive finite number of seconds")
        if horizon < 0:
            raise ValueError("horizon must be >= 0")
        self.interval = float(interval)
        self._take = take
        self._horizon = horizon
        self._most = int(horizon / interval) + 1  # the slots one reservation can hold
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        # The slots held: ``_first + i * interval`` for ``_next <= i < _count``, kept as a range, not a list, so
        # that dropping the lapsed ones is one division however many there are.
        self._first = 0.0
        self._next = self._count = 0

    @classmethod
    def for_cap(
        cls,
        take: TakeSlots,
        cap: float,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> SharedSchedule:
        return cls(take, interval_for_cap(cap), clock=clock, sleep=sleep)

    @property
    def rate(self) -> float:
        return 1.0 / self.interval

    def acquire(self, timeout: float | None = None, *, upcoming: int = 1) -> Slot | None:
        """The next slot this process holds that can still be met (``MARGIN`` to spare), reserving more when it
        holds none; None if none came within ``timeout``. It does not wait for the slot itself (``wait`` does).

        ``upcoming``: how many slots the caller expects to use now, this one included. A reservation is never
        larger, since slots nobody starts on are budget lost to every process.
        """
        deadline = None if timeout is None else self._clock() + timeout
        if not self._lock.acquire(timeout=-1 if timeout is None else max(0.0, timeout)):
            return None
        try:
            while True:
                now = self._clock()
                if self._next < self._count:
                    # the slots nobody asked for in time are dropped, never spent late
                    lapsed = math.ceil((now + MARGIN - LATENESS - self._first) / self.interval)
                    index = max(self._next, lapsed)
                    while index < self._count and self._first + index * self.interval + LATENESS < now + MARGIN:
                        index += 1  # the division's rounding
                    if index < self._count:
                        self._next = index + 1
                        return Slot(self._first + index * self.interval)
                    self._next = self._count
                want = max(1, min(self._most, upcoming))
                first, count = self._take(want, self.interval, self._horizon)
                if count:
                    self._first, self._next, self._count = first, 0, count
                    continue
                remaining = math.inf if deadline is None else deadline - self._clock()
                if remaining <= 0:
                    return None
                # Another process holds the horizon: wait until a chunk of it can be ours (half what we want, so at
                # most half the horizon), not a slot at a time, each a store write, as its edge moves.
                chunk = max(1, want // 2)
                self._sleep(min(max(first + (chunk - 1) * self.interval - self._horizon - now, 0.001), remaining))
        finally:
            self._lock.release()

    def wait(self, slot: Slot) -> bool:
        """Sleep until ``slot``; False if the caller got there too late to use it (the slot is forfeited)."""
        delay = slot.at - self._clock()
        if delay > 0:
            self._sleep(delay)
        return self._clock() <= slot.start_by

    def __repr__(self) -> str:
        return f"<SharedSchedule {self.rate:g}/s>"
