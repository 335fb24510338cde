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

Quarantine
    Whatever a segment holds, the applier goes on. A line it cannot apply, for any reason (not UTF-8, not
    JSON, not a verification, over ``MAX_LINE`` bytes, a record the store refuses), is saved, with its byte
    offset and why, to ``quarantine/<segment>.bad`` (``quarantine.py``) before the checkpoint that steps over
    it is committed, so it is kept exactly once; the lines around it are applied as usual. An
    entry that is not a regular file is moved into ``quarantine/`` whole; a dead segment with a name the
    store cannot keep a position under is renamed and applied. Each segment is logged once per process, and
    ``quarantine.quarantined()`` counts what the folder holds, for the stats. Only a store that cannot be written
    (``STORE_TROUBLE``) stops a pass: nothing is quarantined for it, and the pass is retried.

Order
    Only verifications are spooled. Sends are written to the store at once, so a verification is applied after
    the send it matches (it is matched at its own ``verified_at``, however late it is applied). Only while the
    store refuses writes may a send be held in some process's memory instead (``holding.py``): for ``RECOVERY``
    seconds after the store refused the applier, a verification that matches nothing waits for it.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import logging
import math
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO

from .._forks import ForkLocal
from ..redaction import safe_text
from .base import Store, Verification, VerifyOutcome
from .checks import check_name, check_verification
from .quarantine import Bad, Box, move_aside, open_box

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
#: A line the encoder writes is under 2 KiB (E.164, a 128-character id escaped, a float): a longer one is
#: quarantined unparsed, and a run this long without a newline is not held in memory.
MAX_LINE = 64 << 10
#: Errors that say the store cannot be written now (locked, full, read-only, damaged), not that a line is
#: bad: the pass stops and is retried, and nothing is quarantined for them.
STORE_TROUBLE: tuple[type[BaseException], ...] = (OSError, sqlite3.DatabaseError, MemoryError)

#: Called with each verification and what the store made of it (for logging).
OutcomeHook = Callable[[Verification, VerifyOutcome], None]


class _Moved(Exception):
    """Another process applied these lines first."""


class _Waiting(Exception):
    """A verification waits for its send (see ``RECOVERY``): the pass stops before it and comes back."""

    def __init__(self, applied: int) -> None:
        super().__init__(applied)
        self.applied = applied  # applied in the pass before it stopped


#: What stops a pass at once rather than mark a line bad.
_RAISE: tuple[type[BaseException], ...] = (_Moved, _Waiting, *STORE_TROUBLE)
#: For this many seconds after the store refused the applier, a verification that matches no send waits up to
#: ``SEND_GRACE`` seconds for it before it is applied as unmatched: the send may be held in another process's
#: memory (``holding.py``) while the store was down, and is written a moment after it answers again.
RECOVERY = 120.0
SEND_GRACE = 10.0


@dataclass
class _Segment:
    name: str
    fd: int
    size: int


@dataclass
class _Run:
    """Bytes of a segment from ``offset``: whole lines (``bad`` None), or one line never parsed (over-long
    or torn), of ``length`` bytes, whose first ``len(data)`` are kept."""

    offset: int
    data: bytes
    length: int
    bad: str | None = None


def encode(item: Verification) -> bytes:
    """One JSON line. Written out by hand (json.dumps only for the free-form message id): it runs in the verify
    request. The phone is E.164 and the time a finite float (both checked), whose repr is valid JSON."""
    message_id = "null" if item.message_id is None else json.dumps(item.message_id)
    return f'["{item.phone}",{message_id},{item.verified_at!r}]\n'.encode()


def decode(line: bytes) -> Verification:
    """A spooled line back into a checked verification; ``ValueError`` if it is not one, whatever the bytes."""
    if len(line) > MAX_LINE:
        raise ValueError(f"a line longer than {MAX_LINE} bytes")
    try:
        record = json.loads(line.decode())  # UTF-8 only: json.loads of bytes would guess UTF-16 or -32
    except Exception as exc:  # not UTF-8, not JSON, nested too deep (RecursionError), a 5000-digit number...
        raise ValueError(f"unreadable spool line ({type(exc).__name__})") from None
    if type(record) is not list or len(record) != 3:
        raise ValueError("a spool line is a JSON array of phone, message id and time")
    phone, message_id, verified_at = record
    return check_verification(Verification(phone, message_id, verified_at))


