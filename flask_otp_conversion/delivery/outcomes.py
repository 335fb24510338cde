"""What became of the rows the senders took, written to the store: acks in batches, retries, dead letters and
rows handed back unsent.

Acks go in batches (one store write for up to ``ACK_BATCH`` rows, at most ``ACK_MAX_DELAY`` late): an ack per row
would be a store write per report. Hand-backs wait for the drain loop's next pass, which writes them in one
``release``, except while closing, when no pass will come. Each outcome is signalled after its write, so a receiver
never hears of a report the store does not record.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections.abc import Callable, Sequence

from ..phone import mask_phone
from ..redaction import describe_error, safe_text
from ..signals import conversion_dead_lettered, conversion_failed, conversion_reported
from ..store.base import OutboxItem, Store
from . import policy as P

ACK_BATCH = 100
ACK_MAX_DELAY = 0.25
#: Retry times kept for ``next_retry`` (a hint for flush; past this many, the oldest are enough).
RETRY_HINTS = 100_000


class Outcomes:
    """The store writes of one process's senders; see the module docstring. Per process, like the senders."""

    def __init__(
        self,
        *,
        store: Store,
        logger: logging.Logger,
        wake: Callable[[], None],
        note_error: Callable[[str], None],
        emit: Callable[..., None],
    ) -> None:
        """``wake``: the drain loop should look now; ``note_error``: the latest delivery failure, redacted;
        ``emit(signal, **kwargs)``: send a delivery signal."""
        self._store = store
        self._logger = logger
        self._wake = wake
        self._note_error = note_error
        self._emit: Callable[..., None] = emit
        self._lock = threading.Lock()  # the acks, the hand-backs, the hints
        self._written = threading.Condition(self._lock)  # a stop waits here for ack writes under way
        self._acks: list[OutboxItem] = []
        self._acks_since = 0.0
        self._acking = 0
        self._handback: list[OutboxItem] = []
        self._retry_hints: list[float] = []
        self._auth_logged = False
        self._closing = False
        self.provider_name = ""

    def closing(self) -> None:
        """No loop pass will come: hand-backs are written at once from now on."""
        self._closing = True

    def delivered(self, item: OutboxItem, started: float) -> None:
        """A row the provider took (``started``: when its request began, monotonic): acked with its batch."""
        with self._lock:
            if not self._acks:
                self._acks_since = started
            self._acks.append(item)
            due = self._batch_due()
        if due:
            self.flush_acks(force=True)

    def flush_acks(self, *, force: bool) -> None:
        """One store write for many delivered rows (at most ``ACK_MAX_DELAY`` late unless ``force``)."""
        with self._lock:
            if not self._acks or not (force or self._batch_due()):
                return
            items, self._acks = self._acks, []
            self._acking += 1
        try:
            acked = self._store.ack(items, now=time.time())
        except BaseException:
            with self._lock:  # again on the next flush; the leases still cover them for a while
                self._acks[:0] = items
            raise
        finally:
            with self._lock:
                self._acking -= 1
                self._written.notify_all()
        if acked < len(items):
            self._logger.warning(
                "%d delivered report(s) had lost their lease before the ack (they may be reported twice)",
                len(items) - acked,
            )
        for item in items:
            self._emit(conversion_reported, report=item)

    def _batch_due(self) -> bool:
        """Under the lock: the acks gathered fill a batch, or the oldest has waited its delay."""
        return len(self._acks) >= ACK_BATCH or time.monotonic() - self._acks_since >= ACK_MAX_DELAY

    def wait_written(self, end: float) -> None:
        """Until ``end`` (monotonic): wait for the ack writes under way to end."""
        with self._lock:
            while self._acking > 0 and (remaining := end - time.monotonic()) > 0:
                self._written.wait(remaining)

    def retry(self, item: OutboxItem, verdict: P.Retry, answer: P.Answer) -> None:
        """A failed row, due again at the policy's time."""
        self._note_error(verdict.error)
        if answer.outcome is P.Outcome.AUTH and not self._auth_logged:
            self._auth_logged = True
            self._logger.error(
                "%s rejected our credentials or permissions (%s): conversion reports are stopped until a probe "
                "succeeds; check the OTP_CONVERSION_%s_* settings",
                self.provider_name,
                verdict.error,
                self.provider_name.upper(),
            )
        self._store.retry(item, next_attempt_at=verdict.at, error=verdict.error, now=time.time())
        with self._lock:
            if len(self._retry_hints) < RETRY_HINTS:
                heapq.heappush(self._retry_hints, verdict.at)
        self._logger.debug(
            "report %s for %s failed (%s); next attempt in %.1f s",
            item.message_id,
            mask_phone(item.phone),
            verdict.error,
            max(0.0, verdict.at - time.time()),
        )
        self._emit(conversion_failed, report=item, error=verdict.error, next_attempt_at=verdict.at)

    def credentials_work(self) -> None:
        """The breaker closed: a later rejection of the credentials is logged again."""
        self._auth_logged = False

    def dead_letter(self, item: OutboxItem, reason: str, now: float) -> None:
        """A row that will never be reported (the provider refused it, or it is too old to send)."""
        reason = safe_text(reason)
        self._store.dead_letter(item, reason=reason, now=now)
        self._logger.warning("report %s for %s dead-lettered: %s", item.message_id, mask_phone(item.phone), reason)
        self._emit(conversion_dead_lettered, report=item, reason=reason)

    def next_retry(self, now: float) -> float | None:
        """The earliest retry scheduled here that is still ahead, or ``now`` if one fell due (a hint for flush: a
        full-jitter backoff can be shorter than a pass)."""
        with self._lock:
            hints = self._retry_hints
            fell_due = False
            while hints and hints[0] <= now:
                heapq.heappop(hints)
                fell_due = True
            if fell_due:
                return now
            return hints[0] if hints else None

    def hand_back(self, items: Sequence[OutboxItem], reason: str) -> None:
        """Claimed rows that did not go out: back to the outbox, due now, in the loop's next batch."""
        if items:
            with self._lock:
                self._handback.extend(items)
            self._logger.debug("handing back %d unsent report(s): %s", len(items), reason)
            if self._closing:  # no loop pass will come for them
                self.hand_back_pending()
            else:
                self._wake()

    def handed_back(self) -> int:
        """Rows handed back and not yet written."""
        with self._lock:
            return len(self._handback)

    def hand_back_pending(self) -> None:
        """Write the hand-backs gathered since the last call (the loop's pass, or at once while closing)."""
        with self._lock:
            items, self._handback = self._handback, []
        if not items:
            return
        try:
            self._store.release(items)
        except Exception as exc:  # their leases expire anyway
            self._logger.warning("could not hand back %d report(s): %s", len(items), describe_error(exc))
