"""The drain loop of one delivering process: it runs ``policy.DeliveryPolicy`` against the store and the provider
client, pass by pass, for the ``Reporter`` (``worker.py``) that starts, flushes and stops it.

Shape
    Each pass claims due rows (``store.claim`` with a row lease) as the policy says and offers them to the sender
    threads (``senders.py``: one request each; ``outcomes.py``: acks in batches, retries, hand-backs), up to
    ``OTP_CONVERSION_REPORT_CONCURRENCY`` of them; between claims it runs the upkeep (``upkeep.py``). The policy
    is shared with the senders under this loop's lock. A flush wakes the loop and waits for a pass that found
    nothing to do.

Rate cap
    One schedule of request starts in the store (``ratelimit.SharedSchedule``, ``Store.take_slots``), shared by every
    process: each sender waits for its slot right before its request, so however many processes deliver, the
    provider sees at most its cap in any second.

Leases and at-least-once
    A row must start within ``policy.SEND_WINDOW`` of its claim; its lease also covers the longest request
    and the ack (``policy.lease_seconds``), so in normal operation a row is sent once. A row that cannot go
    in time (its window passed, the breaker opened, the process is stopping) is handed back, due now. Only
    rows in flight when a process dies, or still in flight when ``stop()``'s deadline ends (logged), are sent
    again, after their lease expires.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from blinker import NamedSignal

from ..config import Settings
from ..providers.base import Provider
from ..redaction import describe_error
from ..signals import breaker_closed, breaker_opened
from ..store.base import OutboxItem, Store
from ..store.rules import sendable
from . import policy as P
from .activity import BUSY_POLL
from .breaker import Breaker, Closed, Opened, Transition
from .degraded import DegradedSwitch
from .outcomes import Outcomes
from .ratelimit import SharedSchedule
from .senders import Job, Senders
from .terms import FALLBACK_RATE, read_terms, shared_schedule
from .upkeep import Upkeep

#: The loop's look at an outbox that had nothing due (a claim is a store write: not too often).
IDLE_POLL = 0.25
#: After an unexpected error in the loop (the store is down, say).
ERROR_PAUSE = 2.0
#: Sender threads a delivering process starts with; more start while claimed rows wait for one.
FIRST_SENDERS = 2
#: The loop's next look while it may still need more senders (rows claimed, fewer than the concurrency).
GROW_POLL = 0.05


class DrainLoop:
    """One process's delivery state and its drain loop. A forked child builds a new one; ``parent``, the loop
    it replaces, hands over what outlives a fork: the last error, and whether the degraded setting was applied."""

    def __init__(
        self,
        *,
        store: Store,
        provider_factory: Callable[[], Provider],
        settings: Settings,
        sender: object,
        logger: logging.Logger,
        busy: Callable[[], bool] | None = None,
        alarm_check: Callable[[], object] | None = None,
        running: Callable[[], bool],
        parent: DrainLoop | None = None,
    ) -> None:
        self._store = store
        self._running = running  # whether the Reporter's thread runs this loop
        self._busy = busy
        self._provider_factory = provider_factory
        self._settings = settings
        self._sender = sender
        self._logger = logger
        self._lease = P.lease_seconds(settings.http_connect_timeout, settings.http_read_timeout)
        self._last_error: str | None = None if parent is None else parent._last_error
        self._owner = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self._lock = threading.Lock()  # the policy (shared with the senders) and the loop's counters
        self._progress = threading.Condition(self._lock)  # flush waits here for idle passes (or the loop's end)
        self._wake = threading.Event()
        self._setup_lock = threading.Lock()
        self._busy_claim_at = -math.inf  # while requests run: no claim before this (monotonic)
        self._flushing = 0  # flush() calls waiting on the loop, which then does not hold back
        self._schedule: SharedSchedule | None = None
        self._provider_name = self._settings.provider or ""
        self._account: str | None = None  # the provider's, once known: claims take only its rows
        self._negative = False  # negative reports are made (config and provider both say so)
        self._policy = P.DeliveryPolicy(
            cap=FALLBACK_RATE,
            concurrency=self._settings.report_concurrency,
            max_report_age=self._settings.max_report_age,
            breaker=Breaker(
                threshold=self._settings.breaker_threshold,
                reset_timeout=self._settings.breaker_reset_timeout,
                max_reset_timeout=self._settings.breaker_max_reset_timeout,
                probe_timeout=self._lease,
            ),
            idle_poll=IDLE_POLL,
        )
        self._degraded: DegradedSwitch = DegradedSwitch(
            store,
            configured=settings.degraded,
            policy=self._policy,
            lock=self._lock,
            logger=logger,
            applied=parent is not None and parent._degraded.applied,
        )
        self._outcomes = Outcomes(
            store=self._store, logger=self._logger, wake=self._wake.set, note_error=self._note_failure, emit=self._emit
        )
        self._senders = Senders(
            outcomes=self._outcomes,
            provider_factory=self._provider_factory,
            concurrency=self._settings.report_concurrency,
            lease=self._lease,
            policy=self._policy,
            policy_lock=self._lock,
            logger=self._logger,
            wake=self._wake.set,
            note_error=self._note_failure,
            on_transition=self._transition,
        )
        self._idle_passes = 0
        self._next_due: float | None = None
        self._upkeep = Upkeep(self._store, self._settings, self._logger, self._owner, alarm_check=alarm_check)

    # What the Reporter asks -----------------------------------------------------------------------------

    def wake(self) -> None:
        self._wake.set()

    def set_degraded(self, on: bool) -> None:
        """Switch degradation on or off for every process sharing the store."""
        self._degraded.switch(on)
        self._wake.set()

    def degraded(self) -> bool:
        self._degraded.apply_configured()  # OTP_CONVERSION_DEGRADED holds before the first delivery too
        self._degraded.refresh()
        return self._policy.degraded

    @property
    def breaker_state(self) -> str:
        return self._policy.breaker.state

    @property
    def last_error(self) -> str | None:
        return self._last_error

    def count_rate_waits(self) -> None:
        """The rate waits counted so far, written now (a flush's end)."""
        self._upkeep.count_rate_waits(self._provider_name, self._senders, force=True)

    def cut_off(self, start_by: float) -> None:
        """No request starts after ``start_by`` (``Senders.cut_off``)."""
        self._senders.cut_off(start_by)

    def close(self, deadline: float) -> None:
        """The senders wound down by ``deadline`` (what they hold recorded or handed back), then closed."""
        self._senders.wind_down(deadline)
        self._senders.close()

    # Setup --------------------------------------------------------------------------------------------

    def _ready_to_send(self) -> None:
        """The provider's terms and this process's rate schedule, read on first use, and more sender threads."""
        with self._setup_lock:
            if self._schedule is None:
                terms = read_terms(self._provider_factory, self._settings, self._logger)
                self._account, self._negative = terms.account, terms.negative
                self._schedule = shared_schedule(self._store, terms)
                self._provider_name = terms.rows_provider
                with self._lock:
                    self._policy.cap = terms.cap
                    self._policy.report_deadline = terms.deadline
                self._senders.use(self._schedule, self._provider_name)
            self._senders.add(FIRST_SENDERS)

    def apply_configured_degraded(self) -> None:
        self._degraded.apply_configured()

    # The drain loop -----------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """The loop on its own thread, until ``stop``."""
        try:
            self.drain(stop, None)
        finally:
            with self._lock:  # a flush waiting on this loop runs the loop itself from now on
                self._progress.notify_all()

    def drain(self, stop: threading.Event, deadline: float | None) -> None:
        """The one drain loop: passes until ``stop`` or, with a ``deadline`` (flush, stop), until nothing is
        due or the deadline passes. Rows it claimed and could not send by then are handed back."""
        try:
            self.apply_configured_degraded()
            self._ready_to_send()
        except Exception as exc:
            self._note_failure(describe_error(exc))
            self._logger.error("otp-conversion reporter could not start delivering: %s", describe_error(exc))
            self._degraded.applied = False
            if deadline is not None:
                return
        while not stop.is_set():
            self._wake.clear()  # before the pass: a wake-up set during it is not lost
            try:
                wait, idle = self._pass(hold_back=deadline is None)
            except Exception as exc:
                self._note_failure(describe_error(exc))
                self._logger.error("otp-conversion reporter: %s; retrying in %g s", describe_error(exc), ERROR_PAUSE)
                wait, idle = ERROR_PAUSE, False
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0 or (idle and self._drained(time.time() + left)):
                    break
                wait = min(wait, left)
            if wait > 0:
                self._wake.wait(wait)
        if deadline is not None:
            self._settle(deadline)

    def _pass(self, *, hold_back: bool = False) -> tuple[float, bool]:
        """One pass of the loop: returns (seconds to wait before the next, whether nothing was left to do).
        ``hold_back``: give way to this worker's requests (the background loop; a flush never does)."""
        if not self._degraded.applied:
            self._degraded.apply_configured()
        self._outcomes.flush_acks(force=False)
        self._outcomes.hand_back_pending()
        self._degraded.refresh()
        self._upkeep_if_due()
        self.log_summary(force=False)
        now = time.time()
        serving = hold_back and not self._flushing and self._busy is not None and self._busy()
        if serving and time.monotonic() < self._busy_claim_at:
            return BUSY_POLL, False  # looked at most once a BUSY_POLL while requests run
        buffered, busy = self._senders.load()
        with self._lock:
            plan = self._policy.plan(now, buffered=buffered)
        if isinstance(plan, P.Wait):
            if plan.reason == "enough claimed" and buffered and self._grow_senders():
                return GROW_POLL, False  # rows wait for senders that the next answers may still size
            idle = not busy and plan.reason != "enough claimed"
            if idle:
                self._note_idle(now)
            return plan.seconds, idle
        as_of = P.claim_as_of(now, busy=serving, window=self._settings.yield_to_requests)
        items = self._store.claim(
            provider=self._provider_name,
            account=self._account,
            limit=plan.limit,
            lease_seconds=self._lease + (now - as_of),
            now=as_of,
        )
        if serving:
            # a full claim of overdue rows: the next goes at once; else look again in a BUSY_POLL
            self._busy_claim_at = -math.inf if len(items) >= plan.limit else time.monotonic() + BUSY_POLL
        jobs = []
        for item in items:
            reason = self._policy_dead_on_claim(item, now)
            if reason is not None:
                self._outcomes.dead_letter(item, reason, now)
            else:
                jobs.append(Job(item, plan.probe, now + P.SEND_WINDOW))
        if plan.probe is not None and not jobs:
            with self._lock:
                self._policy.cancel(plan.probe)
        # behind: rows of an earlier claim still wait for a sender, so the senders fall behind
        behind, quiet = self._senders.offer(jobs, backlog=len(items) >= plan.limit, low_water=max(1, plan.limit // 2))
        idle = not items and quiet
        growing = bool(jobs) and self._senders.can_grow
        if behind and self._grow_senders():
            growing = True
        if idle:
            self._note_idle(now)
        # With a backlog, a sender wakes the loop as soon as the ready list runs low; while the senders may still be
        # too few, the loop looks again soon, so that a slow provider gets its senders within a fraction of a second.
        return (GROW_POLL if growing else IDLE_POLL), idle

    def _grow_senders(self) -> bool:
        """Rows wait for a sender: as many senders as the cap (or the GIL) lets the provider's latency use, no
        more. Whether to look again soon: no answer has come to size them by yet, or more were just started."""
        if not self._senders.can_grow:
            return False
        unanswered = self._senders.since_first_request()
        with self._lock:
            wanted = self._policy.senders_wanted(unanswered)
        if wanted == 0:
            return True
        before = self._senders.count
        self._senders.grow_to(wanted)
        return self._senders.count > before

    def _note_idle(self, now: float) -> None:
        """A pass found nothing to do: what a waiting flush looks for."""
        due = self._outcomes.next_retry(now)
        with self._lock:
            self._idle_passes += 1
            self._next_due = due
            self._progress.notify_all()

    def _policy_dead_on_claim(self, item: OutboxItem, now: float) -> str | None:
        with self._lock:
            return self._policy.dead_on_claim(P.Row(item.created_at, item.attempts, item.sent_at), now)

    def _drained(self, wall_deadline: float) -> bool:
        """Nothing is due, so a flush may return: nothing pending, or degraded, or nothing will fall due
        before the deadline (no retry this process scheduled, no row leased elsewhere)."""
        if self._policy.degraded:
            return True
        stats = self._store.outbox_stats(now=time.time())
        if stats.pending == 0:
            return True
        if stats.in_flight > 0:  # leased by another process, or by a dead one: wait for its ack or expiry
            return False
        with self._lock:
            due = self._next_due
            blocked = self._policy.breaker.retry_at
            pause = self._policy.pause_until
        soonest = min(x for x in (due, blocked, pause if pause > 0 else None, math.inf) if x is not None)
        return soonest >= wall_deadline

    def wait_drained(self, deadline: float) -> bool:
        """flush() beside a running loop: wake it and wait for a pass that found nothing to do (the loop does not
        give way to requests while a flush waits). False if the loop stopped first: the caller drains itself."""
        with self._lock:
            seen = self._idle_passes
            self._flushing += 1
        try:
            return self._wait_drained_until(deadline, seen)
        finally:
            with self._lock:
                self._flushing -= 1

    def _wait_drained_until(self, deadline: float, seen: int) -> bool:
        self._wake.set()
        while (left := deadline - time.monotonic()) > 0:
            with self._lock:
                if self._idle_passes == seen:
                    self._progress.wait(left)
                passed = self._idle_passes != seen
                seen = self._idle_passes
            if passed and self._drained(time.time() + deadline - time.monotonic()):
                return True
            if not self._running():
                return False
        return True

    def _settle(self, deadline: float) -> None:
        """At a flush's or stop's deadline: hand back what was claimed and not started, let requests in
        flight finish within the deadline, and ack what was delivered."""
        if not self._running():
            self._senders.hand_back_ready("flush deadline reached")
        self._senders.wait_idle(deadline)
        self._outcomes.flush_acks(force=True)
        self._outcomes.hand_back_pending()

    def _upkeep_if_due(self) -> None:
        upkeep = self._upkeep
        upkeep.prune_if_due()
        account = self._account
        if account is not None and upkeep.sweep_if_due(
            provider=self._provider_name, account=account, negative=self._negative
        ):
            self._wake.set()  # negative reports to send
        self._write_status(force=False)
        upkeep.count_rate_waits(self._provider_name, self._senders)
        upkeep.check_alarm_if_due()

    def _write_status(self, *, force: bool) -> None:
        breaker = self._policy.breaker
        self._upkeep.write_status(
            provider=self._provider_name,
            breaker=breaker.state,
            last_error=self._last_error,
            retry_at=breaker.retry_at,
            force=force,
        )

    # Shared state -------------------------------------------------------------------------------------

    def pending(self) -> int:
        """Pending rows this app may send: those of another provider or account wait for their own (shown in the
        stats' ``accounts``) and expire after ``max_report_age``."""
        provider, account = self._provider_name, self._account
        return sum(
            row.pending
            for row in self._store.backlog()
            # the account not yet known here: every row of the provider
            if (
                row.provider == provider
                if account is None
                else sendable(row.provider, row.account, provider=provider, account=account)
            )
        )

    def _note_failure(self, error: str) -> None:
        self._last_error = error

    def log_summary(self, *, force: bool) -> None:
        now = time.time()
        with self._lock:
            summary = self._policy.summary_now(now) if force else self._policy.summary_due(now)
        if summary is None:
            return
        pending: int | str = "?"
        with contextlib.suppress(Exception):
            pending = self.pending()
        self._logger.info(
            "otp-conversion: %d reported, %d retried, %d dead-lettered in the last %.0f s; %s pending",
            summary.reported,
            summary.retried,
            summary.dead,
            now - (summary.since or now),
            pending,
        )

    # Breaker transitions and signals ------------------------------------------------------------------

    def _transition(self, transition: Transition) -> None:
        if isinstance(transition, Opened):
            self._logger.warning(
                "circuit breaker open after %s: no conversion reports for %.0f s, then one probe",
                transition.reason,
                max(0.0, transition.retry_at - time.time()),
            )
            self._emit(breaker_opened, reason=transition.reason, retry_at=transition.retry_at)
            self._write_status(force=True)
        elif isinstance(transition, Closed):
            self._logger.warning("circuit breaker closed: conversion reports flow again")
            self._emit(breaker_closed)
            self._write_status(force=True)
            self._wake.set()

    def _emit(self, signal: NamedSignal, **kwargs: Any) -> None:
        """Send a signal; a receiver that raises is logged and never stops delivery."""
        if not signal.receivers:
            return
        try:
            signal.send(self._sender, **kwargs)
        except Exception as exc:
            self._logger.error("a receiver of %s raised %s", signal.name, describe_error(exc))
