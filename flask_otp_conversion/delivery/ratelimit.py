"""Keeping request starts under a provider's documented rate cap, for the whole app rather than per process.

The budget is one token bucket in the store (``Store.take_tokens``), shared by every process that delivers.
A process does not go to the store for each token: it takes a small *grant* (what ``GRANT_TTL`` seconds of
the rate is worth, and no more than the caller expects to spend) and hands its tokens out locally, for
``GRANT_TTL`` seconds after the grant. A request must start within ``START_WINDOW`` of its token's grant: one
that could not (a worker thread scheduled late on a busy machine) forfeits its token and takes a fresh one
(``SharedTokenBucket.fresh``). So no process can sit on tokens and spend them in a clump later.

The arithmetic: the store's bucket hands out at most ``burst + rate * T`` tokens in any interval of length
``T``. A request starts at most ``START_WINDOW`` after its token's grant, and the provider counts *arrivals*,
which can trail the start by scheduling and network jitter (``JITTER_ALLOWANCE``). Arrivals in any one
second therefore come from grants in a window of ``1 + START_WINDOW + JITTER_ALLOWANCE`` seconds, and
``SharedTokenBucket.for_cap`` chooses ``rate`` and ``burst`` so that this window holds at most ``cap``.
The price is a sustained rate about 14% under the cap; the reward is that no second, however the processes
and threads are scheduled, ever shows the provider more than its cap.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

#: Share of the cap kept as burst by ``for_cap``; the sustained rate is lowered by the same amount.
DEFAULT_HEADROOM = 0.02
#: Seconds by which dispatch-to-arrival jitter may squeeze requests together; ``for_cap`` pays for it in rate.
#: Chosen from a failing run with three processes and the emulator on 2 cores (arrival gaps 0.07-0.12 s at 9/s).
JITTER_ALLOWANCE = 0.1
#: Seconds after a grant during which its tokens are handed out: short, so grants are small and arrivals spread.
GRANT_TTL = 0.02
#: Seconds after its token's grant by which a request must start (hand-out, then a worker picking it up).
START_WINDOW = 2 * GRANT_TTL

#: ``take(want, rate, burst) -> (granted, wait)``: one atomic draw from the shared bucket (the store's).
Take = Callable[[int, float, float], "tuple[int, float]"]


@dataclass(frozen=True)
class Token:
    """The right to start one request, good until ``expires_at`` (the bucket's clock)."""

    expires_at: float


def bucket_for_cap(cap: float, *, headroom: float = DEFAULT_HEADROOM) -> tuple[float, float]:
    """``(rate, burst)`` such that any window of ``1 + START_WINDOW + JITTER_ALLOWANCE`` s sees at most ``cap``.

    With ``burst + rate * S <= cap`` for that stretch ``S``, a window of ``T >= S`` seconds sees at most
    ``burst + rate * T <= cap * T``. Below 2/s there is no room for both, so the rate is half of that with
    a burst of one.
    """
    if not cap > 0 or math.isinf(cap):
        raise ValueError("cap must be a positive finite number of requests per second")
    stretch = 1.0 + START_WINDOW + JITTER_ALLOWANCE
    burst = max(1.0, math.floor(cap * headroom))
    rate = (cap - burst) / stretch if cap - burst >= cap / 2 else cap / (2 * stretch)
    return rate, burst


class SharedTokenBucket:
    """This process's view of a shared bucket: takes grants through ``take``, spends them one by one.

    ``acquire`` is thread-safe; while one caller is at the store the others wait for its grant.
    """

    def __init__(
        self,
        take: Take,
        rate: float,
        burst: float,
        *,
        grant_ttl: float = GRANT_TTL,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not rate > 0 or math.isinf(rate):
            raise ValueError("rate must be a positive finite number of tokens per second")
        if burst < 1:
            raise ValueError("burst must be >= 1")
        self.rate = float(rate)
        self.burst = float(burst)
        self._take = take
        self._grant_ttl = grant_ttl
        self._start_window = 2 * grant_ttl
        self._grant_size = max(1, min(int(self.burst), math.ceil(self.rate * grant_ttl)))
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._left = 0
        self._granted_at = -math.inf

    @classmethod
    def for_cap(
        cls,
        take: Take,
        cap: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> SharedTokenBucket:
        rate, burst = bucket_for_cap(cap)
        return cls(take, rate, burst, clock=clock, sleep=sleep)

    def acquire(self, timeout: float | None = None, *, upcoming: int = 1) -> Token | None:
        """Take a token, waiting for the shared budget; None (nothing taken) if none came within ``timeout``.

        ``upcoming``: how many tokens the caller expects to spend now, this one included. A grant is never
        larger, since tokens left unspent when their grant expires are budget lost to every process.

        One caller at a time waits for the budget, holding the lock: the others queue behind it rather than
        each asking the store, and the waiter sleeps until a whole grant is due, not the next single token,
        so that at the cap a store write still buys a grant rather than one token.
        """
        deadline = None if timeout is None else self._clock() + timeout
        if not self._lock.acquire(timeout=-1 if timeout is None else max(0.0, timeout)):
            return None
        try:
            while True:
                now = self._clock()
                if now - self._granted_at > self._grant_ttl:
                    self._left = 0  # an old grant is not spent late: that would clump arrivals
                if self._left > 0:
                    self._left -= 1
                    return Token(self._granted_at + self._start_window)
                want = max(1, min(self._grant_size, upcoming))
                granted, wait = self._take(want, self.rate, self.burst)
                if granted > 0:
                    self._left = granted - 1
                    self._granted_at = now
                    return Token(now + self._start_window)
                remaining = math.inf if deadline is None else deadline - self._clock()
                if remaining <= 0:
                    return None
                self._sleep(min(max(wait, 0.001) + (want - 1) / self.rate, remaining))
        finally:
            self._lock.release()

    def fresh(self, token: Token) -> bool:
        """Whether a request may still start on ``token``."""
        return self._clock() <= token.expires_at

    def __repr__(self) -> str:
        return f"<SharedTokenBucket rate={self.rate:g}/s burst={self.burst:g}>"
