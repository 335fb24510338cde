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

Order
    Only verifications are spooled. Sends are written to the store at once, so a verification is always
    applied after the send it matches (it is matched at its own ``verified_at``, however late it is applied).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import math
import os
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .._forks import ForkLocal
from .base import Store, Verification, VerifyOutcome
from .checks import check_verification

SUFFIX = ".spool"
#: Seconds between the background thread's passes.
APPLY_INTERVAL = 0.05
#: Verifications applied per store transaction.
APPLY_BATCH = 500
#: Bytes read from a segment at a time.
READ_CHUNK = 1 << 20
#: A fully applied segment at least this large is replaced by a fresh one.
ROTATE_BYTES = 4 << 20
#: Seconds between sweeps of the folder for segments of processes that died.
SWEEP_EVERY = 5.0

#: Called with each verification and what the store made of it (for logging).
OutcomeHook = Callable[[Verification, VerifyOutcome], None]


class _Moved(Exception):
    """Another process applied these lines first."""


@dataclass
class _Segment:
    name: str
    fd: int
    size: int


def encode(item: Verification) -> bytes:
    """One JSON line. Written out by hand (json.dumps only for the free-form message id): it runs in the verify
    request. The phone is E.164 and the time a finite float (both checked), whose repr is valid JSON."""
    message_id = "null" if item.message_id is None else json.dumps(item.message_id)
    return f'["{item.phone}",{message_id},{item.verified_at!r}]\n'.encode()


def decode(line: bytes) -> Verification:
    """A spooled line back into a checked verification; ``ValueError`` if it is not one."""
    try:
        phone, message_id, verified_at = json.loads(line)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"unreadable spool line ({type(exc).__name__})") from None
    return check_verification(Verification(phone, message_id, verified_at))


