"""The emulator's fault model: what can go wrong on a call (``Fault``), and which injected fault a call gets.

Kept apart from the emulator (``emulator.py``, the WSGI app that routes, answers and records calls): a fault
says what goes wrong, the emulator and each dialect say how it looks on the wire.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["ActiveFault", "DropConnection", "Fault", "FaultKind", "take_fault"]

FaultKind = Literal["http_500", "hang", "slow", "throttle", "malformed_json", "drop_connection", "latency", "error"]


class DropConnection(Exception):
    """Raised by the emulator to have the server close the connection without answering.

    :class:`EmulatorServer` handles it; under another WSGI server the socket is shut down first when the
    server exposes it (werkzeug, gunicorn), and the exception then surfaces as that server's own error.
    """


@dataclass(frozen=True)
class Fault:
    """Something to go wrong on calls of one action. Build with the class methods.

    ``times``: how many calls it affects, None = every call until :meth:`ProviderEmulator.clear_faults`.
    ``after_processing`` (http_500, malformed_json, drop_connection, hang): the call is carried out first
    (a send is sent, a report recorded) and only the answer is lost or spoiled — the "did it go through?"
    case that makes retries produce duplicates.
    """

    kind: FaultKind
    times: int | None = None
    seconds: float = 0.0
    retry_after: float | None = None
    code: str = ""
    message: str = ""
    status: int | None = None
    after_processing: bool = False

    def __post_init__(self) -> None:
        if self.times is not None and self.times < 1:
            raise ValueError("times must be >= 1, or None for 'until cleared'")
        if self.seconds < 0:
            raise ValueError("seconds must be >= 0")

    @classmethod
    def http_500(cls, *, times: int | None = None, after_processing: bool = False) -> Fault:
        """HTTP 500: Tencent's front end answers a bare HTML page, Alibaba ``InternalError`` JSON; every other
        dialect its own server error (Twilio ``20500``, AWS ``InternalServerException``)."""
        return cls("http_500", times=times, after_processing=after_processing)

    @classmethod
    def hang(cls, seconds: float = 60.0, *, times: int | None = None, after_processing: bool = False) -> Fault:
        """Never answer: wait ``seconds`` (or until :meth:`ProviderEmulator.release_hangs` or server
        shutdown), then close the connection. Clients see their read timeout."""
        return cls("hang", times=times, seconds=seconds, after_processing=after_processing)

    @classmethod
    def slow(cls, seconds: float, *, times: int | None = None) -> Fault:
        """Answer normally, but trickle the body out over ``seconds``: each read makes progress, so only a
        deadline on the whole exchange (not a per-read timeout) cuts it short."""
        return cls("slow", times=times, seconds=seconds)

    @classmethod
    def latency(cls, seconds: float, *, times: int | None = None) -> Fault:
        """Wait ``seconds`` before handling the call, then answer normally."""
        return cls("latency", times=times, seconds=seconds)

    @classmethod
    def throttle(cls, retry_after: float | None = None, *, times: int | None = None) -> Fault:
        """The provider's throttling answer: Tencent ``RequestLimitExceeded`` (HTTP 200 body); Alibaba
        ``Throttling.User`` (cams ``System.LimitControl``), HTTP 400, with ``x-acs-retry-after`` in
        milliseconds when ``retry_after`` (seconds) is given; Twilio 429 ``20429`` with ``Retry-After``; AWS
        ``ThrottlingException``, HTTP 400. Tencent and AWS send no retry-after hint."""
        return cls("throttle", times=times, retry_after=retry_after)

    @classmethod
    def malformed_json(cls, *, times: int | None = None, after_processing: bool = False) -> Fault:
        """HTTP 200, ``application/json``, a truncated JSON body."""
        return cls("malformed_json", times=times, after_processing=after_processing)

    @classmethod
    def drop_connection(cls, *, times: int | None = None, after_processing: bool = False) -> Fault:
        """Close the socket after reading the request, without any answer."""
        return cls("drop_connection", times=times, after_processing=after_processing)

    @classmethod
    def error(cls, code: str, message: str = "", *, status: int | None = None, times: int | None = None) -> Fault:
        """An API error in the provider's shape: Tencent ``Response.Error`` (HTTP 200, or ``status``);
        Alibaba a business error (HTTP 200, ``Code``/``ResponseCode``) for ``isv.``/``isp.`` codes or
        ``status=200``, else a gateway error (HTTP ``status``, default by code, usually 400)."""
        return cls("error", times=times, code=code, message=message or f"Emulated {code}.", status=status)


@dataclass
class ActiveFault:
    """A fault injected and the calls it still affects (None: until cleared)."""

    fault: Fault
    action: str
    provider: str | None
    remaining: int | None


def take_fault(faults: list[ActiveFault], action: str, provider: str) -> Fault | None:
    """The first fault for a call of ``action`` at ``provider``, first come, first served; one whose calls are
    used up leaves ``faults``. The caller holds the emulator's lock."""
    for active in faults:
        if active.action not in ("*", action):
            continue
        if active.provider is not None and active.provider != provider:
            continue
        if active.remaining is not None:
            active.remaining -= 1
            if active.remaining <= 0:
                faults.remove(active)
        return active.fault
    return None
