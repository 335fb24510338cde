"""The sender threads: one request each, then the answer handed on as the policy decides.

The drain loop (``drain.py``) claims rows and hands them here as a ready list (``offer``). Each sender takes one,
waits for its slot on the shared schedule (``ratelimit.SharedSchedule``) right before the request, makes the request
on a provider client of its own inside the slot's start deadline (``starting_by``: a request that could not start by
it is not sent, and takes another slot) and gives what the policy makes of the answer (an ack, a retry at a time, a
dead letter) to ``outcomes.Outcomes``, which writes it to the store. A sender blocks in its HTTP request, so
reaching the provider's cap at its latency needs that many in flight (1,000/s at 50 ms is 50); an idle one sleeps
on a condition and costs nothing. Threads start as rows wait for them (``add``, ``grow_to``), never more than the
concurrency.

A row that cannot start in time (its send window passed, the breaker opened, the process is stopping) is handed
back, due now: by the loop's next pass (``Outcomes.hand_back_pending``), or at once while closing. At exit ``cut_off``
brings every row's last start in to the stop's deadline, ``wind_down`` lets the requests in flight end and records
them, and ``close`` ends the threads and their clients.

The policy is the drain loop's too (it plans claims on the same breaker): every use of it here is under the
``policy_lock`` the loop passes in; this module's own lock guards only its own state and is never held while
taking the policy's.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..phone import mask_phone
from ..providers.base import ConversionReport, Provider
from ..providers.transport_bounds import NotStarted, starting_by
from ..redaction import describe_error
from ..store.base import OutboxItem
from . import policy as P
from .breaker import Closed, Probe, Transition
from .outcomes import Outcomes
from .ratelimit import SharedSchedule

#: A sender waiting for a rate-limit slot looks this often whether the process is stopping.
TOKEN_WAIT = 0.05
#: A wait for a rate-cap slot longer than this (seconds) is counted as one (a shorter one is the schedule's grain).
RATE_WAIT_NOTED = 0.002


@dataclass(slots=True)
class Job:
    """A claimed row on its way to a sender."""

    item: OutboxItem
    probe: Probe | None
    #: Last moment (``time.time()``) the row may start, so that its lease covers the request and the ack.
    cutoff: float


class Senders:
    """The sender threads of one process and the rows in their hands; see the module docstring.

    Per process: a forked child builds new ones (the worker does, with the rest of its state)."""

    def __init__(
        self,
        *,
        outcomes: Outcomes,
        provider_factory: Callable[[], Provider],
        concurrency: int,
        lease: float,
        policy: P.DeliveryPolicy,
        policy_lock: threading.Lock,
        logger: logging.Logger,
        wake: Callable[[], None],
        note_error: Callable[[str], None],
        on_transition: Callable[[Transition], None],
    ) -> None:
        """``wake``: the drain loop should look now; ``note_error``: the latest failure, redacted;
        ``on_transition``: the breaker moved."""
        self._outcomes = outcomes
        self._provider_factory = provider_factory
        self._concurrency = concurrency
        self._lease = lease
        self._policy = policy
        self._policy_lock = policy_lock
        self._logger = logger
        self._wake = wake
        self._note_error = note_error
        self._on_transition = on_transition
        self._lock = threading.Lock()  # the ready list, the rows in hand, the rate waits
        self._rows = threading.Condition(self._lock)  # idle senders wait here for rows
        self._settled = threading.Condition(self._lock)  # flush and stop wait here for rows in hand to settle
        self._threads_lock = threading.Lock()  # the threads and their clients
        self._threads: list[threading.Thread] = []
        self._clients: list[Provider] = []
        self._schedule: SharedSchedule | None = None
        self._ready: deque[Job] = deque()
        self._low_water = 0
        self._backlog = False
        self._inflight = 0
        self._taken: dict[int, Job] = {}  # by id(): rows senders hold and have not settled, for cut_off()
        self._start_by = math.inf  # while stopping: no request starts after this (time.time())
        self._closing = False
        self._rate_waits = (0, 0.0)  # requests that waited for a rate-cap slot, and their wait in all (s)
        self._first_started: float | None = None  # when this process's first request started (monotonic)

    # What the drain loop uses ---------------------------------------------------------------------------

    def use(self, schedule: SharedSchedule, provider_name: str) -> None:
        """The schedule every request takes its slot on, and the provider's name for the logs: before ``add``."""
        self._schedule = schedule
        self._outcomes.provider_name = provider_name

    def add(self, count: int) -> None:
        """Start up to ``count`` more sender threads, never more than the concurrency. Senders start as rows wait
        for them, not all at once: each runnable thread is one more to wake and take the GIL beside the requests,
        and a fast provider needs few."""
        with self._threads_lock:
            while count > 0 and len(self._threads) < self._concurrency:
                sender = threading.Thread(
                    target=self._send_forever, name=f"otp-conversion-sender-{len(self._threads)}", daemon=True
                )
                sender.start()
                self._threads.append(sender)
                count -= 1

    def grow_to(self, wanted: int) -> None:
        """As many threads as ``wanted`` (within the concurrency)."""
        with self._threads_lock:
            more = wanted - len(self._threads)
        self.add(more)

    @property
    def can_grow(self) -> bool:
        return len(self._threads) < self._concurrency

    @property
    def count(self) -> int:
        """Sender threads started."""
        return len(self._threads)

    def since_first_request(self) -> float:
        """Seconds since this process's first request started (0 before it): before any answer, the provider
        takes at least that long."""
        started = self._first_started
        return 0.0 if started is None else time.monotonic() - started

    def load(self) -> tuple[int, bool]:
        """Rows waiting for a sender, and whether any row is waiting or in a sender's hands."""
        with self._lock:
            return len(self._ready), bool(self._ready) or self._inflight > 0

    def offer(self, jobs: Sequence[Job], *, backlog: bool, low_water: int) -> tuple[bool, bool]:
        """Claimed rows for the senders. ``backlog``: the claim was full, so more are due; a sender wakes the loop
        once fewer than ``low_water`` wait. Returns whether rows of an earlier claim were still waiting (the
        senders fall behind) and whether, after this, nothing waits and nothing is in flight."""
        with self._lock:
            behind = bool(self._ready)
            self._ready.extend(jobs)
            self._backlog = backlog
            self._low_water = low_water
            if jobs:
                self._rows.notify(len(jobs))
            return behind, not self._ready and self._inflight == 0

    def hand_back_ready(self, reason: str) -> None:
        """Every row still waiting for a sender goes back to the outbox, unsent; a probe it carried is settled."""
        with self._lock:
            jobs = list(self._ready)
            self._ready.clear()
        self._cancel(jobs)
        self._outcomes.hand_back([job.item for job in jobs], reason)

    def wait_idle(self, deadline: float) -> None:
        """Until ``deadline`` (monotonic): wait for the rows in the senders' hands to settle."""
        with self._lock:
            while self._inflight > 0 and (remaining := deadline - time.monotonic()) > 0:
                self._settled.wait(remaining)

    # Stopping -------------------------------------------------------------------------------------------

    def cut_off(self, start_by: float) -> None:
        """No request starts after ``start_by`` (``time.time()``): rows taken before now are cut short here,
        those taken later when a sender takes them."""
        with self._lock:
            self._start_by = start_by
            for job in self._taken.values():
                job.cutoff = min(job.cutoff, start_by)

    def wind_down(self, deadline: float) -> None:
        """Once the loop has ended: rows not started by the cut-off go back unsent; requests in flight get until
        ``deadline`` (monotonic), and their outcomes (acks, retries) are written."""
        with self._lock:
            waited = self._inflight
            while self._ready and (left := min(self._start_by - time.time(), deadline - time.monotonic())) > 0:
                self._settled.wait(left)
            jobs = list(self._ready)
            self._ready.clear()
        self._cancel(jobs)
        self._outcomes.hand_back([job.item for job in jobs], "reporter stopping")
        self._wait_settled(deadline)
        unsent = self._outcomes.handed_back()
        self._outcomes.flush_acks(force=True)
        self._outcomes.hand_back_pending()
        if waited or unsent:
            self._logger.info(
                "otp-conversion reporter stopping: %d report(s) in flight at the stop, %d claimed handed back unsent",
                waited,
                unsent,
            )

    def close(self) -> None:
        """End the sender threads and close their clients."""
        with self._lock:
            self._closing = True
            self._outcomes.closing()
            left = list(self._ready)
            self._ready.clear()
            self._rows.notify_all()
        self._cancel(left)
        self._outcomes.hand_back([job.item for job in left], "reporter stopping")
        # senders waiting for a slot hand their rows back within TOKEN_WAIT
        busy = self._wait_settled(time.monotonic() + 2 * TOKEN_WAIT)
        self._outcomes.flush_acks(force=True)
        self._outcomes.hand_back_pending()  # rows senders gave up between the wind-down and closing
        if busy:  # a request still runs on a client: the process is leaving anyway
            self._logger.warning(
                "otp-conversion reporter stopped with %d report request(s) in flight: the provider may have "
                "received them; their rows go again when their lease expires (%.0f s), so they may be reported "
                "twice (if the provider is only slow, raise OTP_CONVERSION_SHUTDOWN_TIMEOUT)",
                busy,
                self._lease,
            )
            return
        with self._threads_lock:
            clients, self._clients = self._clients, []
        for client in clients:
            try:
                client.close()
            except Exception as exc:
                self._logger.warning("closing a provider client failed: %s", describe_error(exc))

    def _wait_settled(self, end: float) -> int:
        """Until ``end`` (monotonic): wait for the senders' rows to settle and their ack writes to end; how
        many rows are still in a sender's hands."""
        with self._lock:
            while self._inflight > 0 and (remaining := end - time.monotonic()) > 0:
                self._settled.wait(remaining)
            inflight = self._inflight
        self._outcomes.wait_written(end)
        return inflight

    def _cancel(self, jobs: Sequence[Job]) -> None:
        if jobs:
            with self._policy_lock:
                for job in jobs:
                    self._policy.cancel(job.probe)

    # One sender -----------------------------------------------------------------------------------------

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
                low = self._backlog and len(self._ready) < self._low_water
                if low:
                    self._backlog = False
            if low:
                self._wake()
            try:
                if client is None:
                    client = self._provider_factory()
                    with self._threads_lock:
                        self._clients.append(client)
                self._send(client, job, upcoming)
            except Exception as exc:  # recording the outcome failed (store trouble): the lease expires
                self._note_error(describe_error(exc))
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
                    self._settled.notify_all()
                if quiet:  # the last ack of a burst goes now, whether or not a loop thread is there to do it
                    try:
                        self._outcomes.flush_acks(force=True)
                    except Exception as exc:
                        self._note_error(describe_error(exc))
                        self._logger.error("could not ack delivered reports: %s", describe_error(exc))
                    self._wake()

    def _send(self, client: Provider, job: Job, upcoming: int) -> None:
        """One row: wait out a short pause, wait for a slot, make the call, act on the answer. A probe the job
        carries is always settled: by the answer, or cancelled in ``finally``."""
        item, probe = job.item, job.probe
        settled = False
        try:
            while True:
                now = time.time()
                with self._policy_lock:
                    wait = self._policy.send_blocked_for(now, probe)
                if wait is None or now + wait > job.cutoff or self._closing:
                    self._outcomes.hand_back([item], "not sent in time")
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
            asked = time.monotonic()
            while True:
                slot = schedule.acquire(timeout=min(TOKEN_WAIT, job.cutoff - time.time()), upcoming=upcoming)
                # A slot this thread is too late for is forfeited, before the call or at its first byte (the
                # transport's check): that only lowers the rate, and the next slot is taken.
                if slot is not None and schedule.wait(slot):
                    started, cpu_before = time.monotonic(), time.thread_time()
                    if self._first_started is None:
                        self._first_started = started
                    try:
                        with starting_by(slot.start_by):
                            client.report_conversion(report)
                        answer = P.OK
                    except NotStarted:
                        answer = None
                    except Exception as exc:
                        answer = P.classify(exc)
                    if answer is not None:
                        break
                if self._closing or time.time() >= job.cutoff:
                    self._outcomes.hand_back([item], "no rate-limit slot before the send window closed")
                    return
            if started - asked > RATE_WAIT_NOTED:
                with self._lock:
                    self._rate_waits = (self._rate_waits[0] + 1, self._rate_waits[1] + started - asked)
            took, cpu = time.monotonic() - started, time.thread_time() - cpu_before
            now = time.time()
            with self._policy_lock:
                decision = self._policy.decide(
                    answer, P.Row(item.created_at, item.attempts), now, probe=probe, took=took, cpu=cpu
                )
                settled = True
            verdict = decision.verdict
            if isinstance(verdict, P.Ack):
                self._outcomes.delivered(item, started)
            elif isinstance(verdict, P.Retry):
                self._outcomes.retry(item, verdict, answer)
            else:
                self._outcomes.dead_letter(item, verdict.reason, now)
            if isinstance(decision.transition, Closed):
                self._outcomes.credentials_work()
            self._on_transition(decision.transition)  # after the retry: the status written names its error
        finally:
            if not settled and probe is not None:
                with self._policy_lock:
                    self._policy.cancel(probe)
                self._wake()

    # Figures --------------------------------------------------------------------------------------------

    def take_rate_waits(self) -> tuple[int, float]:
        """The rate-cap waits since the last call: (requests that waited, seconds waited in all)."""
        with self._lock:
            waits, self._rate_waits = self._rate_waits, (0, 0.0)
        return waits
