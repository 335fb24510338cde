"""Pydantic models of the Alibaba Cloud wire: dysmsapi 2017-05-25 and 2018-05-01, cams 2020-06-06.

Response models ignore unknown fields and accept missing ones (the gateway adds fields over time; the cams
docs say to treat every phone-number field as optional). Numbers arriving where text is documented are
taken as text. Request models turn into the wire parameters: strings only, booleans as ``true``/``false``
(the docs' form; the Python SDK's ``str(True)`` would send ``True``), absent fields left out.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_pascal

__all__ = [
    "CamsPhoneNumber",
    "ChatappSyncPhoneNumberRequest",
    "ChatappSyncPhoneNumberResponse",
    "GatewayError",
    "NumberDetail",
    "SendMessageWithTemplateRequest",
    "SendMessageWithTemplateResponse",
    "SendSmsRequest",
    "SendSmsResponse",
    "SmsConversionIntlRequest",
    "SmsConversionIntlResponse",
    "SmsConversionRequest",
    "SmsConversionResponse",
    "WireRequest",
    "template_param_json",
]


class _Wire(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_pascal,
        populate_by_name=True,
        extra="ignore",
        frozen=True,
        coerce_numbers_to_str=True,
    )


def template_param_json(values: Mapping[str, str]) -> str:
    """``TemplateParam`` is a JSON document *as a string*, values as strings (a number value is refused with
    ``isv.INVALID_JSON_PARAM``). Compact separators, as in the docs' ``{"code":"1234"}``."""
    return json.dumps({k: str(v) for k, v in values.items()}, separators=(",", ":"), ensure_ascii=False)


# ---- requests ------------------------------------------------------------------------------------------


class WireRequest(_Wire):
    def wire_params(self) -> dict[str, str]:
        """The operation's query parameters, as strings."""
        params: dict[str, str] = {}
        for name, value in self.model_dump(by_alias=True, exclude_none=True).items():
            params[name] = ("true" if value else "false") if isinstance(value, bool) else str(value)
        return params


class SendSmsRequest(WireRequest):
    """dysmsapi 2017-05-25 ``SendSms``. ``phone_numbers``: comma-separated; international as dialing code +
    number without ``+``."""

    phone_numbers: str
    sign_name: str
    template_code: str
    template_param: str | None = None
    sms_up_extend_code: str | None = None
    out_id: str | None = None


class SendMessageWithTemplateRequest(WireRequest):
    """dysmsapi 2018-05-01 ``SendMessageWithTemplate`` (international site). ``from_`` is the signature."""

    to: str
    from_: str = Field(alias="From")
    template_code: str
    template_param: str | None = None
    sms_up_extend_code: str | None = None
    validity_period: int | None = None


class SmsConversionRequest(WireRequest):
    """dysmsapi 2018-05-01 ``SmsConversion``; ``conversion_time`` in UNIX milliseconds."""

    message_id: str
    delivered: bool
    conversion_time: int | None = None
    to: str | None = None


class SmsConversionIntlRequest(WireRequest):
    """dysmsapi 2017-05-25 ``SmsConversionIntl``: ``message_id`` is the ``BizId`` of SendSms; no ``To``."""

    message_id: str
    delivered: bool
    conversion_time: int | None = None


class ChatappSyncPhoneNumberRequest(WireRequest):
    cust_space_id: str


# ---- responses -----------------------------------------------------------------------------------------


class GatewayError(_Wire):
    """The body of a 4xx/5xx gateway answer."""

    code: str = ""
    message: str = ""
    request_id: str = ""
    host_id: str | None = None
    recommend: str | None = None


class SendSmsResponse(_Wire):
    code: str
    message: str = ""
    biz_id: str | None = None  # e.g. "900619746936498440^0"; the MessageId of SmsConversionIntl
    request_id: str = ""


class NumberDetail(_Wire):
    country: str | None = None
    region: str | None = None
    carrier: str | None = None


class SendMessageWithTemplateResponse(_Wire):
    response_code: str
    response_description: str = ""
    message_id: str | None = None
    segments: str | None = None
    to: str | None = None
    from_: str | None = Field(default=None, alias="From")
    number_detail: NumberDetail | None = None
    request_id: str = ""


class SmsConversionResponse(_Wire):
    response_code: str
    response_description: str = ""
    request_id: str = ""


class SmsConversionIntlResponse(_Wire):
    code: str
    message: str = ""
    request_id: str = ""


class CamsPhoneNumber(_Wire):
    """One business number of a cams customer space. Known values, kept as text so new ones still parse:
    status CONNECTED, PENDING, MIGRATED, FLAGGED, DISCONNECTED, UNVERIFIED, BANNED, RATE_LIMITED, RESTRICTED,
    DELETED, UNKNOWN; quality_rating GREEN/YELLOW/RED; messaging_limit_tier TIER_50 ... TIER_UNLIMITED;
    code_verification_status VERIFIED, REJECTED, REVOKED, MORE_INFORMATION_REQUESTED, ..."""

    phone_number: str | None = None  # dialing code + number, no '+'
    verified_name: str | None = None
    status: str | None = None
    quality_rating: str | None = None
    messaging_limit_tier: str | None = None
    code_verification_status: str | None = None
    name_status: str | None = None
    new_name_status: str | None = None
    is_official: bool | None = None  # "true"/"false" text on the wire
    up_queue: str | None = None
    status_queue: str | None = None
    up_callback_url: str | None = None
    status_callback_url: str | None = None
    calling_configure: dict[str, Any] | None = None


class ChatappSyncPhoneNumberResponse(_Wire):
    """cams 2020-06-06 ``ChatappSyncPhoneNumber``: what ``AlibabaProvider.statistics`` returns."""

    code: str
    message: str | None = None
    success: bool | None = None
    access_denied_detail: str | None = None
    request_id: str = ""
    phone_numbers: list[CamsPhoneNumber] = Field(default_factory=list)
