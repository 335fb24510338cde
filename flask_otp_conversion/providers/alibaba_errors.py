"""What an Alibaba answer means: the body of an OK reply, or the ``ProviderError`` its code or status says.

The classification follows PROVIDERS.md 2.9. It is kept apart from the client (``alibaba.py``, which signs,
sends and parses the replies) because it is a table of Alibaba's codes against our error kinds, tested on its
own, and the one place to change when Alibaba documents a code.
"""

from __future__ import annotations

from typing import Any, Literal

import httpx

from ._http import json_object, retry_after_ms_header, safe_text
from .base import AuthError, PermanentError, ProviderError, RetryableError, ThrottledError

__all__ = ["QUOTA_RETRY_AFTER", "Operation", "checked_body", "classify_error"]

#: How long a conversion report refused on a quota code waits before it is tried again (seconds).
QUOTA_RETRY_AFTER = 3600.0
#: Which call an answer is for: a quota code means "tell the user" for a send, "wait" for a report.
Operation = Literal["send", "report", "other"]

_THROTTLE_CODES = frozenset({"Throttling", "System.LimitControl"})
_RETRYABLE_CODES = frozenset(
    {
        "ServiceUnavailable",
        "InternalError",
        "isp.SYSTEM_ERROR",
        # A retry carries a fresh nonce and timestamp, which is the fix for these.
        "SignatureNonceUsed",
        "InvalidTimeStamp.Expired",
        "InvalidTimeStamp.Format",
    }
)
_AUTH_CODES = frozenset(
    {
        "SignatureDoesNotMatch",
        "IncompleteSignature",
        "isp.RAM_PERMISSION_DENY",
        "Ram.PermissionDeny",
        "isv.ACCOUNT_NOT_EXISTS",
        "isv.ACCOUNT_ABNORMAL",
        "isv.PRODUCT_UN_SUBSCRIPT",
        "isv.PRODUCT_UNSUBSCRIBE",
        "Product.Unsubscript",
        "isv.DENY_IP_RANGE",
        "Unknown.ResourceOwnerId",
    }
)
_AUTH_PREFIXES = ("InvalidAccessKeyId", "InvalidSecurityToken", "Forbidden")
_QUOTA_CODES = frozenset(
    {
        "isv.BUSINESS_LIMIT_CONTROL",
        "isv.DAY_LIMIT_CONTROL",
        "isv.MONTH_LIMIT_CONTROL",
        "isv.AMOUNT_NOT_ENOUGH",
        "isv.OUT_OF_SERVICE",
    }
)


def classify_error(
    code: str,
    message: str,
    *,
    action: str,
    operation: Operation,
    request_id: str = "",
    status: int | None = None,
    retry_after: float | None = None,
) -> ProviderError:
    """The ``ProviderError`` for an Alibaba answer that is not OK.

    - an ``x-acs-retry-after`` header (``retry_after``, seconds), ``Throttling*``, cams
      ``System.LimitControl`` or HTTP 429: ``ThrottledError`` (the SDK does the same with the header).
    - ``ServiceUnavailable``, ``InternalError``, ``isp.SYSTEM_ERROR``, nonce reuse and timestamp errors (a
      retry is signed afresh), and any unknown code on a 5xx: ``RetryableError``.
    - bad keys, signature mismatch, RAM denials, unsubscribed product, account problems: ``AuthError``.
    - quota / business flow control (``isv.BUSINESS_LIMIT_CONTROL`` ...): ``PermanentError`` for a send (tell
      the user); for a conversion report a ``RetryableError`` with a one-hour ``retry_after`` — the limits
      reset with time, and a report waiting is better than a report lost.
    - all else (``MissingParameter``, ``InvalidParameter``, ``isv.*`` request errors, unknown codes):
      ``PermanentError``.
    """
    text = f"alibaba {action}: {message}" if message else f"alibaba {action} failed"
    kwargs: dict[str, Any] = {"code": code, "request_id": request_id, "status": status}
    if retry_after is not None:
        return ThrottledError(text, retry_after=retry_after, **kwargs)
    if code in _THROTTLE_CODES or code.startswith("Throttling.") or (not code and status == 429):
        return ThrottledError(text, **kwargs)
    if code in _RETRYABLE_CODES:
        return RetryableError(text, **kwargs)
    if code in _AUTH_CODES or code.startswith(_AUTH_PREFIXES):
        return AuthError(text, **kwargs)
    if code in _QUOTA_CODES:
        if operation == "report":
            return RetryableError(text, retry_after=QUOTA_RETRY_AFTER, **kwargs)
        return PermanentError(text, **kwargs)
    if status is not None and status >= 500:
        return RetryableError(text, **kwargs)
    return PermanentError(text, **kwargs)


def checked_body(
    action: str,
    response: httpx.Response,
    code_field: Literal["Code", "ResponseCode"],
    operation: Operation,
    secrets: tuple[str, ...],
) -> dict[str, Any]:
    """The body when it says OK; otherwise the classified error, gateway (4xx/5xx) or business (200).

    Only Alibaba's own codes (``Code`` in a JSON error body, the reply's code field on a 2xx) are
    classified by code and can be permanent. A redirect (never followed), or a 4xx/5xx without a code (a
    proxy's or gateway's page, HTML, a truncated body) says nothing about the request: retryable, so it
    counts towards the breaker instead of dead-lettering the backlog. ``secrets`` are masked out of messages.
    """
    status = response.status_code
    data = json_object(response)
    if 300 <= status < 400:
        raise RetryableError(f"alibaba {action}: a redirect (HTTP {status}), not followed", status=status)
    if not 200 <= status < 300:
        body = data or {}
        raw_code = body.get("Code")
        code = raw_code if isinstance(raw_code, str) else ""
        message = safe_text(str(body.get("Message", "")), secrets)
        request_id = str(body.get("RequestId", ""))
        retry_after = retry_after_ms_header(response)
        if not code and retry_after is None and status != 429:
            raise RetryableError(f"alibaba {action}: HTTP {status} without an error code", status=status)
        raise classify_error(
            code,
            message,
            action=action,
            operation=operation,
            request_id=request_id,
            status=status,
            retry_after=retry_after,
        )
    if data is None or not isinstance(data.get(code_field), str) or not data[code_field]:
        raise RetryableError(
            f"alibaba {action}: HTTP {status} but the body is not a JSON API reply",
            code="MalformedResponse",
            status=status,
        )
    code = str(data[code_field])
    if code.upper() != "OK":
        message_field = "ResponseDescription" if code_field == "ResponseCode" else "Message"
        raise classify_error(
            code,
            safe_text(str(data.get(message_field, "")), secrets),
            action=action,
            operation=operation,
            request_id=str(data.get("RequestId", "")),
            status=status,
        )
    return data
