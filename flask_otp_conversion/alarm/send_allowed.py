"""``send_allowed``: the advisory check before a send, from the alarm's episodes and the unverified sends to the
number and its prefix."""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass

from .._forks import ForkLocal
from ..phone import calling_code, mask_phone, normalize_phone
from ..redaction import describe_error
from .detection import pct
from .episodes import Alarms


@dataclass(frozen=True)
class SendDecision:
    """``send_allowed``'s answer: advisory, the app decides. Truthy when allowed."""

    allowed: bool
    #: Why not (None when allowed): ``"calling-code-alarm"``, ``"number-limit"`` or ``"prefix-limit"``.
    reason: str | None = None
    detail: str | None = None
    calling_code: str | None = None

    def __bool__(self) -> bool:
        return self.allowed


class RecentSends(ForkLocal):
    """Unverified sends per number and per number prefix over the last ``window`` seconds, in this process.

    Bounded: at most ``max_numbers`` numbers are remembered (the oldest forgotten first). A verification of a
    number forgets its sends. Per process: with several workers, each counts the sends it recorded (a forked
    child starts empty).
    """

    def __init__(self, window: float, prefix_digits: int, *, max_numbers: int = 100_000) -> None:
        self._window = window
        self._digits = prefix_digits
        self._max = max_numbers
        self._after_fork_in_child()
        self._watch_forks()

    def _after_fork_in_child(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._by_number: OrderedDict[str, deque[float]] = OrderedDict()
        self._by_prefix: dict[str, set[str]] = {}

    def prefix(self, phone: str) -> str:
        code = calling_code(phone)
        return "+" + code + phone[1 + len(code) :][: self._digits]

    def note_sent(self, phone: str, at: float) -> None:
        with self._lock:
            sends = self._by_number.pop(phone, None) or deque()
            sends.append(at)
            self._by_number[phone] = sends
            self._by_prefix.setdefault(self.prefix(phone), set()).add(phone)
            while len(self._by_number) > self._max:
                self._forget(next(iter(self._by_number)))

    def note_verified(self, phone: str) -> None:
        with self._lock:
            self._forget(phone)

    def unverified(self, phone: str, now: float, *, enough: int = 0) -> tuple[int, int]:
        """(unverified sends to ``phone``, to its prefix) in the window ending ``now``; the prefix's count stops
        at ``enough`` when that is given (all a limit needs to know)."""
        cutoff = now - self._window
        with self._lock:
            number = self._live(phone, cutoff)
            total = 0
            for other in list(self._by_prefix.get(self.prefix(phone), ())):
                total += self._live(other, cutoff)
                if enough and total >= enough:
                    break
            return number, total

    def _live(self, phone: str, cutoff: float) -> int:
        sends = self._by_number.get(phone)
        if sends is None:
            return 0
        while sends and sends[0] <= cutoff:
            sends.popleft()
        if not sends:
            self._forget(phone)
        return len(sends)

    def _forget(self, phone: str) -> None:
        if self._by_number.pop(phone, None) is None:
            return
        key = self.prefix(phone)
        numbers = self._by_prefix.get(key)
        if numbers is not None:
            numbers.discard(phone)
            if not numbers:
                del self._by_prefix[key]


def decide(alarms: Alarms, recent: RecentSends, phone: object, now: float) -> SendDecision:
    """``send_allowed``: no while the number's calling code is under an alarm episode, or while the number or its
    prefix has as many unverified sends in the window as its limit. Raises ``ValueError`` for a bad phone."""
    e164 = normalize_phone(phone)
    code = calling_code(e164)
    try:
        episode = alarms.evaluate().episodes.get(code)
    except Exception as exc:  # advisory: a store that cannot answer must not stop the app's sends
        alarms.logger.warning("send_allowed: the alarm could not be read (%s); not checked", describe_error(exc))
        episode = None
    if episode is not None:
        seen = episode.assessment
        detail = f"+{code} is under an SMS-pumping alarm since {time.strftime('%H:%M:%SZ', time.gmtime(episode.since))}"
        if seen is not None:
            detail += f" (conversion {pct(seen.rate)} over {seen.sends} sends, baseline {pct(seen.baseline)})"
        return SendDecision(False, "calling-code-alarm", detail, code)
    s = alarms.settings
    number, prefix = recent.unverified(e164, now, enough=s.prefix_limit)
    if s.number_limit and number >= s.number_limit:
        detail = f"{number} unverified sends to {mask_phone(e164)} in the last {s.window / 60:.0f} min"
        return SendDecision(False, "number-limit", detail, code)
    if s.prefix_limit and prefix >= s.prefix_limit:
        detail = f"{prefix} unverified sends to {recent.prefix(e164)}... in the last {s.window / 60:.0f} min"
        return SendDecision(False, "prefix-limit", detail, code)
    return SendDecision(True, None, None, code)
