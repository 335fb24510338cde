"""Vonage client: the SMS API (``rest.nexmo.com``) to send, the Conversion API (``api.nexmo.com``) to report,
on httpx without the SDK (reference PROVIDERS-MORE.md section 3).

Both calls are form-encoded POSTs. They authenticate with HTTP Basic (``api_key:api_secret``, the SDK's
way), with the key and secret as form parameters, or signed (``api_key`` + ``sig`` computed with the
signature secret over exactly the parameters sent: the SDK's own signed send signs fields it then drops).

The two APIs fail differently. The SMS API answers HTTP 200 whatever happened, the outcome in
``messages[i].status`` (``1`` is throttling, ``4``/``14`` bad credentials or signature). The Conversion API
answers 200 with an empty body on success and HTTP statuses otherwise: 401 credentials, 402 the feature is
not enabled on the account (Vonage support switches it on), 420/423 bad parameters, 429, 5xx.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Any

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
from .settings import VonageSettings
from .toolkit import (
    USER_AGENT,
    HTTPSender,
    basic_authorization,
    host_header,
    json_object,
    safe_text,
    transport_error,
)
from .vonage_models import (
    ConversionRequest,
    SmsRequest,
    SmsResponse,
    VonageProblem,
    conversion_time,
    sign_params,
)

__all__ = ["CONVERSION_ACTION", "SEND_ACTION", "VonageProvider", "classify_conversion", "classify_sms_status"]

logger = logging.getLogger(__name__)

SEND_ACTION = "SendSms"
CONVERSION_ACTION = "SmsConversion"
FORM = "application/x-www-form-urlencoded"

# ---- error classification (reference 3.4 and 3.6) ------------------------------------------------------

_SMS_THROTTLED = frozenset({"1"})
_SMS_RETRYABLE = frozenset({"5", "10"})
#: 4 bad credentials, 14 bad signature, 32 signature and secret both sent; 8 and 11 are the account's state
#: (barred, HTTP not enabled): nothing a retry or another request changes, so stop and alert.
_SMS_AUTH = frozenset({"4", "8", "11", "14", "32"})
_WAIT = re.compile(r"wait\s*\[\s*(\d+)\s*\]")


def _throttle_wait(text: str) -> float | None:
    """The wait in "Throughput Rate Exceeded - please wait [ 978 ] and retry", in seconds. Its unit is not
    documented; read as milliseconds, the shorter reading: a retry too soon is throttled again and backs off,
    a wait read a thousand times too long holds every report for minutes."""
    found = _WAIT.search(text)
    if found is None:
        return None
    millis = int(found.group(1))
    return millis / 1000.0 if millis > 0 else None


def classify_sms_status(status: str, text: str, *, request_id: str = "") -> ProviderError:
    """The ``ProviderError`` for an SMS API message status other than ``"0"`` (an HTTP 200 answer)."""
    message = f"vonage {SEND_ACTION}: {text}" if text else f"vonage {SEND_ACTION} failed"
    kwargs: dict[str, Any] = {"code": status, "request_id": request_id, "status": 200}
    if status in _SMS_THROTTLED:
        return ThrottledError(message, retry_after=_throttle_wait(text), **kwargs)
    if status in _SMS_RETRYABLE:
        return RetryableError(message, **kwargs)
    if status in _SMS_AUTH:
        return AuthError(message, **kwargs)
    return PermanentError(message, **kwargs)


def _retry_after(response: httpx.Response) -> float | None:
    """A ``Retry-After`` in seconds (the HTTP form; Vonage documents none for this API), None if absent."""
    raw = response.headers.get("retry-after", "").strip()
    if not raw.isdigit():
        return None
    return float(raw) if int(raw) > 0 else None


def classify_conversion(response: httpx.Response, secrets: tuple[str, ...] = ()) -> ProviderError | None:
    """None for an accepted conversion (2xx, empty or JSON body), else the ``ProviderError``.

    - 401 / 403: ``AuthError``; 402 (Conversion API not enabled on the account): ``AuthError`` too, as
      nothing changes until Vonage support does, and the rows should wait for it.
    - 429: ``ThrottledError`` (with a ``Retry-After`` if one came); 5xx: ``RetryableError``.
    - any other 4xx with Vonage's own error body (RFC 7807, ``type`` an ``api-errors`` URL; 420/423 "Invalid
      parameters"): ``PermanentError``. A 4xx without one (a proxy's page), a redirect, or a 2xx whose body is
      not JSON (an HTML login page) says nothing of the report: ``RetryableError``.
    """
    status = response.status_code
    body = json_object(response)
    problem: VonageProblem | None = None
    if body is not None:
        try:
            problem = VonageProblem.model_validate(body)
        except ValidationError:
            problem = None
    if problem is not None and "api-errors" not in problem.type:
        problem = None
    title = safe_text(problem.title, secrets) if problem is not None else ""
    code = problem.type.rsplit("#", 1)[-1] if problem is not None else ""
    request_id = (problem.instance or "") if problem is not None else ""
    message = f"vonage {CONVERSION_ACTION}: " + (title or f"HTTP {status}")
    kwargs: dict[str, Any] = {"code": code or str(status), "request_id": request_id, "status": status}
    if 200 <= status < 300:
        if response.content.strip() and body is None:
            return RetryableError(
                f"vonage {CONVERSION_ACTION}: HTTP {status} but the body is not JSON",
                code="MalformedResponse",
                status=status,
            )
        return None
    if 300 <= status < 400:
        return RetryableError(f"vonage {CONVERSION_ACTION}: a redirect (HTTP {status}), not followed", status=status)
    if status in (401, 402, 403):
        return AuthError(message, **kwargs)
    if status == 429:
        return ThrottledError(message, retry_after=_retry_after(response), **kwargs)
    if status >= 500 or problem is None:
        return RetryableError(message, **kwargs)
    return PermanentError(message, **kwargs)


class VonageProvider(Provider):
    """Vonage SMS and Conversion APIs over a keep-alive ``HTTPSender``; never retries.

    ``clock`` (UNIX seconds) and ``transport`` are seams for tests that pin the signature timestamp or route
    the connection elsewhere; production uses real time and plain sockets.
    """

    name = "vonage"
    settings_model = VonageSettings
    reports_unverified = True  # delivered=false

    def __init__(
        self,
        settings: VonageSettings,
        *,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        clock: Callable[[], float] = time.time,
        transport: httpx.BaseTransport | None = None,
        user_agent: str = USER_AGENT,
    ) -> None:
        self._settings = settings
        self._sms_url = httpx.URL(settings.sms_endpoint.rstrip("/") + "/sms/json")
        self._conversion_url = httpx.URL(settings.conversion_endpoint.rstrip("/") + "/conversions/sms")
        self._clock = clock
        self._user_agent = user_agent
        self._http = HTTPSender(timeout=timeout, transport=transport)
        self.report_deadline = settings.report_deadline  # undocumented by the provider: None unless configured
        self._rate_limits: Mapping[str, float] = MappingProxyType(
            {SEND_ACTION: settings.sms_rate_limit, CONVERSION_ACTION: settings.conversion_rate_limit}
        )

    def __repr__(self) -> str:
        return f"<VonageProvider api_key={self._settings.api_key!r} auth={self._settings.auth!r}>"

    @property
    def rate_limits(self) -> Mapping[str, float]:
        return self._rate_limits

    @property
    def account(self) -> str:
        # The API key: an identifier (sent in clear in signed and body-credential requests), not the secret.
        return self._settings.api_key

    @property
    def report_action(self) -> str:
        return CONVERSION_ACTION

    def close(self) -> None:
        self._http.close()

    # ---- the Provider interface ------------------------------------------------------------------------

    def send_otp(self, phone: str, code: str) -> SentMessage:
        """Send ``text_template`` with the code from ``sender``; the id is the first part's ``message-id``."""
        sender = self._settings.sender
        if not sender:
            raise PermanentError("vonage sender must be configured to send", code="ClientConfiguration")
        answer = self.send_sms(phone, sender, self._settings.text_template.format(code=code))
        message_id = answer.messages[0].message_id
        if not message_id:
            raise RetryableError("vonage send: status 0 without a message-id", code="MalformedResponse")
        return SentMessage(message_id=message_id, phone=phone, provider=self.name)

    def report_conversion(self, report: ConversionReport) -> None:
        """``delivered=true`` (or ``false`` for the negative outcome) with the time in Vonage's UTC format."""
        moment = min(report.verified_at, self._clock())  # never in the future
        self.conversion(
            report.message_id,
            delivered=report.converted,
            timestamp=conversion_time(moment) if self._settings.conversion_timestamp else None,
        )

    def statistics(self, begin: datetime, end: datetime) -> None:
        """Vonage offers no conversion figures through these APIs."""
        return None

    # ---- operations ------------------------------------------------------------------------------------

    def send_sms(self, phone: str, sender: str, text: str, *, client_ref: str | None = None) -> SmsResponse:
        """``POST /sms/json``. Not idempotent: a retry after a timeout may send twice."""
        try:
            request = SmsRequest(
                to=phone.removeprefix("+"),
                from_=sender,
                text=text,
                type=None if text.isascii() else "unicode",
                client_ref=client_ref,
            )
        except ValidationError:
            # Refused here rather than by Vonage (status 3): a number it can never take is the caller's error.
            raise PermanentError(
                f"vonage {SEND_ACTION}: the number must be E.164 (7-15 digits)", code="InvalidParameter"
            ) from None
        response = self._post(self._sms_url, request.form_params(), SEND_ACTION, unix_timestamp=True)
        return self._sms_answer(response)

    def conversion(self, message_id: str, *, delivered: bool = True, timestamp: str | None = None) -> None:
        """``POST /conversions/sms``. Under signed requests the conversion's own ``timestamp`` takes the
        parameter name the signature scheme uses, so a UNIX one is added only when there is none."""
        if not message_id:
            raise PermanentError(f"vonage {CONVERSION_ACTION}: no message-id to report", code="InvalidParameter")
        request = ConversionRequest(message_id=message_id, delivered=delivered, timestamp=timestamp)
        response = self._post(
            self._conversion_url, request.form_params(), CONVERSION_ACTION, unix_timestamp=timestamp is None
        )
        error = classify_conversion(response, self._secrets())
        if error is not None:
            raise error
        logger.debug("vonage %s answered HTTP %s", CONVERSION_ACTION, response.status_code)

    # ---- the wire --------------------------------------------------------------------------------------

    def _secrets(self) -> tuple[str, ...]:
        return tuple(
            s.get_secret_value()
            for s in (self._settings.api_secret, self._settings.signature_secret)
            if s is not None
        )

    def authenticated(self, params: Mapping[str, str], *, unix_timestamp: bool) -> tuple[dict[str, str], str | None]:
        """The parameters to send and the ``Authorization`` header (None when the credentials travel in the
        parameters), for the configured ``auth``."""
        settings = self._settings
        sent = dict(params)
        if settings.auth == "basic":
            assert settings.api_secret is not None  # the settings refuse basic without it
            return sent, basic_authorization(settings.api_key, settings.api_secret.get_secret_value())
        sent["api_key"] = settings.api_key
        if settings.auth == "body":
            assert settings.api_secret is not None
            sent["api_secret"] = settings.api_secret.get_secret_value()
            return sent, None
        assert settings.signature_secret is not None
        if unix_timestamp and "timestamp" not in sent:
            sent["timestamp"] = str(int(self._clock()))
        signature = sign_params(
            sent, secret=settings.signature_secret.get_secret_value(), method=settings.signature_method
        )
        sent["sig"] = signature.sig
        return sent, None

    def _post(self, url: httpx.URL, params: Mapping[str, str], action: str, *, unix_timestamp: bool) -> httpx.Response:
        sent, authorization = self.authenticated(params, unix_timestamp=unix_timestamp)
        body = str(httpx.QueryParams(sent)).encode("ascii")
        headers = [
            ("Host", host_header(url)),
            ("Content-Type", FORM),
            ("Accept", "application/json"),
            ("User-Agent", self._user_agent),
        ]
        if authorization is not None:
            headers.append(("Authorization", authorization))
        try:
            return self._http.send(url, headers, body)
        except httpx.TransportError as exc:
            raise transport_error(exc, provider="vonage", action=action, secrets=self._secrets()) from None

    def _sms_answer(self, response: httpx.Response) -> SmsResponse:
        """The answer when every part says ``0``; otherwise the classified error of the first that does not.

        The SMS API answers 200 even to errors; anything else (a redirect, a gateway's 5xx or 4xx page, a
        body that is not the documented JSON) says nothing about the message: retryable.
        """
        status = response.status_code
        if status == 429:
            raise ThrottledError(f"vonage {SEND_ACTION}: HTTP 429", status=status, retry_after=_retry_after(response))
        if status != 200:
            raise RetryableError(f"vonage {SEND_ACTION}: HTTP {status}", status=status)
        data = json_object(response)
        try:
            answer = SmsResponse.model_validate(data)
        except ValidationError:
            raise RetryableError(
                f"vonage {SEND_ACTION}: HTTP 200 but the body is not the documented JSON",
                code="MalformedResponse",
                status=status,
            ) from None
        for part in answer.messages:
            if part.status != "0":
                raise classify_sms_status(part.status, safe_text(part.error_text or "", self._secrets()))
        return answer
