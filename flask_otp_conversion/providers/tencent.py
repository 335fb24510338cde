"""Tencent Cloud SMS client (API 2021-01-11, TC3-HMAC-SHA256), written on httpx without the vendor SDK.

Every call is ``POST /`` with a JSON body we serialise ourselves and send as bytes, so the hash in the
signature is the hash of exactly what travels. Success is decided by the body, never the status: Tencent
answers API errors with HTTP 200 and ``Response.Error``, and ``SendSms`` reports a refused number inside
``SendStatusSet`` without any error at all.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from types import MappingProxyType
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from ._http import USER_AGENT, HTTPSender, host_header, json_object, safe_text, transport_error
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
from .settings import TencentSettings
from .signing import tc3_sign
from .tencent_models import (
    CallbackStatusStatistics,
    CallbackStatusStatisticsResponse,
    DescribePhoneNumberInfoRequest,
    DescribePhoneNumberInfoResponse,
    PhoneNumberInfo,
    PullSmsSendStatus,
    PullSmsSendStatusRequest,
    PullSmsSendStatusResponse,
    ReportConversionRequest,
    ReportConversionResponse,
    ReportConversionStatus,
    SendSmsRequest,
    SendSmsResponse,
    SendStatusStatistics,
    SendStatusStatisticsResponse,
    StatisticsRequest,
    TencentStatistics,
)

__all__ = [
    "API_VERSION",
    "QUOTA_RETRY_AFTER",
    "REPORT_REGION",
    "UTC8",
    "TencentProvider",
    "classify_error",
    "hour_string",
]

logger = logging.getLogger(__name__)

API_VERSION = "2021-01-11"
#: ``ReportConversion`` is only served here, whatever region the messages were sent from.
REPORT_REGION = "ap-singapore"
CONTENT_TYPE = "application/json"
#: The statistics calls take hours as ``yyyymmddhh`` without a zone; the console works in UTC+8.
UTC8 = timezone(timedelta(hours=8), "UTC+08:00")
MAX_STATISTICS_SPAN = timedelta(days=32)
#: How long a conversion report refused on a quota code waits before it is tried again (seconds).
QUOTA_RETRY_AFTER = 3600.0

_RATE_LIMITS: Mapping[str, float] = MappingProxyType(
    {
        "SendSms": 3000.0,
        "ReportConversion": 1000.0,
        "DescribePhoneNumberInfo": 1000.0,
        "PullSmsSendStatus": 100.0,
        "CallbackStatusStatistics": 10.0,
        "SendStatusStatistics": 10.0,
    }
)

# ---- error classification (PROVIDERS.md 1.7) -------------------------------------------------------------

_RETRYABLE_CODES = frozenset(
    {
        "InternalError",
        "InternalError.Timeout",
        "InternalError.SendAndRecvFail",
        "InternalError.UnknownError",
        "InternalError.OtherError",
        # Clock errors: the retry is signed afresh with the then-current time, which is the fix.
        "AuthFailure.SignatureExpire",
        "InternalError.RequestTimeException",
    }
)
# InternalError.* codes that describe a malformed request rather than a hiccup.
_PERMANENT_INTERNAL_CODES = frozenset(
    {
        "InternalError.SigFieldMissing",
        "InternalError.SigVerificationFail",
        "InternalError.RestApiInterfaceNotExist",
    }
)
_AUTH_CODES = frozenset({"AuthFailure", "IpNotInWhitelist", "IpInBlacklist"})
_AUTH_PREFIXES = ("AuthFailure.", "UnauthorizedOperation.")
_QUOTA_CODES = frozenset({"FailedOperation.InsufficientBalanceInSmsPackage"})


def classify_error(
    code: str,
    message: str,
    *,
    action: str,
    request_id: str = "",
    status: int | None = 200,
) -> ProviderError:
    """The ``ProviderError`` for a Tencent error code met in ``action``.

    - ``RequestLimitExceeded*`` and ``LimitExceeded.GlobalSmsSendingRateLimit``: ``ThrottledError``.
    - transient ``InternalError*`` and the clock errors: ``RetryableError``.
    - ``AuthFailure.*``, ``UnauthorizedOperation.*``, IP lists: ``AuthError`` (stop, alert, keep the rows).
    - quota / per-number policy (``LimitExceeded.*``, package balance): for ``SendSms`` a ``PermanentError``
      the caller shows the user. For ``ReportConversion`` a ``RetryableError`` with a one-hour
      ``retry_after`` instead: these limits are about sending and reset with time, a report costs nothing
      and is invisible to the user, so waiting loses nothing while dead-lettering loses the conversion.
    - ``UnsupportedOperation*``/``UnsupportedRegion`` on ``ReportConversion``: ``AuthError``. We always send
      ``ap-singapore``, so this means the account is not allow-listed for the feature — permanent until
      Tencent support changes the account, like a permission error, and the rows should wait for that.
    - everything else (``InvalidParameter*``, ``MissingParameter*``, ``FailedOperation.*``, unknown codes):
      ``PermanentError``.
    """
    text = f"tencent {action}: {message}" if message else f"tencent {action} failed"
    kwargs: dict[str, Any] = {"code": code, "request_id": request_id, "status": status}
    is_report = action == "ReportConversion"
    if code.startswith("RequestLimitExceeded") or code == "LimitExceeded.GlobalSmsSendingRateLimit":
        return ThrottledError(text, **kwargs)
    if code in _RETRYABLE_CODES or (
        code.startswith("InternalError.") and code not in _PERMANENT_INTERNAL_CODES
    ):
        return RetryableError(text, **kwargs)
    if code in _AUTH_CODES or code.startswith(_AUTH_PREFIXES):
        return AuthError(text, **kwargs)
    if code.startswith("LimitExceeded.") or code in _QUOTA_CODES:
        if is_report:
            return RetryableError(text, retry_after=QUOTA_RETRY_AFTER, **kwargs)
        return PermanentError(text, **kwargs)
    if is_report and (code.startswith("UnsupportedOperation") or code == "UnsupportedRegion"):
        return AuthError(text, **kwargs)
    return PermanentError(text, **kwargs)


def hour_string(moment: datetime) -> str:
    """``yyyymmddhh`` of an aware datetime, in UTC+8 (fixed offset, as Asia/Shanghai has had since 1991)."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("statistics times must be timezone-aware datetimes")
    return moment.astimezone(UTC8).strftime("%Y%m%d%H")


