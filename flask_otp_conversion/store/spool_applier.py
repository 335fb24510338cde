"""The spool's applier: segments read from their stored positions and applied to the store in batches.

Checkpoints
    A batch of up to ``APPLY_BATCH`` verifications is one store transaction that also moves the segment's
    position, with compare-and-set: any process may apply any segment, a batch applied twice is applied once,
    and a stale checkpoint changes nothing (the pass then carries on from the stored position).

Quarantine
    Whatever a segment holds, the applier goes on. A line it cannot apply, for any reason (not UTF-8, not
    JSON, not a verification, over ``MAX_LINE`` bytes, a record the store refuses), is saved, with its byte
    offset and why, to ``quarantine/<segment>.bad`` (``quarantine.py``) before the checkpoint that steps over
    it is committed, so it is kept exactly once; the lines around it are applied as usual. An entry that is not
    a regular file is moved into ``quarantine/`` whole; a dead segment with a name the store cannot keep a
    position under is renamed and applied. Each segment is logged once per process. Only a store that cannot
    be written (``STORE_TROUBLE``) stops a pass: nothing is quarantined for it, and the pass is retried.

Segments of processes that died
    A segment whose ``flock`` can be taken belongs to a process that died: a sweep applies it to the end (a
    torn last line, a write the kill cut off and never acknowledged, is quarantined), then deletes it.

Order
    Sends are written to the store at once, so a verification is applied after the send it matches (it is
    matched at its own ``verified_at``, however late it is applied). Only while the store refuses writes may a
    send be held in some process's memory instead (``holding.py``): for ``RECOVERY`` seconds after the store
    refused the applier, a verification that matches nothing waits up to ``SEND_GRACE`` seconds for it.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import logging
import math
import os
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterator, Sequence

from ..redaction import safe_text
from .base import Store, Verification, VerifyOutcome
from .quarantine import Bad, Box, move_aside, open_box
from .spool_format import MAX_LINE, SUFFIX, decode, decode_block, runs, segment_path, split_lines, valid_name

#: Verifications applied per store transaction.
APPLY_BATCH = 500
#: Errors that say the store cannot be written now (locked, full, read-only, damaged), not that a line is
#: bad: the pass stops and is retried, and nothing is quarantined for them.
STORE_TROUBLE: tuple[type[BaseException], ...] = (OSError, sqlite3.DatabaseError, MemoryError)
#: For this many seconds after the store refused the applier, a verification that matches no send waits up to
#: ``SEND_GRACE`` seconds for it before it is applied as unmatched: the send may be held in another process's
#: memory (``holding.py``) while the store was down, and is written a moment after it answers again.
RECOVERY = 120.0
SEND_GRACE = 10.0
#: Seconds after which a segment left under its temporary name is deleted.
ABANDONED_AFTER = 60.0

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


def _reason(exc: BaseException) -> str:
    return safe_text(f"the store refused it: {type(exc).__name__}: {exc}")


class SpoolApplier:
    """Applies the segments of the spool folder ``directory`` to ``store``. Its state (quarantine files, the
    recovery window, lines waiting for their send) belongs to one process: the spool builds a new one in a
    forked child. The caller runs one pass at a time."""

    def __init__(
        self,
        store: Store,
        directory: str,
        *,
        provider: str,
        match_window: float,
        logger: logging.Logger,
        on_outcome: OutcomeHook | None = None,
        send_grace: float = SEND_GRACE,
    ) -> None:
        self._store = store
        self._dir = directory
        self._provider = provider
        self._match_window = match_window
        self._logger = logger
        self._on_outcome = on_outcome
        self._send_grace = send_grace
        self._boxes: dict[str, Box] = {}  # quarantine files' offsets, by segment
        self._recovering_until = -math.inf  # monotonic: the store refused this applier until recently
        self._waiting_since: dict[tuple[str, int], float] = {}  # (segment, offset) of a line waiting for its send
        self._logged: set[str] = set()  # segments whose trouble was logged at ERROR
        # Positions this applier read or committed. Positions only move forward, so a segment no longer than its
        # known position has nothing new and a pass asks the store nothing; a stale one fails the checkpoint.
        self._known: dict[str, int] = {}

    def refused(self) -> None:
        """The store refused a pass (``STORE_TROUBLE``): for ``RECOVERY`` seconds, sends held in memory
        meanwhile may still be on their way, so an unmatched verification waits for its send."""
        self._recovering_until = time.monotonic() + RECOVERY

    def forget(self, name: str) -> None:
        """Segment ``name`` is gone, its file deleted first (a crash in between leaves only an unused position
        row, never a file whose position is forgotten)."""
        self._store.forget_spool(name)
        self._boxes.pop(name, None)
        self._known.pop(name, None)

    def apply_segment(self, name: str, *, final: bool = False) -> tuple[int, int]:
        """Apply the complete lines of segment ``name`` past its stored position; returns (applied, position).
        ``final``: the writer is gone, so a torn last line (a write cut off by the kill, never acknowledged
        to anyone) is quarantined. Lines that cannot be applied are quarantined (see the module docstring)."""
        path = segment_path(self._dir, name)
        try:
            file = open(path, "rb")  # noqa: SIM115 - closed below
        except FileNotFoundError:
            return 0, 0  # deleted by its owner once fully applied
        applied = 0
        try:
            with file:
                known = None if final else self._known.get(name)
                if known is not None:
                    if os.fstat(file.fileno()).st_size <= known:
                        return 0, known
                    position = known
                else:
                    position = self._read_position(name)
                    # Read after the position: an owner deletes the file before it forgets the position, so a
                    # forgotten position (0) is never taken for the start of a file that was applied already.
                    if os.fstat(file.fileno()).st_nlink == 0:
                        return 0, position
                file.seek(position)
                for run in runs(file, position, final=final):
                    if run.bad is None:
                        applied += self._apply_lines(name, run.data, run.offset)
                    else:
                        with self._quarantine(name) as box:
                            box.save([Bad(run.offset, run.data, run.length, run.bad)])
                            self._apply_batch(name, [], run.offset, run.offset + run.length)
                    position = run.offset + run.length
        except _Moved:  # another process is applying this file: it carries on from here
            position = self._read_position(name)
        except _Waiting as waiting:  # a line waits for its send: the next pass carries on from it
            applied += waiting.applied
            position = self._read_position(name)
        return applied, position

    def _read_position(self, name: str) -> int:
        position = self._store.spool_position(name)
        self._remember(name, position)
        return position

    def _remember(self, name: str, position: int) -> None:
        if len(self._known) >= 10_000 and name not in self._known:  # segments of long-gone processes
            self._known.clear()
        self._known[name] = position

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
        self._remember(name, end)
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

    # Segments of processes that died -------------------------------------------------------------------

    def sweep(self, *, own: str | None, live: bool) -> int:
        """Apply every segment but ``own`` (the caller's, which it applies itself); one that fails does not hold
        back those behind it (the first error is raised once all were tried). ``live``: segments of live
        processes too."""
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
                return self.apply_segment(name)[0] if live and valid_name(name) else 0
            try:
                current = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                current = False
            if not current:
                return 0  # another sweeper applied and deleted it while we waited
            if not valid_name(name):  # copied in by hand: no position can be kept under that name
                fresh = uuid.uuid4().hex
                os.rename(path, segment_path(self._dir, fresh))  # the lock is the inode's: still ours
                self._log_once(name, "otp-conversion spool: %r renamed to %s to be applied", path, fresh + SUFFIX)
                name, path = fresh, segment_path(self._dir, fresh)
            applied, position = self.apply_segment(name, final=True)
            if position < os.fstat(fd).st_size:  # a line waits for its send: the next sweep finishes the file
                return applied
            os.unlink(path)
            self.forget(name)
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