def decode_block(block: bytes) -> list[Verification] | None:
    """Whole lines in one parse (the common case: every line good), unchecked: the store checks them. None if
    any line is not a well-formed record, so the caller goes line by line."""
    try:
        records = json.loads(b"[" + block.rstrip(b"\n").replace(b"\n", b",") + b"]")
        return [Verification(phone, message_id, verified_at) for phone, message_id, verified_at in records]
    except (ValueError, TypeError):
        return None


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
    ) -> None:
        self._store = store
        self._dir = directory
        self._provider = provider
        self._match_window = match_window
        self._logger = logger
        self._on_outcome = on_outcome
        self._autostart = autostart
        self._rotate_bytes = rotate_bytes
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
            os.rename(temporary, os.path.join(self._dir, name + SUFFIX))
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
        self._segment = _Segment(name, fd, 0)
        return self._segment

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
        while not stop.wait(APPLY_INTERVAL):
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
            applied = 0
            segment = self._segment
            if segment is not None and (everyone or self._unapplied):
                count, position = self._apply_file(segment.name, self._path(segment.name))
                applied += count
                with self._lock:
                    if segment.size == position:
                        self._unapplied = False
                self._rotate_if_due(segment, position)
            if everyone or time.monotonic() - self._swept_at >= SWEEP_EVERY:
                self._swept_at = time.monotonic()
                applied += self._sweep(live=everyone)
            return applied

    def _path(self, name: str) -> str:
        return os.path.join(self._dir, name + SUFFIX)

    def _apply_file(self, name: str, path: str, *, final: bool = False) -> tuple[int, int]:
        """Apply the complete lines of ``path`` past its stored position; returns (applied, position).
        ``final``: the writer is gone, so a torn last line (a write cut off by the kill, never acknowledged
        to anyone) is skipped."""
        try:
            file = open(path, "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError:
            return 0, 0  # deleted by its owner once fully applied
        applied = 0
        try:
            with file:
                position = self._store.spool_position(name)
                # Read after the position: an owner deletes the file before it forgets the position, so a
                # forgotten position (0) is never taken for the start of a file that was applied already.
                if os.fstat(file.fileno()).st_nlink == 0:
                    return 0, position
                file.seek(position)
                rest = b""
                while chunk := file.read(READ_CHUNK):
                    data = rest + chunk  # starts at ``position``
                    end = data.rfind(b"\n") + 1
                    if end:
                        count, position = self._apply_lines(name, data[:end], position)
                        applied += count
                    rest = data[end:]
                if rest and final:
                    self._logger.warning("otp-conversion spool %s: skipped a torn last line", name)
                    self._apply_batch(name, [], position, position + len(rest))
                    position += len(rest)
        except _Moved:  # another process is applying this file: it carries on from here
            position = self._store.spool_position(name)
        return applied, position

    def _apply_lines(self, name: str, block: bytes, position: int) -> tuple[int, int]:
        """Apply ``block`` (whole lines, starting at byte ``position``) in batches; returns (applied, the
        position after it)."""
        applied = 0
        lines = block.splitlines(keepends=True)
        for first in range(0, len(lines), APPLY_BATCH):
            chunk = lines[first : first + APPLY_BATCH]
            end = position + sum(map(len, chunk))
            items = decode_block(b"".join(chunk))
            if items is not None:
                try:
                    applied += self._apply_batch(name, items, position, end)
                    position = end
                    continue
                except ValueError:  # a well-formed record the store refuses: find it line by line
                    pass
            good: list[Verification] = []
            at = position
            for line in chunk:
                try:
                    good.append(decode(line))
                except ValueError as exc:
                    self._logger.error("otp-conversion spool %s: skipped the line at byte %d: %s", name, at, exc)
                at += len(line)
            applied += self._apply_batch(name, good, position, end)
            position = end
        return applied, position

    def _apply_batch(self, name: str, batch: Sequence[Verification], start: int, end: int) -> int:
        outcomes = self._store.apply_verifications(
            batch, provider=self._provider, match_window=self._match_window, checkpoint=(name, start, end)
        )
        if outcomes is None:
            raise _Moved
        if self._on_outcome is not None:
            for item, outcome in zip(batch, outcomes, strict=True):
                self._on_outcome(item, outcome)
        return len(batch)

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
        """Delete a fully applied segment of this process (the file first: a crash in between leaves only an
        unused position row, never a file whose position is forgotten)."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._path(segment.name))
        os.close(segment.fd)
        self._store.forget_spool(segment.name)

    # Segments of processes that died -------------------------------------------------------------------

    def _sweep(self, *, live: bool) -> int:
        own = None if self._segment is None else self._segment.name
        applied = 0
        for entry in os.scandir(self._dir):
            stem, ext = os.path.splitext(entry.name)
            if ext == SUFFIX and stem != own:
                applied += self._take_over(stem, entry.path, live=live)
            elif ext == ".new":
                self._remove_abandoned(entry.path)
        return applied

    def _take_over(self, name: str, path: str, *, live: bool) -> int:
        """Apply and delete the segment ``path`` if no live process holds it (``live``: apply it anyway)."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return 0
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # its process is alive
                return self._apply_file(name, path)[0] if live else 0
            try:
                current = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                current = False
            if not current:
                return 0  # another sweeper applied and deleted it while we waited
            applied, _ = self._apply_file(name, path, final=True)
            os.unlink(path)
            self._store.forget_spool(name)
            if applied:
                self._logger.info("otp-conversion spool: applied %d verification(s) left by a stopped process", applied)
            return applied
        finally:
            os.close(fd)

    def _remove_abandoned(self, path: str) -> None:
        """A segment never renamed into place (its process died at creation) holds no lines."""
        try:
            if time.time() - os.stat(path).st_mtime < ABANDONED_AFTER:
                return
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.unlink(path)
        except (BlockingIOError, FileNotFoundError):
            pass
        finally:
            os.close(fd)

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
                _, position = self._apply_file(segment.name, self._path(segment.name))
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
            if ext != SUFFIX:
                continue
            with contextlib.suppress(FileNotFoundError), open(entry.path, "rb") as file:
                file.seek(store.spool_position(stem))
                while chunk := file.read(READ_CHUNK):
                    count += chunk.count(b"\n")
    return count


#: Seconds after which a segment left under its temporary name is deleted.
ABANDONED_AFTER = 60.0
