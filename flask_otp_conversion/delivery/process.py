"""Delivery in a process of its own: ``DeliveryProcess``, the deliverer web worker's handle on its child
(``child.py``).

Why: delivering beside the requests costs a web worker CPU and, worse, GIL time, and the verify requests of that
worker wait for it (``benchmarks/steady.py``). A child process at a low priority (``priority.py``) takes both off
the worker: the kernel schedules the requests first. The web worker keeps the deliverer lock (``election.py``), so
one child runs per host; the child stops when the worker's pipe closes, however the worker ends.

The parent passes the child's log records to the app's logger and its signals to the app's receivers (only those
with receivers travel), restarts a child that died (backing off), and, should the child fail to start at all,
hands delivery back to its own threads.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import IO, Any

from .._forks import ForkLocal
from ..redaction import describe_error
from .process_wire import FORWARDED, decode, encode, listened, signal_kwargs

#: Seconds between looks at which forwarded signals have receivers.
FORWARD_CHECK_EVERY = 1.0
#: Restart delays after a child died: doubling from the first to the last.
RESTART_FIRST, RESTART_MOST = 1.0, 60.0
#: A child that dies this many times in a row before it is ready is given up: this process delivers itself.
GIVE_UP_AFTER = 3
#: Seconds a stopping child may take beyond its own shutdown budget before it is killed.
STOP_GRACE = 3.0
#: Seconds a child may take to say it is ready; one that takes longer is killed (and counts as not ready).
READY_TIMEOUT = 60.0


def interpreter() -> str:
    """The Python to run the child with: ``sys.executable``, unless a server that embeds Python (uWSGI,
    mod_wsgi) made it its own binary; then the environment's own ``python3``."""
    executable = sys.executable
    if executable and os.path.basename(executable).lower().startswith("python"):
        return executable
    for name in ("python3", "python"):
        candidate = os.path.join(sys.prefix, "bin", name)
        if os.access(candidate, os.X_OK):
            return candidate
    return executable or "python3"


def restart_delay(failures: int) -> float:
    """Seconds to wait before starting a child again after ``failures`` deaths in a row."""
    return min(RESTART_MOST, RESTART_FIRST * 2.0 ** max(0, failures - 1))


def child_config(config: Mapping[str, Any], store_url: str) -> dict[str, Any]:
    """The ``OTP_CONVERSION_*`` keys the child needs, as JSON values; ``ValueError`` naming a key whose value
    JSON cannot carry (the app then delivers from its own threads)."""
    chosen = {key: value for key, value in config.items() if key.startswith("OTP_CONVERSION_")}
    chosen["OTP_CONVERSION_STORE_URL"] = store_url  # resolved against the parent's instance folder
    for key, value in chosen.items():
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError):
            raise ValueError(f"{key} holds a {type(value).__name__}, which cannot be passed on") from None
    return chosen