def decode_block(block: bytes) -> list[Verification] | None:
    """Whole lines in one parse (the common case: every line good), unchecked: the store checks them. None if
    any line is not a well-formed record (one line holding two records included), so the caller goes line by
    line."""
    try:
        records = json.loads("[" + block.rstrip(b"\n").replace(b"\n", b",").decode() + "]")
        if len(records) != block.count(b"\n"):
            return None
        return [Verification(phone, message_id, verified_at) for phone, message_id, verified_at in records]
    except Exception:
        return None


def split_lines(block: bytes) -> list[bytes]:
    """Whole lines of ``block`` (which ends with one), each with its newline: only ``\\n`` ends a line."""
    return [line + b"\n" for line in block.split(b"\n")[:-1]]


def _runs(file: BinaryIO, offset: int, *, final: bool) -> Iterator[_Run]:
    """The bytes of ``file`` from ``offset`` (where it is positioned), as contiguous runs: whole lines, and
    any run of more than ``MAX_LINE`` bytes without a newline as one bad line, never held in memory whole.
    ``final``: the writer is gone, so an unfinished last line is a torn one."""
    rest = b""
    long_at: int | None = None  # where an over-long line started, while reading past it
    long_head = b""
    read_at = offset
    while chunk := file.read(READ_CHUNK):
        chunk_at, read_at = read_at, read_at + len(chunk)
        if long_at is not None:
            newline = chunk.find(b"\n")
            if newline < 0:
                continue
            yield _Run(long_at, long_head, chunk_at + newline + 1 - long_at, f"a line longer than {MAX_LINE} bytes")
            long_at, chunk, chunk_at = None, chunk[newline + 1 :], chunk_at + newline + 1
        data, data_at = rest + chunk, chunk_at - len(rest)
        end = data.rfind(b"\n") + 1
        if end:
            yield _Run(data_at, data[:end], end)
        rest = data[end:]
        if len(rest) > MAX_LINE:
            long_at, long_head, rest = data_at + end, rest[:MAX_LINE], b""
    if long_at is not None:  # not ended yet: kept as far as it goes (a live writer never writes such a line)
        yield _Run(long_at, long_head, read_at - long_at, f"a line longer than {MAX_LINE} bytes, not ended")
    elif rest and final:
        yield _Run(read_at - len(rest), rest, len(rest), "a torn last line (a write cut off)")


