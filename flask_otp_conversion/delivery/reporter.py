"""The background reporter: drains the outbox to the provider, fast when all is well, patiently when not.

Shape
    One daemon *drain thread* per process claims due outbox rows in small batches (``store.claim`` with a
    row lease), takes a rate-limit token and a free worker for each, and hands it to a pool of
    ``OTP_CONVERSION_REPORT_CONCURRENCY`` daemon *worker threads* that make the provider call and record the
    outcome. Successes are acked in batches, and a claim that empties the outbox is followed by a short
    pause, so a steady trickle of verifications costs a few store writes a second, not two per report: the
    verify requests' own writes would queue behind them (SQLite has one writer). The pool is our own daemon
    threads, not a
    ``ThreadPoolExecutor``: the standard executor joins its workers and refuses new work *before* ``atexit``
    handlers run, which would make the exit-time flush impossible and let a hung request block shutdown.

Any number of delivering processes; one budget for the whole app
    By default one web worker per SQLite store runs the reporter (``deliverer.py``), but any process may
    deliver (``flush``, the CLI, ``OTP_CONVERSION_SINGLE_DELIVERER = False``): claims are atomic row leases
    in the store, so several processes drain the same outbox side by side without sending a row twice, and
    delivery scales with them (one Python process is bound by the HTTP client's CPU cost, ~0.85 ms a
    request with httpx on a slow core). The provider's rate cap is one token bucket *in the store*
    (``ratelimit.SharedTokenBucket``, ``Store.take_tokens``): each process draws small grants from it, so
    however many processes deliver, their requests together stay under the cap. Breaker, throttling pause
    and latency estimate stay per process: each learns of an outage from its own requests.

Leases and at-least-once
    A claim takes what half a second of expected throughput can send (the rate cap, or the workers over the
    observed latency); each worker has its own HTTP client, since a shared httpx pool serialises requests on
    its lock. A row must start within 1 s of its claim; its lease is ``connect + read timeout + 1 s
    (dispatch) + 2 s (ack)``, so in normal operation every row is acked before its lease can expire and is
    reported exactly once. Only rows in flight when a process dies are sent again, after
    their lease expires.

Failures
    Retryable errors go back to the outbox with exponential backoff and full jitter (base 1 s, cap 5 min,
    never sooner than the provider's retry-after) and count towards the circuit breaker. Throttling answers
    pause the whole drain for the provider's retry-after (1 s if it gave none) and count, for the breaker,
    as an answer rather than a failure: the provider is up and asking us to slow down. Permanent errors,
    and rows older than ``OTP_CONVERSION_MAX_REPORT_AGE``, become dead letters. Auth errors open the
    breaker at once and are logged at ERROR once per episode (until a probe succeeds); their rows wait
    without backoff. While the breaker is open no call is made; after its timeout a single probe goes out.
    Unsent claimed rows are handed back with ``store.retry`` (due now), which counts an attempt but keeps
    them moving.

Degradation
    The store flag ``"degraded"`` (``"1"`` or absent) is shared by every process and re-read at most once a
    second. ``OTP_CONVERSION_DEGRADED=True`` sets it whenever a process first delivers or asks, so the
    config acts as a deploy-time kill switch; ``False`` leaves the flag alone, so a run-time
    ``degrade on`` survives restarts. While degraded no provider call is made and rows accumulate.

Processes
    Nothing starts at import or construction: ``ensure_running()`` (called on each request) starts the
    thread, so ``gunicorn --preload`` forks a clean master. After ``os.fork`` the child drops the parent's
    threads, locks, HTTP client and store connections (``os.register_at_fork`` plus a pid check) and builds
    fresh ones. ``stop()`` at exit flushes what it can within the deadline in a process whose thread was
    running (a CLI process that never delivered makes no calls at exit).
"""

from __future__ import annotations

import contextlib
import heapq
import logging
import math
import os
import queue
import random
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from blinker import NamedSignal

from .._forks import ForkLocal
from ..config import Settings
from ..phone import mask_phone
from ..providers.base import ConversionReport, ErrorKind, Provider, ProviderError, ThrottledError
from ..redaction import describe_error, safe_text
from ..signals import (
    breaker_closed,
    breaker_opened,
    conversion_dead_lettered,
    conversion_failed,
    conversion_reported,
)
from ..store.base import OutboxItem, Store
from .activity import BUSY_POLL
from .breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker
from .ratelimit import GRANT_TTL, SharedTokenBucket, Token

