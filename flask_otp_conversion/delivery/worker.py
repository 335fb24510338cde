"""The delivery worker: runs ``policy.DeliveryPolicy`` against the store and the provider client.

Shape
    One *drain loop* claims due rows (``store.claim`` with a row lease) as the policy says and puts them in
    a ready list; ``OTP_CONVERSION_REPORT_CONCURRENCY`` *sender threads* take rows from it, each takes a
    rate-limit slot and makes its request on its own provider client, and hands the answer to the policy.
    A sender blocks in its HTTP request, so reaching the provider's cap at its latency needs that many in
    flight (1,000/s at 50 ms is 50); an idle sender sleeps on a condition and costs nothing. Acks go in
    batches, one store write for up to ``ACK_BATCH`` rows. The loop runs on a thread of its own
    (``ensure_running``) or, in a process that never started it, in the caller of ``flush``/``stop``.

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
import heapq
import logging
import math
import os
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from blinker import NamedSignal

from .._forks import ForkLocal
from ..config import Settings
from ..phone import mask_phone
from ..providers.base import ConversionReport, Provider
from ..redaction import describe_error, safe_text
from ..signals import (
    breaker_closed,
    breaker_opened,
    conversion_dead_lettered,
    conversion_failed,
    conversion_reported,
)
from ..store.base import OutboxItem, Store
from . import policy as P
from .activity import BUSY_POLL
from .breaker import Breaker, Closed, Opened, Probe, Transition
from .ratelimit import SharedSchedule
from .upkeep import Upkeep

DEGRADED_FLAG = "degraded"
#: Rate used when neither the provider nor ``OTP_CONVERSION_RATE_LIMITS`` names a cap for the report action.
FALLBACK_RATE = 50.0
ACK_BATCH = 100
ACK_MAX_DELAY = 0.25
#: The loop's look at an outbox that had nothing due (a claim is a store write: not too often).
IDLE_POLL = 0.25
#: After an unexpected error in the loop (the store is down, say).
ERROR_PAUSE = 2.0
#: Sender threads a delivering process starts with; more start while claimed rows wait for one.
FIRST_SENDERS = 2
#: The loop's next look while it may still need more senders (rows claimed, fewer than the concurrency).
GROW_POLL = 0.05
#: A sender waiting for a rate-limit slot looks this often whether the process is stopping.
TOKEN_WAIT = 0.05


@dataclass(slots=True)
class _Job:
    item: OutboxItem
    probe: Probe | None
    #: Last moment (``time.time()``) the row may start, so that its lease covers the request and the ack.
    cutoff: float


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
    ) -> None:
        self._store = store
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
        self._lock = threading.Lock()  # the policy, the ready list, the acks, the counters
        self._rows = threading.Condition(self._lock)  # senders wait here for rows
        self._progress = threading.Condition(self._lock)  # flush waits here for idle passes
        self._wake = threading.Event()
        self._start_lock = threading.Lock()
        self._setup_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop_event = threading.Event()
        self._stopped = False
        self._closing = False
        self._senders: list[threading.Thread] = []
        self._busy_claim_at = -math.inf  # while requests run: no claim before this (monotonic)
        self._flushing = 0  # flush() calls waiting on the loop, which then does not hold back
        self._clients: list[Provider] = []
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
        self._ready: deque[_Job] = deque()
        self._low_water = 0
        self._backlog = False
        self._inflight = 0
        self._taken: dict[int, _Job] = {}  # by id(): rows senders hold and have not settled, for stop()
        self._acking = 0  # ack writes under way, which stop() waits for
        self._start_by = math.inf  # while stopping: no request starts after this (time.time())
        self._acks: list[OutboxItem] = []
        self._acks_since = 0.0
        self._handback: list[OutboxItem] = []
        self._retry_hints: list[float] = []
        self._idle_passes = 0
        self._next_due: float | None = None
        self._auth_logged = False
        self._upkeep = Upkeep(self._store, self._settings, self._logger, self._owner)

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
        # Each request's total deadline (providers._http.request_deadline), which the row lease allows for.
        longest = self._settings.http_connect_timeout + self._settings.http_read_timeout
        with self._start_lock:
            self._stopped = True
            thread, self._thread = self._thread, None
        with self._lock:  # rows taken before now are cut short here; those taken later in _send_forever
            self._start_by = time.time() + budget - longest
            for job in self._taken.values():
                job.cutoff = min(job.cutoff, self._start_by)
        self._stop_event.set()
        self._wake.set()
        try:
            if thread is not None:
                if thread is not threading.current_thread():
                    thread.join(max(0.0, deadline - time.monotonic()))
                if (last_start := deadline - longest) > time.monotonic():  # room to deliver more: drain till then
                    self._drain(threading.Event(), last_start)
            self._wind_down(deadline)
            self._close()
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
        """The rate limiter and the sender threads of this process, built on first use."""
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
            self._add_senders(FIRST_SENDERS)

    def _add_senders(self, count: int) -> None:
        """Start up to ``count`` more sender threads, never more than ``OTP_CONVERSION_REPORT_CONCURRENCY``. Senders
        start as rows wait for them, not all at once: each runnable thread is one more to wake and take the GIL
        beside the requests, and a fast provider needs few."""
        while count > 0 and len(self._senders) < self._settings.report_concurrency:
            sender = threading.Thread(
                target=self._send_forever, name=f"otp-conversion-sender-{len(self._senders)}", daemon=True
            )
            sender.start()
            self._senders.append(sender)
            count -= 1

    def _apply_configured_degraded(self) -> None:
        if self._config_applied:
            return
        self._config_applied = True
        if self._settings.degraded:
            self._store.set_flag(DEGRADED_FLAG, "1")
            self._note_degraded(True)

    # The drain loop -----------------------------------------------------------------------------------

    def _run(self, stop: threading.Event) -> None:
        self._drain(stop, None)

    def _drain(self, stop: threading.Event, deadline: float | None) -> None:
        """The one drain loop: passes until ``stop`` or, with a ``deadline`` (flush, stop), until nothing is
        due or the deadline passes. Rows it claimed and could not send by then are handed back."""
        try:
            self._apply_configured_degraded()
            self._ready_to_send()
        except Exception as exc:
            self._note_error(exc)
            self._logger.error("otp-conversion reporter could not start delivering: %s", describe_error(exc))
            self._config_applied = False
            if deadline is not None:
                return
        while not stop.is_set():
            self._wake.clear()  # before the pass: a wake-up set during it is not lost
            try:
                wait, idle = self._pass(hold_back=deadline is None)
            except Exception as exc:
                self._note_error(exc)
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
        self._flush_acks(force=False)
        self._hand_back_pending()
        self._refresh_degraded()
        self._upkeep_if_due()
        self._log_summary(force=False)
        now = time.time()
        serving = hold_back and not self._flushing and self._busy is not None and self._busy()
        if serving and time.monotonic() < self._busy_claim_at:
            return BUSY_POLL, False  # looked at most once a BUSY_POLL while requests run
        with self._lock:
            plan = self._policy.plan(now, buffered=len(self._ready))
            busy = bool(self._ready) or self._inflight > 0
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
                self._dead_letter(item, reason, now)
            else:
                jobs.append(_Job(item, plan.probe, now + P.SEND_WINDOW))
        with self._lock:
            if plan.probe is not None and not jobs:
                self._policy.cancel(plan.probe)
            behind = bool(self._ready)  # rows of an earlier claim still wait for a sender: the senders fall behind
            self._ready.extend(jobs)
            self._backlog = len(items) >= plan.limit
            self._low_water = max(1, plan.limit // 2)
            if jobs:
                self._rows.notify(len(jobs))
            idle = not items and not self._ready and self._inflight == 0
        growing = bool(jobs) and len(self._senders) < self._settings.report_concurrency
        if behind:
            with self._lock:
                wanted = P.senders_needed(self._policy.cap, self._policy.latency, self._policy.cpu)
            with self._setup_lock:  # to what the cap (or the GIL) lets the observed latency use, no more
                self._add_senders(wanted - len(self._senders))
        if idle:
            self._note_idle(now)
        # With a backlog, a sender wakes the loop as soon as the ready list runs low; while the senders may still be
        # too few, the loop looks again soon, so that a slow provider gets its senders within a fraction of a second.
        return (GROW_POLL if growing else IDLE_POLL), idle

    def _note_idle(self, now: float) -> None:
        """A pass found nothing to do: what a waiting flush looks for."""
        with self._lock:
            self._idle_passes += 1
            self._next_due = self._earliest_hint(now)
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
            with self._lock:
                left = [job for job in self._ready]
                self._ready.clear()
                for job in left:
                    self._policy.cancel(job.probe)
            self._hand_back([job.item for job in left], "flush deadline reached")
        with self._lock:
            while self._inflight > 0 and (remaining := deadline - time.monotonic()) > 0:
                self._progress.wait(remaining)
        self._flush_acks(force=True)
        self._hand_back_pending()

    def _wind_down(self, deadline: float) -> None:
        """stop() once the loop has ended: rows not started by ``_start_by`` go back unsent; requests in
        flight get until ``deadline``, and their outcomes (acks, retries) are written."""
        with self._lock:
            waited = self._inflight
            while self._ready and (left := min(self._start_by - time.time(), deadline - time.monotonic())) > 0:
                self._progress.wait(left)
            jobs = list(self._ready)
            self._ready.clear()
            for job in jobs:
                self._policy.cancel(job.probe)
        self._hand_back([job.item for job in jobs], "reporter stopping")
        self._wait_settled(deadline)
        with self._lock:
            unsent = len(self._handback)
        self._flush_acks(force=True)
        self._hand_back_pending()
        if waited or unsent:
            self._logger.info(
                "otp-conversion reporter stopping: %d report(s) in flight at the stop, %d claimed handed back unsent",
                waited,
                unsent,
            )

    def _wait_settled(self, end: float) -> int:
        """Until ``end`` (monotonic): wait for the senders' rows to settle and their ack writes to end; how
        many rows are still in a sender's hands."""
        with self._lock:
            while (self._inflight > 0 or self._acking > 0) and (remaining := end - time.monotonic()) > 0:
                self._progress.wait(remaining)
            return self._inflight

    def _close(self) -> None:
        """End the sender threads and close their clients."""
        with self._lock:
            self._closing = True
            left = list(self._ready)
            self._ready.clear()
            for job in left:
                self._policy.cancel(job.probe)
            self._rows.notify_all()
        self._hand_back([job.item for job in left], "reporter stopping")
        # senders waiting for a slot hand their rows back within TOKEN_WAIT
        busy = self._wait_settled(time.monotonic() + 2 * TOKEN_WAIT)
        self._flush_acks(force=True)
        self._hand_back_pending()  # rows senders gave up between the wind-down and _closing
        if busy:  # a request still runs on a client: the process is leaving anyway
            self._logger.warning(
                "otp-conversion reporter stopped with %d report request(s) in flight: the provider may have "
                "received them; their rows go again when their lease expires (%.0f s), so they may be reported "
                "twice (if the provider is only slow, raise OTP_CONVERSION_SHUTDOWN_TIMEOUT)",
                busy,
                self._lease,
            )
            return
        with self._setup_lock:
            clients, self._clients = self._clients, []
        for client in clients:
            try:
                client.close()
            except Exception as exc:
                self._logger.warning("closing a provider client failed: %s", describe_error(exc))

    def _upkeep_if_due(self) -> None:
        upkeep = self._upkeep
        upkeep.prune_if_due()
        account = self._account
        if account is not None and upkeep.sweep_if_due(
            provider=self._provider_name, account=account, negative=self._negative
        ):
            self._wake.set()  # negative reports to send
        self._write_status(force=False)

    def _write_status(self, *, force: bool) -> None:
        breaker = self._policy.breaker
        self._upkeep.write_status(
            provider=self._provider_name,
            breaker=breaker.state,
            last_error=self._last_error,
            retry_at=breaker.retry_at,
            force=force,
        )

    # Senders ------------------------------------------------------------------------------------------

    def _send_forever(self) -> None:
        client: Provider | None = None
        while True:
            with self._lock:
                while not self._ready and not self._closing:
                    self._rows.wait()
                if self._closing:
                    return
                job = self._ready.popleft()
                if job.cutoff > self._start_by:
                    job.cutoff = self._start_by
                self._taken[id(job)] = job
                self._inflight += 1
                upcoming = len(self._ready) + 1
                if self._backlog and len(self._ready) < self._low_water:
                    self._backlog = False
                    self._wake.set()
            try:
                if client is None:
                    client = self._provider_factory()
                    with self._setup_lock:
                        self._clients.append(client)
                self._send(client, job, upcoming)
            except Exception as exc:  # recording the outcome failed (store trouble): the lease expires
                self._note_error(exc)
                self._logger.error(
                    "could not record the outcome of report %s for %s: %s",
                    job.item.message_id,
                    mask_phone(job.item.phone),
                    describe_error(exc),
                )
            finally:
                with self._lock:
                    del self._taken[id(job)]
                    self._inflight -= 1
                    quiet = self._inflight == 0 and not self._ready
                    self._progress.notify_all()
                if quiet:  # the last ack of a burst goes now, whether or not a loop thread is there to do it
                    try:
                        self._flush_acks(force=True)
                    except Exception as exc:
                        self._note_error(exc)
                        self._logger.error("could not ack delivered reports: %s", describe_error(exc))
                    self._wake.set()

    def _send(self, client: Provider, job: _Job, upcoming: int) -> None:
        """One row: wait out a short pause, wait for a slot, make the call, act on the answer. A probe the job
        carries is always settled: by the answer, or cancelled in ``finally``."""
        item, probe = job.item, job.probe
        settled = due = False
        try:
            while True:
                now = time.time()
                with self._lock:
                    wait = self._policy.send_blocked_for(now, probe)
                if wait is None or now + wait > job.cutoff or self._closing:
                    self._hand_back([item], "not sent in time")
                    return
                if wait <= 0:
                    break
                time.sleep(wait)
            schedule = self._schedule
            assert schedule is not None
            report = ConversionReport(
                message_id=item.message_id,
                phone=item.phone,
                verified_at=item.verified_at,
                converted=item.converted,
                sent_at=item.sent_at,
            )
            while True:
                slot = schedule.acquire(timeout=min(TOKEN_WAIT, job.cutoff - time.time()), upcoming=upcoming)
                if slot is not None and schedule.wait(slot):
                    break  # a slot this thread was too late for is forfeited: that only lowers the rate
                if self._closing or time.time() >= job.cutoff:
                    self._hand_back([item], "no rate-limit slot before the send window closed")
                    return
            started, cpu_before = time.monotonic(), time.thread_time()
            try:
                client.report_conversion(report)
                answer = P.OK
            except Exception as exc:
                answer = P.classify(exc)
            took, cpu = time.monotonic() - started, time.thread_time() - cpu_before
            now = time.time()
            with self._lock:
                decision = self._policy.decide(
                    answer, P.Row(item.created_at, item.attempts), now, probe=probe, took=took, cpu=cpu
                )
                settled = True
                if isinstance(decision.verdict, P.Ack):
                    if not self._acks:
                        self._acks_since = started
                    self._acks.append(item)
                    due = len(self._acks) >= ACK_BATCH or time.monotonic() - self._acks_since >= ACK_MAX_DELAY
            verdict = decision.verdict
            if isinstance(verdict, P.Ack):
                if due:
                    self._flush_acks(force=True)
            elif isinstance(verdict, P.Retry):
                self._retry(item, verdict, answer)
            else:
                self._dead_letter(item, verdict.reason, now)
            self._transition(decision.transition)  # after the retry: the status written names its error
        finally:
            if not settled and probe is not None:
                with self._lock:
                    self._policy.cancel(probe)
                self._wake.set()

    def _retry(self, item: OutboxItem, verdict: P.Retry, answer: P.Answer) -> None:
        self._last_error = verdict.error
        if answer.outcome is P.Outcome.AUTH and not self._auth_logged:
            self._auth_logged = True
            self._logger.error(
                "%s rejected our credentials or permissions (%s): conversion reports are stopped until a probe "
                "succeeds; check the OTP_CONVERSION_%s_* settings",
                self._provider_name,
                verdict.error,
                self._provider_name.upper(),
            )
        self._store.retry(item, next_attempt_at=verdict.at, error=verdict.error, now=time.time())
        with self._lock:
            if len(self._retry_hints) < 100_000:
                heapq.heappush(self._retry_hints, verdict.at)
        self._logger.debug(
            "report %s for %s failed (%s); next attempt in %.1f s",
            item.message_id,
            mask_phone(item.phone),
            verdict.error,
            max(0.0, verdict.at - time.time()),
        )
        self._emit(conversion_failed, report=item, error=verdict.error, next_attempt_at=verdict.at)

    def _dead_letter(self, item: OutboxItem, reason: str, now: float) -> None:
        reason = safe_text(reason)
        self._store.dead_letter(item, reason=reason, now=now)
        self._logger.warning("report %s for %s dead-lettered: %s", item.message_id, mask_phone(item.phone), reason)
        self._emit(conversion_dead_lettered, report=item, reason=reason)

    # Store writes in batches --------------------------------------------------------------------------

    def _flush_acks(self, *, force: bool) -> None:
        """One store write for many delivered rows (at most ``ACK_MAX_DELAY`` late unless ``force``)."""
        with self._lock:
            if not self._acks or (
                not force and len(self._acks) < ACK_BATCH and time.monotonic() - self._acks_since < ACK_MAX_DELAY
            ):
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
                self._progress.notify_all()
        if acked < len(items):
            self._logger.warning(
                "%d delivered report(s) had lost their lease before the ack (they may be reported twice)",
                len(items) - acked,
            )
        for item in items:
            self._emit(conversion_reported, report=item)

    def _hand_back(self, items: Sequence[OutboxItem], reason: str) -> None:
        """Claimed rows that did not go out: back to the outbox, due now, in the loop's next batch."""
        if items:
            with self._lock:
                self._handback.extend(items)
            self._logger.debug("handing back %d unsent report(s): %s", len(items), reason)
            if self._closing:  # no loop pass will come for them
                self._hand_back_pending()
            else:
                self._wake.set()

    def _hand_back_pending(self) -> None:
        with self._lock:
            items, self._handback = self._handback, []
        if not items:
            return
        try:
            self._store.release(items)
        except Exception as exc:  # their leases expire anyway
            self._logger.warning("could not hand back %d report(s): %s", len(items), describe_error(exc))

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
        if self._account is None:  # not yet known here: every row of the provider
            return sum(row.pending for row in self._store.backlog() if row.provider == self._provider_name)
        mine = ("", self._account)
        return sum(
            row.pending for row in self._store.backlog() if row.provider == self._provider_name and row.account in mine
        )

    def _earliest_hint(self, now: float) -> float | None:
        """The earliest retry this process scheduled that is still ahead, or now if one fell due (a hint for
        flush: a full-jitter backoff can be shorter than a pass). Caller holds the lock."""
        hints = self._retry_hints
        fell_due = False
        while hints and hints[0] <= now:
            heapq.heappop(hints)
            fell_due = True
        if fell_due:
            return now
        return hints[0] if hints else None

    def _note_error(self, exc: BaseException) -> None:
        self._last_error = describe_error(exc)

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
            self._auth_logged = False
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
