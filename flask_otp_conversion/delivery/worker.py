"""The delivery worker: runs ``policy.DeliveryPolicy`` against the store and the provider client.

Shape
    This module holds the lifecycle (start, flush, stop, forks) and the one *drain loop*: it claims due rows
    (``store.claim`` with a row lease) as the policy says and offers them to the sender threads
    (``senders.py``: one request each, acks in batches, hand-back), up to ``OTP_CONVERSION_REPORT_CONCURRENCY``
    of them. The loop runs on a thread of its own (``ensure_running``) or, in a process that never started it,
    in the caller of ``flush``/``stop``. The policy is shared with the senders under this module's lock.

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

Degradation
    The store flag ``"degraded"`` (``"1"`` or absent) is shared by every process and re-read at most once a
    second. ``OTP_CONVERSION_DEGRADED=True`` sets it on first use (a deploy-time kill switch); ``False``
    leaves it alone, so a run-time ``degrade on`` survives restarts. While degraded no call is made.

Processes
    Nothing starts at import or construction, so ``gunicorn --preload`` forks a clean master. Per-process
    state lives on ``_forks.ForkLocal``: a forked child drops the parent's threads, locks and clients and
    builds its own. ``stop()`` starts no request whose total deadline would outlast its own, waits for those
    in flight and records them, and hands the rest of what it claimed back unsent: a graceful restart sends
    nothing twice.
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

from .._forks import ForkLocal
from ..config import Settings
from ..providers.base import Provider
from ..redaction import describe_error
from ..signals import breaker_closed, breaker_opened
from ..store.base import OutboxItem, Store
from ..store.rules import sendable
from . import policy as P
from .activity import BUSY_POLL
from .breaker import Breaker, Closed, Opened, Transition
from .ratelimit import SharedSchedule
from .senders import Job, Senders
from .upkeep import Upkeep

DEGRADED_FLAG = "degraded"
#: Rate used when neither the provider nor ``OTP_CONVERSION_RATE_LIMITS`` names a cap for the report action.
FALLBACK_RATE = 50.0
#: The loop's look at an outbox that had nothing due (a claim is a store write: not too often).
IDLE_POLL = 0.25
#: After an unexpected error in the loop (the store is down, say).
ERROR_PAUSE = 2.0
#: Sender threads a delivering process starts with; more start while claimed rows wait for one.
FIRST_SENDERS = 2
#: The loop's next look while it may still need more senders (rows claimed, fewer than the concurrency).
GROW_POLL = 0.05


class Reporter(ForkLocal):
    """Delivers outbox rows to the provider; see the module docstring.

    ``ensure_running()`` is cheap and safe to call on every request; ``flush(timeout)`` wakes the loop (or
    runs it here) and waits until nothing is due; ``stop(timeout)`` is for exit. ``set_degraded``,
    ``degraded``, ``breaker_state``, ``last_error`` and ``running`` serve the CLI and the stats endpoint.
    """

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
    ) -> None:
        self._store = store
        self._alarm_check = alarm_check
        self._busy = busy
        self._provider_factory = provider_factory
        self._settings = settings
        self._sender = sender
        self._logger = logger
        self._lease = P.lease_seconds(settings.http_connect_timeout, settings.http_read_timeout)
        self._config_applied = False
        self._last_error: str | None = None
        self._init_process_state()
        self._watch_forks()

    def _init_process_state(self) -> None:
        """Everything that belongs to one process: rebuilt from scratch in a forked child."""
        self._pid = os.getpid()
        self._owner = f"{self._pid}-{uuid.uuid4().hex[:12]}"
        self._lock = threading.Lock()  # the policy (shared with the senders) and the loop's counters
        self._progress = threading.Condition(self._lock)  # flush waits here for idle passes (or the loop's end)
        self._wake = threading.Event()
        self._start_lock = threading.Lock()
        self._setup_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop_event = threading.Event()
        self._stopped = False
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
        self._senders = Senders(
            store=self._store,
            provider_factory=self._provider_factory,
            concurrency=self._settings.report_concurrency,
            lease=self._lease,
            policy=self._policy,
            policy_lock=self._lock,
            logger=self._logger,
            wake=self._wake.set,
            note_error=self._note_failure,
            on_transition=self._transition,
            emit=self._emit,
        )
        self._idle_passes = 0
        self._next_due: float | None = None
        self._upkeep = Upkeep(self._store, self._settings, self._logger, self._owner, alarm_check=self._alarm_check)

    def _after_fork_in_child(self) -> None:
        # Never touch the parent's locks (a parent thread may have held them at the fork) nor close its
        # clients (their sockets are shared with the parent): drop everything and start over.
        self._init_process_state()
        with contextlib.suppress(Exception):  # logging is unsafe here; the store's next call reports it
            self._store.reopen()

    # Public API ---------------------------------------------------------------------------------------

    def ensure_running(self) -> None:
        """Start the drain loop's thread if it is not running in this process. Cheap; never raises."""
        try:
            self._check_fork()
            thread = self._thread
            if thread is not None and thread.is_alive():
                return
            if not self._settings.enabled or self._stopped:
                return
            with self._start_lock:
                if self._stopped or (self._thread is not None and self._thread.is_alive()):
                    return
                if self._thread is not None:
                    self._logger.warning("otp-conversion reporter thread had stopped; restarting it")
                self._stop_event = threading.Event()
                thread = threading.Thread(
                    target=self._run, args=(self._stop_event,), name="otp-conversion-reporter", daemon=True
                )
                thread.start()
                self._thread = thread
        except Exception as exc:
            self._logger.error("otp-conversion reporter could not start: %s", describe_error(exc))

    def flush(self, timeout: float) -> int:
        """Deliver every row due now (respecting the breaker, degradation and the rate limit) within
        ``timeout`` seconds: wake the drain loop and wait until nothing is due, or run the loop here if this
        process has none. Returns how many rows it could send are still pending (not those of another provider
        or account)."""
        self._check_fork()
        if not self._settings.enabled:
            return self._pending()
        self._apply_configured_degraded()
        deadline = time.monotonic() + max(0.0, timeout)
        if self.running:
            self._wait_drained(deadline)
        else:
            self._drain(self._stop_event, deadline)
        self._upkeep.count_rate_waits(self._provider_name, self._senders, force=True)
        return self._pending()

    def stop(self, timeout: float | None = None) -> None:
        """At exit: start no request that could not end within ``timeout`` (default
        ``OTP_CONVERSION_SHUTDOWN_TIMEOUT``) by its total deadline, so deliver (claiming) only while one
        could, then stop claiming; wait for the requests in flight and record their outcome, and hand every
        other claimed row back to the outbox unsent. A request still running at the deadline is logged at
        WARNING: its row goes again when its lease expires (at-least-once)."""
        self._check_fork()
        budget = self._settings.shutdown_timeout if timeout is None else max(0.0, timeout)
        deadline = time.monotonic() + budget
        # Each request's total deadline (providers.transport.request_deadline), which the row lease allows for.
        longest = self._settings.http_connect_timeout + self._settings.http_read_timeout
        with self._start_lock:
            self._stopped = True
            thread, self._thread = self._thread, None
        self._senders.cut_off(time.time() + budget - longest)
        self._stop_event.set()
        self._wake.set()
        try:
            if thread is not None:
                if thread is not threading.current_thread():
                    thread.join(max(0.0, deadline - time.monotonic()))
                if (last_start := deadline - longest) > time.monotonic():  # room to deliver more: drain till then
                    self._drain(threading.Event(), last_start)
            self._senders.wind_down(deadline)
            self._senders.close()
        except Exception as exc:
            self._logger.error("otp-conversion reporter did not stop cleanly: %s", describe_error(exc))
        self._log_summary(force=True)

    def set_degraded(self, on: bool) -> None:
        """Switch degradation on or off for every process sharing the store."""
        self._config_applied = True  # an explicit switch outranks OTP_CONVERSION_DEGRADED from now on
        self._store.set_flag(DEGRADED_FLAG, "1" if on else None)
        self._note_degraded(on)
        self._wake.set()

    @property
    def degraded(self) -> bool:
        self._apply_configured_degraded()  # OTP_CONVERSION_DEGRADED holds before the first delivery too
        self._refresh_degraded()
        return self._policy.degraded

    @property
    def breaker_state(self) -> str:
        return self._policy.breaker.state

    @property
    def last_error(self) -> str | None:
        """The most recent delivery failure, redacted (no secrets, phones masked, provider ids kept)."""
        return self._last_error

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive() and self._pid == os.getpid()

    def __repr__(self) -> str:
        return f"<Reporter pid={self._pid} breaker={self.breaker_state} running={self.running}>"

    # Setup --------------------------------------------------------------------------------------------

    def _ready_to_send(self) -> None:
        """The rate limiter of this process, built on first use, and more sender threads."""
        with self._setup_lock:
            if self._schedule is None:
                provider = self._provider_factory()
                try:
                    action, name = provider.report_action, provider.name
                    cap = self._settings.rate_limits.get(action) or provider.rate_limits.get(action)
                    self._account = provider.account
                    self._negative = self._settings.report_unverified and provider.reports_unverified
                    deadline = provider.report_deadline
                finally:
                    provider.close()
                if cap is None:
                    cap = FALLBACK_RATE
                    self._logger.warning(
                        "no rate limit known for %s %s; using %g/s (set OTP_CONVERSION_RATE_LIMITS)", name, action, cap
                    )
                store, key = self._store, f"rate:{name}:{action}"

                def take(want: int, interval: float, horizon: float) -> tuple[float, int]:
                    return store.take_slots(key, want=want, interval=interval, horizon=horizon, now=time.time())

                self._schedule = SharedSchedule.for_cap(take, cap)
                self._provider_name = self._settings.provider or name
                with self._lock:
                    self._policy.cap = cap
                    self._policy.report_deadline = deadline
                self._senders.use(self._schedule, self._provider_name)
            self._senders.add(FIRST_SENDERS)

    def _apply_configured_degraded(self) -> None:
        if self._config_applied:
            return
        self._config_applied = True
        if self._settings.degraded:
            self._store.set_flag(DEGRADED_FLAG, "1")
            self._note_degraded(True)

    # The drain loop -----------------------------------------------------------------------------------

    def _run(self, stop: threading.Event) -> None:
        try:
            self._drain(stop, None)
        finally:
            with self._lock:  # a flush waiting on this loop runs the loop itself from now on
                self._progress.notify_all()

    def _drain(self, stop: threading.Event, deadline: float | None) -> None:
        """The one drain loop: passes until ``stop`` or, with a ``deadline`` (flush, stop), until nothing is
        due or the deadline passes. Rows it claimed and could not send by then are handed back."""
        try:
            self._apply_configured_degraded()
            self._ready_to_send()
        except Exception as exc:
            self._note_failure(describe_error(exc))
            self._logger.error("otp-conversion reporter could not start delivering: %s", describe_error(exc))
            self._config_applied = False
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
        if not self._config_applied:
            self._apply_configured_degraded()
        self._senders.flush_acks(force=False)
        self._senders.hand_back_pending()
        self._refresh_degraded()
        self._upkeep_if_due()
        self._log_summary(force=False)
        now = time.time()
        serving = hold_back and not self._flushing and self._busy is not None and self._busy()
        if serving and time.monotonic() < self._busy_claim_at:
            return BUSY_POLL, False  # looked at most once a BUSY_POLL while requests run
        buffered, busy = self._senders.load()
        with self._lock:
            plan = self._policy.plan(now, buffered=buffered)
        if isinstance(plan, P.Wait):
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
                self._senders.dead_letter(item, reason, now)
            else:
                jobs.append(Job(item, plan.probe, now + P.SEND_WINDOW))
        if plan.probe is not None and not jobs:
            with self._lock:
                self._policy.cancel(plan.probe)
        # behind: rows of an earlier claim still wait for a sender, so the senders fall behind
        behind, quiet = self._senders.offer(jobs, backlog=len(items) >= plan.limit, low_water=max(1, plan.limit // 2))
        idle = not items and quiet
        growing = bool(jobs) and self._senders.can_grow
        if behind:
            with self._lock:
                wanted = P.senders_needed(self._policy.cap, self._policy.latency, self._policy.cpu)
            self._senders.grow_to(wanted)  # to what the cap (or the GIL) lets the observed latency use, no more
        if idle:
            self._note_idle(now)
        # With a backlog, a sender wakes the loop as soon as the ready list runs low; while the senders may still be
        # too few, the loop looks again soon, so that a slow provider gets its senders within a fraction of a second.
        return (GROW_POLL if growing else IDLE_POLL), idle

    def _note_idle(self, now: float) -> None:
        """A pass found nothing to do: what a waiting flush looks for."""
        due = self._senders.next_retry(now)
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

    def _wait_drained(self, deadline: float) -> None:
        """flush() beside a running loop: wake it and wait for a pass that found nothing to do (the loop does not
        give way to requests while a flush waits)."""
        with self._lock:
            seen = self._idle_passes
            self._flushing += 1
        try:
            self._wait_drained_until(deadline, seen)
        finally:
            with self._lock:
                self._flushing -= 1

    def _wait_drained_until(self, deadline: float, seen: int) -> None:
        self._wake.set()
        while (left := deadline - time.monotonic()) > 0:
            with self._lock:
                if self._idle_passes == seen:
                    self._progress.wait(left)
                passed = self._idle_passes != seen
                seen = self._idle_passes
            if passed and self._drained(time.time() + deadline - time.monotonic()):
                return
            if not self.running:
                self._drain(self._stop_event, deadline)
                return

    def _settle(self, deadline: float) -> None:
        """At a flush's or stop's deadline: hand back what was claimed and not started, let requests in
        flight finish within the deadline, and ack what was delivered."""
        if not self.running:
            self._senders.hand_back_ready("flush deadline reached")
        self._senders.wait_idle(deadline)
        self._senders.flush_acks(force=True)
        self._senders.hand_back_pending()

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

    def _refresh_degraded(self) -> None:
        now = time.time()
        with self._lock:
            stale = self._policy.degraded_stale(now)
        if stale:
            self._note_degraded(self._store.get_flag(DEGRADED_FLAG) == "1")

    def _note_degraded(self, on: bool) -> None:
        with self._lock:
            first = self._policy.degraded_checked_at == -math.inf
            changed = self._policy.note_degraded(on, time.time())
        if changed and (on or not first):
            self._logger.warning(
                "degraded mode %s", "on: no provider calls, reports accumulate" if on else "off: reports flow"
            )

    def _pending(self) -> int:
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

    def _log_summary(self, *, force: bool) -> None:
        now = time.time()
        with self._lock:
            summary = self._policy.summary_now(now) if force else self._policy.summary_due(now)
        if summary is None:
            return
        pending: int | str = "?"
        with contextlib.suppress(Exception):
            pending = self._pending()
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