#: The named lease that lets one process prune per PRUNE_EVERY, however many deliver.
PRUNE_LEASE = "prune"
DEGRADED_FLAG = "degraded"
#: The degraded flag is re-read from the store at most this often.
DEGRADED_RECHECK = 1.0
#: A claimed row must start within this many seconds of the claim (its lease allows for it).
BATCH_WINDOW = 1.0
#: A claim takes what the expected throughput (the rate cap, or the workers over the observed request
#: latency, whichever is lower) sends in this many seconds: half the window, so an estimate that is off by
#: two still fits. Claims sized to the free workers alone would cost a store transaction per row or two.
CLAIM_WINDOW = 0.5
MAX_BATCH = 500
#: Request latency assumed before any has been measured (on the slow side, so the first claim is small).
INITIAL_LATENCY = 0.25
#: Weight of each new request in the moving average of the latency.
LATENCY_WEIGHT = 0.1
#: Time allowed between a request's end and its ack, inside the row lease.
ACK_MARGIN = 2.0
ACK_BATCH = 100
ACK_MAX_DELAY = 0.25
#: Poll intervals of the drain thread: outbox empty, after an unexpected error.
IDLE_POLL = 0.2
#: While requests are in flight (see ``activity.py``), the drain thread looks whether they are done every
#: ``BUSY_POLL``, and claims the reports held back for the whole yield window at most this often.
OVERDUE_CLAIM_EVERY = 1.0
#: Pause after a claim that took everything due: rows arriving in a trickle then go out a batch per claim
#: instead of costing a store write transaction each (writes that the verify requests would queue behind).
CLAIM_PAUSE = 0.1
PRUNE_EVERY = 3600.0  # seconds between retention prunes (by whichever process takes the prune lease)
ERROR_PAUSE = 2.0
#: Granularity of the waits inside a batch (stop and degradation are checked this often).
TICK = 0.1
BACKOFF_BASE = 1.0
BACKOFF_CAP = 300.0
#: Pause after a throttling answer that named no retry-after.
THROTTLE_PAUSE = 1.0
#: Rate used when neither the provider nor ``OTP_CONVERSION_RATE_LIMITS`` names a cap for the report action.
FALLBACK_RATE = 50.0



def backoff_delay(
    attempts: int,
    retry_after: float | None = None,
    *,
    base: float = BACKOFF_BASE,
    cap: float = BACKOFF_CAP,
    rng: Callable[[], float] = random.random,
) -> float:
    """Seconds before the next attempt: full jitter over ``min(cap, base * 2**attempts)``, but never less
    than the provider's ``retry_after``. Full jitter spreads a herd of rows failed together."""
    ceiling = min(cap, base * 2.0 ** min(max(attempts, 0), 32))
    delay = rng() * ceiling
    if retry_after is not None and retry_after > delay:
        delay = retry_after
    return delay


class _Workers:
    """Daemon threads running submitted callables (see the module docstring for why not an executor)."""

    def __init__(self, size: int) -> None:
        self._queue: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._work, name=f"otp-conversion-worker-{i}", daemon=True)
            for i in range(size)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, fn: Callable[[], None]) -> None:
        self._queue.put(fn)

    def _work(self) -> None:
        while True:
            fn = self._queue.get()
            if fn is None:
                return
            fn()

    def shutdown(self) -> None:
        """Let each thread finish what it is doing, then end."""
        for _ in self._threads:
            self._queue.put(None)