def _statistics_window(begin: datetime, end: datetime) -> tuple[str, str]:
    begin_hour, end_hour = hour_string(begin), hour_string(end)
    span = datetime.strptime(end_hour, "%Y%m%d%H") - datetime.strptime(begin_hour, "%Y%m%d%H")
    if span < timedelta(0):
        raise ValueError("statistics end must not be before begin")
    if span > MAX_STATISTICS_SPAN:
        raise ValueError(f"statistics window spans {span}, Tencent allows at most 32 days")
    return begin_hour, end_hour


_M = TypeVar("_M", bound=BaseModel)


class TencentProvider(Provider):
    """Tencent Cloud SMS over one keep-alive httpx transport (``HTTPSender``); never retries (the reporter does).

    ``clock`` (UNIX seconds) and ``transport`` are seams for tests that pin the signing time or route the
    connection elsewhere; production uses ``time.time`` and a plain ``httpx.HTTPTransport``.
    """

    name = "tencent"
    has_statistics = True  # SendStatusStatistics, CallbackStatusStatistics
    settings_model = TencentSettings
    statistics_max_span = MAX_STATISTICS_SPAN
    statistics_time_zone = UTC8.tzname(None)

    def __init__(
        self,
        settings: TencentSettings,
        *,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        clock: Callable[[], float] = time.time,
        transport: httpx.BaseTransport | None = None,
        user_agent: str = USER_AGENT,
    ) -> None:
        self._settings = settings
        self._endpoint = settings.endpoint.rstrip("/") + "/"
        self._clock = clock
        self._user_agent = user_agent
        self._url = httpx.URL(self._endpoint)
        self._host = host_header(self._url)
        self._http = HTTPSender(timeout=timeout, transport=transport)

    def __repr__(self) -> str:
        return (
            f"<TencentProvider endpoint={self._endpoint!r} sdk_app_id={self._settings.sdk_app_id!r} "
            f"send_region={self._settings.send_region!r}>"
        )

    @property
    def rate_limits(self) -> Mapping[str, float]:
        return _RATE_LIMITS

    @property
    def account(self) -> str:
        return self._settings.sdk_app_id

    @property
    def report_action(self) -> str:
        return "ReportConversion"

    def close(self) -> None:
        self._http.close()

    # ---- the Provider interface ------------------------------------------------------------------------

    def send_otp(self, phone: str, code: str) -> SentMessage:
        """Send with the configured template, ``code`` its only parameter; the ``SerialNo`` is the id."""
        template_id = self._settings.template_id
        if template_id is None:
            raise PermanentError("tencent template_id is not configured", code="ClientConfiguration")
        reply = self.send_sms([phone], [code], template_id=template_id)
        if not reply.send_status_set:
            raise RetryableError(
                "tencent SendSms: reply has an empty SendStatusSet",
                code="MalformedResponse",
                request_id=reply.request_id,
                status=200,
            )
        status = reply.send_status_set[0]
        if status.code.lower() != "ok":
            raise classify_error(
                status.code, self._safe(status.message), action="SendSms", request_id=reply.request_id
            )
        return SentMessage(
            message_id=status.serial_no, phone=status.phone_number or phone, provider=self.name
        )

    def report_conversion(self, report: ConversionReport) -> None:
        """``ReportConversion`` of the message's ``SerialNo``, ConversionTime in whole seconds.

        Tencent has no "not used" flag: its conversion rate is reported / sent, so a report with
        ``converted=False`` is simply not sent.
        """
        if not report.converted:
            return
        conversion_time = min(int(report.verified_at), int(self._clock()))  # never in the future
        self.report(report.message_id, conversion_time=conversion_time)

    def statistics(self, begin: datetime, end: datetime) -> TencentStatistics:
        """``SendStatusStatistics`` and ``CallbackStatusStatistics`` for the hours from ``begin`` to ``end``.

        Tencent takes hours as ``yyyymmddhh`` without a time zone; the console shows UTC+8, so aware datetimes
        are converted to UTC+8 (a fixed +08:00, i.e. Asia/Shanghai) and truncated to the hour. Naive
        datetimes, an end before the begin, or a span over 32 days raise ``ValueError`` before any call.
        """
        begin_hour, end_hour = _statistics_window(begin, end)
        return TencentStatistics(
            begin_time=begin_hour,
            end_time=end_hour,
            send=self.send_status_statistics(begin, end),
            callback=self.callback_status_statistics(begin, end),
        )

    # ---- operations ------------------------------------------------------------------------------------

    def send_sms(
        self,
        phone_numbers: Sequence[str],
        template_params: Sequence[str],
        *,
        template_id: str | None = None,
        sign_name: str | None = None,
        session_context: str | None = None,
    ) -> SendSmsResponse:
        """``SendSms`` in ``send_region``. Per-number refusals are in the reply, not raised."""
        tid = template_id or self._settings.template_id
        if tid is None:
            raise PermanentError("tencent template_id is not configured", code="ClientConfiguration")
        request = SendSmsRequest(
            phone_number_set=list(phone_numbers),
            sms_sdk_app_id=self._settings.sdk_app_id,
            template_id=tid,
            sign_name=sign_name or self._settings.sign_name,
            template_param_set=list(template_params),
            session_context=session_context,
        )
        return self._call("SendSms", self._settings.send_region, request, SendSmsResponse)

    def report(self, serial_no: str, *, conversion_time: int | None = None) -> ReportConversionStatus:
        """``ReportConversion`` (region ``ap-singapore``); raises unless the status code is ``ok``."""
        request = ReportConversionRequest(
            sms_sdk_app_id=self._settings.sdk_app_id, serial_no=serial_no, conversion_time=conversion_time
        )
        reply = self._call("ReportConversion", REPORT_REGION, request, ReportConversionResponse)
        status = reply.report_conversion_status
        if status.code.lower() != "ok":
            raise classify_error(
                status.code,
                self._safe(status.message),
                action="ReportConversion",
                request_id=reply.request_id,
            )
        return status

    def send_status_statistics(self, begin: datetime, end: datetime) -> SendStatusStatistics:
        begin_hour, end_hour = _statistics_window(begin, end)
        request = StatisticsRequest(
            begin_time=begin_hour, end_time=end_hour, sms_sdk_app_id=self._settings.sdk_app_id
        )
        reply = self._call(
            "SendStatusStatistics", self._settings.send_region, request, SendStatusStatisticsResponse
        )
        return reply.send_status_statistics

    def callback_status_statistics(self, begin: datetime, end: datetime) -> CallbackStatusStatistics:
        begin_hour, end_hour = _statistics_window(begin, end)
        request = StatisticsRequest(
            begin_time=begin_hour, end_time=end_hour, sms_sdk_app_id=self._settings.sdk_app_id
        )
        reply = self._call(
            "CallbackStatusStatistics", self._settings.send_region, request, CallbackStatusStatisticsResponse
        )
        return reply.callback_status_statistics

    def pull_sms_send_status(self, limit: int = 100) -> list[PullSmsSendStatus]:
        """Pull delivery receipts. A queue: each receipt is returned once, so persist what comes back."""
        request = PullSmsSendStatusRequest(limit=limit, sms_sdk_app_id=self._settings.sdk_app_id)
        reply = self._call(
            "PullSmsSendStatus", self._settings.send_region, request, PullSmsSendStatusResponse
        )
        return reply.pull_sms_send_status_set

    def describe_phone_number_info(self, phone_numbers: Sequence[str]) -> list[PhoneNumberInfo]:
        request = DescribePhoneNumberInfoRequest(phone_number_set=list(phone_numbers))
        reply = self._call(
            "DescribePhoneNumberInfo", self._settings.send_region, request, DescribePhoneNumberInfoResponse
        )
        return reply.phone_number_info_set

    # ---- the wire --------------------------------------------------------------------------------------

    def _secrets(self) -> tuple[str, str]:
        return self._settings.secret_id.get_secret_value(), self._settings.secret_key.get_secret_value()

    def _safe(self, text: str) -> str:
        return safe_text(text, self._secrets())

    def _call(self, action: str, region: str, params: BaseModel, reply_model: type[_M]) -> _M:
        # Python's json.dumps defaults, as the SDK: ASCII-only bytes, ", " and ": " separators.
        body = json.dumps(params.model_dump(by_alias=True, exclude_none=True)).encode("ascii")
        timestamp = int(self._clock())
        secret_id, secret_key = self._secrets()
        signature = tc3_sign(
            secret_id=secret_id,
            secret_key=secret_key,
            host=self._host,  # exactly the Host we send, ":port" included when not the default
            content_type=CONTENT_TYPE,
            body=body,
            timestamp=timestamp,
        )
        headers = [
            ("Host", self._host),
            ("Content-Type", CONTENT_TYPE),
            ("X-TC-Action", action),
            ("X-TC-Version", API_VERSION),
            ("X-TC-Timestamp", str(timestamp)),
            ("X-TC-Region", region),
            ("X-TC-Language", "en-US"),
            ("X-TC-RequestClient", self._user_agent),
            ("User-Agent", self._user_agent),
            ("Authorization", signature.authorization),
        ]
        try:
            response = self._http.send(self._url, headers, body)
        except httpx.TransportError as exc:
            raise transport_error(exc, provider="tencent", action=action, secrets=self._secrets()) from None
        payload = self._payload(action, response)
        try:
            reply = reply_model.model_validate(payload)
        except ValidationError:
            raise RetryableError(
                f"tencent {action}: reply does not have the documented shape",
                code="MalformedResponse",
                request_id=str(payload.get("RequestId", "")),
                status=response.status_code,
            ) from None
        logger.debug(
            "tencent %s answered HTTP %s (request id %s)",
            action,
            response.status_code,
            payload.get("RequestId", ""),
        )
        return reply

    def _payload(self, action: str, response: httpx.Response) -> dict[str, Any]:
        """``Response`` of the body, or the classified error.

        Only Tencent's own ``Response.Error`` (a code in it) is classified by its code, whatever the status,
        and so can be permanent. Anything else that is not a 200 came from something in between (a proxy's
        redirect, a gateway's HTML 404 or 502: the SDK's ServerNetworkError) and says nothing about the
        report, so it is retryable: it counts towards the breaker instead of dead-lettering the backlog.
        """
        status = response.status_code
        data = json_object(response)
        payload = data.get("Response") if data is not None else None
        if isinstance(payload, dict):
            error = payload.get("Error")
            code = error.get("Code") if isinstance(error, dict) else None
            if isinstance(error, dict) and isinstance(code, str) and code:
                raise classify_error(
                    code,
                    self._safe(str(error.get("Message", ""))),
                    action=action,
                    request_id=str(payload.get("RequestId", "")),
                    status=status,
                )
        if status != 200:
            what = "a redirect (not followed)" if 300 <= status < 400 else f"HTTP {status}"
            raise RetryableError(
                f"tencent {action}: {what} without an API error",
                code="ServerNetworkError",
                status=status,
            )
        if not isinstance(payload, dict):
            raise RetryableError(
                f"tencent {action}: HTTP 200 but the body is not a JSON API reply",
                code="MalformedResponse",
                status=status,
            )
        return payload
