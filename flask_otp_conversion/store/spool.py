"""The verification spool: the verify request's write is one append to a file, applied to the store later.

Why
    A store transaction on the request path costs ~0.1-0.2 ms of CPU and queues on the database's single write
    lock, which every worker process shares. An ``os.write`` of one line costs a few microseconds and shares
    nothing. A background thread applies the lines to the store in batches, one transaction each.

Durability
    A line is in the kernel's page cache once ``os.write`` returns, so it survives the process being killed
    (``kill -9``), as the store's commits do with ``synchronous=normal``. The store keeps each spool's applied
    position in the same transaction as the verifications it applied, so a replay after a crash neither
    applies a line twice nor skips one.

Files
    One segment per process at a time, ``<uuid>.spool`` in the spool folder, held with an exclusive ``flock``
    for as long as the process lives. A segment whose lock can be taken belongs to a process that died: any
    process sweeping the folder applies it to the end, then deletes it. A segment is created under another
    name and renamed once locked, so no sweeper ever sees an unlocked live segment. A segment is replaced by
    a fresh one once it is large and fully applied.

The parts
    This module is the writer (the request path: ``Spool.append``, the process's segment, its replacement) and
    the spool's life cycle (the background thread's passes, ``close``, forks). The line format is
    ``spool_format.py``; applying segments to the store (batches with checkpoints, the quarantine, the wait for a
    send after an outage, sweeping the segments of processes that died) is ``spool_applier.py``.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import math
import os
import threading
import time
import uuid
from dataclasses import dataclass

from .._forks import ForkLocal
from .base import Store, Verification
from .checks import check_verification
from .spool_applier import (
    ABANDONED_AFTER,
    APPLY_BATCH,
    RECOVERY,
    SEND_GRACE,
    STORE_TROUBLE,
    OutcomeHook,
    SpoolApplier,
)
from .spool_format import (
    MAX_LINE,
    READ_CHUNK,
    SUFFIX,
    decode,
    decode_block,
    encode,
    segment_path,
    split_lines,
    valid_name,
)

# The format's and the applier's names stay importable from here, where they lived before the split.
__all__ = [
    "ABANDONED_AFTER",
    "APPLY_BATCH",
    "APPLY_INTERVAL",
    "MAX_LINE",
    "READ_CHUNK",
    "RECOVERY",
    "ROTATE_BYTES",
    "SEND_GRACE",
    "STORE_TROUBLE",
    "SUFFIX",
    "SWEEP_EVERY",
    "OutcomeHook",
    "Spool",
    "decode",
    "decode_block",
    "encode",
    "folder_for",
    "split_lines",
    "unapplied",
]

#: Seconds between the background thread's passes by default; the store may ask for others (``batch_interval``).
APPLY_INTERVAL = Store.batch_interval
#: A fully applied segment at least this large is replaced by a fresh one.
ROTATE_BYTES = 4 << 20
#: Seconds between sweeps of the folder for segments of processes that died.
SWEEP_EVERY = 5.0


@dataclass
class _Segment:
    name: str
    fd: int
    size: int


class Spool(ForkLocal):
    """Spooled verifications of one app, in the folder ``directory``, applied to ``store``."""

    def __init__(
        self,
        store: Store,
        directory: str,
        *,
        provider: str,
        match_window: float,
        logger: logging.Logger,
        on_outcome: OutcomeHook | None = None,
        autostart: bool = True,
        rotate_bytes: int = ROTATE_BYTES,
        send_grace: float = SEND_GRACE,
        apply_interval: float | None = None,
    ) -> None:
        self._store = store
        #: Seconds between the background thread's passes (None: as the store asks).
        self.apply_interval = store.batch_interval if apply_interval is None else apply_interval
        self._dir = directory
        self._provider = provider
        self._match_window = match_window
        self._logger = logger
        self._on_outcome = on_outcome
        self._autostart = autostart
        self._rotate_bytes = rotate_bytes
        self._send_grace = send_grace
        os.makedirs(directory, exist_ok=True)
        self._init_process_state()
        self._watch_forks()

    def _init_process_state(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.Lock()  # the current segment: appends and rotation
        self._apply_lock = threading.Lock()  # one applier at a time in this process
        self._segment: _Segment | None = None
        self._thread: threading.Thread | None = None
        self._everyone = False  # the applier thread applies every process's spool, not only this one's
        self._stop = threading.Event()
        self._swept_at = -math.inf
        #: Whether this process appended lines it has not applied yet (the applier skips its file otherwise).
        self._unapplied = False
        self._applier = SpoolApplier(
            self._store,
            self._dir,
            provider=self._provider,
            match_window=self._match_window,
            logger=self._logger,
            on_outcome=self._on_outcome,
            send_grace=self._send_grace,
        )

    def __repr__(self) -> str:
        return f"Spool({self._dir!r})"

    @property
    def directory(self) -> str:
        return self._dir

    # The request path ---------------------------------------------------------------------------------

    def append(self, item: Verification, *, checked: bool = False) -> None:
        """Write one verification. ``ValueError`` if it is not valid (phone in E.164), ``OSError`` if the file
        cannot take it; nothing of a failed line is left behind. ``checked``: the caller built ``item`` by the
        rules of ``check_verification`` (the extension does, and it runs in the verify request), so the check
        is not repeated; the applier checks every line again."""
        line = encode(item if checked else check_verification(item))
        self._check_fork()
        with self._lock:
            segment = self._segment or self._open_segment()
            written = os.write(segment.fd, line)
            if written != len(line):  # a full disk: take the torn line back, or it would spoil the next one
                os.ftruncate(segment.fd, segment.size)
                raise OSError(f"spool write cut short ({written} of {len(line)} bytes)")
            segment.size += written
            self._unapplied = True
        if self._thread is None and self._autostart:
            self.start()

    def _open_segment(self) -> _Segment:
        name = uuid.uuid4().hex
        temporary = os.path.join(self._dir, name + ".new")
        fd = os.open(temporary, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.rename(temporary, segment_path(self._dir, name))
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
        self._segment = _Segment(name, fd, 0)
        return self._segment

    def _rotate_if_due(self, segment: _Segment, position: int) -> None:
        """Replace a large, fully applied segment; the next append opens a fresh one."""
        if position < self._rotate_bytes:
            return
        with self._lock:
            if self._segment is not segment or segment.size != position:
                return
            self._segment = None
        self._retire(segment)

    def _retire(self, segment: _Segment) -> None:
        """Delete a fully applied segment of this process: the file, then its position (``forget``)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(segment_path(self._dir, segment.name))
        os.close(segment.fd)
        self._applier.forget(segment.name)

    # The background thread ----------------------------------------------------------------------------

    def start(self, *, everyone: bool = False) -> None:
        """Start this process's applier thread (idempotent; cheap when it runs). ``everyone``: it applies every
        process's spool, live ones too (the store's one deliverer does; see ``delivery/election.py``)."""
        thread = self._thread
        if thread is not None and self._pid == os.getpid() and thread.is_alive():
            return
        self._check_fork()
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._everyone = everyone
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._run, name="otp-conversion-spool", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        stop = self._stop
        while not stop.wait(self.apply_interval):
            try:
                self.apply_pending(everyone=self._everyone)
            except Exception as exc:
                self._logger.error("otp-conversion spool: %s: %s", type(exc).__name__, exc)
                stop.wait(1.0)

    def apply_pending(self, *, everyone: bool = False) -> int:
        """Apply what this process spooled and, every few seconds, what stopped processes left. ``everyone``:
        the whole folder now, live processes' segments included (for ``flush`` and a delivery process;
        applying a line is exactly-once whoever does it). Returns how many verifications were applied."""
        self._check_fork()
        with self._apply_lock:
            try:
                return self._apply_pending(everyone)
            except STORE_TROUBLE:
                self._applier.refused()
                raise

    def _apply_pending(self, everyone: bool) -> int:
        applied = 0
        segment = self._segment
        if segment is not None and (everyone or self._unapplied):
            count, position = self._applier.apply_segment(segment.name)
            applied += count
            with self._lock:
                if segment.size == position:
                    self._unapplied = False
            self._rotate_if_due(segment, position)
        if everyone or time.monotonic() - self._swept_at >= SWEEP_EVERY:
            self._swept_at = time.monotonic()
            own = None if self._segment is None else self._segment.name
            applied += self._applier.sweep(own=own, live=everyone)
        return applied

    # Life cycle ---------------------------------------------------------------------------------------

    def close(self, timeout: float | None = None) -> None:
        """Stop the thread, apply everything, and delete this process's segment. A later ``append`` starts
        a fresh one."""
        if self._check_fork():
            return  # a forked child: nothing of its own yet, and the parent's segment stays the parent's
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
        self._thread = None
        with self._apply_lock:
            segment = self._segment
            position = -1
            if segment is not None:
                _, position = self._applier.apply_segment(segment.name)
            with self._lock:
                if segment is None or self._segment is not segment or segment.size != position:
                    return  # appended to meanwhile: stays for the thread an append restarts, or a sweeper
                self._segment = None
            self._retire(segment)

    def _after_fork_in_child(self) -> None:
        """The parent's segment stays the parent's: close our copy of its descriptor (the lock stays with the
        parent's) and start over."""
        segment = self._segment
        if segment is not None:
            with contextlib.suppress(OSError):
                os.close(segment.fd)
        self._init_process_state()


def folder_for(store_path: str) -> str:
    """The spool folder of a SQLite store file: beside it, like SQLite's own ``-wal`` and ``-shm``."""
    return store_path + "-spool"


def unapplied(store: Store, directory: str) -> int:
    """Verifications spooled in ``directory`` and not yet applied to ``store`` (for monitoring; reads the
    files, so not for the request path)."""
    count = 0
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(directory):
            stem, ext = os.path.splitext(entry.name)
            if ext != SUFFIX or not entry.is_file(follow_symlinks=False) or not valid_name(stem):
                continue
            with contextlib.suppress(OSError), open(entry.path, "rb") as file:
                file.seek(store.spool_position(stem))
                while chunk := file.read(READ_CHUNK):
                    count += chunk.count(b"\n")
    return count