class Reporter(ForkLocal):
    """Delivers outbox rows to the provider from a background thread; see the module docstring.

    ``ensure_running()`` is cheap and safe to call on every request; ``flush(timeout)`` delivers what is due
    from the caller's thread; ``stop(timeout)`` is for exit. ``set_degraded``/``degraded``, ``breaker_state``,
    ``last_error`` and ``stats()`` serve the CLI and the stats endpoint.
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
        self._concurrency = settings.report_concurrency
        self._max_request = settings.http_connect_timeout + settings.http_read_timeout
        self._lease_seconds = self._max_request + BATCH_WINDOW + ACK_MARGIN
        self._config_applied = False
        self._last_error: str | None = None
        self._last_error_at: float | None = None
        self._init_process_state()
        self._watch_forks()

    def _init_process_state(self) -> None:
        """Everything that belongs to one process: rebuilt from scratch in a forked child."""
        self._pid = os.getpid()
        self._owner = f"{self._pid}-{uuid.uuid4().hex[:12]}"
        self._start_lock = threading.Lock()
        self._setup_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop_event = threading.Event()
        self._wake = threading.Event()
        self._stopped = False
        self._provider: Provider | None = None
        self._local = threading.local()
        self._worker_providers: list[Provider] = []
        self._bucket: SharedTokenBucket | None = None
        self._cap = FALLBACK_RATE
        self._latency = INITIAL_LATENCY
        self._workers: _Workers | None = None
        self._slots = threading.Condition()
        self._inflight = 0
        self._ack_lock = threading.Lock()
        self._acks: list[OutboxItem] = []
        self._acks_since = 0.0
        self._hint_lock = threading.Lock()
        self._retry_hints: list[float] = []
        self._degraded_cached = False
        self._degraded_checked = -math.inf
        self._degraded_logged: bool | None = None
        self._pause_until = -math.inf
        self._auth_logged = False
        self._pruned_at = -math.inf
        self._overdue_claim_at = -math.inf
        self._breaker = CircuitBreaker(
            threshold=self._settings.breaker_threshold,
            reset_timeout=self._settings.breaker_reset_timeout,
            max_reset_timeout=self._settings.breaker_max_reset_timeout,
            on_open=self._on_breaker_open,
            on_close=self._on_breaker_close,
        )

    def _after_fork_in_child(self) -> None:
        # Never touch the parent's locks here (a parent thread may have held them at the fork) and never
        # close its HTTP client (the sockets are shared with the parent): drop everything and start over.
        self._init_process_state()
        # Logging is unsafe in an at-fork hook; if this fails, the store's next call reports it.
        with contextlib.suppress(Exception):
            self._store.reopen()

    # Public API ---------------------------------------------------------------------------------------

    def ensure_running(self) -> None:
        """Start the drain thread if it is not running in this process. Cheap; never raises."""
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
                thread = threading.Thread(target=self._run, name="otp-conversion-reporter", daemon=True)
                thread.start()
                self._thread = thread
        except Exception as exc:
            self._logger.error("otp-conversion reporter could not start: %s", describe_error(exc))

    def flush(self, timeout: float) -> int:
        """Deliver every row due now (respecting the breaker, degradation and the rate limit) within
        ``timeout`` seconds, from the caller's thread, waiting for rows other processes have in flight.
        Returns how many rows are still pending."""
        self._check_fork()
        if not self._settings.enabled:
            return self._pending()
        self._apply_configured_degraded()
        return self._drain_until(time.monotonic() + max(0.0, timeout))

    def stop(self, timeout: float | None = None) -> None:
        """At exit: stop the thread, deliver what can go within ``timeout`` (default
        ``OTP_CONVERSION_SHUTDOWN_TIMEOUT``), leave the rest in the outbox."""
        self._check_fork()
        deadline = time.monotonic() + (
            self._settings.shutdown_timeout if timeout is None else max(0.0, timeout)
        )
        with self._start_lock:
            self._stopped = True
            thread, self._thread = self._thread, None
        self._stop_event.set()
        self._wake.set()
        try:
            if thread is not None:
                if thread is not threading.current_thread():
                    thread.join(max(0.0, deadline - time.monotonic()))
                self._drain_until(deadline)
            self._wait_idle(deadline)
            self._flush_acks()
        except Exception as exc:
            self._logger.error("otp-conversion reporter did not stop cleanly: %s", describe_error(exc))
        finally:
            self._close_resources()

    def set_degraded(self, on: bool) -> None:
        """Switch degradation on or off for every process sharing the store."""
        self._config_applied = True  # an explicit switch outranks OTP_CONVERSION_DEGRADED from now on
        self._store.set_flag(DEGRADED_FLAG, "1" if on else None)
        self._degraded_cached = on
        self._degraded_checked = time.monotonic()
        self._log_degraded(on)
        self._wake.set()

    @property
    def degraded(self) -> bool:
        self._apply_configured_degraded()  # OTP_CONVERSION_DEGRADED holds before the first delivery too
        return self._is_degraded()

    @property
    def breaker_state(self) -> str:
        return self._breaker.state

    @property
    def last_error(self) -> str | None:
        """The most recent delivery failure, redacted (no secrets, phones masked)."""
        return self._last_error

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive() and self._pid == os.getpid()

    def stats(self) -> dict[str, Any]:
        """This process's view, for the stats endpoint (each delivering process has its own breaker)."""
        retry_at = self._breaker.retry_at
        return {
            "running": self.running,
            "breaker_state": self._breaker.state,
            "breaker_retry_at": None if retry_at is None else time.time() + (retry_at - time.monotonic()),
            "last_error": self._last_error,
            "last_error_at": self._last_error_at,
            "degraded": self._is_degraded(),
            "rate_limit": None if self._bucket is None else self._bucket.rate + self._bucket.burst,
        }

    def __repr__(self) -> str:
        return f"<Reporter pid={self._pid} breaker={self._breaker.state} running={self.running}>"

    # Setup --------------------------------------------------------------------------------------------

    def _provider_ready(self) -> Provider:
        """The provider client, rate limiter and workers of this process, built on first use."""
        with self._setup_lock:
            if self._provider is None:
                provider = self._provider_factory()
                action = provider.report_action
                cap = self._settings.rate_limits.get(action) or provider.rate_limits.get(action)
                if cap is None:
                    cap = FALLBACK_RATE
                    self._logger.warning(
                        "no rate limit known for %s %s; using %g/s (set OTP_CONVERSION_RATE_LIMITS)",
                        provider.name,
                        action,
                        cap,
                    )
                store, name = self._store, f"rate:{provider.name}:{action}"

                def take(want: int, rate: float, burst: float) -> tuple[int, float]:
                    return store.take_tokens(name, want=want, rate=rate, burst=burst, now=time.time())

                self._bucket = SharedTokenBucket.for_cap(take, cap)
                self._cap = cap
                self._provider = provider
            if self._workers is None:
                self._workers = _Workers(self._concurrency)
            return self._provider

    def _worker_provider(self) -> Provider:
        """This worker thread's own client. One client per worker, not one shared: a shared httpx pool
        serialises every request on its lock, which halved throughput with 32 workers."""
        provider: Provider | None = getattr(self._local, "provider", None)
        if provider is None:
            provider = self._provider_factory()
            self._local.provider = provider
            with self._setup_lock:
                self._worker_providers.append(provider)
        return provider

    def _close_resources(self) -> None:
        with self._setup_lock:
            if self._workers is not None:
                self._workers.shutdown()
                self._workers = None
            if self._inflight:  # a request is still running on them: the process is leaving anyway
                return
            providers = [p for p in (self._provider, *self._worker_providers) if p is not None]
            self._provider = None
            self._worker_providers = []
        for provider in providers:
            try:
                provider.close()
            except Exception as exc:
                self._logger.warning("closing a provider client failed: %s", describe_error(exc))

    def _apply_configured_degraded(self) -> None:
        if self._config_applied:
            return
        self._config_applied = True
        if self._settings.degraded:
            self._store.set_flag(DEGRADED_FLAG, "1")
            self._degraded_cached = True
            self._degraded_checked = time.monotonic()

    @property
    def _provider_name(self) -> str:
        """The name rows are stored under (the configured provider name)."""
        if self._settings.provider:
            return self._settings.provider
        assert self._provider is not None
        return self._provider.name

    # The drain thread ---------------------------------------------------------------------------------

    def _run(self) -> None:
        stop = self._stop_event
        try:
            self._apply_configured_degraded()
        except Exception as exc:
            self._logger.error("could not apply OTP_CONVERSION_DEGRADED: %s", describe_error(exc))
            self._config_applied = False
        while not stop.is_set():
            try:
                wait = self._step(stop)
            except Exception as exc:
                self._note_error(exc)
                self._logger.error(
                    "otp-conversion reporter: %s; retrying in %g s", describe_error(exc), ERROR_PAUSE
                )
                wait = ERROR_PAUSE
            if wait > 0 and not stop.is_set():
                self._wake.wait(wait)
                self._wake.clear()

    def _step(self, stop: threading.Event) -> float:
        """One round of the drain thread; returns how long to sleep before the next."""
        if not self._config_applied:
            self._apply_configured_degraded()
        self._flush_acks_if_due()
        if self._is_degraded():
            return DEGRADED_RECHECK
        # Requests are in flight: only reports held back for the whole yield window go now, and the store is
        # asked for them at most once per OVERDUE_CLAIM_EVERY (a claim is a write every request queues on).
        yielding = self._yielding()
        if yielding and time.monotonic() < self._overdue_claim_at:
            return BUSY_POLL
        self._provider_ready()
        self._prune_if_due()
        wait = self._blocked_for()
        if wait > 0:
            return min(wait, DEGRADED_RECHECK)
        created_before = None
        if yielding:
            self._overdue_claim_at = time.monotonic() + OVERDUE_CLAIM_EVERY
            created_before = time.time() - self._settings.yield_to_requests
        claimed, limit = self._claim_and_dispatch(stop=stop, deadline=None, created_before=created_before)
        if claimed >= limit:
            self._overdue_claim_at = -math.inf  # overdue reports too: the next claim does not wait
            return 0.0  # a backlog: claim the next batch at once
        if created_before is not None:
            return BUSY_POLL
        return CLAIM_PAUSE if claimed else IDLE_POLL

    def _yielding(self) -> bool:
        return self._busy is not None and self._settings.yield_to_requests > 0 and self._busy()

    def _prune_if_due(self) -> None:
        """Drop records past ``OTP_CONVERSION_RETENTION``: one process an hour, whichever takes the lease."""
        now = time.monotonic()
        if now - self._pruned_at < PRUNE_EVERY:
            return
        self._pruned_at = now
        if not self._store.acquire_lease(PRUNE_LEASE, owner=self._owner, ttl=PRUNE_EVERY, now=time.time()):
            return
        removed = self._store.prune(before=time.time() - self._settings.retention * 86400)
        if removed:
            self._logger.info("otp-conversion: pruned %d record(s) past the retention", removed)

    def _drain_until(self, deadline: float) -> int:
        """Deliver from the caller's thread until nothing is due or ``deadline`` (monotonic) passes."""
        self._provider_ready()
        while time.monotonic() < deadline:
            self._flush_acks_if_due()
            if self._is_degraded():
                break
            wait = self._blocked_for()
            if wait > 0:
                if time.monotonic() + wait >= deadline:
                    break
                self._sleep_until(deadline, wait)
                continue
            claimed, limit = self._claim_and_dispatch(stop=None, deadline=deadline)
            if claimed or limit == 0:  # sent some, or every worker is busy: claim again when one frees
                continue
            # Nothing due now: let our own requests finish, since their outcome may make rows due again.
            self._wait_idle(deadline)
            self._flush_acks()
            stats = self._store.outbox_stats(now=time.time())
            if stats.pending == 0:
                break
            if stats.in_flight > 0:  # leased elsewhere or by a dead process: wait for the ack or the expiry
                self._sleep_until(deadline, TICK)
                continue
            hint = self._next_retry_hint()
            if hint is None or hint - time.time() >= deadline - time.monotonic():
                break
            self._sleep_until(deadline, max(0.0, hint - time.time()) + 0.01)
        self._wait_idle(deadline)
        self._flush_acks()
        return self._pending()

    def _blocked_for(self) -> float:
        """Seconds until a request may go out as far as the breaker and a throttling pause are concerned."""
        wait = max(0.0, self._pause_until - time.monotonic())
        state = self._breaker.state
        if state == OPEN:
            retry_at = self._breaker.retry_at
            if retry_at is not None:
                wait = max(wait, retry_at - time.monotonic())
        elif state == HALF_OPEN:
            wait = max(wait, TICK)  # the probe is out
        return wait

    def _claim_and_dispatch(
        self, *, stop: threading.Event | None, deadline: float | None, created_before: float | None = None
    ) -> tuple[int, int]:
        """Claim what the free workers and one second of rate budget can take (``created_before``: only rows
        created by then), and send it.

        Returns (rows claimed, the most the claim could have taken)."""
        free = self._free_slots(TICK)
        if free == 0:
            return 0, 0
        limit = 1 if self._breaker.state != CLOSED else self._claim_limit()
        claimed_at = time.monotonic()
        items = self._store.claim(
            provider=self._provider_name,
            limit=limit,
            lease_seconds=self._lease_seconds,
            now=time.time(),
            created_before=created_before,
        )
        if items:
            self._dispatch(items, cutoff=claimed_at + BATCH_WINDOW, stop=stop, deadline=deadline)
        return len(items), limit

    def _claim_limit(self) -> int:
        """Rows the next ``CLAIM_WINDOW`` seconds can send, given the cap and the observed latency."""
        throughput = min(self._cap, self._concurrency / max(self._latency, 1e-3))
        return max(1, min(MAX_BATCH, math.ceil(throughput * CLAIM_WINDOW)))

    def _dispatch(
        self,
        items: Sequence[OutboxItem],
        *,
        cutoff: float,
        stop: threading.Event | None,
        deadline: float | None,
    ) -> None:
        """Send each claimed row through a worker, or hand back the rows that cannot go in time.

        ``cutoff``: the last moment a row of this claim may start, so that its lease still covers a whole
        request and the ack.
        """
        index = 0
        try:
            for index, item in enumerate(items):
                if time.time() - item.created_at > self._settings.max_report_age:
                    self._dead_letter(
                        item, f"expired: not reported within {self._settings.max_report_age:g} s"
                    )
                    continue
                reason = self._send_when_allowed(
                    item, cutoff=cutoff, stop=stop, deadline=deadline, upcoming=len(items) - index
                )
                if reason is not None:
                    self._release(items[index:], reason)
                    return
        except BaseException:
            self._release(items[index:], "reporter error")
            raise

    def _send_when_allowed(
        self,
        item: OutboxItem,
        *,
        cutoff: float,
        stop: threading.Event | None,
        deadline: float | None,
        upcoming: int = 1,
    ) -> str | None:
        """Wait for a worker and a token, then submit; or return why the row cannot be sent now.

        ``upcoming``: rows of this claim still to send, this one included (sizes the rate-limit grant)."""
        while not self._take_slot(TICK):
            reason = self._why_not_now(cutoff, stop, deadline)
            if reason is not None:
                return reason
        submitted = False
        try:
            # Tokens this thread can spend before a grant expires: the free workers (ours is taken already)
            # and those that the observed latency frees meanwhile. A bigger grant wastes budget, a smaller
            # one costs a store write per few reports.
            with self._slots:
                free = self._concurrency - self._inflight + 1
            freed = math.ceil(self._concurrency * GRANT_TTL / max(self._latency, 1e-3))
            spendable = min(upcoming, free + freed)
            token = self._wait_for_token(cutoff, stop, deadline, spendable)
            reason = token if isinstance(token, str) else None
            if reason is None and not self._breaker.allow():
                reason = "circuit breaker open"
            if isinstance(token, Token) and reason is None:
                workers = self._workers
                assert workers is not None
                workers.submit(lambda: self._deliver(item, token, cutoff))
                submitted = True
            return reason
        finally:
            if not submitted:
                self._free_slot()

    def _wait_for_token(
        self, cutoff: float, stop: threading.Event | None, deadline: float | None, upcoming: int = 1
    ) -> Token | str:
        """Sit out a throttling pause, then take a rate-limit token; or return why not."""
        assert self._bucket is not None
        while True:
            reason = self._why_not_now(cutoff, stop, deadline)
            if reason is not None:
                return reason
            pause = self._pause_until - time.monotonic()
            if pause > 0:
                time.sleep(min(pause, TICK))
            elif (token := self._bucket.acquire(timeout=TICK, upcoming=upcoming)) is not None:
                return self._why_not_now(cutoff, stop, deadline) or token

    def _why_not_now(self, cutoff: float, stop: threading.Event | None, deadline: float | None) -> str | None:
        self._flush_acks_if_due()
        now = time.monotonic()
        if stop is not None and stop.is_set():
            return "reporter stopping"
        if deadline is not None and now >= deadline:
            return "flush deadline reached"
        if now > cutoff:
            return "lease too short to send safely"
        if self._is_degraded():
            return "degraded"
        return None

    # Workers ------------------------------------------------------------------------------------------

    def _deliver(self, item: OutboxItem, token: Token, cutoff: float) -> None:
        """Runs in a worker: one provider call and its bookkeeping. Never raises."""
        started: float | None = None
        try:
            report = ConversionReport(
                message_id=item.message_id, phone=item.phone, verified_at=item.verified_at
            )
            provider = self._worker_provider()
            bucket = self._bucket
            assert bucket is not None
            # A worker that starts late (a busy machine) must not send on an old token: its request could
            # bunch up with later ones above the cap. It forfeits the token (only ever lowering the rate).
            late = not bucket.fresh(token)
            if late and bucket.acquire(timeout=max(0.0, cutoff - time.monotonic())) is None:
                self._release([item], "no rate-limit token before the lease cutoff")
                return
            started = time.monotonic()
            try:
                provider.report_conversion(report)
            except ProviderError as exc:
                self._on_provider_error(item, exc)
            except Exception as exc:  # a transport error the client did not classify: retry, never lose it
                self._on_retryable(item, exc, describe_error(exc))
            else:
                self._breaker.record_success()
                with self._ack_lock:
                    if not self._acks:
                        self._acks_since = time.monotonic()
                    self._acks.append(item)
        except Exception as exc:
            # Recording the outcome failed (store trouble): the row's lease expires and it is sent again.
            self._note_error(exc)
            self._logger.error(
                "could not record the outcome of report %s for %s: %s",
                item.message_id,
                mask_phone(item.phone),
                describe_error(exc),
            )
        finally:
            if started is not None:
                self._latency += LATENCY_WEIGHT * (time.monotonic() - started - self._latency)
            self._free_slot()
            try:
                self._flush_acks_if_due()
            except Exception as exc:
                self._note_error(exc)
                self._logger.error("could not ack delivered reports: %s", describe_error(exc))

    def _on_provider_error(self, item: OutboxItem, exc: ProviderError) -> None:
        error = describe_error(exc)
        if exc.kind is ErrorKind.AUTH:
            self._note_error(exc)
            self._breaker.record_failure(error, auth=True)
            if not self._auth_logged:
                self._auth_logged = True
                self._logger.error(
                    "%s rejected our credentials or permissions (%s): conversion reports are stopped until a "
                    "probe succeeds; check the OTP_CONVERSION_%s_* settings",
                    self._provider_name,
                    error,
                    self._provider_name.upper(),
                )
            self._retry(item, error, next_attempt_at=time.time())
        elif exc.kind is ErrorKind.RETRYABLE:
            if isinstance(exc, ThrottledError):
                pause = exc.retry_after if exc.retry_after is not None else THROTTLE_PAUSE
                self._pause_until = max(self._pause_until, time.monotonic() + pause)
            self._on_retryable(item, exc, error)
        else:
            self._breaker.record_success()  # the provider is up and answered; the row itself is bad
            self._dead_letter(item, error)

    def _on_retryable(self, item: OutboxItem, exc: BaseException, error: str) -> None:
        self._note_error(exc)
        if isinstance(exc, ThrottledError):
            self._breaker.record_success()  # it answered: up, only busy (and a half-open probe resolves)
        else:
            self._breaker.record_failure(error)
        now = time.time()
        if now - item.created_at > self._settings.max_report_age:
            self._dead_letter(item, f"expired after {item.attempts + 1} attempt(s); last error: {error}")
            return
        retry_after = exc.retry_after if isinstance(exc, ProviderError) else None
        self._retry(item, error, next_attempt_at=now + backoff_delay(item.attempts, retry_after))

    def _retry(self, item: OutboxItem, error: str, *, next_attempt_at: float) -> None:
        self._store.retry(item, next_attempt_at=next_attempt_at, error=error)
        with self._hint_lock:
            if len(self._retry_hints) < 100_000:
                heapq.heappush(self._retry_hints, next_attempt_at)
        self._logger.info(
            "report %s for %s failed (%s); next attempt in %.1f s",
            item.message_id,
            mask_phone(item.phone),
            error,
            max(0.0, next_attempt_at - time.time()),
        )
        self._emit(conversion_failed, report=item, error=error, next_attempt_at=next_attempt_at)

    def _dead_letter(self, item: OutboxItem, reason: str) -> None:
        reason = safe_text(reason)
        self._store.dead_letter(item, reason=reason, now=time.time())
        self._logger.warning(
            "report %s for %s dead-lettered: %s", item.message_id, mask_phone(item.phone), reason
        )
        self._emit(conversion_dead_lettered, report=item, reason=reason)

    def _release(self, items: Sequence[OutboxItem], reason: str) -> None:
        """Hand claimed but unsent rows back, due now, so they need not wait for their lease to expire."""
        now = time.time()
        for item in items:
            try:
                self._store.retry(item, next_attempt_at=now, error=item.last_error or f"not sent: {reason}")
            except Exception as exc:  # the lease expires anyway
                self._logger.warning(
                    "could not hand back report %s: %s", item.message_id, describe_error(exc)
                )
        if items:
            self._logger.debug("handed back %d unsent report(s): %s", len(items), reason)

    # Acks ---------------------------------------------------------------------------------------------

    def _flush_acks_if_due(self) -> None:
        """Acks go in batches (one store write for up to ACK_BATCH rows, at most ACK_MAX_DELAY late)."""
        with self._ack_lock:
            if not self._acks:
                return
            due = len(self._acks) >= ACK_BATCH or time.monotonic() - self._acks_since >= ACK_MAX_DELAY
        if due:
            self._flush_acks()

    def _flush_acks(self) -> None:
        with self._ack_lock:
            items, self._acks = self._acks, []
        if not items:
            return
        try:
            acked = self._store.ack(items, now=time.time())
        except BaseException:
            with self._ack_lock:  # try again on the next flush; the leases still cover them for a while
                if not self._acks:
                    self._acks_since = time.monotonic()
                self._acks[:0] = items
            raise
        if acked < len(items):
            self._logger.warning(
                "%d delivered report(s) had lost their lease before the ack (they may be reported twice)",
                len(items) - acked,
            )
        for item in items:
            self._logger.debug("reported %s for %s", item.message_id, mask_phone(item.phone))
            self._emit(conversion_reported, report=item)

    # Slots --------------------------------------------------------------------------------------------

    def _free_slots(self, timeout: float) -> int:
        with self._slots:
            if self._inflight >= self._concurrency:
                self._slots.wait(timeout)
            return max(0, self._concurrency - self._inflight)

    def _take_slot(self, timeout: float) -> bool:
        with self._slots:
            if self._inflight >= self._concurrency:
                self._slots.wait(timeout)
                if self._inflight >= self._concurrency:
                    return False
            self._inflight += 1
            return True

    def _free_slot(self) -> None:
        with self._slots:
            self._inflight -= 1
            self._slots.notify_all()

    def _wait_idle(self, deadline: float) -> None:
        with self._slots:
            while self._inflight > 0:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                self._slots.wait(remaining)

    # Shared state -------------------------------------------------------------------------------------

    def _is_degraded(self) -> bool:
        now = time.monotonic()
        if now - self._degraded_checked >= DEGRADED_RECHECK:
            self._degraded_cached = self._store.get_flag(DEGRADED_FLAG) == "1"
            self._degraded_checked = now
            self._log_degraded(self._degraded_cached)
        return self._degraded_cached

    def _log_degraded(self, on: bool) -> None:
        if on != self._degraded_logged:
            if on or self._degraded_logged is not None:
                self._logger.warning(
                    "degraded mode %s",
                    "on: no provider calls, reports accumulate" if on else "off: reports flow",
                )
            self._degraded_logged = on

    def _pending(self) -> int:
        return self._store.outbox_stats(now=time.time()).pending

    def _next_retry_hint(self) -> float | None:
        """The earliest retry this process scheduled and ``flush`` has not looked at yet (a hint for it): now
        for retries that fell due since the last look (a full-jitter backoff can be a few milliseconds, shorter
        than the look takes), else the earliest still ahead, else None."""
        now = time.time()
        with self._hint_lock:
            fell_due = False
            while self._retry_hints and self._retry_hints[0] <= now:
                heapq.heappop(self._retry_hints)
                fell_due = True
            if fell_due:
                return now
            return self._retry_hints[0] if self._retry_hints else None

    def _sleep_until(self, deadline: float, seconds: float) -> None:
        time.sleep(max(0.0, min(seconds, deadline - time.monotonic())))

    def _note_error(self, exc: BaseException) -> None:
        self._last_error = describe_error(exc)
        self._last_error_at = time.time()

    # Breaker callbacks and signals --------------------------------------------------------------------

    def _on_breaker_open(self, reason: str, retry_at: float) -> None:
        wall = time.time() + (retry_at - time.monotonic())
        self._logger.warning(
            "circuit breaker open after %s: no conversion reports for %.0f s, then one probe",
            reason,
            max(0.0, retry_at - time.monotonic()),
        )
        self._emit(breaker_opened, reason=reason, retry_at=wall)

    def _on_breaker_close(self) -> None:
        self._auth_logged = False
        self._logger.warning("circuit breaker closed: conversion reports flow again")
        self._emit(breaker_closed)
        self._wake.set()

    def _emit(self, signal: NamedSignal, **kwargs: Any) -> None:
        """Send a signal; a receiver that raises is logged and never stops delivery."""
        try:
            signal.send(self._sender, **kwargs)
        except Exception as exc:
            self._logger.error("a receiver of %s raised %s", signal.name, describe_error(exc))
