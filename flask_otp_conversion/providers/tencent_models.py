"""Pydantic models of the Tencent Cloud SMS API 2021-01-11 wire: request bodies and response data types.

Field names are snake_case with PascalCase aliases (the wire names). Response models ignore unknown fields
(Tencent adds fields, e.g. ``DeprecatedWarning``) and, where the docs say a field "may return null", accept
it missing. Request models are dumped ``by_alias`` with ``exclude_none``: Tencent wants absent optional
fields left out, not sent as ``null``; field order follows the SDK so bodies match its bytes.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_pascal

__all__ = [
    "AddSignStatus",
    "AddTemplateStatus",
    "CallbackStatusStatistics",
    "CallbackStatusStatisticsResponse",
    "DeleteSignStatus",
    "DeleteTemplateStatus",
    "DescribePhoneNumberInfoRequest",
    "DescribePhoneNumberInfoResponse",
    "DescribeSignListStatus",
    "DescribeTemplateListStatus",
    "ModifySignStatus",
    "ModifyTemplateStatus",
    "PhoneNumberInfo",
    "PullSmsReplyStatus",
    "PullSmsSendStatus",
    "PullSmsSendStatusRequest",
    "PullSmsSendStatusResponse",
    "ReportConversionRequest",
    "ReportConversionResponse",
    "ReportConversionStatus",
    "SendSmsRequest",
    "SendSmsResponse",
    "SendStatus",
    "SendStatusStatistics",
    "SendStatusStatisticsResponse",
    "StatisticsRequest",
    "TencentApiError",
    "TencentStatistics",
]


class _Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_pascal, populate_by_name=True, extra="ignore", frozen=True)


# ---- data types (seed page "Data Types", all of them) ---------------------------------------------------


class SendStatus(_Wire):
    """One number's outcome in a ``SendSms`` reply. ``code`` is ``"Ok"`` when accepted; a refused number
    has its own code (e.g. ``LimitExceeded.PhoneNumberThirtySecondLimit``) and no exception is raised."""

    serial_no: str = ""
    phone_number: str = ""
    fee: int = 0
    session_context: str | None = None
    code: str
    message: str = ""
    iso_code: str | None = None


class ReportConversionStatus(_Wire):
    """``Code`` is documented as ``ok`` in the field text and ``OK`` in the example: compare ignoring case."""

    code: str
    message: str = ""


class PullSmsSendStatus(_Wire):
    user_receive_time: int | None = None
    country_code: str | None = None
    subscriber_number: str | None = None
    phone_number: str | None = None
    serial_no: str | None = None
    report_status: str | None = None  # SUCCESS / FAIL
    description: str | None = None
    session_context: str | None = None


class PullSmsReplyStatus(_Wire):
    extend_code: str | None = None
    country_code: str | None = None
    phone_number: str | None = None
    sign_name: str | None = None
    reply_content: str | None = None
    reply_time: int | None = None
    subscriber_number: str | None = None


class SendStatusStatistics(_Wire):
    """Submission counts. ``fee_count`` counts billed segments, so long messages count more than once."""

    fee_count: int = 0
    request_count: int = 0
    request_success_count: int = 0


class CallbackStatusStatistics(_Wire):
    """Delivery-receipt counts (messages) for the window."""

    callback_count: int = 0
    request_success_count: int = 0
    callback_fail_count: int = 0
    callback_success_count: int = 0
    internal_error_count: int = 0
    invalid_number_count: int = 0
    shutdown_error_count: int = 0
    black_list_count: int = 0
    frequency_limit_count: int = 0


class PhoneNumberInfo(_Wire):
    code: str = ""
    message: str = ""
    nation_code: str | None = None
    subscriber_number: str | None = None
    phone_number: str | None = None  # normalised E.164; returned unchanged when unparseable
    iso_code: str | None = None
    iso_name: str | None = None


class AddSignStatus(_Wire):
    sign_id: int | None = None


class AddTemplateStatus(_Wire):
    template_id: str | None = None  # a String here, an Integer in the other template types (as documented)


class DeleteSignStatus(_Wire):
    delete_status: str | None = None
    delete_time: int | None = None


class DeleteTemplateStatus(_Wire):
    delete_status: str | None = None
    delete_time: int | None = None


class DescribeSignListStatus(_Wire):
    sign_id: int | None = None
    international: int | None = None  # 0 mainland, 1 global
    status_code: int | None = None  # 0 approved, 1 under review, -1 rejected
    review_reply: str | None = None
    sign_name: str | None = None
    create_time: int | None = None


class DescribeTemplateListStatus(_Wire):
    template_id: int | None = None
    international: int | None = None
    status_code: int | None = None  # 0 approved, 1 under review, 2 approved not yet effective, -1 rejected
    review_reply: str | None = None
    template_name: str | None = None
    create_time: int | None = None
    template_content: str | None = None


class ModifySignStatus(_Wire):
    sign_id: int | None = None


class ModifyTemplateStatus(_Wire):
    template_id: int | None = None


# ---- envelopes -----------------------------------------------------------------------------------------


class TencentApiError(_Wire):
    code: str
    message: str = ""


class _Response(_Wire):
    request_id: str = ""


class SendSmsResponse(_Response):
    send_status_set: list[SendStatus] = Field(default_factory=list)


class ReportConversionResponse(_Response):
    report_conversion_status: ReportConversionStatus


class SendStatusStatisticsResponse(_Response):
    send_status_statistics: SendStatusStatistics


class CallbackStatusStatisticsResponse(_Response):
    callback_status_statistics: CallbackStatusStatistics


class PullSmsSendStatusResponse(_Response):
    pull_sms_send_status_set: list[PullSmsSendStatus] = Field(default_factory=list)


class DescribePhoneNumberInfoResponse(_Response):
    phone_number_info_set: list[PhoneNumberInfo] = Field(default_factory=list)


# ---- requests ------------------------------------------------------------------------------------------


class SendSmsRequest(_Wire):
    phone_number_set: list[str]
    sms_sdk_app_id: str
    template_id: str
    sign_name: str | None = None
    template_param_set: list[str] | None = None
    extend_code: str | None = None
    session_context: str | None = None
    sender_id: str | None = None


class ReportConversionRequest(_Wire):
    sms_sdk_app_id: str  # a JSON string, though it looks numeric
    serial_no: str
    conversion_time: int | None = None  # UNIX seconds


class StatisticsRequest(_Wire):
    """Shared by ``SendStatusStatistics`` and ``CallbackStatusStatistics``; Limit/Offset must be 0."""

    begin_time: str  # yyyymmddhh
    end_time: str
    sms_sdk_app_id: str
    limit: int = 0
    offset: int = 0


class PullSmsSendStatusRequest(_Wire):
    limit: int = Field(default=100, ge=1, le=100)
    sms_sdk_app_id: str


class DescribePhoneNumberInfoRequest(_Wire):
    phone_number_set: list[str] = Field(min_length=1, max_length=200)


# ---- what ``TencentProvider.statistics`` returns ----------------------------------------------------------


class TencentStatistics(BaseModel):
    """Both statistics calls for one window. ``begin_time``/``end_time`` are the ``yyyymmddhh`` strings sent,
    in UTC+8 (see ``TencentProvider.statistics``)."""

    model_config = ConfigDict(frozen=True)

    begin_time: str
    end_time: str
    send: SendStatusStatistics
    callback: CallbackStatusStatistics
