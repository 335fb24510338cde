"""Text from outside (provider answers, exception strings) made fit for logs, the outbox and the stats endpoint.

One place, so every path redacts alike: our credentials replaced, URL queries dropped (Alibaba signs its
parameters, access key id included, into the query), phone-like digit runs masked but ids kept (a Tencent serial
number such as ``5000:1045710669157053657849499619`` is what an operator needs to find the report), whitespace
folded and the length capped so a provider's HTML error page does not end up in a row.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from .phone import mask_phone

#: Longest text kept; a provider's error page is cut to this.
MAX_TEXT_LENGTH = 300

# Digit runs that could be a phone number (7-15 digits, optional '+'), not parts of longer ids such as
# Tencent serial numbers ("5000:1045710669157053657849499619") or request ids.
_PHONE_LIKE = re.compile(r"(?<![\w:^-])\+?\d{7,15}(?![\w^])")
_URL_QUERY = re.compile(r"\?[^\s'\"<>]+")


def safe_text(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with ``secrets`` replaced, URL queries dropped, phone-like runs masked, length capped."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    text = _URL_QUERY.sub("?...", text)
    text = _PHONE_LIKE.sub(lambda m: mask_phone(m.group()), text)
    text = " ".join(text.split())
    return text if len(text) <= MAX_TEXT_LENGTH else text[: MAX_TEXT_LENGTH - 3] + "..."


def describe_error(exc: BaseException) -> str:
    """An exception as one safe line: its own text for provider errors (already built safe), else the type."""
    message = str(exc)
    from .providers.base import ProviderError  # providers import this module: keep the cycle at call time

    if isinstance(exc, ProviderError):
        return safe_text(message)
    return safe_text(f"{type(exc).__name__}: {message}" if message else type(exc).__name__)
