"""The spool's quarantine: where lines and entries the applier cannot apply are kept, and how they are counted.

One file per segment, ``quarantine/<segment>.bad`` inside the spool folder, one JSON object a line (the line's byte
offset and length, why, and the line itself, base64 when it is not UTF-8); entries that are not regular files are
moved into the folder whole. The spool's applier decides what goes here (``spool_applier.py``); this module only
keeps it.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import uuid
from collections.abc import Iterator, MutableMapping, Sequence
from dataclasses import dataclass, field

#: The folder, inside the spool folder, that lines and entries which cannot be applied are moved to.
QUARANTINE = "quarantine"
BAD_SUFFIX = ".bad"
#: Bytes read from a quarantine file at a time when counting.
READ_CHUNK = 1 << 20
#: Boxes a spool keeps open state for; past this they are forgotten (and read again when needed).
MAX_BOXES = 1000


@dataclass
class Bad:
    """A line that cannot be applied, as it is saved to the quarantine."""

    offset: int
    data: bytes
    length: int
    reason: str

    def record(self) -> bytes:
        entry: dict[str, object] = {"offset": self.offset, "length": self.length, "reason": self.reason}
        try:
            entry["line"] = self.data.decode()
        except UnicodeDecodeError:
            entry["line_base64"] = base64.b64encode(self.data).decode()
        return json.dumps(entry).encode() + b"\n"


@dataclass
class Box:
    """The quarantine file of one segment, locked (``flock``) while its holder writes and commits, and the
    offsets it holds, so that a line is saved once whoever applies it and however often a pass is retried."""

    fd: int
    path: str
    inode: int
    offsets: set[int] = field(default_factory=set)
    read: int = 0
    saved: int = 0

    def refresh(self) -> None:
        """Read what other processes (or a pass that failed) added since."""
        size = os.fstat(self.fd).st_size
        if size <= self.read:
            return
        data = os.pread(self.fd, size - self.read, self.read)
        end = data.rfind(b"\n") + 1
        for line in data[:end].splitlines():
            with contextlib.suppress(ValueError, TypeError, KeyError):
                self.offsets.add(int(json.loads(line)["offset"]))
        self.read += end

    def save(self, bad: Sequence[Bad]) -> None:
        fresh = [item for item in bad if item.offset not in self.offsets]
        if not fresh:
            return
        data = b"".join(item.record() for item in fresh)
        view = memoryview(data)
        while view:  # O_APPEND: a short write (a full disk) raises on the next call, leaving whole records
            view = view[os.write(self.fd, view) :]
        self.offsets.update(item.offset for item in fresh)
        self.read += len(data)
        self.saved += len(fresh)


@contextlib.contextmanager
def open_box(directory: str, name: str, boxes: MutableMapping[str, Box]) -> Iterator[Box]:
    """The quarantine file of segment ``name`` in spool folder ``directory``, locked (``flock``) for the caller's
    write and commit; ``boxes`` keeps what was read of each file between calls."""
    folder = os.path.join(directory, QUARANTINE)
    os.makedirs(folder, mode=0o700, exist_ok=True)
    path = os.path.join(folder, name + BAD_SUFFIX)
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # held only for a write and a commit
        inode = os.fstat(fd).st_ino
        box = boxes.get(name)
        if box is None or box.inode != inode:
            if len(boxes) >= MAX_BOXES:
                boxes.clear()
            box = boxes[name] = Box(fd, path, inode)
        box.fd = fd
        box.refresh()
        yield box
    finally:
        os.close(fd)


def move_aside(directory: str, path: str, name: str) -> str:
    """Move the entry ``path`` (named ``name``) into the quarantine of spool folder ``directory``, whole; where
    it went."""
    folder = os.path.join(directory, QUARANTINE)
    os.makedirs(folder, mode=0o700, exist_ok=True)
    target = os.path.join(folder, name)
    if os.path.lexists(target):
        target += "." + uuid.uuid4().hex
    os.rename(path, target)
    return target


def quarantined(directory: str) -> int:
    """Lines and whole entries the applier moved to the quarantine of spool folder ``directory`` (for the
    stats; reads the files, so not for the request path)."""
    count = 0
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        for entry in os.scandir(os.path.join(directory, QUARANTINE)):
            if not (entry.name.endswith(BAD_SUFFIX) and entry.is_file(follow_symlinks=False)):
                count += 1  # a whole entry moved aside
                continue
            with contextlib.suppress(OSError), open(entry.path, "rb") as file:
                while chunk := file.read(READ_CHUNK):
                    count += chunk.count(b"\n")
    return count
