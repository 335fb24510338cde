"""``send_allowed``: the advisory check before a send, from the alarm's episodes (the number's calling code's or
its prefix's) and the unverified sends to the number and its prefix.

Both come from the store, which every worker and host shares, so a limit is the app's, not a process's: sends
through one host count on every other. The counts are read on each call (``Store.unverified_sends``, which stops
at the limit), not cached: a verification lifts a limit as soon as the store has it (from the spool, normally
within a second). Advisory throughout: a store that cannot answer allows, with one warning per outage.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from ..phone import calling_code, mask_phone, normalize_phone
from ..redaction import describe_error
from ..store import Store
from .detection import AlarmSettings, pct
from .episodes import Alarms

#: What each of ``send_allowed``'s reads checks, for the line that says it works again.
_CHECKS = {"alarm": "the alarm is read", "counts": "unverified sends are counted"}


@dataclass(frozen=True)
class SendDecision:
    """``send_allowed``'s answer: advisory, the app decides. Truthy when allowed."""

    allowed: bool
    #: Why not (None when allowed): ``"calling-code-alarm"``, ``"prefix-alarm"`` (the number's prefix is under
    #: the per-prefix alarm), ``"number-limit"`` or ``"prefix-limit"``.
    reason: str | None = None
    detail: str | None = None
    calling_code: str | None = None

    def __bool__(self) -> bool:
        return self.allowed


def number_prefix(phone: str, digits: int) -> str:
    """The prefix ``send_allowed``'s prefix limit counts: the calling code and ``digits`` more digits."""
    code = calling_code(phone)
    return "+" + code + phone[1 + len(code) :][:digits]


class SendLimits:
    """``send_allowed`` of one app: the alarm's episodes (``Alarms``) and the store's unverified sends."""

    def __init__(self, alarms: Alarms, store: Store, logger: logging.Logger | None = None) -> None:
        self.alarms = alarms
        self.settings: AlarmSettings = alarms.settings
        self._store = store
        self.logger = logger or alarms.logger
        self._lock = threading.Lock()
        #: What failed at the last call ("alarm", "counts"), so an outage is logged once, not once per send.
        self._failing: set[str] = set()

    def decide(self, phone: object, now: float) -> SendDecision:
        """No while the number's calling code is under an alarm episode, or while the number or its prefix has
        as many unverified sends in the window as its limit. ``ValueError`` for a bad phone."""
        e164 = normalize_phone(phone)
        code = calling_code(e164)
        try:
            episode = self.alarms.evaluate().episode_for(e164)
        except Exception as exc:  # advisory: a store that cannot answer must not stop the app's sends
            self._failed("alarm", "the alarm could not be read", exc)
            episode = None
        else:
            self._answered("alarm")
        if episode is not None:
            seen = episode.assessment
            since = time.strftime("%H:%M:%SZ", time.gmtime(episode.since))
            what = f"+{code}" if episode.prefix is None else f"{episode.prefix}..."
            detail = f"{what} is under an SMS-pumping alarm since {since}"
            if seen is not None:
                detail += f" (conversion {pct(seen.rate)} over {seen.sends} sends, baseline {pct(seen.baseline)})"
            return SendDecision(False, "calling-code-alarm" if episode.prefix is None else "prefix-alarm", detail, code)
        s = self.settings
        minutes = f"{s.window / 60:.0f} min"
        try:
            if s.number_limit and self._count(e164, now, s.number_limit) >= s.number_limit:
                detail = f"{s.number_limit} unverified sends to {mask_phone(e164)} in the last {minutes}"
                return SendDecision(False, "number-limit", detail, code)
            prefix = number_prefix(e164, s.prefix_digits)
            if s.prefix_limit and self._count(prefix, now, s.prefix_limit) >= s.prefix_limit:
                detail = f"{s.prefix_limit} unverified sends to {prefix}... in the last {minutes}"
                return SendDecision(False, "prefix-limit", detail, code)
        except Exception as exc:  # as above: allowed, and said once
            self._failed("counts", "the unverified sends could not be counted", exc)
        else:
            self._answered("counts")
        return SendDecision(True, None, None, code)

    def _count(self, prefix: str, now: float, limit: int) -> int:
        return self._store.unverified_sends(prefix=prefix, since=now - self.settings.window, limit=limit)

    def _failed(self, what: str, message: str, exc: Exception) -> None:
        with self._lock:
            first = what not in self._failing
            self._failing.add(what)
        if first:
            self.logger.warning("send_allowed: %s (%s); allowing sends until it answers", message, describe_error(exc))

    def _answered(self, what: str) -> None:
        if what not in self._failing:  # the common case: no lock taken
            return
        with self._lock:
            recovered = what in self._failing
            self._failing.discard(what)
        if recovered:
            self.logger.warning("send_allowed: the store answers again (%s)", _CHECKS[what])
