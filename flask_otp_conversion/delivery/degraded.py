"""Degraded mode as every process of an app shares it, so one switch stops every provider call everywhere.

The store flag ``"degraded"`` (``"1"`` or absent) is re-read at most once a second. ``OTP_CONVERSION_DEGRADED=True``
sets it on first use (a deploy-time kill switch); ``False`` leaves it alone, so a run-time ``degrade on`` survives
restarts. While degraded no call is made.
"""

from __future__ import annotations

import logging
import math
import threading
import time

from ..store.base import Store
from .policy import DeliveryPolicy

DEGRADED_FLAG = "degraded"


class DegradedSwitch:
    """One delivering process's side of the flag: the policy (under ``lock``) holds the state and when it was read."""

    def __init__(
        self,
        store: Store,
        *,
        configured: bool,
        policy: DeliveryPolicy,
        lock: threading.Lock,
        logger: logging.Logger,
        applied: bool = False,
    ) -> None:
        self._store = store
        self._configured = configured
        self._policy = policy
        self._lock = lock
        self._logger = logger
        #: OTP_CONVERSION_DEGRADED is applied (or an explicit switch outranked it); False again to retry.
        self.applied = applied

    def apply_configured(self) -> None:
        if self.applied:
            return
        self.applied = True
        if self._configured:
            self._store.set_flag(DEGRADED_FLAG, "1")
            self.note(True)

    def switch(self, on: bool) -> None:
        """Switch degradation on or off for every process sharing the store."""
        self.applied = True  # an explicit switch outranks OTP_CONVERSION_DEGRADED from now on
        self._store.set_flag(DEGRADED_FLAG, "1" if on else None)
        self.note(on)

    def refresh(self) -> None:
        now = time.time()
        with self._lock:
            stale = self._policy.degraded_stale(now)
        if stale:
            self.note(self._store.get_flag(DEGRADED_FLAG) == "1")

    def note(self, on: bool) -> None:
        with self._lock:
            first = self._policy.degraded_checked_at == -math.inf
            changed = self._policy.note_degraded(on, time.time())
        if changed and (on or not first):
            self._logger.warning(
                "degraded mode %s", "on: no provider calls, reports accumulate" if on else "off: reports flow"
            )
