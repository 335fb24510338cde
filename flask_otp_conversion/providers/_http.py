"""What both provider clients share: the httpx client they are built on, and turning failures into errors.

Deliberately small: signing and response classification are per provider; this module only holds the parts
where the two must behave the same (timeouts, no retries, TLS verification, log hygiene, transport errors).
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Iterable
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import httpx

from ..phone import mask_phone
from .base import RetryableError

__all__ = [
    "MAX_MESSAGE_LENGTH",
    "USER_AGENT",
    "json_object",
    "new_http_client",
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
MAX_MESSAGE_LENGTH = 300

# Digit runs that could be a phone number (7-15 digits, optional '+'), not parts of longer ids such as
# Tencent serial numbers ("5000:1045710669157053657849499619") or request ids.
_PHONE_LIKE = re.compile(r"(?<![\w:^-])\+?\d{7,15}(?![\w^])")


def safe_text(text: str, secrets: Iterable[str] = ()) -> str:
    """Text from outside (provider messages, exception strings) made fit for an error message or log line.

    Our credentials are replaced (a provider may echo the key id back), phone-like digit runs are masked,
    and the length is capped so a provider's HTML error page does not end up in the outbox.
    """
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    text = _PHONE_LIKE.sub(lambda m: mask_phone(m.group()), text)
    text = " ".join(text.split())
    return text if len(text) <= MAX_MESSAGE_LENGTH else text[: MAX_MESSAGE_LENGTH - 3] + "..."


# ---- httpx client --------------------------------------------------------------------------------------

_redacted_origins: set[tuple[bytes, str, int | None]] = set()
_filter_lock = threading.Lock()
_filter_installed = False


class _DropQueryOfProviderRequests(logging.Filter):
    """httpx logs ``HTTP Request: POST <url>`` at INFO, and Alibaba's parameters (phone numbers, the access
    key id and signature under v1) travel in the URL query. For the origins our clients talk to, the logged
    URL loses its query; every other request the application makes through httpx is left alone."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 2 and isinstance(args[1], httpx.URL):
            url = args[1]
            if url.query and (url.raw_scheme, url.host, url.port) in _redacted_origins:
                record.args = (args[0], url.copy_with(query=b"<redacted>"), *args[2:])
        return True


def _register_origin(url: httpx.URL) -> None:
    global _filter_installed
    with _filter_lock:
        _redacted_origins.add((url.raw_scheme, url.host, url.port))
        if not _filter_installed:
            logging.getLogger("httpx").addFilter(_DropQueryOfProviderRequests())
            _filter_installed = True


def new_http_client(
    *,
    timeout: httpx.Timeout,
    origins: Iterable[str],
    transport: httpx.BaseTransport | None = None,
) -> httpx.Client:
    """One keep-alive client per provider instance: explicit timeout, TLS verified, redirects not
    followed, and no transport retries (the reporter owns retrying, with backoff and a circuit breaker).

    ``transport`` exists so tests can route requests elsewhere (e.g. to a recording server while the signed
    ``Host`` stays the cloud's); production passes nothing.
    """
    for origin in origins:
        _register_origin(httpx.URL(origin))
    return httpx.Client(
        timeout=timeout,
        verify=True,
        follow_redirects=False,
        transport=transport if transport is not None else httpx.HTTPTransport(retries=0, verify=True),
    )


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


_URL_QUERY = re.compile(r"\?\S*")


def transport_error(
    exc: httpx.HTTPError, *, provider: str, action: str, secrets: Iterable[str] = ()
) -> RetryableError:
    """A request that got no HTTP answer. Always retryable: nothing says the provider saw it.

    Any URL query is cut from the exception text (Alibaba's parameters travel there).
    """
    code = "Timeout" if isinstance(exc, httpx.TimeoutException) else "ClientNetworkError"
    detail = safe_text(_URL_QUERY.sub("?...", str(exc)), secrets)
    message = f"{provider} {action}: {type(exc).__name__}" + (f": {detail}" if detail else "")
    return RetryableError(message, code=code)
