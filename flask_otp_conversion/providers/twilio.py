"""Twilio Programmable Messaging client (REST API ``2010-04-01``) on httpx without the SDK (reference
PROVIDERS-MORE.md section 1).

Send ``POST /Accounts/{AccountSid}/Messages.json`` with ``ProvideFeedback=true``; report
``POST /Accounts/{AccountSid}/Messages/{MessageSid}/Feedback.json`` with ``Outcome=confirmed`` (or
``unconfirmed``, the negative outcome). Both are form-encoded and authenticated with HTTP Basic: the account
SID and auth token, or an API key SID and secret. Twilio takes no time with the feedback: it stamps it on
receipt. Creates answer 201; errors are ``{code, message, more_info, status}`` with the HTTP status.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Any, Literal, TypeVar
from urllib.parse import quote, urlencode

import httpx
from pydantic import BaseModel, ValidationError

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
from .settings import TwilioSettings
from .toolkit import USER_AGENT, HTTPSender, basic_authorization, host_header, json_object, safe_text, transport_error
from .twilio_models import CreateMessageRequest, FeedbackRequest, FeedbackResource, MessageResource, TwilioErrorBody

__all__ = [
    "API_VERSION",
    "FEEDBACK_ACTION",
    "SEND_ACTION",
    "TwilioProvider",
    "classify_error",
]

logger = logging.getLogger(__name__)

API_VERSION = "2010-04-01"
SEND_ACTION = "CreateMessage"
FEEDBACK_ACTION = "CreateMessageFeedback"
FORM = "application/x-www-form-urlencoded"
_MESSAGE_SID = re.compile(r"^(?:SM|MM)[0-9a-fA-F]{32}$")

_M = TypeVar("_M", bound=BaseModel)

# ---- error classification (reference 1.6) --------------------------------------------------------------

_THROTTLE_CODES = frozenset({20429})
_RETRYABLE_CODES = frozenset({20500, 20503})
#: 20003 authenticate, 20005 account not active, 20006 access denied, 20008 test credentials where they do not
#: work, 20403 forbidden: nothing another request or a wait changes; stop and alert.
_AUTH_CODES = frozenset({20003, 20005, 20006, 20008, 20403})


def _retry_after(response: httpx.Response) -> float | None:
    """A ``Retry-After`` in seconds (Twilio documents none for 429s, but honours HTTP), None if absent/bad."""
    raw = response.headers.get("retry-after", "").strip()
    if not raw.isdigit():
        return None
    return float(raw) if int(raw) > 0 else None


def classify_error(
    code: int | None,
    message: str,
    *,
    action: str,
    status: int,
    request_id: str = "",
    retry_after: float | None = None,
) -> ProviderError:
    """The ``ProviderError`` for a Twilio answer that is not a success.

    - HTTP 429 or code ``20429``: ``ThrottledError`` (with the ``Retry-After`` if one came);
    - a 5xx, or ``20500``/``20503``: ``RetryableError``;
    - HTTP 401/403 with Twilio's error body, or ``20003``/``20005``/``20006``/``20008``/``20403``: ``AuthError``;
    - any other Twilio error code (404 ``20404``: unknown SID or feedback not enabled; 400 ``21211`` bad ``To``,
      ``21610`` opted out...): ``PermanentError``;
    - no Twilio error body at all (a proxy's page, HTML): ``RetryableError``, it says nothing of the request.
    """
    text = f"twilio {action}: {message}" if message else f"twilio {action}: HTTP {status}"
    kwargs: dict[str, Any] = {"code": "" if code is None else str(code), "request_id": request_id, "status": status}
    if status == 429 or code in _THROTTLE_CODES:
        return ThrottledError(text, retry_after=retry_after, **kwargs)
    if status >= 500 or code in _RETRYABLE_CODES or code is None:
        return RetryableError(text, **kwargs)
    if status in (401, 403) or code in _AUTH_CODES:
        return AuthError(text, **kwargs)
    return PermanentError(text, **kwargs)


class TwilioProvider(Provider):
    """Twilio Messaging over a keep-alive ``HTTPSender``; never retries.

    ``transport`` is a seam for tests that route the connection elsewhere (the signed-for host stays).
    """

    name = "twilio"
    settings_model = TwilioSettings
    reports_unverified = True  # Outcome=unconfirmed
    # No deadline documented for Twilio feedback (reference 1.5, unconfirmed): report_deadline stays None.

    def __init__(
        self,
        settings: TwilioSettings,
        *,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
        user_agent: str = USER_AGENT,
    ) -> None:
        self._settings = settings
        self._account_url = f"{settings.base_url}/{API_VERSION}/Accounts/{settings.account_sid}"
        self._host = host_header(httpx.URL(settings.base_url))
        self._user_agent = user_agent
        self._http = HTTPSender(timeout=timeout, transport=transport)
        self._rate_limits: Mapping[str, float] = MappingProxyType(
            {SEND_ACTION: settings.message_rate_limit, FEEDBACK_ACTION: settings.feedback_rate_limit}
        )

    def __repr__(self) -> str:
        return f"<TwilioProvider account_sid={self._settings.account_sid!r} endpoint={self._settings.base_url!r}>"

    @property
    def rate_limits(self) -> Mapping[str, float]:
        return self._rate_limits

    @property
    def account(self) -> str:
        # The account SID: in every URL, shown in the console; not a secret. With an API key it is still the
        # account the messages belong to, so rotating keys strands no row.
        return self._settings.account_sid

    @property
    def report_action(self) -> str:
        return FEEDBACK_ACTION

    def close(self) -> None:
        self._http.close()

    # ---- the Provider interface ------------------------------------------------------------------------

    def send_otp(self, phone: str, code: str) -> SentMessage:
        """Send the configured text with ``{code}`` filled in, ``ProvideFeedback=true``; the id is the ``sid``."""
        settings = self._settings
        if settings.sender is None and settings.messaging_service_sid is None:
            raise PermanentError(
                "twilio sender or messaging_service_sid must be configured to send", code="ClientConfiguration"
            )
        message = self.create_message(
            CreateMessageRequest(
                to=phone,
                body=settings.text_template.replace("{code}", code),
                from_=settings.sender,
                messaging_service_sid=settings.messaging_service_sid,
                validity_period=settings.validity_period,
            )
        )
        return SentMessage(message_id=message.sid, phone=phone, provider=self.name)

    def report_conversion(self, report: ConversionReport) -> None:
        """``Outcome=confirmed``, or ``unconfirmed`` for the negative outcome. Twilio stamps the time itself."""
        self.create_feedback(report.message_id, "confirmed" if report.converted else "unconfirmed")

    def statistics(self, begin: datetime, end: datetime) -> BaseModel | None:
        """Twilio's OTP conversion figures live in Messaging Insights (console only): none through this API."""
        return None

    # ---- operations ------------------------------------------------------------------------------------

    def create_message(self, request: CreateMessageRequest) -> MessageResource:
        """Create (send) a message. Not idempotent: a retry after a lost answer may send twice."""
        data = self._call(f"{self._account_url}/Messages.json", request.form(), SEND_ACTION)
        return self._parsed(MessageResource, data, SEND_ACTION)

    def create_feedback(self, message_sid: str, outcome: Literal["confirmed", "unconfirmed"]) -> FeedbackResource:
        """Feedback for a message sent with ``ProvideFeedback=true``; posting it again overwrites it."""
        if not _MESSAGE_SID.match(message_sid):
            raise PermanentError(f"twilio {FEEDBACK_ACTION}: not a message SID", code="InvalidMessageSid")
        url = f"{self._account_url}/Messages/{quote(message_sid, safe='')}/Feedback.json"
        data = self._call(url, FeedbackRequest(outcome=outcome).form(), FEEDBACK_ACTION)
        return self._parsed(FeedbackResource, data, FEEDBACK_ACTION)

    # ---- the wire --------------------------------------------------------------------------------------

    def _credentials(self) -> tuple[str, str]:
        settings = self._settings
        if settings.api_key_sid is not None and settings.api_key_secret is not None:
            return settings.api_key_sid, settings.api_key_secret.get_secret_value()
        assert settings.auth_token is not None  # the settings require one or the other
        return settings.account_sid, settings.auth_token.get_secret_value()

    def _secrets(self) -> tuple[str, ...]:
        return (self._credentials()[1],)

    def _call(self, url: str, form: list[tuple[str, str]], action: str) -> dict[str, Any]:
        user, password = self._credentials()
        body = urlencode(form).encode("ascii")
        headers = [
            ("Host", self._host),
            ("Content-Type", FORM),
            ("Accept", "application/json"),
            ("Authorization", basic_authorization(user, password)),
            ("User-Agent", self._user_agent),
        ]
        try:
            response = self._http.send(httpx.URL(url), headers, body)
        except httpx.TransportError as exc:
            raise transport_error(exc, provider=self.name, action=action, secrets=self._secrets()) from None
        data = self._checked(response, action)
        logger.debug("twilio %s answered HTTP %s", action, response.status_code)
        return data

    def _checked(self, response: httpx.Response, action: str) -> dict[str, Any]:
        """The body of a 2xx JSON answer; otherwise the classified error. Only Twilio's own error body (an
        integer ``code``) can make an error permanent; a redirect is never followed."""
        status = response.status_code
        data = json_object(response)
        request_id = response.headers.get("twilio-request-id", "")
        if 200 <= status < 300:
            if data is None:
                raise RetryableError(
                    f"twilio {action}: HTTP {status} but the body is not JSON", code="MalformedResponse", status=status
                )
            return data
        if 300 <= status < 400:
            raise RetryableError(f"twilio {action}: a redirect (HTTP {status}), not followed", status=status)
        error: TwilioErrorBody | None = None
        if data is not None:
            try:
                error = TwilioErrorBody.model_validate(data)
            except ValidationError:
                error = None
        message = safe_text(error.message or error.title, self._secrets()) if error is not None else ""
        raise classify_error(
            error.code if error is not None else None,
            message,
            action=action,
            status=status,
            request_id=request_id,
            retry_after=_retry_after(response),
        )

    def _parsed(self, model: type[_M], data: dict[str, Any], action: str) -> _M:
        try:
            return model.model_validate(data)
        except ValidationError:
            raise RetryableError(
                f"twilio {action}: answer does not have the documented shape", code="MalformedResponse"
            ) from None

