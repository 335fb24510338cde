"""Plivo client: send with ``trackable: true`` through the Message API, report through the conversion
feedback API, on httpx without the SDK (reference PROVIDERS-MORE.md section 4).

Both are JSON POSTs under ``/v1/Account/{auth_id}/`` with HTTP Basic ``auth_id:auth_token``; the auth id in
the path is the account the credentials belong to. Plivo answers with HTTP statuses and, on errors, a body
``{"api_id", "error"}``: 400/404/405/409/422 are refusals of the request, 401/403 credentials or permission,
429 the account's API rate (300 requests per 5 s), 5xx transient.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import ValidationError

from .base import (
    DEFAULT_TIMEOUT,
    AuthError,
    ConversionReport,
    PermanentError,
    Provider,
    ProviderError,
    RetryableError,
    SentMessage,
    ThrottledError,
)
from .plivo_models import (
    ConversionRequest,
    ConversionResponse,
    MessageRequest,
    MessageResponse,
    PlivoError,
    iso_timestamp,
)
from .settings import PlivoSettings
from .toolkit import (
    USER_AGENT,
    HTTPSender,
    basic_authorization,
    host_header,
    json_object,
    safe_text,
    transport_error,
)

__all__ = ["CONVERSION_ACTION", "SEND_ACTION", "PlivoProvider", "classify_error"]

logger = logging.getLogger(__name__)

SEND_ACTION = "Message"
CONVERSION_ACTION = "Conversion"
JSON = "application/json"


def _retry_after(response: httpx.Response) -> float | None:
    raw = response.headers.get("retry-after", "").strip()
    if not raw.isdigit():
        return None
    return float(raw) if int(raw) > 0 else None


def classify_error(
    response: httpx.Response, *, action: str, secrets: tuple[str, ...] = ()
) -> ProviderError | None:
    """None for a 2xx whose body is empty or a JSON object, else the ``ProviderError``.

    - 401 / 403 (bad credentials; a send outside the account's geo permissions): ``AuthError``.
    - 429: ``ThrottledError`` (with a ``Retry-After`` if one came); 5xx: ``RetryableError``.
    - another 4xx with Plivo's error body (``{"api_id", "error"}``: 400 invalid parameter, 404 unknown message,
      405/409/422): ``PermanentError``. Without it (a proxy's page, HTML), a redirect, or a 2xx whose body is
      not JSON: ``RetryableError``, as nothing says Plivo refused the request.
    """
    status = response.status_code
    body = json_object(response)
    error: PlivoError | None = None
    if body is not None and "error" in body:
        try:
            error = PlivoError.model_validate(body)
        except ValidationError:
            error = None
    if 200 <= status < 300:
        if response.content.strip() and body is None:
            return RetryableError(
                f"plivo {action}: HTTP {status} but the body is not JSON", code="MalformedResponse", status=status
            )
        return None
    if 300 <= status < 400:
        return RetryableError(f"plivo {action}: a redirect (HTTP {status}), not followed", status=status)
    text = error.error if error is not None and isinstance(error.error, str) else ""
    if error is not None and not text:
        text = str(error.error)
    message = f"plivo {action}: " + (safe_text(text, secrets) or f"HTTP {status}")
    kwargs: dict[str, Any] = {
        "code": str(status),
        "request_id": error.api_id if error is not None else "",
        "status": status,
    }
    if status in (401, 403):
        return AuthError(message, **kwargs)
    if status == 429:
        return ThrottledError(message, retry_after=_retry_after(response), **kwargs)
    if status >= 500 or error is None:
        return RetryableError(message, **kwargs)
    return PermanentError(message, **kwargs)


class PlivoProvider(Provider):
    """Plivo Message and conversion feedback APIs over a keep-alive ``HTTPSender``; never retries.

    ``clock`` (UNIX seconds) and ``transport`` are seams for tests; production uses real time and sockets.
    """

    name = "plivo"
    settings_model = PlivoSettings
    reports_unverified = True  # status NOT_CONVERTED

    def __init__(
        self,
        settings: PlivoSettings,
        *,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        clock: Callable[[], float] = time.time,
        transport: httpx.BaseTransport | None = None,
        user_agent: str = USER_AGENT,
    ) -> None:
        self._settings = settings
        self._base = settings.endpoint.rstrip("/")
        self._clock = clock
        self._user_agent = user_agent
        self._http = HTTPSender(timeout=timeout, transport=transport)
        self.report_deadline = settings.report_deadline  # undocumented by the provider: None unless configured
        self._authorization = basic_authorization(settings.auth_id, settings.auth_token.get_secret_value())
        self._rate_limits: Mapping[str, float] = MappingProxyType(
            {SEND_ACTION: settings.message_rate_limit, CONVERSION_ACTION: settings.conversion_rate_limit}
        )

    def __repr__(self) -> str:
        return f"<PlivoProvider auth_id={self._settings.auth_id!r} endpoint={self._base!r}>"

    @property
    def rate_limits(self) -> Mapping[str, float]:
        return self._rate_limits

    @property
    def account(self) -> str:
        # The auth id: in every URL path, an identifier rather than the token.
        return self._settings.auth_id

    @property
    def report_action(self) -> str:
        return CONVERSION_ACTION

    def close(self) -> None:
        self._http.close()

    # ---- the Provider interface ------------------------------------------------------------------------

    def send_otp(self, phone: str, code: str) -> SentMessage:
        """Send ``text_template`` with the code, ``trackable`` on; the id is the ``message_uuid``."""
        settings = self._settings
        if not settings.sender and not settings.powerpack_uuid:
            raise PermanentError(
                "plivo sender or powerpack_uuid must be configured to send", code="ClientConfiguration"
            )
        answer = self.send_message(phone, settings.text_template.format(code=code))
        return SentMessage(message_id=answer.message_uuid[0], phone=phone, provider=self.name)

    def report_conversion(self, report: ConversionReport) -> None:
        """``CONVERTED`` (or ``NOT_CONVERTED`` for the negative outcome) at the verification time, ISO 8601."""
        moment = min(report.verified_at, self._clock())  # never in the future
        self.conversion(
            report.message_id, status="CONVERTED" if report.converted else "NOT_CONVERTED", at=moment
        )

    def statistics(self, begin: datetime, end: datetime) -> None:
        """Plivo's conversion figures are in its console only."""
        return None

    # ---- operations ------------------------------------------------------------------------------------

    def send_message(self, phone: str, text: str) -> MessageResponse:
        """``POST /v1/Account/{auth_id}/Message/``. Not idempotent: a retry after a timeout may send twice."""
        try:
            request = MessageRequest(
                dst=phone.removeprefix("+"),
                text=text,
                src=self._settings.sender.removeprefix("+") if self._settings.sender else None,
                powerpack_uuid=self._settings.powerpack_uuid,
            )
        except ValidationError:
            # Refused here rather than by Plivo (a 400): a number it can never take is the caller's error.
            raise PermanentError(
                f"plivo {SEND_ACTION}: the number must be E.164 (7-15 digits)", code="InvalidParameter"
            ) from None
        url = httpx.URL(f"{self._base}/v1/Account/{self._settings.auth_id}/Message/")
        response = self._post(url, request.body(), SEND_ACTION)
        try:
            return MessageResponse.model_validate(json_object(response))
        except ValidationError:
            raise RetryableError(
                f"plivo {SEND_ACTION}: HTTP {response.status_code} without a message_uuid",
                code="MalformedResponse",
                status=response.status_code,
            ) from None

    def conversion(
        self, message_uuid: str, *, status: str = "CONVERTED", at: float | None = None
    ) -> ConversionResponse:
        """The conversion feedback for ``message_uuid`` at ``at`` (UNIX seconds; now by default)."""
        if not message_uuid:
            raise PermanentError(f"plivo {CONVERSION_ACTION}: no message uuid to report", code="InvalidParameter")
        request = ConversionRequest.model_validate(
            {"status": status, "timestamp": iso_timestamp(self._clock() if at is None else at)}
        )
        path = self._settings.conversion_path.format(
            auth_id=self._settings.auth_id, message_uuid=quote(message_uuid, safe="")
        )
        response = self._post(httpx.URL(self._base + path), request.body(), CONVERSION_ACTION)
        return ConversionResponse.model_validate(json_object(response) or {})

    # ---- the wire --------------------------------------------------------------------------------------

    def _secrets(self) -> tuple[str, ...]:
        return (self._settings.auth_token.get_secret_value(),)

    def _post(self, url: httpx.URL, body: bytes, action: str) -> httpx.Response:
        headers = [
            ("Host", host_header(url)),
            ("Content-Type", JSON),
            ("Accept", JSON),
            ("User-Agent", self._user_agent),
            ("Authorization", self._authorization),
        ]
        try:
            response = self._http.send(url, headers, body)
        except httpx.TransportError as exc:
            raise transport_error(exc, provider="plivo", action=action, secrets=self._secrets()) from None
        error = classify_error(response, action=action, secrets=self._secrets())
        if error is not None:
            raise error
        logger.debug("plivo %s answered HTTP %s", action, response.status_code)
        return response