class DeliveryProcess(ForkLocal):
    """Starts, watches and stops this process's delivery child. ``ensure_running()`` is cheap enough for every
    request; it answers False once the child is given up, and the caller then delivers on its own threads."""

    def __init__(
        self,
        *,
        config: dict[str, Any],
        instance_path: str,
        nice: int,
        idle: bool,
        shutdown_timeout: float,
        sender: Callable[[], object | None],
        logger: logging.Logger,
        clock: Callable[[], float] = time.monotonic,
        command: Sequence[str] | None = None,
    ) -> None:
        self._command = list(command or (interpreter(), "-m", "flask_otp_conversion.delivery.child"))
        self._start = {"config": config, "instance_path": instance_path, "nice": nice, "idle": idle}
        self._shutdown_timeout = shutdown_timeout
        self._sender = sender
        self._logger = logger
        self._clock = clock
        self._init_process_state()
        self._watch_forks()

    def _init_process_state(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._ready = threading.Event()
        self._failures = 0  # deaths in a row before the child was ready
        self._deaths = 0  # deaths in a row of children that lived less than RESTART_MOST
        self._started_at = -float("inf")
        self._next_start = -float("inf")
        self._forwarded: list[str] = []
        self._log_level = logging.NOTSET
        self._next_forward_check = -float("inf")
        self._given_up = False
        self._stopped = False

    def _after_fork_in_child(self) -> None:
        # The child process belongs to the parent, which keeps its pipe; a forked child starts with none.
        self._init_process_state()

    def __repr__(self) -> str:
        proc = self._proc
        return f"<DeliveryProcess pid={None if proc is None else proc.pid} running={self.running}>"

    @property
    def running(self) -> bool:
        proc = self._proc
        return proc is not None and proc.poll() is None and self._pid == os.getpid()

    @property
    def child_pid(self) -> int | None:
        return self._proc.pid if self.running and self._proc is not None else None

    def wait_ready(self, timeout: float) -> bool:
        """Whether the child is up and delivering, waiting up to ``timeout`` seconds for it."""
        return self._ready.wait(timeout)

    def ensure_running(self) -> bool:
        """Start the child if none runs (after the restart delay); pass on which signals now have receivers.
        False once the child is given up or this handle stopped. Never raises."""
        try:
            self._check_fork()
            if self._given_up or self._stopped:
                return not self._given_up
            if (proc := self._proc) is not None:  # running, or its reader has not recorded its end yet
                if not self._ready.is_set() and self._clock() - self._started_at > READY_TIMEOUT:
                    self._kill_unready(proc)
                self._update_forwarded()
                return True
            if self._clock() < self._next_start:
                return True
            with self._lock:
                if not self._stopped and self._proc is None:
                    self._spawn()
        except Exception as exc:
            self._logger.error("otp-conversion delivery process could not start: %s", describe_error(exc))
            self._given_up = True
        return not self._given_up

    def _spawn(self) -> None:
        self._forwarded, self._log_level = listened(), self._logger.getEffectiveLevel()
        self._next_forward_check = self._clock() + FORWARD_CHECK_EVERY
        start = {**self._start, "forward": self._forwarded, "log_level": self._log_level}
        proc = subprocess.Popen(  # noqa: S603  (our own module, by the running interpreter)
            self._command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            close_fds=True,  # the deliverer lock's descriptor stays the parent's
            start_new_session=True,  # a terminal's Ctrl-C reaches the parent, which stops the child
        )
        assert proc.stdin is not None and proc.stdout is not None
        self._ready.clear()
        self._proc = proc
        self._started_at = self._clock()
        with contextlib.suppress(BrokenPipeError):
            proc.stdin.write(encode(start))
            proc.stdin.flush()
        self._reader = threading.Thread(
            target=self._read, args=(proc, proc.stdout), name="otp-conversion-delivery-process", daemon=True
        )
        self._reader.start()
        self._logger.debug("otp-conversion delivery process %d started", proc.pid)

    def _kill_unready(self, proc: subprocess.Popen[bytes]) -> None:
        """A child that never said it was ready (a wrong interpreter may just sit there): its end counts as a
        failed start."""
        if proc.poll() is None:
            self._logger.warning(
                "otp-conversion delivery process %d not ready after %.0f s; killing it", proc.pid, READY_TIMEOUT
            )
            with contextlib.suppress(OSError):
                proc.kill()

    def _update_forwarded(self) -> None:
        """Tell the child which signals have receivers and which log level the app's logger has, if changed."""
        now = self._clock()
        if now < self._next_forward_check:
            return
        self._next_forward_check = now + FORWARD_CHECK_EVERY
        wanted = (listened(), self._logger.getEffectiveLevel())
        if wanted != (self._forwarded, self._log_level) and (proc := self._proc) is not None and proc.stdin:
            self._forwarded, self._log_level = wanted
            with contextlib.suppress(BrokenPipeError, ValueError):
                proc.stdin.write(encode({"forward": wanted[0], "log_level": wanted[1]}))
                proc.stdin.flush()

    # The child's lines ------------------------------------------------------------------------------------

    def _read(self, proc: subprocess.Popen[bytes], stream: IO[bytes]) -> None:
        failed: str | None = None
        for line in stream:
            try:
                failed = self._take(decode(line)) or failed
            except Exception as exc:  # one bad line must not stop the reading, or the child's end goes unseen
                self._logger.error("otp-conversion delivery process: unreadable line: %s", describe_error(exc))
        code = proc.wait()
        self._ended(code, failed)
        self._proc = None  # last: from now on ensure_running may start the next child

    def _take(self, message: dict[str, Any]) -> str | None:
        """Act on one line of the child's; returns its reason when it says it could not start."""
        if "ready" in message:
            self._ready.set()
            self._failures = 0
        elif "log" in message:
            name = str(message.get("name") or self._logger.name)
            logging.getLogger(name).log(int(message["log"]), "%s", message.get("msg", ""))
        elif "signal" in message:
            self._emit(str(message["signal"]), message.get("kwargs") or {})
        elif "failed" in message:
            return str(message["failed"])
        return None

    def _emit(self, name: str, args: dict[str, Any]) -> None:
        signal, sender = FORWARDED.get(name), self._sender()
        if signal is None or sender is None or not signal.receivers:
            return
        try:
            signal.send(sender, **signal_kwargs(args))
        except Exception as exc:  # as on the delivery threads: a receiver that raises never stops delivery
            self._logger.error("a receiver of %s raised %s", name, describe_error(exc))

    def _ended(self, code: int, failed: str | None) -> None:
        if self._stopped:
            return
        ready = self._ready.is_set()
        self._ready.clear()
        if failed is not None:  # the child could not build the app's delivery: it never will
            self._logger.error(
                "otp-conversion delivery process could not start (%s); delivering from this process", failed
            )
            self._given_up = True
            return
        self._failures = 0 if ready else self._failures + 1
        lived = self._clock() - self._started_at
        self._deaths = 1 if lived >= RESTART_MOST else self._deaths + 1
        if self._failures >= GIVE_UP_AFTER:
            self._logger.error(
                "otp-conversion delivery process exited %d times before it was ready (last code %s); "
                "delivering from this process",
                self._failures,
                code,
            )
            self._given_up = True
            return
        delay = restart_delay(self._deaths)
        self._next_start = self._clock() + delay
        self._logger.warning("otp-conversion delivery process exited with code %s; restarting in %.0f s", code, delay)

    # Exit ---------------------------------------------------------------------------------------------------

    def stop(self, timeout: float | None = None) -> None:
        """Close the child's stdin, so it stops gracefully within its own shutdown budget; kill it if it is not
        gone ``STOP_GRACE`` seconds after that."""
        self._check_fork()
        with self._lock:
            self._stopped = True
            proc, reader = self._proc, self._reader
        if proc is None:
            return
        with contextlib.suppress(OSError, ValueError):
            assert proc.stdin is not None
            proc.stdin.close()
        budget = max(self._shutdown_timeout, timeout or 0.0) + STOP_GRACE
        try:
            proc.wait(budget)
        except subprocess.TimeoutExpired:
            self._logger.warning(
                "otp-conversion delivery process %d did not stop in %.1f s; killing it", proc.pid, budget
            )
            proc.kill()
            proc.wait()
        if reader is not None and reader is not threading.current_thread():
            reader.join(1.0)  # its last log lines


def for_app(
    app: Any, settings: Any, *, shutdown_timeout: float, sender: Callable[[], object | None], logger: logging.Logger
) -> DeliveryProcess | None:
    """The app's delivery process, or None where its deliverer delivers on its own threads: when
    ``OTP_CONVERSION_DELIVERY_PROCESS`` says so, or, unset, while the app is testing (threads keep a test's
    delivery in one process it can watch). A key JSON cannot carry fails ``init_app`` when the process was asked
    for, and otherwise keeps delivery on threads (logged)."""
    wanted = settings.delivery_process
    if wanted is False or (wanted is None and app.testing):
        return None
    try:
        config = child_config(app.config, settings.store_url)
    except ValueError as exc:
        if wanted:
            raise
        logger.info("otp-conversion delivers from the web worker's threads: %s", exc)
        return None
    return DeliveryProcess(
        config=config,
        instance_path=app.instance_path,
        nice=settings.delivery_nice,
        idle=settings.delivery_idle,
        shutdown_timeout=shutdown_timeout,
        sender=sender,
        logger=logger,
    )
