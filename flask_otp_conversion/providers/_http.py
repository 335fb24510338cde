"""What every provider client shares: ``HTTPSender``, which sends our signed requests through the transport
(``transport.py``), and turning answers and failures into errors.

Deliberately small: signing and response classification are per provider; this module only holds the parts
where the two must behave the same (timeouts, no retries, TLS verification, log hygiene, transport errors).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import httpx

from ..redaction import safe_text
from .base import RetryableError
from .transport import (
    MAX_ANSWER_BYTES,
    AnswerTooLarge,
    Deadline,
    StdlibTransport,
    default_ssl_context,
    environment_proxy,
    request_deadline,
)
from .transport_bounds import START_BY, check_start, start_by

__all__ = [
    "USER_AGENT",
    "HTTPSender",
    "host_header",
    "json_object",
    "retry_after_ms_header",
    "safe_text",
    "transport_error",
]


def _package_version() -> str:
    try:
        return version("flask-otp-conversion")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0+unknown"


USER_AGENT = f"flask-otp-conversion/{_package_version()}"
class HTTPSender:
    """Sends our fully built, signed requests through an httpx transport, one per origin, with an explicit
    timeout, TLS verification on, redirects not followed and no retries (the reporter owns retrying, with
    backoff and a circuit breaker).

    Not ``httpx.Client``: its cookie jar, auth and redirect flow, URL and header merging and event hooks
    serve nothing here (we sign every header ourselves, providers set no cookies, a redirect is an error),
    and they cost more CPU than the request itself. The transport is ``StdlibTransport`` (keep-alive, TLS
    with ``SSL_CERT_FILE`` honoured, an ``http://`` proxy from the environment); a proxy of another scheme
    (``socks5://``, ``https://``) goes through httpx's own ``HTTPTransport``. Neither logs URLs, so
    Alibaba's query (phone numbers, and the access key id under v1) never reaches a log.

    Every request has a total deadline (``request_deadline``: connect + read timeout) and its answer is read
    up to ``max_answer_bytes``. ``StdlibTransport`` enforces both exactly; over another transport the body
    is read in pieces, refused past the bound, and the deadline is checked between pieces (so it may run
    over by one read timeout).

    A request made inside ``starting_by(moment)`` carries it as the ``start_by`` extension: ``StdlibTransport``
    checks it right before the first byte; before another transport, it is checked here (earlier: the time it
    takes to connect is not covered).

    ``transport`` exists so tests can route requests elsewhere (e.g. to a recording server while the signed
    ``Host`` stays the cloud's); production passes nothing.
    """

    def __init__(
        self,
        *,
        timeout: httpx.Timeout,
        transport: httpx.BaseTransport | None = None,
        max_answer_bytes: int = MAX_ANSWER_BYTES,
    ) -> None:
        self._extensions = {"timeout": timeout.as_dict(), "max_answer_bytes": max_answer_bytes}
        self._deadline = request_deadline(timeout.as_dict())
        self._max_answer = max_answer_bytes
        self._fixed = transport
        self._transports: dict[tuple[bytes, bytes, int | None], httpx.BaseTransport] = {}
        self._lock = threading.Lock()

    def _transport_for(self, url: httpx.URL) -> httpx.BaseTransport:
        if self._fixed is not None:
            return self._fixed
        key = (url.raw_scheme, url.raw_host, url.port)
        transport = self._transports.get(key)
        if transport is None:
            with self._lock:
                transport = self._transports.get(key)
                if transport is None:
                    transport = _transport(url)
                    self._transports[key] = transport
        return transport

    def send(self, url: httpx.URL, headers: list[tuple[str, str]], content: bytes = b"") -> httpx.Response:
        """POST ``content`` with exactly ``headers`` (``Host`` included, as signed); the body is read, up to
        the bound and within the deadline."""
        transport = self._transport_for(url)
        # StdlibTransport keeps the deadline itself, exactly; another one is checked between body pieces.
        stdlib = isinstance(transport, StdlibTransport)
        deadline = Deadline(None if stdlib else self._deadline)
        moment = start_by()
        extensions = self._extensions if moment is None else {**self._extensions, START_BY: moment}
        request = httpx.Request("POST", url, headers=headers, content=content, extensions=extensions)
        if not stdlib:
            check_start(moment)
        response = transport.handle_request(request)
        try:
            pieces: list[bytes] = []
            size = 0
            for piece in response.iter_raw():
                size += len(piece)
                if size > self._max_answer:
                    raise AnswerTooLarge(f"the answer is larger than {self._max_answer} bytes")
                pieces.append(piece)
                try:
                    deadline.timeout(None)
                except TimeoutError as exc:
                    raise httpx.ReadTimeout(str(exc)) from None
        finally:
            response.close()
        bounded = httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=httpx.ByteStream(b"".join(pieces)),
            request=request,
            extensions=response.extensions,
        )
        bounded.read()
        return bounded

    def close(self) -> None:
        with self._lock:
            transports = [*self._transports.values(), *([self._fixed] if self._fixed is not None else [])]
            self._transports.clear()
        for transport in transports:
            transport.close()


def _transport(url: httpx.URL) -> httpx.BaseTransport:
    proxy = environment_proxy(url)
    if proxy is not None and not proxy.startswith("http://"):
        return httpx.HTTPTransport(retries=0, verify=default_ssl_context(), proxy=proxy)
    return StdlibTransport(ssl_context=default_ssl_context(), proxy=proxy)


def host_header(url: httpx.URL) -> str:
    """The ``Host`` we send and sign: ``host[:port]``, the port only when not the scheme's default."""
    return url.netloc.decode("ascii")


# ---- responses and failures ----------------------------------------------------------------------------


def json_object(response: httpx.Response) -> dict[str, Any] | None:
    """The body as a JSON object, or None when it is not one (HTML error pages, XML, truncated bodies)."""
    try:
        data = json.loads(response.content)
    except ValueError:  # JSONDecodeError and UnicodeDecodeError are both ValueErrors
        return None
    return data if isinstance(data, dict) else None


def retry_after_ms_header(response: httpx.Response) -> float | None:
    """Alibaba's ``x-acs-retry-after`` (milliseconds, as the SDK uses it) in seconds; None if absent/bad."""
    raw = response.headers.get("x-acs-retry-after")
    if raw is None:
        return None
    try:
        millis = int(raw.strip())
    except ValueError:
        return None
    return millis / 1000.0 if millis > 0 else None


def transport_error(exc: httpx.HTTPError, *, provider: str, action: str, secrets: Iterable[str] = ()) -> RetryableError:
    """A request that got no HTTP answer. Always retryable: nothing says the provider saw it.

    Any URL query is cut from the exception text (Alibaba's parameters travel there).
    """
    if isinstance(exc, httpx.TimeoutException):
        code = "Timeout"
    elif isinstance(exc, AnswerTooLarge):
        code = "ResponseTooLarge"
    else:
        code = "ClientNetworkError"
    detail = safe_text(str(exc), secrets)
    message = f"{provider} {action}: {type(exc).__name__}" + (f": {detail}" if detail else "")
    return RetryableError(message, code=code)
