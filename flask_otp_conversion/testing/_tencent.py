"""Tencent Cloud SMS API 3.0 (version 2021-01-11) as the emulator serves it.

Every answer is HTTP 200: ``{"Response": {..., "RequestId"}}`` on success and
``{"Response": {"Error": {"Code", "Message"}, "RequestId"}}`` on failure, as the real API does. The order of
checks follows the gateway: signature and clock first, then version, action, rate limit, region, body, and
the action's own parameters.

Choices where Tencent documents no error (PROVIDERS.md leaves them open):

- an unknown ``SerialNo`` in ``ReportConversion`` is answered HTTP 200 without ``Response.Error`` but with
  ``ReportConversionStatus.Code = "InvalidParameterValue"`` — the status object exists to carry the outcome
  of the report itself, and a client that only looks for ``Response.Error`` must fail this case;
- ``ConversionTime`` over 10^11 is refused as milliseconds, more than 60 s ahead as "in the future", more
  than 30 days back as too old (``InvalidParameterValue``);
- ``SmsSdkAppId`` that looks like an app id (``14`` + 8 digits) but is not the account's answers
  ``UnauthorizedOperation.SmsSdkAppIdVerifyFail`` (it belongs to someone else); any other value
  ``InvalidParameterValue.SdkAppIdNotExist``;
- verification-code templates are assumed: ``TemplateParamSet`` values must be 0-6 digits;
- statistics hours (``yyyymmddhh``) are read in UTC+8 like the console, ``EndTime``'s hour included.
"""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from ..providers.signing import tc3_parse_authorization, tc3_sign
from ._common import (
    DELIVERY_FAILURES,
    Answer,
    ApiError,
    EmulatorConversion,
    EmulatorMessage,
    Exchange,
    Incoming,
    State,
    country_of,
    json_body,
    new_request_id,
    subscriber_number,
    to_e164,
)
from .dialects import DialectSpec

__all__ = ["REGIONS", "SPEC", "VERSION", "TencentDialect"]

VERSION = "2021-01-11"
#: ``X-TC-Timestamp`` may differ from server time by this much (seconds).
MAX_SKEW = 300
#: Regions the SMS product is served in; ``ReportConversion`` only in ``ap-singapore``.
REGIONS = frozenset({"ap-guangzhou", "ap-beijing", "ap-nanjing", "ap-shanghai", "ap-singapore"})
REPORT_REGION = "ap-singapore"
UTC8 = timezone(timedelta(hours=8))
CONVERSION_FUTURE_SLACK = 60
CONVERSION_MAX_AGE = 30 * 86400
MAX_STATISTICS_SPAN = timedelta(days=32)
SIGNED_HEADERS = ["content-type", "host"]

_STR, _INT, _STR_LIST = "String", "Integer", "Array of String"
_STATISTICS_SPEC = {
    "BeginTime": (_STR, True),
    "EndTime": (_STR, True),
    "SmsSdkAppId": (_STR, True),
    "Limit": (_INT, True),
    "Offset": (_INT, True),
}
#: action -> parameter -> (type, required)
_SPEC: Mapping[str, Mapping[str, tuple[str, bool]]] = {
    "SendSms": {
        "PhoneNumberSet": (_STR_LIST, True),
        "SmsSdkAppId": (_STR, True),
        "TemplateId": (_STR, True),
        "SignName": (_STR, False),
        "TemplateParamSet": (_STR_LIST, False),
        "ExtendCode": (_STR, False),
        "SessionContext": (_STR, False),
        "SenderId": (_STR, False),
    },
    "ReportConversion": {
        "SmsSdkAppId": (_STR, True),
        "SerialNo": (_STR, True),
        "ConversionTime": (_INT, False),
    },
    "CallbackStatusStatistics": _STATISTICS_SPEC,
    "SendStatusStatistics": _STATISTICS_SPEC,
    "PullSmsSendStatus": {"Limit": (_INT, True), "SmsSdkAppId": (_STR, True)},
    "DescribePhoneNumberInfo": {"PhoneNumberSet": (_STR_LIST, True)},
}
ACTIONS = frozenset(_SPEC)

