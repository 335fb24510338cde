"""The deliverer's housekeeping on the store, each job on its own period, run from the drain loop's passes:
retention (one process an hour, by lease), sweeps (settle unverified sends, expire other accounts' rows), the
delivery status record every process's stats read (``status.py``), and the SMS-pumping alarm's evaluation, so
that an episode opens (logged, signalled) with no one reading the stats."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Protocol

from ..config import Settings
from ..redaction import describe_error
from ..store.base import Store
from ..store.rules import MINUTE_ROWS_KEPT
from .status import STATUS_EVERY, DeliveryRecord, status_flag

#: The named lease that lets one process prune per PRUNE_EVERY, however many deliver.
PRUNE_LEASE = "prune"
PRUNE_EVERY = 3600.0
#: How often a deliverer settles unverified sends and expires other accounts' rows, and how many at a time.
SWEEP_EVERY = 5.0
SWEEP_BATCH = 1000
#: How often a deliverer evaluates the alarm: within the episodes' lease (30 s), so the holder keeps it.
ALARM_EVERY = 20.0


class RateWaits(Protocol):
    def take_rate_waits(self) -> tuple[int, float]: ...


class Upkeep:
    """One per delivering process (built afresh after a fork, like the rest of its state)."""

    def __init__(
        self,
        store: Store,
        settings: Settings,
        logger: logging.Logger,
        owner: str,
        *,
        alarm_check: Callable[[], object] | None = None,
    ) -> None:
        self._store = store
        self._alarm_check = alarm_check
        self._alarm_at = -math.inf
        self._settings = settings
        self._logger = logger
        self._owner = owner
        self._pruned_at = -math.inf
        self._swept_at = -math.inf
        self._status_written: tuple[str, str | None] | None = None
        self._status_at = -math.inf
        self._waits_at = time.monotonic()

    def prune_if_due(self) -> None:
        """Drop records past ``OTP_CONVERSION_RETENTION`` (minute counters past ``MINUTE_ROWS_KEPT``)."""
        now = time.monotonic()
        if now - self._pruned_at < PRUNE_EVERY:
            return
        self._pruned_at = now
        if not self._store.acquire_lease(PRUNE_LEASE, owner=self._owner, ttl=PRUNE_EVERY, now=time.time()):
            return
        wall = time.time()
        removed = self._store.prune(
            before=wall - self._settings.retention * 86400, minute_rows_before=wall - MINUTE_ROWS_KEPT
        )
        if removed:
            self._logger.info("otp-conversion: pruned %d record(s) past the retention", removed)

    def sweep_if_due(self, *, provider: str, account: str, negative: bool) -> int:
        """Every ``SWEEP_EVERY``: settle sends whose match window ended unverified (with ``negative``), and
        dead-letter rows of another account once past ``max_report_age``. Both are idempotent, so every
        delivering process may sweep. Returns how many negative reports were enqueued."""
        now = time.monotonic()
        if now - self._swept_at < SWEEP_EVERY:
            return 0
        self._swept_at = now
        wall, settings = time.time(), self._settings
        settled = 0
        if negative:
            settled = self._store.enqueue_unverified(
                provider=provider,
                account=account,
                sent_after=wall - settings.max_report_age,
                sent_before=wall - settings.match_window,
                limit=SWEEP_BATCH,
                now=wall,
            )
            if settled:
                self._logger.debug("otp-conversion: %d unverified OTP(s) to report as not converted", settled)
        moved = self._store.expire_foreign(
            provider=provider, account=account, created_before=wall - settings.max_report_age, now=wall
        )
        if moved:
            self._logger.warning(
                "otp-conversion: %d report(s) of another provider account dead-lettered after %g s unsent"
                " (the account changed; see `flask otp-conversion dead-letters`)",
                moved,
                settings.max_report_age,
            )
        return settled

    def check_alarm_if_due(self) -> None:
        """Every ``ALARM_EVERY``: evaluate the alarm (it opens and closes episodes itself, once across processes)."""
        if self._alarm_check is None:
            return
        now = time.monotonic()
        if now - self._alarm_at < ALARM_EVERY:
            return
        self._alarm_at = now
        try:
            self._alarm_check()
        except Exception as exc:  # the alarm is advisory: delivery goes on, the next period tries again
            self._logger.warning("otp-conversion: the alarm could not be evaluated: %s", describe_error(exc))

    def count_rate_waits(self, provider: str, source: RateWaits, *, force: bool = False) -> None:
        """Every ``STATUS_EVERY`` (or now, with ``force``: a flush or a stop ends): the rate-cap waits the senders
        saw, into the store's delivery figures."""
        now = time.monotonic()
        if not force and now - self._waits_at < STATUS_EVERY:
            return
        self._waits_at = now
        waits, seconds = source.take_rate_waits()
        if not waits:
            return
        try:
            self._store.count_rate_waits(provider=provider, waits=waits, wait_seconds=seconds, now=time.time())
        except Exception as exc:  # a figure, not a report: dropped with a line rather than retried
            self._logger.debug("otp-conversion: rate-limit waits not counted: %s", describe_error(exc))

    def write_status(
        self, *, provider: str, breaker: str, last_error: str | None, retry_at: float | None, force: bool
    ) -> None:
        """Breaker state and last error in the store, so that every process's stats tell the truth: on a change,
        and at most once per ``STATUS_EVERY`` otherwise. A store that refuses only delays it."""
        status = (breaker, last_error)
        now = time.monotonic()
        if not force and (status == self._status_written or now - self._status_at < STATUS_EVERY):
            return
        self._status_at = now
        record = DeliveryRecord(breaker=breaker, last_error=last_error, at=time.time(), retry_at=retry_at)
        try:
            self._store.set_flag(status_flag(provider), record.dump())
        except Exception as exc:
            self._logger.debug("otp-conversion: delivery status not written: %s", describe_error(exc))
            return
        self._status_written = status
