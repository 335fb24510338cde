"""What a provider client builds on, public for third-party providers: the built-in clients (Vonage and Plivo
among them) use these and nothing else of the package's internals.

- :class:`HTTPSender`: sends a fully built request through a keep-alive transport with the timeout, a total
  deadline, a bounded answer, TLS verification and no redirects or retries (the reporter retries).
- :func:`transport_error`: a request that got no answer, as the ``RetryableError`` to raise.
- :class:`NotStarted`: a report held back because it could not start in its rate-limit slot: let it through.
- :func:`json_object`: the answer body as a JSON object, or None (HTML pages, truncated bodies).
- :func:`host_header`: the ``Host`` to send (and sign) for a URL.
- :func:`safe_text`: text from outside (an error message) with secrets replaced and phone numbers masked.
- :func:`basic_authorization`: an RFC 7617 ``Authorization: Basic`` value.
- :data:`USER_AGENT`: this package's ``User-Agent``.
"""

from __future__ import annotations

import base64

from ..redaction import safe_text
from ._http import USER_AGENT, HTTPSender, host_header, json_object, transport_error
from .transport_bounds import NotStarted

__all__ = [
    "USER_AGENT",
    "HTTPSender",
    "NotStarted",
    "basic_authorization",
    "host_header",
    "json_object",
    "safe_text",
    "transport_error",
]


def basic_authorization(user: str, password: str) -> str:
    """RFC 7617: ``Basic`` and base64 of ``user:password`` in UTF-8, with padding."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