_E164 = re.compile(r"\+[1-9]\d{6,14}")
_APP_ID_SHAPE = re.compile(r"14\d{8}")
_VERIFICATION_PARAM = re.compile(r"\d{0,6}")
_HOUR = re.compile(r"\d{10}")


def _throttle_message(count: int, limit: float) -> str:
    if not limit:
        return "Your request frequency exceeds the limit. Please reduce the frequency of calls."
    return (
        f"Your current request times equals to `{count}` in a second, which exceeds the frequency "
        f"limit `{limit:g}` for a second. Please reduce the frequency of calls."
    )


def _type_ok(kind: str, value: Any) -> bool:
    if kind == _STR:
        return isinstance(value, str)
    if kind == _INT:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


class TencentDialect:
    name = "tencent"

    def __init__(self, state: State, credentials: Mapping[str, str] | None = None) -> None:
        self.state = state

    def issue_message_id(self, action: str | None, now: float) -> tuple[str, str]:
        if action not in (None, "SendSms"):
            raise ValueError(f"not a Tencent send action: {action!r}")
        return "SendSms", self.state.tencent_serial_no(now)

    def phone_of(self, params: Mapping[str, object]) -> str | None:
        numbers = params.get("PhoneNumberSet")
        if isinstance(numbers, list) and numbers and isinstance(numbers[0], str):
            return to_e164(numbers[0]) or numbers[0]
        serial = params.get("SerialNo")
        sent = self.state.messages.get(serial) if isinstance(serial, str) else None
        return sent[0].phone if sent else None

    # ---- recognising and recording ------------------------------------------------------------------------

    def route(self, inc: Incoming, ex: Exchange) -> None:
        ex.provider = self.name
        ex.action = inc.headers.get("x-tc-action", "")
        ex.version = inc.headers.get("x-tc-version", "")
        ex.region = inc.headers.get("x-tc-region")
        ex.signature_method = "TC3-HMAC-SHA256"
        ex.request_id = new_request_id()
        try:
            body = json.loads(inc.body) if inc.body else {}
        except ValueError:
            body = None
        if isinstance(body, dict):
            ex.params = body

    # ---- answers ------------------------------------------------------------------------------------------

    def _answer(self, ex: Exchange, payload: dict[str, Any], *, ok: bool, error_code: str | None) -> Answer:
        body = json_body({"Response": {**payload, "RequestId": ex.request_id}})
        return Answer(200, [("Content-Type", "application/json")], body, ok, error_code)

    def error(self, ex: Exchange, code: str, message: str, status: int | None = None) -> Answer:
        answer = self._answer(ex, {"Error": {"Code": code, "Message": message}}, ok=False, error_code=code)
        answer.status = status or 200
        return answer

    def throttle(self, ex: Exchange, retry_after: float | None, count: int = 0, limit: float = 0) -> Answer:
        """``RequestLimitExceeded`` in an HTTP 200 body; Tencent sends no retry-after hint."""
        return self.error(ex, "RequestLimitExceeded", _throttle_message(count, limit))

    def server_error(self, ex: Exchange) -> Answer:
        """What a failing Tencent front end answers: a bare HTML 500 page, no API envelope."""
        body = b"<html><head><title>500 Internal Server Error</title></head><body><center><h1>500 Internal Server Error</h1></center><hr><center>nginx</center></body></html>"  # noqa: E501
        return Answer(500, [("Content-Type", "text/html")], body, False, None)

    def malformed(self, ex: Exchange) -> Answer:
        body = ('{"Response": {"RequestId": "' + ex.request_id + '", "Report').encode()
        return Answer(200, [("Content-Type", "application/json")], body, False, None)

    # ---- the request --------------------------------------------------------------------------------------

    def handle(self, inc: Incoming, ex: Exchange, now: float) -> Answer:
        """Verify and execute one call. The caller holds ``state.lock``."""
        try:
            self._authenticate(inc, now)
            action = self._gateway(inc, ex, now)
            params = self._params(inc, ex, action)
            payload, ok, error_code = getattr(self, "_do_" + action)(params, now)
        except ApiError as err:
            return self.error(ex, err.code, err.message, err.status)
        return self._answer(ex, payload, ok=ok, error_code=error_code)

    def _authenticate(self, inc: Incoming, now: float) -> None:
        """TC3-HMAC-SHA256 recomputed from the received Host, Content-Type and body bytes."""
        if inc.method != "POST":
            raise ApiError("InvalidParameter", "The emulator serves POST requests with a JSON body only.")
        authorization = inc.headers.get("authorization")
        if not authorization:
            raise ApiError("AuthFailure.InvalidAuthorization", "The Authorization header is missing.")
        raw_timestamp = inc.headers.get("x-tc-timestamp")
        if raw_timestamp is None:
            raise ApiError("MissingParameter", "The request is missing a required parameter `Timestamp`.")
        if not re.fullmatch(r"[1-9]\d*", raw_timestamp):
            raise ApiError("InvalidParameter", "X-TC-Timestamp must be UNIX seconds as a decimal integer.")
        timestamp = int(raw_timestamp)
        if abs(now - timestamp) > MAX_SKEW:
            raise ApiError(
                "AuthFailure.SignatureExpire",
                f"Signature expired: X-TC-Timestamp {timestamp} differs from the server time {int(now)} "
                f"by more than {MAX_SKEW // 60} minutes.",
            )
        try:
            secret_id, scope, signed_headers, signature = tc3_parse_authorization(authorization)
        except ValueError as exc:
            raise ApiError(
                "AuthFailure.InvalidAuthorization", f"The Authorization header is malformed: {exc}."
            ) from None
        if secret_id != self.state.credentials["tencent_secret_id"]:
            raise ApiError(
                "AuthFailure.SecretIdNotFound",
                "The SecretId is not found, please ensure that your SecretId is correct.",
            )
        date = datetime.fromtimestamp(timestamp, tz=timezone.utc).strftime("%Y-%m-%d")
        if scope != f"{date}/sms/tc3_request":
            raise ApiError(
                "AuthFailure.SignatureFailure",
                f"The credential scope `{scope}` must be `{date}/sms/tc3_request` "
                "(the UTC date of X-TC-Timestamp, service sms).",
            )
        missing = [name for name in signed_headers if name not in inc.headers]
        if not set(SIGNED_HEADERS) <= set(signed_headers) or missing:
            raise ApiError(
                "AuthFailure.SignatureFailure",
                "SignedHeaders must include content-type and host, and every signed header must be sent; "
                f"got {';'.join(signed_headers)}.",
            )
        expected = tc3_sign(
            secret_id=secret_id,
            secret_key=self.state.credentials["tencent_secret_key"],
            host=inc.headers.get("host", ""),
            content_type=inc.headers.get("content-type", ""),
            body=inc.body,
            timestamp=timestamp,
            extra_headers={name: inc.headers[name] for name in signed_headers if name not in SIGNED_HEADERS},
        )
        if not hmac.compare_digest(expected.signature, signature):
            raise ApiError(
                "AuthFailure.SignatureFailure",
                "The provided credentials could not be validated. Please check your signature is correct.",
            )

    def _gateway(self, inc: Incoming, ex: Exchange, now: float) -> str:
        """Version, action, rate limit and region: the checks before the body is looked at."""
        if not ex.version:
            raise ApiError("MissingParameter", "The request is missing a required parameter `Version`.")
        if ex.version != VERSION:
            raise ApiError("NoSuchVersion", f"The API version `{ex.version}` does not exist for sms.")
        action = ex.action
        if action not in ACTIONS:
            raise ApiError("InvalidAction", f"The action `{action}` does not exist.")
        admitted, count, limit = self.state.admit(action, now)
        if not admitted:
            ex.rate_limited = True
            raise ApiError("RequestLimitExceeded", _throttle_message(count, limit))
        if ex.region is None or not ex.region:
            raise ApiError("MissingParameter", "The request is missing a required parameter `Region`.")
        if ex.region not in REGIONS:
            raise ApiError("UnsupportedRegion", f"sms does not support region `{ex.region}`.")
        if action == "ReportConversion" and ex.region != REPORT_REGION:
            raise ApiError(
                "UnsupportedRegion",
                f"The action `ReportConversion` is only supported in region `{REPORT_REGION}`, not `{ex.region}`.",
            )
        return action

    def _params(self, inc: Incoming, ex: Exchange, action: str) -> dict[str, Any]:
        content_type = inc.headers.get("content-type", "")
        if content_type.split(";", 1)[0].strip().lower() != "application/json":
            raise ApiError("InvalidParameter", f"Content-Type `{content_type}` is not supported, use JSON.")
        try:
            params = json.loads(inc.body)
        except ValueError:
            raise ApiError("FailedOperation.JsonParseFail", "Failed to parse the request body as JSON.") from None
        if not isinstance(params, dict):
            raise ApiError("FailedOperation.JsonParseFail", "The request body must be a JSON object.")
        spec = _SPEC[action]
        for name in params:
            if name not in spec:
                raise ApiError("UnknownParameter", f"The parameter `{name}` is not recognized.")
        for name, (kind, required) in spec.items():
            if name not in params:
                if required:
                    raise ApiError("MissingParameter", f"The request is missing a required parameter `{name}`.")
                continue
            if not _type_ok(kind, params[name]):
                raise ApiError(
                    "InvalidParameter",
                    f"The value type of parameter `{name}` is not valid: expected {kind}, "
                    f"got {type(params[name]).__name__}.",
                )
        return params

    def _check_app_id(self, value: str) -> None:
        if value == self.state.credentials["tencent_sdk_app_id"]:
            return
        if _APP_ID_SHAPE.fullmatch(value):
            raise ApiError(
                "UnauthorizedOperation.SmsSdkAppIdVerifyFail",
                "SmsSdkAppId verification failed: it does not belong to the account of this SecretId.",
            )
        raise ApiError("InvalidParameterValue.SdkAppIdNotExist", "The SmsSdkAppId does not exist.")

    # ---- actions ------------------------------------------------------------------------------------------

    def _do_SendSms(self, params: dict[str, Any], now: float) -> tuple[dict[str, Any], bool, str | None]:
        self._check_app_id(params["SmsSdkAppId"])
        phones: list[str] = params["PhoneNumberSet"]
        if not phones:
            raise ApiError("InvalidParameterValue.IncorrectPhoneNumber", "PhoneNumberSet is empty.")
        if len(phones) > 200:
            raise ApiError("LimitExceeded.PhoneNumberCountLimit", "At most 200 numbers per request.")
        for index, phone in enumerate(phones):
            if not _E164.fullmatch(phone):
                raise ApiError(
                    "InvalidParameterValue.IncorrectPhoneNumber",
                    f"PhoneNumberSet[{index}] is not an E.164 number with a leading '+'.",
                )
        domestic = {phone.startswith("+86") for phone in phones}
        if len(domestic) > 1:
            raise ApiError(
                "UnsupportedOperation.ContainDomesticAndInternationalPhoneNumber",
                "A request may not mix Mainland China and international numbers.",
            )
        if not re.fullmatch(r"\d+", params["TemplateId"]):
            raise ApiError(
                "FailedOperation.TemplateIncorrectOrUnapproved",
                "The template ID is not an approved template.",
            )
        if True in domestic and not params.get("SignName"):
            raise ApiError(
                "MissingParameter",
                "The request is missing a required parameter `SignName` (required for Mainland China SMS).",
            )
        template_params: list[str] = params.get("TemplateParamSet", [])
        for value in template_params:
            if not _VERIFICATION_PARAM.fullmatch(value):
                raise ApiError(
                    "InvalidParameterValue.TemplateParameterFormatError",
                    "Verification code templates only accept numeric values of 0 to 6 digits.",
                )
        session_context = params.get("SessionContext", "")
        if len(session_context.encode()) > 512:
            raise ApiError("InvalidParameterValue", "SessionContext must be shorter than 512 bytes.")
        code = template_params[0] if template_params else None
        statuses = []
        first_failure: str | None = None
        for phone in phones:
            _, iso, _ = country_of(phone)
            refusal = self.state.refusals.get(phone)
            if refusal is not None:
                failure = refusal[0] or "LimitExceeded.PhoneNumberThirtySecondLimit"
                message = refusal[1] or "The number reached its 30-second sending limit."
                first_failure = first_failure or failure
                self.state.record_send(
                    EmulatorMessage(
                        "tencent", "SendSms", "", phone, code, now, accepted=False, error_code=failure, fee=0
                    )
                )
                statuses.append(
                    {
                        "SerialNo": "",
                        "PhoneNumber": phone,
                        "Fee": 0,
                        "SessionContext": session_context,
                        "Code": failure,
                        "Message": message,
                        "IsoCode": iso,
                    }
                )
                continue
            serial = self.state.tencent_serial_no(now)
            report_status, description, reason = self.state.delivery_of(phone)
            self.state.record_send(
                EmulatorMessage(
                    "tencent",
                    "SendSms",
                    serial,
                    phone,
                    code,
                    now,
                    accepted=True,
                    session_context=session_context,
                    report_status=report_status,
                    report_description=description,
                    failure_reason=reason,
                )
            )
            statuses.append(
                {
                    "SerialNo": serial,
                    "PhoneNumber": phone,
                    "Fee": 1,
                    "SessionContext": session_context,
                    "Code": "Ok",
                    "Message": "send success",
                    "IsoCode": iso,
                }
            )
        return {"SendStatusSet": statuses}, first_failure is None, first_failure

    def _do_ReportConversion(self, params: dict[str, Any], now: float) -> tuple[dict[str, Any], bool, str | None]:
        self._check_app_id(params["SmsSdkAppId"])
        conversion_time: int | None = params.get("ConversionTime")
        if conversion_time is not None:
            if conversion_time > 10**11:
                raise ApiError(
                    "InvalidParameterValue",
                    f"ConversionTime {conversion_time} looks like milliseconds; it is UNIX seconds.",
                )
            if conversion_time > now + CONVERSION_FUTURE_SLACK:
                raise ApiError("InvalidParameterValue", f"ConversionTime {conversion_time} is in the future.")
            if conversion_time < now - CONVERSION_MAX_AGE:
                raise ApiError("InvalidParameterValue", f"ConversionTime {conversion_time} is too old.")
        serial_no: str = params["SerialNo"]
        message = self.state.find_message(serial_no, "tencent", frozenset({"SendSms"}))
        if message is None:
            status = {
                "Code": "InvalidParameterValue",
                "Message": "SerialNo does not exist: it was not returned by SendSms for this SmsSdkAppId.",
            }
            return {"ReportConversionStatus": status}, False, "InvalidParameterValue"
        self.state.conversions.append(
            EmulatorConversion(
                "tencent",
                "ReportConversion",
                serial_no,
                message.phone,
                float(conversion_time) if conversion_time is not None else None,
                True,
                now,
            )
        )
        return {"ReportConversionStatus": {"Code": "ok", "Message": "report success"}}, True, None

    def _window(self, params: dict[str, Any]) -> tuple[float, float]:
        self._check_app_id(params["SmsSdkAppId"])
        hours = []
        for name, code in (("BeginTime", "BeginTimeVerifyFail"), ("EndTime", "EndTimeVerifyFail")):
            value: str = params[name]
            try:
                if not _HOUR.fullmatch(value):
                    raise ValueError(value)
                hours.append(datetime.strptime(value, "%Y%m%d%H").replace(tzinfo=UTC8))
            except ValueError:
                raise ApiError(
                    f"InvalidParameterValue.{code}", f"{name} must be yyyymmddhh, e.g. 2021050113."
                ) from None
        begin, end = hours
        if end < begin:
            raise ApiError("InvalidParameterValue.EndTimeVerifyFail", "EndTime must not be before BeginTime.")
        if end - begin > MAX_STATISTICS_SPAN:
            raise ApiError("InvalidParameterValue.EndTimeVerifyFail", "EndTime may be at most 32 days after BeginTime.")
        if params["Limit"] != 0:
            raise ApiError("InvalidParameterValue.LimitVerifyFail", "Limit is currently fixed at 0.")
        if params["Offset"] != 0:
            raise ApiError("InvalidParameterValue.OffsetVerifyFail", "Offset is currently fixed at 0.")
        return begin.timestamp(), (end + timedelta(hours=1)).timestamp()

    def _sends_in(self, params: dict[str, Any]) -> list[EmulatorMessage]:
        begin, end = self._window(params)
        return [m for m in self.state.message_log if m.provider == "tencent" and begin <= m.sent_at < end]

    def _do_SendStatusStatistics(self, params: dict[str, Any], now: float) -> tuple[dict[str, Any], bool, str | None]:
        sends = self._sends_in(params)
        accepted = [m for m in sends if m.accepted]
        stats = {
            "FeeCount": sum(m.fee for m in accepted),
            "RequestCount": len(sends),
            "RequestSuccessCount": len(accepted),
        }
        return {"SendStatusStatistics": stats}, True, None

    def _do_CallbackStatusStatistics(
        self, params: dict[str, Any], now: float
    ) -> tuple[dict[str, Any], bool, str | None]:
        accepted = [m for m in self._sends_in(params) if m.accepted]
        failed = [m for m in accepted if m.report_status == "FAIL"]
        stats = {
            "CallbackCount": len(accepted),
            "RequestSuccessCount": len(accepted),
            "CallbackFailCount": len(failed),
            "CallbackSuccessCount": len(accepted) - len(failed),
            **{counter: 0 for _, counter in DELIVERY_FAILURES.values()},
        }
        for message in failed:
            if message.failure_reason is not None:
                stats[DELIVERY_FAILURES[message.failure_reason][1]] += 1
        return {"CallbackStatusStatistics": stats}, True, None

    def _do_PullSmsSendStatus(self, params: dict[str, Any], now: float) -> tuple[dict[str, Any], bool, str | None]:
        self._check_app_id(params["SmsSdkAppId"])
        limit: int = params["Limit"]
        if not 1 <= limit <= 100:
            raise ApiError("InvalidParameterValue.LimitVerifyFail", "Limit must be between 1 and 100.")
        pulled: list[dict[str, Any]] = []
        while self.state.receipts and len(pulled) < limit:
            message = self.state.receipts.popleft()
            nation, _, _ = country_of(message.phone)
            pulled.append(
                {
                    "UserReceiveTime": int(message.sent_at) + 1,
                    "CountryCode": nation,
                    "SubscriberNumber": subscriber_number(message.phone),
                    "PhoneNumber": message.phone,
                    "SerialNo": message.message_id,
                    "ReportStatus": message.report_status,
                    "Description": message.report_description,
                    "SessionContext": message.session_context,
                }
            )
        return {"PullSmsSendStatusSet": pulled}, True, None

    def _do_DescribePhoneNumberInfo(
        self, params: dict[str, Any], now: float
    ) -> tuple[dict[str, Any], bool, str | None]:
        phones: list[str] = params["PhoneNumberSet"]
        if len(phones) > 200:
            raise ApiError("LimitExceeded.PhoneNumberCountLimit", "At most 200 numbers per request.")
        infos = []
        for raw in phones:
            phone = raw.strip()
            if phone.startswith("00"):
                phone = "+" + phone[2:]
            elif re.fullmatch(r"1\d{10}", phone):
                phone = "+86" + phone
            if not _E164.fullmatch(phone):
                infos.append(
                    {
                        "Code": "InvalidParameterValue.IncorrectPhoneNumber",
                        "Message": "The number could not be parsed.",
                        "NationCode": "",
                        "SubscriberNumber": "",
                        "PhoneNumber": raw,
                        "IsoCode": "DEF",
                        "IsoName": "",
                    }
                )
                continue
            nation, iso, iso_name = country_of(phone)
            infos.append(
                {
                    "Code": "Ok",
                    "Message": "OK",
                    "NationCode": nation,
                    "SubscriberNumber": subscriber_number(phone),
                    "PhoneNumber": phone,
                    "IsoCode": iso,
                    "IsoName": iso_name,
                }
            )
        return {"PhoneNumberInfoSet": infos}, True, None


def _recognises(inc: Incoming) -> bool:
    return "x-tc-action" in inc.headers


SPEC = DialectSpec(
    name="tencent",
    recognises=_recognises,
    build=TencentDialect,
    # Fake credentials of the emulated account, not secrets of anyone's.
    credentials={
        "secret_id": "AKIDEmulatorTencent0000000000000000000",
        "secret_key": "EmulatorTencentSecretKey00000000",
        "sdk_app_id": "1400006666",
    },
    app_config=lambda url, c: {
        "ENDPOINT": url,
        "SECRET_ID": c["secret_id"],
        "SECRET_KEY": c["secret_key"],
        "SDK_APP_ID": c["sdk_app_id"],
    },
    app_defaults=lambda c: {"SIGN_NAME": "Example", "TEMPLATE_ID": "1110"},
    credential_keys=("SECRET_ID", "SECRET_KEY"),
)
