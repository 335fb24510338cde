"""The delivery worker: ``Reporter``, delivery's life in one process -- start, flush, stop, forks -- around the
drain loop (``drain.py``), which runs ``policy.DeliveryPolicy`` against the store and the provider client.

Shape
    The loop runs on a thread of its own (``ensure_running``) or, in a process that never started it, in the
    caller of ``flush``/``stop``. ``flush`` is "wake and wait": it wakes the loop and waits for a pass that found
    nothing due.

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
import os
import threading
import time
from collections.abc import Callable

from .._forks import ForkLocal
from ..config import Settings
from ..providers.base import Provider
from ..redaction import describe_error
from ..store.base import Store
from .degraded import DEGRADED_FLAG
from .drain import ERROR_PAUSE, FIRST_SENDERS, GROW_POLL, IDLE_POLL, DrainLoop
from .terms import FALLBACK_RATE


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
        self._settings = settings
        self._logger = logger

        def new_loop(parent: DrainLoop | None) -> DrainLoop:
            return DrainLoop(
                store=store,
                provider_factory=provider_factory,
                settings=settings,
                sender=sender,
                logger=logger,
                busy=busy,
                alarm_check=alarm_check,
                running=lambda: self.running,
                parent=parent,
            )

        self._new_loop = new_loop
        self._init_process_state(None)
        self._watch_forks()

    def _init_process_state(self, parent: DrainLoop | None) -> None:
        """Everything that belongs to one process: rebuilt from scratch in a forked child."""
        self._pid = os.getpid()
        self._start_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop_event = threading.Event()
        self._stopped = False
        self._loop = self._new_loop(parent)

    def _after_fork_in_child(self) -> None:
        # Never touch the parent's locks (a parent thread may have held them at the fork) nor close its
        # clients (their sockets are shared with the parent): drop everything and start over.
        self._init_process_state(self._loop)
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
                    target=self._loop.run, args=(self._stop_event,), name="otp-conversion-reporter", daemon=True
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
        loop = self._loop
        if not self._settings.enabled:
            return loop.pending()
        loop.apply_configured_degraded()
        deadline = time.monotonic() + max(0.0, timeout)
        if not (self.running and loop.wait_drained(deadline)):
            loop.drain(self._stop_event, deadline)
        loop.count_rate_waits()
        return loop.pending()

    def stop(self, timeout: float | None = None) -> None:
        """At exit: start no request that could not end within ``timeout`` (default
        ``OTP_CONVERSION_SHUTDOWN_TIMEOUT``) by its total deadline, so deliver (claiming) only while one
        could, then stop claiming; wait for the requests in flight and record their outcome, and hand every
        other claimed row back to the outbox unsent. A request still running at the deadline is logged at
        WARNING: its row goes again when its lease expires (at-least-once)."""
        self._check_fork()
        loop = self._loop
        budget = self._settings.shutdown_timeout if timeout is None else max(0.0, timeout)
        deadline = time.monotonic() + budget
        # Each request's total deadline (providers.transport.request_deadline), which the row lease allows for.
        longest = self._settings.http_connect_timeout + self._settings.http_read_timeout
        with self._start_lock:
            self._stopped = True
            thread, self._thread = self._thread, None
        loop.cut_off(time.time() + budget - longest)
        self._stop_event.set()
        loop.wake()
        try:
            if thread is not None:
                if thread is not threading.current_thread():
                    thread.join(max(0.0, deadline - time.monotonic()))
                if (last_start := deadline - longest) > time.monotonic():  # room to deliver more: drain till then
                    loop.drain(threading.Event(), last_start)
            loop.close(deadline)
        except Exception as exc:
            self._logger.error("otp-conversion reporter did not stop cleanly: %s", describe_error(exc))
        loop.log_summary(force=True)

    def set_degraded(self, on: bool) -> None:
        """Switch degradation on or off for every process sharing the store."""
        self._loop.set_degraded(on)

    @property
    def degraded(self) -> bool:
        return self._loop.degraded()

    @property
    def breaker_state(self) -> str:
        return self._loop.breaker_state

    @property
    def last_error(self) -> str | None:
        """The most recent delivery failure, redacted (no secrets, phones masked, provider ids kept)."""
        return self._loop.last_error

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive() and self._pid == os.getpid()

    def __repr__(self) -> str:
        return f"<Reporter pid={self._pid} breaker={self.breaker_state} running={self.running}>"


__all__ = ["DEGRADED_FLAG", "ERROR_PAUSE", "FALLBACK_RATE", "FIRST_SENDERS", "GROW_POLL", "IDLE_POLL", "Reporter"]
