"""The bounds on one request of ``StdlibTransport``: a total deadline, answers read up to a bounded size, and
a moment after which it must not start at all.

A per-operation socket timeout alone lets an answer that trickles in one byte at a time run for ever, and an
answer of unbounded size would be held in memory whole: each ``recv`` here gets what is left of the request's
deadline (at most the read timeout) and the answer is refused once it passes the bound.

A caller that paces requests (the reporter's rate limit) says when each may start at the latest with
``starting_by``; the transport checks it right before writing the first byte, so whatever delays the request
before that (signing, the GIL) cannot make it start late: it is not sent (``NotStarted``).
"""

from __future__ import annotations

import http.client
import io
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import httpx

__all__ = [
    "DEFAULT_TIMEOUT",
    "HEAD_ALLOWANCE",
    "MAX_ANSWER_BYTES",
    "START_BY",
    "AnswerTooLarge",
    "BoundedSocket",
    "Deadline",
    "NotStarted",
    "check_start",
    "read_bounded",
    "request_deadline",
    "start_by",
    "starting_by",
]

DEFAULT_TIMEOUT = 5.0  # seconds, httpx's own default, for a request that carries no timeout extension
#: The largest answer body read; a larger one is refused (retryable) rather than held in memory. Provider
#: replies are a few kilobytes.
MAX_ANSWER_BYTES = 1 << 20
#: What the status line, headers and chunk framing may add to the body before the answer is refused.
HEAD_ALLOWANCE = 64 << 10


class AnswerTooLarge(httpx.RemoteProtocolError):
    """The answer was larger than the bound: refused, its connection closed, never held whole in memory."""


#: The request extension holding the last moment (``time.time()``) its first byte may be written.
START_BY = "start_by"


class NotStarted(Exception):
    """Not a byte of the request was written: it could not start by its ``START_BY``. Not an httpx error, so a
    provider client passes it on rather than report a failed call; the provider never saw the request."""


_start_by: ContextVar[float | None] = ContextVar("otp_conversion_start_by", default=None)


@contextmanager
def starting_by(moment: float) -> Iterator[None]:
    """Requests that ``HTTPSender`` makes in this block, in this thread, start by ``moment`` (``time.time()``) or
    are not sent (``NotStarted``): how a caller bounds a provider client's request through the client's API."""
    token = _start_by.set(moment)
    try:
        yield
    finally:
        _start_by.reset(token)


def start_by() -> float | None:
    """The moment set by the innermost ``starting_by`` around this call, if any."""
    return _start_by.get()


def check_start(moment: float | None) -> None:
    """``NotStarted`` if ``moment`` (``time.time()``) has passed: called with nothing yet written."""
    if moment is not None and (late := time.time() - moment) > 0:
        raise NotStarted(f"the request could not start by its deadline ({late * 1000:.1f} ms late)")


def request_deadline(timeouts: dict[str, float | None]) -> float | None:
    """Seconds a whole request may take (connect, send and the whole answer): the connect timeout plus the
    read timeout of ``httpx.Timeout.as_dict()``, what the reporter's row lease allows for a request. None
    when either is None (no limit asked for)."""
    connect = timeouts.get("connect", DEFAULT_TIMEOUT)
    read = timeouts.get("read", DEFAULT_TIMEOUT)
    if connect is None or read is None:
        return None
    return connect + read


class Deadline:
    """A monotonic deadline that shrinks each socket operation's timeout to the time left: a per-operation
    timeout alone lets an answer that trickles in one byte at a time run for ever."""

    __slots__ = ("at",)

    def __init__(self, seconds: float | None) -> None:
        self.at = None if seconds is None else time.monotonic() + seconds

    def timeout(self, per_operation: float | None) -> float | None:
        """``per_operation`` or what is left of the deadline, whichever is shorter; TimeoutError when
        nothing is left (the caller turns it into the httpx timeout of the phase it is in)."""
        if self.at is None:
            return per_operation
        left = self.at - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request's total deadline passed")
        return left if per_operation is None else min(per_operation, left)


_PIECE = 64 << 10


def read_bounded(reply: http.client.HTTPResponse, limit: int) -> bytes:
    """A body of unknown length (chunked, or until the connection closes), refused as soon as it is over
    ``limit``: in pieces, so no more than the bound and a piece is ever held."""
    body = bytearray()
    while piece := reply.read(_PIECE):
        body += piece
        if len(body) > limit:
            raise AnswerTooLarge(f"the answer is larger than {limit} bytes")
    return bytes(body)


class BoundedSocket:
    """What ``http.client.HTTPResponse`` reads an answer from: the socket, through a reader that gives each
    ``recv`` the time left of the request's deadline (at most the read timeout) and refuses to read more
    than ``limit`` bytes in all."""

    def __init__(self, sock: socket.socket, deadline: Deadline, timeout: float | None, limit: int) -> None:
        self._raw = _BoundedReader(sock, deadline, timeout, limit)

    def makefile(self, mode: str) -> io.BufferedReader:
        return io.BufferedReader(self._raw)


class _BoundedReader(io.RawIOBase):
    def __init__(self, sock: socket.socket, deadline: Deadline, timeout: float | None, limit: int) -> None:
        self._sock = sock
        self._deadline = deadline
        self._timeout = timeout
        self._left = limit

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._left <= 0:
            raise AnswerTooLarge("the answer is larger than the bound")
        self._sock.settimeout(self._deadline.timeout(self._timeout))
        view = memoryview(buffer)
        received = self._sock.recv_into(view[: min(len(view), self._left)])
        self._left -= received
        return received