def _reason(exc: BaseException) -> str:
    return safe_text(f"the store refused it: {type(exc).__name__}: {exc}")


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
    ) -> None:
        self._store = store
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
        self._boxes: dict[str, Box] = {}  # quarantine files' offsets, by segment
        self._recovering_until = -math.inf  # monotonic: the store refused this applier until recently
        self._waiting_since: dict[tuple[str, int], float] = {}  # (segment, offset) of a line waiting for its send
        self._logged: set[str] = set()  # segments whose trouble was logged at ERROR

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
            try:
                return self._apply_pending(everyone)
            except STORE_TROUBLE:
                self._recovering_until = time.monotonic() + RECOVERY
                raise

    def _apply_pending(self, everyone: bool) -> int:
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
        to anyone) is quarantined. Lines that cannot be applied are quarantined (see the module docstring)."""
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
                for run in _runs(file, position, final=final):
                    if run.bad is None:
                        applied += self._apply_lines(name, run.data, run.offset)
                    else:
                        with self._quarantine(name) as box:
                            box.save([Bad(run.offset, run.data, run.length, run.bad)])
                            self._apply_batch(name, [], run.offset, run.offset + run.length)
                    position = run.offset + run.length
        except _Moved:  # another process is applying this file: it carries on from here
            position = self._store.spool_position(name)
        except _Waiting as waiting:  # a line waits for its send: the next pass carries on from it
            applied += waiting.applied
            position = self._store.spool_position(name)
        return applied, position

    def _apply_lines(self, name: str, block: bytes, position: int) -> int:
        """Apply ``block`` (whole lines, starting at byte ``position``) in batches; returns how many were
        applied. A batch with a line that is not a record, or that the store refuses, goes line by line."""
        applied = 0
        lines = split_lines(block)
        for first in range(0, len(lines), APPLY_BATCH):
            chunk = lines[first : first + APPLY_BATCH]
            end = position + sum(map(len, chunk))
            items = decode_block(b"".join(chunk)) if max(map(len, chunk)) <= MAX_LINE else None
            if items is not None:
                try:
                    ready = self._ready(name, items, chunk, position)
                    if ready < len(items):  # the rest waits for a send that may still be on its way
                        cut = position + sum(map(len, chunk[:ready]))
                        if ready:
                            applied += self._apply_batch(name, items[:ready], position, cut)
                        raise _Waiting(applied)
                    applied += self._apply_batch(name, items, position, end)
                    position = end
                    continue
                except _RAISE:
                    raise
                except Exception as exc:  # a well-formed record the store refuses: find it line by line
                    self._logger.debug("otp-conversion spool %s: a batch refused (%s)", name, type(exc).__name__)
            applied += self._apply_singly(name, chunk, position)
            position = end
        return applied

    def _apply_singly(self, name: str, lines: Sequence[bytes], position: int) -> int:
        """The slow path: runs of readable lines applied together, a run the store refuses line by line, and
        every line that cannot be applied saved to the quarantine before the checkpoint stepping over it is
        committed. A line counts as refused only if the store then takes an empty checkpoint: otherwise the
        store, not the line, is at fault, and the error stops the pass."""
        entries: list[tuple[int, bytes, Verification | None, str]] = []
        offset = position
        for line in lines:
            try:
                entries.append((offset, line, decode(line), ""))
            except ValueError as exc:
                entries.append((offset, line, None, str(exc)))
            offset += len(line)
        applied = 0
        start = position  # where the next commit starts: the stored position
        bad: list[Bad] = []  # lines between ``start`` and the next commit, saved before it

        with self._quarantine(name) as box:

            def commit(items: list[Verification], end: int) -> Exception | None:
                nonlocal applied, start, bad
                box.save(bad)
                try:
                    applied += self._apply_batch(name, items, start, end)
                except _RAISE:
                    raise
                except Exception as exc:
                    return exc
                start, bad = end, []
                return None

            for readable, grouped in itertools.groupby(entries, key=lambda entry: entry[2] is not None):
                group = list(grouped)
                if not readable:
                    bad += [Bad(at, line[:MAX_LINE], len(line), why) for at, line, _, why in group]
                    continue
                items = [item for _, _, item, _ in group if item is not None]
                if commit(items, group[-1][0] + len(group[-1][1])) is None:
                    continue
                for (at, line, _, _), item in zip(group, items, strict=True):  # which one the store refuses
                    error = commit([item], at + len(line))
                    if error is not None:
                        self._apply_batch(name, [], start, start)  # raises if the store takes no write at all
                        bad.append(Bad(at, line, len(line), _reason(error)))
            if bad:
                box.save(bad)
                self._apply_batch(name, [], start, offset)
        return applied

    def _ready(self, name: str, items: Sequence[Verification], lines: Sequence[bytes], position: int) -> int:
        """How many of ``items`` to apply now: all, unless the store refused this applier within ``RECOVERY``
        and one matches no send yet; then those before the first such line, which waits (from when it was first
        seen) up to ``SEND_GRACE``."""
        now = time.monotonic()
        if now >= self._recovering_until:
            self._waiting_since.clear()
            return len(items)
        found = self._store.matches(items, provider=self._provider, match_window=self._match_window)
        offset = position
        for index, (matched, line) in enumerate(zip(found, lines, strict=True)):
            if not matched:
                since = self._waiting_since.setdefault((name, offset), now)
                if now - since < self._send_grace:
                    return index
            offset += len(line)
        return len(items)

    def _apply_batch(self, name: str, batch: Sequence[Verification], start: int, end: int) -> int:
        outcomes = self._store.apply_verifications(
            batch, provider=self._provider, match_window=self._match_window, checkpoint=(name, start, end)
        )
        if outcomes is None:
            raise _Moved
        if self._on_outcome is not None:
            try:
                for item, outcome in zip(batch, outcomes, strict=True):
                    self._on_outcome(item, outcome)
            except Exception as exc:  # applied and committed already: a failing hook must not replay them
                self._logger.error("otp-conversion spool: the outcome hook raised %s", type(exc).__name__)
        return len(batch)

    @contextlib.contextmanager
    def _quarantine(self, name: str) -> Iterator[Box]:
        """The quarantine file of segment ``name``, locked: whoever holds it saves bad lines and commits the
        checkpoint over them, so a line is saved once however many processes apply the segment."""
        with open_box(self._dir, name, self._boxes) as box:
            saved = box.saved
            yield box
            if box.saved > saved:
                self._log_once(
                    name,
                    "otp-conversion spool %s: %d line(s) it cannot apply moved to %s; the others are applied",
                    name,
                    box.saved - saved,
                    box.path,
                )

    def _log_once(self, name: str, message: str, *args: object) -> None:
        """ERROR the first time for a segment in this process, DEBUG after (a pass runs every 50 ms)."""
        if name in self._logged:
            self._logger.debug(message, *args)
            return
        if len(self._logged) >= 1000:
            self._logged.clear()
        self._logged.add(name)
        self._logger.error(message, *args)

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
        self._boxes.pop(segment.name, None)

    # Segments of processes that died -------------------------------------------------------------------

    def _sweep(self, *, live: bool) -> int:
        """Apply every other segment; one that fails does not hold back those behind it (the first error is
        raised once all were tried)."""
        own = None if self._segment is None else self._segment.name
        applied = 0
        failed: Exception | None = None
        for entry in os.scandir(self._dir):
            stem, ext = os.path.splitext(entry.name)
            try:
                if ext == SUFFIX and stem != own:
                    if entry.is_file(follow_symlinks=False):
                        applied += self._take_over(stem, entry.path, live=live)
                    else:  # never a live segment: those are regular files
                        self._move_aside(entry)
                elif ext == ".new":
                    self._remove_abandoned(entry.path)
            except Exception as exc:
                failed = failed or exc
        if failed is not None:
            raise failed
        return applied

    def _take_over(self, name: str, path: str, *, live: bool) -> int:
        """Apply and delete the segment ``path`` if no live process holds it (``live``: apply it anyway)."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
        except FileNotFoundError:
            return 0
        except PermissionError:
            self._log_once(name, "otp-conversion spool %s: cannot be read (permissions); not applied", path)
            return 0
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # its process is alive
                return self._apply_file(name, path)[0] if live and _valid_name(name) else 0
            try:
                current = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                current = False
            if not current:
                return 0  # another sweeper applied and deleted it while we waited
            if not _valid_name(name):  # copied in by hand: no position can be kept under that name
                fresh = uuid.uuid4().hex
                os.rename(path, self._path(fresh))  # the lock is the inode's: still ours
                self._log_once(name, "otp-conversion spool: %r renamed to %s to be applied", path, fresh + SUFFIX)
                name, path = fresh, self._path(fresh)
            applied, position = self._apply_file(name, path, final=True)
            if position < os.fstat(fd).st_size:  # a line waits for its send: the next sweep finishes the file
                return applied
            os.unlink(path)
            self._store.forget_spool(name)
            self._boxes.pop(name, None)
            if applied:
                self._logger.info("otp-conversion spool: applied %d verification(s) left by a stopped process", applied)
            return applied
        finally:
            os.close(fd)

    def _move_aside(self, entry: os.DirEntry[str]) -> None:
        """An entry named like a segment that is not a regular file (a folder, a link, a pipe) cannot be read
        as one: it goes into the quarantine whole."""
        target = move_aside(self._dir, entry.path, entry.name)
        self._log_once(entry.name, "otp-conversion spool: %r is not a regular file; moved to %s", entry.path, target)

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
            if ext != SUFFIX or not entry.is_file(follow_symlinks=False) or not _valid_name(stem):
                continue
            with contextlib.suppress(OSError), open(entry.path, "rb") as file:
                file.seek(store.spool_position(stem))
                while chunk := file.read(READ_CHUNK):
                    count += chunk.count(b"\n")
    return count


def _valid_name(name: str) -> bool:
    """Whether the store can keep a position under this segment name."""
    try:
        check_name(name, "spool name")
        name.encode()
    except ValueError:  # UnicodeEncodeError included: a file name that is not UTF-8
        return False
    return True


#: Seconds after which a segment left under its temporary name is deleted.
ABANDONED_AFTER = 60.0
