"""Alibaba Cloud SMS client (dysmsapi 2017-05-25 / 2018-05-01, cams 2020-06-06), on httpx without the SDK.

Which API family a real account accepts depends on where it was opened (PROVIDERS.md section 0):

- ``site="intl"`` (international site): send ``SendMessageWithTemplate`` (2018-05-01), report
  ``SmsConversion`` (2018-05-01) with the ``MessageId`` it returned; replies carry ``ResponseCode``.
- ``site="china"`` (China site sending abroad): send ``SendSms`` (2017-05-25), report ``SmsConversionIntl``
  (2017-05-25) with the ``BizId`` as ``MessageId``; replies carry ``Code``.

Every call is a ``POST /`` with the parameters in the URL query and an empty body. The query sent is the
canonical query string itself, so what is signed is byte for byte what travels. Signing is ACS3-HMAC-SHA256
(the SDKs' default) or, with ``signature="v1"``, the legacy HMAC-SHA1 RPC signature. Business failures come
back as HTTP 200 with a non-OK code, so every body is inspected; gateway failures are 4xx/5xx JSON.
What each answer means (``classify_error``) is ``alibaba_errors.py``; its names stay importable from here.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from types import MappingProxyType
from typing import Literal, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from ._http import (
    USER_AGENT,
    HTTPSender,
    host_header,
    transport_error,
)
from .alibaba_errors import QUOTA_RETRY_AFTER, Operation, checked_body, classify_error
from .alibaba_models import (
    ChatappSyncPhoneNumberRequest,
    ChatappSyncPhoneNumberResponse,
    SendMessageWithTemplateRequest,
    SendMessageWithTemplateResponse,
    SendSmsRequest,
    SendSmsResponse,
    SmsConversionIntlRequest,
    SmsConversionIntlResponse,
    SmsConversionRequest,
    SmsConversionResponse,
    WireRequest,
    template_param_json,
)
from .base import (
    DEFAULT_TIMEOUT,
    ConversionReport,
    PermanentError,
    Provider,
    RetryableError,
    SentMessage,
)
from .settings import AlibabaSettings
from .signing import EMPTY_SHA256, acs3_sign, acs_timestamp, canonical_query, percent_encode, v1_sign

__all__ = [
    "CAMS_VERSION",
    "DYSMS_CHINA",
    "DYSMS_INTL",
    "QUOTA_RETRY_AFTER",
    "AlibabaProvider",
    "classify_error",
]

logger = logging.getLogger(__name__)

DYSMS_CHINA = "2017-05-25"
DYSMS_INTL = "2018-05-01"
CAMS_VERSION = "2020-06-06"
#: Alibaba publishes no cap for SmsConversion / SmsConversionIntl. 100/s is our conservative default:
#: a tenth of Tencent's 1000/s for the same feature and far above the verification rate of most apps.
#: Raise it with ``OTP_CONVERSION_RATE_LIMITS`` if Alibaba grants more.
CONVERSION_RATE_DEFAULT = 100.0

_RATE_LIMITS: Mapping[str, float] = MappingProxyType(
    {
        "SendSms": 5000.0,
        # Not published for SendMessageWithTemplate; SendMessageToGlobe, its sibling, is 2000/s.
        "SendMessageWithTemplate": 2000.0,
        "SmsConversion": CONVERSION_RATE_DEFAULT,
        "SmsConversionIntl": CONVERSION_RATE_DEFAULT,
        "ChatappSyncPhoneNumber": 10.0,
    }
)


def _new_nonce() -> str:
    return uuid.uuid4().hex


def _no_plus(phone: str) -> str:
    """Alibaba wants the dialing code without ``+`` (``6581234567``)."""
    return phone.lstrip("+")


_M = TypeVar("_M", bound=BaseModel)


class AlibabaProvider(Provider):
    """Alibaba Cloud SMS over keep-alive httpx transports (``HTTPSender``) for dysmsapi and cams; never retries.

    ``clock`` (UNIX seconds), ``nonce`` and ``transport`` are seams for tests that pin the signing inputs or
    route the connection elsewhere; production uses real time, a fresh uuid4 per request and plain httpx.
    """

    name = "alibaba"
    has_statistics = True  # the cams sender numbers (with a cust_space_id): ChatappSyncPhoneNumber
    reports_unverified = True  # SmsConversion takes Delivered=false
    settings_model = AlibabaSettings

    def __init__(
        self,
        settings: AlibabaSettings,
        *,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        clock: Callable[[], float] = time.time,
        nonce: Callable[[], str] = _new_nonce,
        transport: httpx.BaseTransport | None = None,
        user_agent: str = USER_AGENT,
    ) -> None:
        self._settings = settings
        self._dysms = settings.dysms_endpoint.rstrip("/") + "/"
        self._cams = settings.cams_endpoint.rstrip("/") + "/"
        self._clock = clock
        self._nonce = nonce
        self._user_agent = user_agent
        self._http = HTTPSender(timeout=timeout, transport=transport)

    def __repr__(self) -> str:
        return (
            f"<AlibabaProvider site={self._settings.site!r} endpoint={self._dysms!r} "
            f"signature={self._settings.signature!r}>"
        )

    @property
    def rate_limits(self) -> Mapping[str, float]:
        return _RATE_LIMITS

    @property
    def account(self) -> str:
        # The AccessKeyId is an identifier, not the secret: Alibaba sends it in clear in every request.
        return self._settings.access_key_id.get_secret_value()

    @property
    def report_action(self) -> str:
        return "SmsConversion" if self._settings.site == "intl" else "SmsConversionIntl"

    def close(self) -> None:
        self._http.close()

    # ---- the Provider interface ------------------------------------------------------------------------

    def send_otp(self, phone: str, code: str) -> SentMessage:
        """Send with the configured template, ``{"code": code}`` its parameters. The id returned is the one
        the site's conversion action wants: ``MessageId`` (intl) or ``BizId`` (china)."""
        sign_name, template_code = self._settings.sign_name, self._settings.template_code
        if not sign_name or not template_code:
            raise PermanentError(
                "alibaba sign_name and template_code must be configured to send", code="ClientConfiguration"
            )
        params = {"code": code}
        message_id: str | None
        if self._settings.site == "intl":
            message_id = self.send_message_with_template(phone, sign_name, template_code, params).message_id
        else:
            message_id = self.send_sms(phone, sign_name, template_code, params).biz_id
        if not message_id:
            raise RetryableError("alibaba send: OK reply without a message id", code="MalformedResponse")
        return SentMessage(message_id=message_id, phone=phone, provider=self.name)

    def report_conversion(self, report: ConversionReport) -> None:
        """``SmsConversion`` (intl) or ``SmsConversionIntl`` (china); ConversionTime in milliseconds."""
        conversion_ms = min(int(report.verified_at * 1000), int(self._clock() * 1000))  # never in the future
        if self._settings.site == "intl":
            self.sms_conversion(
                report.message_id,
                delivered=report.converted,
                conversion_time_ms=conversion_ms,
                to=report.phone,
            )
        else:
            self.sms_conversion_intl(report.message_id, delivered=report.converted, conversion_time_ms=conversion_ms)

    def statistics(self, begin: datetime, end: datetime) -> ChatappSyncPhoneNumberResponse | None:
        """Alibaba's SMS APIs offer no conversion figures; what we can show is the state of the cams sender
        numbers (status, quality rating, messaging tier) when ``cust_space_id`` is configured, else None.
        ``begin``/``end`` do not apply to that call and are ignored."""
        if not self._settings.cust_space_id:
            return None
        return self.sync_phone_numbers(self._settings.cust_space_id)

    # ---- operations ------------------------------------------------------------------------------------

    def send_sms(
        self,
        phone: str,
        sign_name: str,
        template_code: str,
        template_param: Mapping[str, str] | None = None,
        *,
        out_id: str | None = None,
    ) -> SendSmsResponse:
        """dysmsapi 2017-05-25 ``SendSms``. Not idempotent: a retry after a timeout may send twice."""
        request = SendSmsRequest(
            phone_numbers=",".join(_no_plus(p) for p in phone.split(",")),
            sign_name=sign_name,
            template_code=template_code,
            template_param=template_param_json(template_param) if template_param is not None else None,
            out_id=out_id,
        )
        return self._call(self._dysms, "SendSms", DYSMS_CHINA, request, SendSmsResponse, "Code", "send")

    def send_message_with_template(
        self, to: str, from_: str, template_code: str, template_param: Mapping[str, str] | None = None
    ) -> SendMessageWithTemplateResponse:
        """dysmsapi 2018-05-01 ``SendMessageWithTemplate`` (intl site); ``from_`` is the signature."""
        request = SendMessageWithTemplateRequest(
            to=_no_plus(to),
            from_=from_,
            template_code=template_code,
            template_param=template_param_json(template_param) if template_param is not None else None,
        )
        return self._call(
            self._dysms,
            "SendMessageWithTemplate",
            DYSMS_INTL,
            request,
            SendMessageWithTemplateResponse,
            "ResponseCode",
            "send",
        )

    def sms_conversion(
        self,
        message_id: str,
        *,
        delivered: bool = True,
        conversion_time_ms: int | None = None,
        to: str | None = None,
    ) -> SmsConversionResponse:
        """dysmsapi 2018-05-01 ``SmsConversion``."""
        request = SmsConversionRequest(
            message_id=message_id,
            delivered=delivered,
            conversion_time=conversion_time_ms,
            to=_no_plus(to) if to else None,
        )
        return self._call(
            self._dysms, "SmsConversion", DYSMS_INTL, request, SmsConversionResponse, "ResponseCode", "report"
        )

    def sms_conversion_intl(
        self, message_id: str, *, delivered: bool = True, conversion_time_ms: int | None = None
    ) -> SmsConversionIntlResponse:
        """dysmsapi 2017-05-25 ``SmsConversionIntl``; ``message_id`` is the ``BizId`` from ``SendSms``."""
        request = SmsConversionIntlRequest(
            message_id=message_id, delivered=delivered, conversion_time=conversion_time_ms
        )
        return self._call(
            self._dysms,
            "SmsConversionIntl",
            DYSMS_CHINA,
            request,
            SmsConversionIntlResponse,
            "Code",
            "report",
        )

    def sync_phone_numbers(self, cust_space_id: str) -> ChatappSyncPhoneNumberResponse:
        """cams 2020-06-06 ``ChatappSyncPhoneNumber`` on ``cams_endpoint``."""
        request = ChatappSyncPhoneNumberRequest(cust_space_id=cust_space_id)
        return self._call(
            self._cams,
            "ChatappSyncPhoneNumber",
            CAMS_VERSION,
            request,
            ChatappSyncPhoneNumberResponse,
            "Code",
            "other",
        )

    # ---- the wire --------------------------------------------------------------------------------------

    def _secrets(self) -> tuple[str, str]:
        return (
            self._settings.access_key_id.get_secret_value(),
            self._settings.access_key_secret.get_secret_value(),
        )

    def _build(
        self, endpoint: str, action: str, version: str, params: dict[str, str]
    ) -> tuple[httpx.URL, list[tuple[str, str]]]:
        """The signed request (URL and headers): canonical query on the URL, empty body, ACS3 headers or v1
        query fields."""
        key_id, secret = self._secrets()
        host = host_header(httpx.URL(endpoint))  # exactly the Host we send, ":port" when not the default
        timestamp = acs_timestamp(datetime.fromtimestamp(self._clock(), tz=timezone.utc))
        nonce = self._nonce()
        if self._settings.signature == "v1":
            signed = {
                **params,
                "Action": action,
                "Version": version,
                "Format": "JSON",  # without it the gateway may answer in XML
                "Timestamp": timestamp,
                "SignatureMethod": "HMAC-SHA1",
                "SignatureVersion": "1.0",
                "SignatureNonce": nonce,
                "AccessKeyId": key_id,
            }
            v1 = v1_sign(access_key_secret=secret, method="POST", params=signed)
            query = f"{v1.canonicalized_query_string}&Signature={percent_encode(v1.signature)}"
            headers = [("host", host), ("accept", "application/json"), ("user-agent", self._user_agent)]
            return httpx.URL(f"{endpoint}?{query}"), headers
        query = canonical_query(params)
        signed_headers = {
            "host": host,
            "x-acs-action": action,
            "x-acs-version": version,
            "x-acs-date": timestamp,
            "x-acs-signature-nonce": nonce,
            "x-acs-content-sha256": EMPTY_SHA256,
            "accept": "application/json",
            "user-agent": self._user_agent,
        }
        signature = acs3_sign(
            access_key_id=key_id,
            access_key_secret=secret,
            method="POST",
            query=params,
            headers=signed_headers,
        )
        url = httpx.URL(f"{endpoint}?{query}" if query else endpoint)
        return url, [*signed_headers.items(), ("Authorization", signature.authorization)]

    def _call(
        self,
        endpoint: str,
        action: str,
        version: str,
        params: WireRequest,
        reply_model: type[_M],
        code_field: Literal["Code", "ResponseCode"],
        operation: Operation,
    ) -> _M:
        url, headers = self._build(endpoint, action, version, params.wire_params())
        try:
            response = self._http.send(url, headers)
        except httpx.TransportError as exc:
            raise transport_error(exc, provider="alibaba", action=action, secrets=self._secrets()) from None
        data = checked_body(action, response, code_field, operation, self._secrets())
        try:
            reply = reply_model.model_validate(data)
        except ValidationError:
            raise RetryableError(
                f"alibaba {action}: reply does not have the documented shape",
                code="MalformedResponse",
                request_id=str(data.get("RequestId", "")),
                status=response.status_code,
            ) from None
        logger.debug(
            "alibaba %s answered HTTP %s (request id %s)",
            action,
            response.status_code,
            data.get("RequestId", ""),
        )
        return reply
