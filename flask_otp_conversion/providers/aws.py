"""AWS End User Messaging SMS client (``pinpoint-sms-voice-v2``, API ``2022-03-31``) on httpx without boto3
(reference PROVIDERS-MORE.md section 2).

Send ``SendTextMessage`` with ``MessageFeedbackEnabled: true``; report ``PutMessageFeedback`` with
``MessageFeedbackStatus`` ``RECEIVED`` (or ``FAILED``, the negative outcome). Both are ``POST /`` with a JSON 1.0
body (``Content-Type: application/x-amz-json-1.0``, the operation in ``X-Amz-Target``), signed with SigV4 for
the ``sms-voice`` service over the exact body bytes (:mod:`.sigv4`). AWS takes no time with the feedback, and
an hour after the send it fails the message by itself: ``report_deadline`` stops reports short of that.

Errors are JSON ``{"__type", "Message", ...}``; throttling is an HTTP **400** ``ThrottlingException``, so
answers are classified by ``__type``, not by status.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from .aws_models import (
    AwsErrorBody,
    FeedbackStatus,
    PutMessageFeedbackRequest,
    PutMessageFeedbackResponse,
    SendTextMessageRequest,
    SendTextMessageResponse,
)
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
from .settings import AwsSettings
from .sigv4 import amz_date, sigv4_sign
from .toolkit import USER_AGENT, HTTPSender, host_header, json_object, safe_text, transport_error

__all__ = ["FEEDBACK_ACTION", "SEND_ACTION", "SERVICE", "TARGET_PREFIX", "AwsProvider", "classify_error"]

logger = logging.getLogger(__name__)

SERVICE = "sms-voice"
TARGET_PREFIX = "PinpointSMSVoiceV2"
CONTENT_TYPE = "application/x-amz-json-1.0"
SEND_ACTION = "SendTextMessage"
FEEDBACK_ACTION = "PutMessageFeedback"

# ---- error classification (reference 2.5) --------------------------------------------------------------

_THROTTLE_CODES = frozenset({"ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded"})
_RETRYABLE_CODES = frozenset({"InternalServerException", "InternalFailure", "ServiceUnavailable", "RequestTimeout"})
_AUTH_CODES = frozenset(
    {
        "InvalidSignatureException",
        "IncompleteSignatureException",
        "UnrecognizedClientException",
        "AccessDeniedException",
        "MissingAuthenticationTokenException",
        "InvalidClientTokenId",
        "ExpiredTokenException",
        "SignatureDoesNotMatch",
    }
)
#: A signature refused for its time, not its key: the next attempt is signed afresh, so it is retryable.
_CLOCK_TEXTS = ("Signature expired", "Signature not yet current", "Request has expired")

_M = TypeVar("_M", bound=BaseModel)


def _retry_after(response: httpx.Response) -> float | None:
    raw = response.headers.get("retry-after", "").strip()
    if not raw.isdigit():
        return None
    return float(raw) if int(raw) > 0 else None


def classify_error(
    code: str,
    message: str,
    *,
    action: str,
    status: int,
    request_id: str = "",
    retry_after: float | None = None,
) -> ProviderError:
    """The ``ProviderError`` for an AWS answer that is not a success.

    - ``ThrottlingException`` (whatever the status, usually 400) or HTTP 429: ``ThrottledError``;
    - ``InternalServerException``, a 5xx, or no error code at all (a proxy's page): ``RetryableError``;
    - ``InvalidSignatureException`` for the clock ("Signature expired"/"not yet current"): ``RetryableError``,
      the retry is signed with a fresh time;
    - bad keys or signature, ``UnrecognizedClientException``, ``AccessDeniedException``, an expired session
      token: ``AuthError``;
    - every other AWS code (``ValidationException``, ``ResourceNotFoundException``, ``ConflictException``,
      ``ServiceQuotaExceededException``, ``SerializationException``, ``UnknownOperationException``...):
      ``PermanentError``.
    """
    text = f"aws {action}: {message}" if message else f"aws {action}: HTTP {status}"
    kwargs: dict[str, Any] = {"code": code, "request_id": request_id, "status": status}
    if code in _THROTTLE_CODES or (status == 429 and not code):
        return ThrottledError(text, retry_after=retry_after, **kwargs)
    if not code or code in _RETRYABLE_CODES or status >= 500:
        return RetryableError(text, **kwargs)
    if code in _AUTH_CODES:
        if any(clue in message for clue in _CLOCK_TEXTS):
            return RetryableError(text, **kwargs)
        return AuthError(text, **kwargs)
    return PermanentError(text, **kwargs)


class AwsProvider(Provider):
    """AWS End User Messaging SMS over a keep-alive ``HTTPSender``; never retries.

    ``clock`` (UNIX seconds) and ``transport`` are seams for tests that pin ``X-Amz-Date`` or route the
    connection elsewhere; production uses real time and plain sockets.
    """

    name = "aws"
    settings_model = AwsSettings
    reports_unverified = True  # MessageFeedbackStatus=FAILED
    #: The default; each client takes its settings' ``report_deadline`` (55 minutes unless configured).
    report_deadline = 55 * 60.0

    def __init__(
        self,
        settings: AwsSettings,
        *,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        clock: Callable[[], float] = time.time,
        transport: httpx.BaseTransport | None = None,
        user_agent: str = USER_AGENT,
    ) -> None:
        self._settings = settings
        self._url = httpx.URL(settings.base_url + "/")
        self._host = host_header(self._url)
        self._clock = clock
        self._user_agent = user_agent
        self._http = HTTPSender(timeout=timeout, transport=transport)
        self._rate_limits: Mapping[str, float] = MappingProxyType(
            {SEND_ACTION: settings.send_rate_limit, FEEDBACK_ACTION: settings.feedback_rate_limit}
        )
        # The base class declares the deadline per class; here it is per app, so the instance carries it.
        self.report_deadline = settings.report_deadline

    def __repr__(self) -> str:
        return f"<AwsProvider region={self._settings.region!r} endpoint={self._settings.base_url!r}>"

    @property
    def rate_limits(self) -> Mapping[str, float]:
        return self._rate_limits

    @property
    def account(self) -> str:
        # Message ids live in an AWS account and region, and feedback must go to that region. Not the access
        # key id: keys rotate and temporary credentials change hourly, which would strand every pending row.
        settings = self._settings
        return f"{settings.region}:{settings.account_id}" if settings.account_id else settings.region

    @property
    def report_action(self) -> str:
        return FEEDBACK_ACTION

    def close(self) -> None:
        self._http.close()

    # ---- the Provider interface ------------------------------------------------------------------------

    def send_otp(self, phone: str, code: str) -> SentMessage:
        """``SendTextMessage`` of the configured text with ``{code}`` filled in, feedback enabled."""
        settings = self._settings
        reply = self.send_text_message(
            SendTextMessageRequest(
                destination_phone_number=phone,
                origination_identity=settings.origination_identity,
                message_body=settings.text_template.replace("{code}", code),
                message_type=settings.message_type,
                configuration_set_name=settings.configuration_set_name,
                time_to_live=settings.time_to_live,
            )
        )
        return SentMessage(message_id=reply.message_id, phone=phone, provider=self.name)

    def report_conversion(self, report: ConversionReport) -> None:
        """``RECEIVED``, or ``FAILED`` for the negative outcome. AWS stamps the time itself."""
        self.put_message_feedback(report.message_id, "RECEIVED" if report.converted else "FAILED")

    def statistics(self, begin: datetime, end: datetime) -> BaseModel | None:
        """AWS publishes the feedback figures as CloudWatch metrics, not through this API: none here."""
        return None

    # ---- operations ------------------------------------------------------------------------------------

    def send_text_message(self, request: SendTextMessageRequest) -> SendTextMessageResponse:
        """Not idempotent: a retry after a lost answer may send twice."""
        return self._call(SEND_ACTION, request.body(), SendTextMessageResponse)

    def put_message_feedback(self, message_id: str, status: FeedbackStatus) -> PutMessageFeedbackResponse:
        """Set the message's feedback record. The answer is the record's status *now*: when it is not what was
        sent (AWS had already failed the message an hour after the send), the report did not take, which is
        permanent: ``FeedbackNotApplied``."""
        request = PutMessageFeedbackRequest(message_id=message_id, message_feedback_status=status)
        reply = self._call(FEEDBACK_ACTION, request.body(), PutMessageFeedbackResponse)
        if reply.message_feedback_status != status:
            raise PermanentError(
                f"aws {FEEDBACK_ACTION}: the message's feedback stays {reply.message_feedback_status} "
                f"(sent {status}; AWS fails a message by itself an hour after the send)",
                code="FeedbackNotApplied",
                status=200,
            )
        return reply

    # ---- the wire --------------------------------------------------------------------------------------

    def _secrets(self) -> tuple[str, ...]:
        settings = self._settings
        token = settings.session_token.get_secret_value() if settings.session_token is not None else None
        return tuple(s for s in (settings.secret_access_key.get_secret_value(), token) if s)

    def signed_headers(self, action: str, body: bytes, moment: float) -> list[tuple[str, str]]:
        """The request's headers, signed: what is signed is exactly what is sent."""
        settings = self._settings
        signed = {
            "Content-Type": CONTENT_TYPE,
            "Host": self._host,
            "X-Amz-Date": amz_date(moment),
            "X-Amz-Target": f"{TARGET_PREFIX}.{action}",
        }
        if settings.session_token is not None:
            signed["X-Amz-Security-Token"] = settings.session_token.get_secret_value()
        signature = sigv4_sign(
            access_key_id=settings.access_key_id.get_secret_value(),
            secret_access_key=settings.secret_access_key.get_secret_value(),
            region=settings.region,
            service=SERVICE,
            method="POST",
            path="/",
            headers=signed,
            body=body,
            amz_date=signed["X-Amz-Date"],
        )
        return [*signed.items(), ("Authorization", signature.authorization), ("User-Agent", self._user_agent)]

    def _call(self, action: str, body: bytes, model: type[_M]) -> _M:
        headers = self.signed_headers(action, body, self._clock())
        try:
            response = self._http.send(self._url, headers, body)
        except httpx.TransportError as exc:
            raise transport_error(exc, provider=self.name, action=action, secrets=self._secrets()) from None
        data = self._checked(response, action)
        try:
            reply = model.model_validate(data)
        except ValidationError:
            raise RetryableError(
                f"aws {action}: answer does not have the documented shape",
                code="MalformedResponse",
                status=response.status_code,
            ) from None
        logger.debug("aws %s answered HTTP %s", action, response.status_code)
        return reply

    def _checked(self, response: httpx.Response, action: str) -> dict[str, Any]:
        """The body of a 2xx JSON answer; otherwise the classified error. Only an AWS error code (``__type``,
        or the ``x-amzn-ErrorType`` header) can make an error permanent; a redirect is never followed."""
        status = response.status_code
        data = json_object(response)
        request_id = response.headers.get("x-amzn-requestid", "")
        if 200 <= status < 300:
            if data is None:
                raise RetryableError(
                    f"aws {action}: HTTP {status} but the body is not JSON", code="MalformedResponse", status=status
                )
            return data
        if 300 <= status < 400:
            raise RetryableError(f"aws {action}: a redirect (HTTP {status}), not followed", status=status)
        error: AwsErrorBody | None = None
        if data is not None:
            try:
                error = AwsErrorBody.model_validate(data)
            except ValidationError:
                error = None
        code = error.code if error is not None else ""
        if not code and data is not None:
            # Some front doors put the code only in a header: "ThrottlingException:http://internal.amazon.com/...".
            code = response.headers.get("x-amzn-errortype", "").split(":", 1)[0]
        message = safe_text(error.text, self._secrets()) if error is not None else ""
        raise classify_error(
            code, message, action=action, status=status, request_id=request_id, retry_after=_retry_after(response)
        )
