"""Generated OTP traffic with known truth, played into a real store against a fake clock.

Normal traffic: per calling code, Poisson sends per minute following a daily swing (night at a fifth of the
peak, each code's peak at its own hour), each send verified with a probability of 80-90 % (also swinging daily)
after a delay of a few seconds to a few minutes. A pumping burst: many sends to one code (or one number range of
it), almost none verified.
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field

from flask_otp_conversion.store import Store

MINUTE = 60.0


@dataclass(frozen=True)
class Code:
    calling_code: str
    #: Sends per minute at the code's daily peak.
    peak: float
    #: UTC hour of the peak.
    peak_hour: float
    #: A national number prefix: numbers are this followed by random digits ...
    prefix: str
    #: ... or one of these, picked at random for each send (several ranges of one country).
    ranges: tuple[str, ...] = ()

    def pick(self, rng: random.Random) -> str:
        return rng.choice(self.ranges) if self.ranges else self.prefix


#: A mix like a real app's: one big market, a medium one, a small one, and one it rarely sends to.
CODES = (
    Code("86", 8.0, 12.0, "+86137"),
    Code("1", 4.0, 20.0, "+1415"),
    Code("44", 1.5, 15.0, "+447700"),
    Code("234", 0.1, 11.0, "+234803"),
)
#: The same mix with each code's numbers spread over ranges (mobile operators' blocks), for the per-prefix alarm:
#: with three digits after the code, +86 is three prefixes of ~2.7 sends a minute each at its peak (40 in a
#: window), ~0.5 at night, so every day each passes through the prefix alarm's minimum volume twice.
RANGED_CODES = (
    Code("86", 8.0, 12.0, "+86137", ("+86137", "+86139", "+86186")),
    Code("1", 4.0, 20.0, "+1415", ("+1415", "+1646")),
    Code("44", 1.5, 15.0, "+447700", ("+447700", "+447911")),
    Code("234", 0.1, 11.0, "+234803"),
)


def volume(code: Code, t: float) -> float:
    """Sends per minute at ``t``: a fifth of the peak at night, the peak at ``peak_hour``."""
    hour = (t / 3600.0) % 24
    swing = 0.5 + 0.5 * math.cos(2 * math.pi * (hour - code.peak_hour) / 24)
    return code.peak * (0.2 + 0.8 * swing)


def conversion(code: Code, t: float) -> float:
    """80 % to 90 % over the day."""
    hour = (t / 3600.0) % 24
    return 0.85 + 0.05 * math.sin(2 * math.pi * (hour - code.peak_hour) / 24)


def _poisson(rng: random.Random, mean: float) -> int:
    if mean <= 0:
        return 0
    limit, k, p = math.exp(-mean), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


@dataclass
class Traffic:
    """Plays traffic into ``store`` minute by minute; ``on_minute(now)`` runs after each simulated minute."""

    store: Store
    rng: random.Random
    codes: tuple[Code, ...] = CODES
    provider: str = "tencent"
    sent: int = 0
    verified: int = 0
    _pending: list[tuple[float, int, str, str]] = field(default_factory=list)
    _seq: int = 0

    def _number(self, prefix: str) -> str:
        digits = 13 - len(prefix)
        return prefix + str(self.rng.randrange(10**digits)).zfill(digits)

    def _send(self, phone: str, at: float, converts: bool) -> None:
        self._seq += 1
        message_id = f"m{self._seq}"
        self.store.record_sent(phone=phone, message_id=message_id, provider=self.provider, sent_at=at)
        self.sent += 1
        if converts:
            delay = min(5.0 + self.rng.expovariate(1 / 25.0), 600.0)
            heapq.heappush(self._pending, (at + delay, self._seq, phone, message_id))

    def _verify_until(self, now: float) -> None:
        while self._pending and self._pending[0][0] <= now:
            at, _, phone, message_id = heapq.heappop(self._pending)
            self.store.record_verified(
                phone=phone, message_id=message_id, provider=self.provider, verified_at=at, match_window=900.0
            )
            self.verified += 1

    def play(
        self,
        start: float,
        minutes: int,
        *,
        on_minute: Callable[[float], None] | None = None,
        pump: Code | None = None,
        pump_per_minute: float = 0.0,
        pump_conversion: float = 0.02,
    ) -> None:
        for i in range(minutes):
            begin = start + i * MINUTE
            sends: list[tuple[float, str, bool]] = []
            for code in self.codes:
                for _ in range(_poisson(self.rng, volume(code, begin))):
                    at, prefix = begin + self.rng.random() * MINUTE, code.pick(self.rng)
                    sends.append((at, prefix, self.rng.random() < conversion(code, begin)))
            if pump is not None:
                for _ in range(_poisson(self.rng, pump_per_minute)):
                    sends.append((begin + self.rng.random() * MINUTE, pump.prefix, self.rng.random() < pump_conversion))
            for at, prefix, converts in sorted(sends):
                self._verify_until(at)
                self._send(self._number(prefix), at, converts)
            self._verify_until(begin + MINUTE)
            if on_minute is not None:
                on_minute(begin + MINUTE)
