"""What both provider clients share: the httpx client they are built on, and turning failures into errors.

Deliberately small: signing and response classification are per provider; this module only holds the parts
where the two must behave the same (timeouts, no retries, TLS verification, log hygiene, transport errors).
"""

from __future__ import annotations

import functools
import json
import ssl
import threading
import urllib.request
from collections.abc import Iterable
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import httpx

from ..redaction import safe_text
from .base import RetryableError

__all__ = [
    "USER_AGENT",
    "HTTPSender",
    "environment_proxy",
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
# ---- sending ------------------------------------------------------------------------------------------


def environment_proxy(url: httpx.URL) -> str | None:
    """The proxy the environment names for ``url`` (``HTTPS_PROXY``, ``ALL_PROXY``... minus ``NO_PROXY``),
    as ``httpx.Client(trust_env=True)`` would pick it."""
    proxies = urllib.request.getproxies()
    if not proxies or urllib.request.proxy_bypass(url.host):
        return None
    return proxies.get(url.scheme) or proxies.get("all")


_ssl_lock = threading.Lock()


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    return httpx.create_ssl_context()


def default_ssl_context() -> ssl.SSLContext:
    """One verifying TLS context (CA bundle, ``SSL_CERT_FILE`` honoured) for every transport in the process:
    building one costs ~60 ms of CPU, and each reporter worker thread has transports of its own. The lock
    keeps 32 workers starting together from each building one (``functools.cache`` alone does not)."""
    with _ssl_lock:
        return _ssl_context()


class HTTPSender:
    """Sends our fully built, signed requests through httpx's transport layer, one keep-alive transport per
    origin, with an explicit timeout, TLS verification on, redirects not followed and no retries (the
    reporter owns retrying, with backoff and a circuit breaker).

    Not ``httpx.Client``: its cookie jar, auth and redirect flow, URL and header merging and event hooks
    serve nothing here (we sign every header ourselves, providers set no cookies, a redirect is an error) and
    cost ~0.3 ms of CPU a request, a third of the client's cost and the bound on one process's drain rate.
    What the transport keeps is what matters: the connection pool, TLS (``SSL_CERT_FILE`` honoured) and the
    proxy from the environment. The transport logs no URLs, so Alibaba's query (phone numbers, and the access
    key id under v1) never reaches httpx's logs.

    ``transport`` exists so tests can route requests elsewhere (e.g. to a recording server while the signed
    ``Host`` stays the cloud's); production passes nothing.
    """

    def __init__(self, *, timeout: httpx.Timeout, transport: httpx.BaseTransport | None = None) -> None:
        self._extensions = {"timeout": timeout.as_dict()}
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
                    transport = httpx.HTTPTransport(
                        retries=0, verify=default_ssl_context(), proxy=environment_proxy(url)
                    )
                    self._transports[key] = transport
        return transport

    def send(self, url: httpx.URL, headers: list[tuple[str, str]], content: bytes = b"") -> httpx.Response:
        """POST ``content`` with exactly ``headers`` (``Host`` included, as signed); the body is read."""
        request = httpx.Request("POST", url, headers=headers, content=content, extensions=self._extensions)
        response = self._transport_for(url).handle_request(request)
        try:
            response.read()
        finally:
            response.close()
        return response

    def close(self) -> None:
        with self._lock:
            transports = [*self._transports.values(), *([self._fixed] if self._fixed is not None else [])]
            self._transports.clear()
        for transport in transports:
            transport.close()


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


def transport_error(
    exc: httpx.HTTPError, *, provider: str, action: str, secrets: Iterable[str] = ()
) -> RetryableError:
    """A request that got no HTTP answer. Always retryable: nothing says the provider saw it.

    Any URL query is cut from the exception text (Alibaba's parameters travel there).
    """
    code = "Timeout" if isinstance(exc, httpx.TimeoutException) else "ClientNetworkError"
    detail = safe_text(str(exc), secrets)
    message = f"{provider} {action}: {type(exc).__name__}" + (f": {detail}" if detail else "")
    return RetryableError(message, code=code)
