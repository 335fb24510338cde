"""The spool's file format, which its writer (``spool.py``) and its applier (``spool_applier.py``) share.

Lines
    One verification a line: a JSON array of the E.164 phone, the message id (or null) and ``verified_at``,
    ended by ``\\n`` (only ``\\n`` ends a line). The writer encodes by hand, since it runs in the verify request;
    the reader parses with ``json`` and checks every record again, whatever the bytes.

Segments
    ``<uuid>.spool`` in the spool folder; the store keeps each one's applied position under the uuid, so only a
    name the store can keep (``valid_name``) is read as a segment. A segment is read in runs of whole lines; a
    run of more than ``MAX_LINE`` bytes without a newline is one bad line and is never held in memory whole.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from .base import Verification
from .checks import check_name, check_verification

SUFFIX = ".spool"
#: Bytes read from a segment at a time.
READ_CHUNK = 1 << 20
#: A line the encoder writes is under 2 KiB (E.164, a 128-character id escaped, a float): a longer one is
#: quarantined unparsed, and a run this long without a newline is not held in memory.
MAX_LINE = 64 << 10


def segment_path(directory: str, name: str) -> str:
    return os.path.join(directory, name + SUFFIX)


def valid_name(name: str) -> bool:
    """Whether the store can keep a position under this segment name."""
    try:
        check_name(name, "spool name")
        name.encode()
    except ValueError:  # UnicodeEncodeError included: a file name that is not UTF-8
        return False
    return True


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


@dataclass
class Run:
    """Bytes of a segment from ``offset``: whole lines (``bad`` None), or one line never parsed (over-long
    or torn), of ``length`` bytes, whose first ``len(data)`` are kept."""

    offset: int
    data: bytes
    length: int
    bad: str | None = None


def runs(file: BinaryIO, offset: int, *, final: bool) -> Iterator[Run]:
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
            yield Run(long_at, long_head, chunk_at + newline + 1 - long_at, f"a line longer than {MAX_LINE} bytes")
            long_at, chunk, chunk_at = None, chunk[newline + 1 :], chunk_at + newline + 1
        data, data_at = rest + chunk, chunk_at - len(rest)
        end = data.rfind(b"\n") + 1
        if end:
            yield Run(data_at, data[:end], end)
        rest = data[end:]
        if len(rest) > MAX_LINE:
            long_at, long_head, rest = data_at + end, rest[:MAX_LINE], b""
    if long_at is not None:  # not ended yet: kept as far as it goes (a live writer never writes such a line)
        yield Run(long_at, long_head, read_at - long_at, f"a line longer than {MAX_LINE} bytes, not ended")
    elif rest and final:
        yield Run(read_at - len(rest), rest, len(rest), "a torn last line (a write cut off)")
