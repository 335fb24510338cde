"""Alibaba Cloud RPC APIs as the emulator serves them: dysmsapi 2017-05-25 and 2018-05-01, cams 2020-06-06.

Both signatures are verified from the received request: ACS3-HMAC-SHA256 (``x-acs-*`` headers and
``Authorization``) and the legacy v1 HMAC-SHA1 (``Signature`` among the query parameters). Gateway failures
(signature, clock, nonce, missing parameters, unknown action/version, throttling) are HTTP 4xx/5xx with
``{RequestId, HostId, Code, Message, Recommend}``; business failures are HTTP 200 with ``Code`` (2017-05-25)
or ``ResponseCode`` (2018-05-01) not ``OK``. A v1 request without ``Format=JSON`` is answered in XML, as the
gateway does.

Choices where Alibaba documents no error (PROVIDERS.md leaves them open):

- a missing required parameter is ``Missing<Name>`` (HTTP 400, the POP gateway's form, e.g.
  ``MissingPhoneNumbers``); ``Delivered`` other than ``true``/``false`` or a non-integer ``ConversionTime``
  is ``InvalidParameter`` (HTTP 400);
- an unknown ``MessageId``, one from the other API family (a ``BizId`` in 2018-05-01 ``SmsConversion`` or a
  2018-05-01 ``MessageId`` in ``SmsConversionIntl``), a ``To`` that is not the message's recipient, and a
  ``ConversionTime`` that is in seconds (< 10^12), more than 60 s in the future, or before the send are
  business errors ``isv.INVALID_PARAMETERS``;
- a ``To`` with ``+`` is ``isv.MOBILE_NUMBER_ILLEGAL``; an unknown ``CustSpaceId`` is
  ``Unknown.ResourceOwnerId`` (HTTP 400, one of the documented cams errors).
"""

from __future__ import annotations

import hmac
import json
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from ..providers.signing import acs3_parse_authorization, acs3_sign, sha256_hex, v1_sign
from ._common import (
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
    to_e164,
)
from .dialects import DialectSpec

__all__ = ["SPEC", "VERSIONS", "AlibabaDialect"]

#: version -> the actions the emulator serves in it. ``SmsConversion`` exists only in 2018-05-01.
VERSIONS: Mapping[str, frozenset[str]] = {
    "2017-05-25": frozenset({"SendSms", "SmsConversionIntl"}),
    "2018-05-01": frozenset({"SendMessageWithTemplate", "SendMessageToGlobe", "SmsConversion"}),
    "2020-06-06": frozenset({"ChatappSyncPhoneNumber"}),
}
CAMS_VERSION = "2020-06-06"
INTL_VERSION = "2018-05-01"
#: Timestamps may differ from server time by this much, and a nonce may not come back within it (seconds).
MAX_SKEW = 900
ACS3 = "ACS3-HMAC-SHA256"
V1 = "HMAC-SHA1"
_V1_COMMON = frozenset(
    {
        "Action",
        "Version",
        "Format",
        "Timestamp",
        "SignatureMethod",
        "SignatureVersion",
        "SignatureNonce",
        "SignatureType",
        "AccessKeyId",
        "Signature",
        "SecurityToken",
        "RegionId",
    }
)
_GATEWAY_STATUS: Mapping[str, int] = {
    "InternalError": 500,
    "ServiceUnavailable": 503,
    "InvalidAccessKeyId.NotFound": 404,
    "InvalidAction.NotFound": 404,
}
_TEMPLATE_CODE = re.compile(r"SMS_\d+")
_INTL_NUMBER = re.compile(r"[1-9]\d{6,14}")
_CODE_IN_TEXT = re.compile(r"(?<!\d)\d{4,8}(?!\d)")
_SEND_FAMILY = {
    "SmsConversionIntl": frozenset({"SendSms"}),
    "SmsConversion": frozenset({"SendMessageWithTemplate", "SendMessageToGlobe"}),
}


def _parse_time(value: str) -> float:
    """``YYYY-MM-DDThh:mm:ssZ`` (UTC) as UNIX seconds; ValueError otherwise."""
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()


def _unique(pairs: list[tuple[str, str]]) -> dict[str, str]:
    params: dict[str, str] = {}
    for name, value in pairs:
        if name in params:
            raise ApiError("InvalidParameter", f"The parameter {name} is given more than once.", 400)
        params[name] = value
    return params


def _xml(root: str, data: Mapping[str, Any]) -> bytes:
    element = ET.Element(root)
    _fill(element, data)
    text: str = ET.tostring(element, encoding="unicode")
    return b'<?xml version="1.0" encoding="UTF-8"?>' + text.encode("utf-8")


def _fill(element: ET.Element, data: Mapping[str, Any]) -> None:
    for key, value in data.items():
        for item in value if isinstance(value, list) else [value]:
            child = ET.SubElement(element, key)
            if isinstance(item, Mapping):
                _fill(child, item)
            elif isinstance(item, bool):
                child.text = "true" if item else "false"
            else:
                child.text = str(item)


class AlibabaDialect:
    name = "alibaba"

    def __init__(self, state: State, credentials: Mapping[str, str] | None = None) -> None:
        self.state = state

    def issue_message_id(self, action: str | None, now: float) -> tuple[str, str]:
        """``SendMessageWithTemplate`` (default, a 2018-05-01 ``MessageId``) or ``SendSms`` (a 2017-05-25
        ``BizId``)."""
        action = action or "SendMessageWithTemplate"
        if action == "SendSms":
            return action, self.state.alibaba_biz_id(now)
        if action in ("SendMessageWithTemplate", "SendMessageToGlobe"):
            return action, self.state.alibaba_message_id(now)
        raise ValueError(f"not an Alibaba send action: {action!r}")

    def phone_of(self, params: Mapping[str, object]) -> str | None:
        for key in ("PhoneNumbers", "To", "PhoneNumber"):
            value = params.get(key)
            if isinstance(value, str) and value:
                first = value.split(",", 1)[0].strip()
                return to_e164(first) or first
        for key in ("MessageId", "BizId"):
            value = params.get(key)
            sent = self.state.messages.get(value) if isinstance(value, str) else None
            if sent:
                return sent[0].phone
        return None

    # ---- recognising and recording ------------------------------------------------------------------------

    def route(self, inc: Incoming, ex: Exchange) -> None:
        ex.provider = self.name
        ex.request_id = new_request_id(upper=True)
        query = inc.query_pairs()
        authorization = inc.headers.get("authorization", "")
        if authorization.startswith(ACS3) or (
            "x-acs-action" in inc.headers and not any(name == "Signature" for name, _ in query)
        ):
            ex.signature_method = ACS3
            ex.action = inc.headers.get("x-acs-action", "")
            ex.version = inc.headers.get("x-acs-version", "")
            ex.params = dict(query + inc.form_pairs())
            return
        ex.signature_method = V1
        everything = dict(query + inc.form_pairs())
        ex.action = everything.get("Action", "")
        ex.version = everything.get("Version", "")
        ex.xml = everything.get("Format", "").upper() != "JSON"
        ex.params = {k: v for k, v in everything.items() if k not in _V1_COMMON}

    # ---- answers ------------------------------------------------------------------------------------------

    def _render(
        self, ex: Exchange, status: int, data: dict[str, Any], root: str
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        if ex.xml:
            return status, [("Content-Type", "text/xml;charset=utf-8")], _xml(root, data)
        return status, [("Content-Type", "application/json;charset=utf-8")], json_body(data)

    def success(self, ex: Exchange, data: dict[str, Any]) -> Answer:
        status, headers, body = self._render(
            ex, 200, {"RequestId": ex.request_id, **data}, f"{ex.action}Response"
        )
        return Answer(status, headers, body, True, None)

    def error(self, ex: Exchange, code: str, message: str, status: int | None = None) -> Answer:
        """A business error (HTTP 200, ``Code``/``ResponseCode``) for ``isv.``/``isp.`` codes or status 200,
        else a gateway error with the code's usual status (400 unless known otherwise)."""
        business = status == 200 or (
            status is None and code.startswith(("isv.", "isp.")) and ex.version != CAMS_VERSION
        )
        if business:
            if ex.version == INTL_VERSION:
                data = {"RequestId": ex.request_id, "ResponseCode": code, "ResponseDescription": message}
            else:
                data = {"RequestId": ex.request_id, "Code": code, "Message": message}
            answer_status, headers, body = self._render(ex, 200, data, f"{ex.action or 'Error'}Response")
            return Answer(answer_status, headers, body, False, code)
        if status is None:
            status = _GATEWAY_STATUS.get(code, 403 if code.startswith("Forbidden") else 400)
        data = {
            "RequestId": ex.request_id,
            "HostId": self._host_id(ex),
            "Code": code,
            "Message": message,
            "Recommend": f"https://api.aliyun.com/troubleshoot?q={code}&product={self._product(ex)}",
        }
        answer_status, headers, body = self._render(ex, status, data, "Error")
        return Answer(answer_status, headers, body, False, code)

    def throttle(self, ex: Exchange, retry_after: float | None, count: int = 0, limit: float = 0) -> Answer:
        """``Throttling.User`` (cams: ``System.LimitControl``), HTTP 400; with ``retry_after`` (seconds) the
        ``x-acs-retry-after`` header in milliseconds, as the SDK reads it."""
        if ex.version == CAMS_VERSION:
            answer = self.error(ex, "System.LimitControl", "The system is under flow control.", 400)
        else:
            answer = self.error(ex, "Throttling.User", "Request was denied due to user flow control.", 400)
        if retry_after is not None:
            answer.headers.append(("x-acs-retry-after", str(max(1, round(retry_after * 1000)))))
        return answer

    def server_error(self, ex: Exchange) -> Answer:
        return self.error(
            ex,
            "InternalError",
            "The request processing has failed due to some unknown error, exception or failure.",
            500,
        )

    def malformed(self, ex: Exchange) -> Answer:
        body = ('{"RequestId": "' + ex.request_id + '", "Co').encode()
        return Answer(200, [("Content-Type", "application/json;charset=utf-8")], body, False, None)

    def _host_id(self, ex: Exchange) -> str:
        return "cams.ap-southeast-1.aliyuncs.com" if ex.version == CAMS_VERSION else "dysmsapi.aliyuncs.com"

    def _product(self, ex: Exchange) -> str:
        return "cams" if ex.version == CAMS_VERSION else "Dysmsapi"

    # ---- the request --------------------------------------------------------------------------------------

    def handle(self, inc: Incoming, ex: Exchange, now: float) -> Answer:
        """Verify and execute one call. The caller holds ``state.lock``."""
        try:
            if inc.path != "/":
                raise ApiError("InvalidAction.NotFound", "Specified api is not found, please check your url.")
            if ex.signature_method == ACS3:
                self._verify_acs3(inc, now)
            else:
                self._verify_v1(inc, now)
            self._gateway(ex, now)
            params = ex.params
            data = getattr(self, "_do_" + ex.action)(params, now)
        except ApiError as err:
            return self.error(ex, err.code, err.message, err.status)
        return self.success(ex, data)

    def _check_clock(self, raw: str, now: float) -> None:
        try:
            moment = _parse_time(raw)
        except ValueError:
            raise ApiError(
                "InvalidTimeStamp.Format",
                "Specified time stamp or date value is not well formatted (YYYY-MM-DDThh:mm:ssZ, UTC).",
                400,
            ) from None
        if abs(now - moment) > MAX_SKEW:
            raise ApiError("InvalidTimeStamp.Expired", "Specified time stamp or date value is expired.", 400)

    def _secret_of(self, key_id: str) -> str:
        if key_id != self.state.credentials["alibaba_access_key_id"]:
            raise ApiError("InvalidAccessKeyId.NotFound", "Specified access key is not found.", 404)
        return self.state.credentials["alibaba_access_key_secret"]

    def _check_nonce(self, key_id: str, nonce: str, now: float) -> None:
        if not self.state.use_nonce(key_id, nonce, now, MAX_SKEW):
            raise ApiError("SignatureNonceUsed", "Specified signature nonce was used already.", 400)

    def _verify_acs3(self, inc: Incoming, now: float) -> None:
        """ACS3: the listed headers with their received values, the canonical query rebuilt from the decoded
        received parameters, and the body hash."""
        authorization = inc.headers.get("authorization")
        if not authorization:
            raise ApiError(
                "IncompleteSignature", "The request signature does not conform to Aliyun standards."
            )
        try:
            key_id, signed_headers, signature = acs3_parse_authorization(authorization)
        except ValueError as exc:
            raise ApiError(
                "IncompleteSignature",
                f"The request signature does not conform to Aliyun standards: {exc}.",
            ) from None
        for header, name in (
            ("x-acs-version", "Version"),
            ("x-acs-date", "Timestamp"),
            ("x-acs-signature-nonce", "SignatureNonce"),
            ("x-acs-content-sha256", "ContentSha256"),
        ):
            if not inc.headers.get(header):
                raise ApiError(f"Missing{name}", f"The header {header} is mandatory for this request.", 400)
        self._check_clock(inc.headers["x-acs-date"], now)
        secret = self._secret_of(key_id)
        if "host" not in signed_headers:
            raise ApiError("IncompleteSignature", "The host header must be signed.")
        for name in inc.headers:
            if name.startswith("x-acs-") and name not in signed_headers:
                raise ApiError("IncompleteSignature", f"The header {name} is sent but not signed.")
        for name in signed_headers:
            if name not in inc.headers:
                raise ApiError("IncompleteSignature", f"The signed header {name} was not sent.")
        if inc.headers["x-acs-content-sha256"] != sha256_hex(inc.body):
            raise ApiError(
                "SignatureDoesNotMatch",
                "The x-acs-content-sha256 header is not the SHA-256 of the request body.",
                400,
            )
        expected = acs3_sign(
            access_key_id=key_id,
            access_key_secret=secret,
            method=inc.method,
            query=_unique(inc.query_pairs()),
            headers={name: inc.headers[name] for name in signed_headers},
            body=inc.body,
        )
        if not hmac.compare_digest(expected.signature, signature):
            raise ApiError(
                "SignatureDoesNotMatch",
                "Specified signature is not matched with our calculation. server string to sign is:"
                + expected.string_to_sign,
                400,
            )
        self._check_nonce(key_id, inc.headers["x-acs-signature-nonce"], now)

    def _verify_v1(self, inc: Incoming, now: float) -> None:
        """v1: base64 HMAC-SHA1 over every received parameter but ``Signature``, key ``secret + "&"``."""
        params = _unique(inc.query_pairs() + inc.form_pairs())
        for name in ("Version", "AccessKeyId", "Signature", "SignatureMethod", "SignatureNonce", "Timestamp"):
            if not params.get(name):
                raise ApiError(f"Missing{name}", f"{name} is mandatory for this action.", 400)
        if params["SignatureMethod"] != "HMAC-SHA1":
            raise ApiError("IncompleteSignature", "SignatureMethod must be HMAC-SHA1.")
        if params.get("SignatureVersion") != "1.0":
            raise ApiError("IncompleteSignature", "SignatureVersion must be 1.0.")
        self._check_clock(params["Timestamp"], now)
        secret = self._secret_of(params["AccessKeyId"])
        received = params.pop("Signature")
        expected = v1_sign(access_key_secret=secret, method=inc.method, params=params)
        if not hmac.compare_digest(expected.signature, received):
            raise ApiError(
                "SignatureDoesNotMatch",
                "Specified signature is not matched with our calculation. server string to sign is:"
                + expected.string_to_sign,
                400,
            )
        self._check_nonce(params["AccessKeyId"], params["SignatureNonce"], now)

    def _gateway(self, ex: Exchange, now: float) -> None:
        if not ex.version:
            raise ApiError("MissingVersion", "Version is mandatory for this action.", 400)
        if ex.version not in VERSIONS:
            raise ApiError("InvalidVersion", "Specified parameter Version is not valid.", 400)
        if ex.action not in VERSIONS[ex.version]:
            raise ApiError(
                "InvalidAction.NotFound",
                f"Specified api is not found, please check your url and method: {ex.action} is not an action "
                f"of version {ex.version}.",
                404,
            )
        admitted, _, _ = self.state.admit(ex.action, now)
        if not admitted:
            ex.rate_limited = True
            if ex.version == CAMS_VERSION:
                raise ApiError("System.LimitControl", "The system is under flow control.", 400)
            raise ApiError("Throttling.User", "Request was denied due to user flow control.", 400)

    # ---- actions ------------------------------------------------------------------------------------------

    @staticmethod
    def _require(params: Mapping[str, str], name: str) -> str:
        value = params.get(name, "")
        if not value:
            raise ApiError(f"Missing{name}", f"{name} is mandatory for this action.", 400)
        return value

    @staticmethod
    def _template(params: Mapping[str, str]) -> str | None:
        """Check ``TemplateCode`` and ``TemplateParam``; the OTP code the parameters carry, if any."""
        if not _TEMPLATE_CODE.fullmatch(params["TemplateCode"]):
            raise ApiError("isv.SMS_TEMPLATE_ILLEGAL", "The SMS template is illegal (expected SMS_<digits>).")
        raw = params.get("TemplateParam")
        if raw is None:
            return None
        try:
            values = json.loads(raw)
        except ValueError:
            values = None
        if not isinstance(values, dict) or not all(isinstance(v, str) for v in values.values()):
            raise ApiError(
                "isv.INVALID_JSON_PARAM",
                'TemplateParam must be a JSON object whose values are strings, e.g. {"code":"1234"}.',
            )
        if "code" in values:
            return str(values["code"])
        return next((v for v in values.values() if re.fullmatch(r"\d{4,8}", v)), None)

    def _refuse(self, phones: list[str], action: str, code: str | None, now: float) -> None:
        for phone in phones:
            refusal = self.state.refusals.get(phone)
            if refusal is None:
                continue
            error = refusal[0] or "isv.BUSINESS_LIMIT_CONTROL"
            message = refusal[1] or "触发分钟级流控Permits:1"
            for each in phones:
                self.state.record_send(
                    EmulatorMessage(
                        "alibaba", action, "", each, code, now, accepted=False, error_code=error, fee=0
                    )
                )
            raise ApiError(error, message, 200)

    def _record_sent(self, action: str, message_id: str, phone: str, code: str | None, now: float) -> None:
        status, description, reason = self.state.delivery_of(phone)
        self.state.record_send(
            EmulatorMessage(
                "alibaba",
                action,
                message_id,
                phone,
                code,
                now,
                accepted=True,
                report_status=status,
                report_description=description,
                failure_reason=reason,
            )
        )

    def _do_SendSms(self, params: dict[str, str], now: float) -> dict[str, Any]:
        numbers = [n.strip() for n in self._require(params, "PhoneNumbers").split(",")]
        self._require(params, "SignName")
        self._require(params, "TemplateCode")
        if len(numbers) > 1000:
            raise ApiError("isv.MOBILE_COUNT_OVER_LIMIT", "At most 1000 numbers per request.")
        phones = []
        for number in numbers:
            phone = None if number.startswith("+") and not number.startswith("+86") else to_e164(number)
            if phone is None:
                raise ApiError(
                    "isv.MOBILE_NUMBER_ILLEGAL",
                    "Illegal mobile number: international numbers are dialing code and number without '+'.",
                )
            phones.append(phone)
        code = self._template(params)
        self._refuse(phones, "SendSms", code, now)
        biz_id = self.state.alibaba_biz_id(now)
        for phone in phones:
            self._record_sent("SendSms", biz_id, phone, code, now)
        return {"Code": "OK", "Message": "OK", "BizId": biz_id}

    def _intl_send(self, action: str, to: str, code: str | None, sender: str, now: float) -> dict[str, Any]:
        if not _INTL_NUMBER.fullmatch(to):
            raise ApiError(
                "isv.MOBILE_NUMBER_ILLEGAL",
                "Illegal mobile number: To is the dialing code and number, no '+'.",
            )
        phone = "+" + to
        self._refuse([phone], action, code, now)
        message_id = self.state.alibaba_message_id(now)
        self._record_sent(action, message_id, phone, code, now)
        _, _, country = country_of(phone)
        return {
            "ResponseCode": "OK",
            "ResponseDescription": "OK",
            "MessageId": message_id,
            "Segments": "1",
            "To": to,
            "From": sender,
            "NumberDetail": {"Country": country, "Region": "", "Carrier": ""},
        }

    def _do_SendMessageWithTemplate(self, params: dict[str, str], now: float) -> dict[str, Any]:
        to = self._require(params, "To")
        sender = self._require(params, "From")
        self._require(params, "TemplateCode")
        code = self._template(params)
        return self._intl_send("SendMessageWithTemplate", to, code, sender, now)

    def _do_SendMessageToGlobe(self, params: dict[str, str], now: float) -> dict[str, Any]:
        to = self._require(params, "To")
        text = self._require(params, "Message")
        found = _CODE_IN_TEXT.search(text)
        return self._intl_send(
            "SendMessageToGlobe", to, found.group() if found else None, params.get("From", ""), now
        )

    def _conversion(self, action: str, params: dict[str, str], now: float) -> None:
        message_id = self._require(params, "MessageId")
        delivered = self._require(params, "Delivered")
        if delivered not in ("true", "false"):
            raise ApiError("InvalidParameter", "Delivered must be true or false.", 400)
        raw_time = params.get("ConversionTime")
        if raw_time is not None and not re.fullmatch(r"\d+", raw_time):
            raise ApiError("InvalidParameter", "ConversionTime must be an integer (UNIX milliseconds).", 400)
        message = self.state.find_message(message_id, "alibaba", _SEND_FAMILY[action])
        if message is None:
            other = self.state.find_message(
                message_id, "alibaba", frozenset().union(*_SEND_FAMILY.values()) - _SEND_FAMILY[action]
            )
            hint = (
                f" It was issued by {other.action}, whose conversions go to the other API family."
                if other is not None
                else ""
            )
            raise ApiError("isv.INVALID_PARAMETERS", f"MessageId does not exist.{hint}")
        to = params.get("To")
        if to is not None:
            if not _INTL_NUMBER.fullmatch(to):
                raise ApiError(
                    "isv.MOBILE_NUMBER_ILLEGAL",
                    "Illegal mobile number: To is the dialing code and number, no '+'.",
                )
            if "+" + to != message.phone:
                raise ApiError("isv.INVALID_PARAMETERS", "To is not the recipient of MessageId.")
        conversion_time: float | None = None
        if raw_time is not None:
            millis = int(raw_time)
            if millis < 10**12:
                raise ApiError("isv.INVALID_PARAMETERS", "ConversionTime must be UNIX milliseconds.")
            if millis > now * 1000 + 60_000:
                raise ApiError("isv.INVALID_PARAMETERS", "ConversionTime is in the future.")
            if millis < message.sent_at * 1000 - 1000:
                raise ApiError("isv.INVALID_PARAMETERS", "ConversionTime is before the message was sent.")
            conversion_time = millis / 1000
        self.state.conversions.append(
            EmulatorConversion(
                "alibaba", action, message_id, message.phone, conversion_time, delivered == "true", now
            )
        )

    def _do_SmsConversionIntl(self, params: dict[str, str], now: float) -> dict[str, Any]:
        self._conversion("SmsConversionIntl", params, now)
        return {"Code": "OK", "Message": "OK"}

    def _do_SmsConversion(self, params: dict[str, str], now: float) -> dict[str, Any]:
        self._conversion("SmsConversion", params, now)
        return {"ResponseCode": "OK", "ResponseDescription": "OK"}

    def _do_ChatappSyncPhoneNumber(self, params: dict[str, str], now: float) -> dict[str, Any]:
        space = self._require(params, "CustSpaceId")
        if space != self.state.credentials["alibaba_cust_space_id"]:
            raise ApiError(
                "Unknown.ResourceOwnerId", "The resource does not belong to the current user.", 400
            )
        return {
            "Code": "OK",
            "Message": "success",
            "Success": True,
            "AccessDeniedDetail": "None",
            "PhoneNumbers": [dict(n) for n in self.state.cams_phone_numbers],
        }


def _recognises(inc: Incoming) -> bool:
    return (
        inc.headers.get("authorization", "").startswith(ACS3)
        or "x-acs-action" in inc.headers
        or any(name == "Action" for name, _ in inc.query_pairs() + inc.form_pairs())
    )


SPEC = DialectSpec(
    name="alibaba",
    recognises=_recognises,
    build=AlibabaDialect,
    # Fake credentials of the emulated account, not secrets of anyone's.
    credentials={
        "access_key_id": "LTAI5tEmulatorAlibaba000",
        "access_key_secret": "EmulatorAlibabaAccessSecret000",
        "cust_space_id": "293483938849493",
    },
    app_config=lambda url, c: {
        "ENDPOINT": url,
        "CAMS_ENDPOINT": url,
        "ACCESS_KEY_ID": c["access_key_id"],
        "ACCESS_KEY_SECRET": c["access_key_secret"],
        "CUST_SPACE_ID": c["cust_space_id"],
    },
    app_defaults=lambda c: {
        "SIGN_NAME": "Example",
        "TEMPLATE_CODE": "SMS_123456",
    },
    credential_keys=("ACCESS_KEY_ID", "ACCESS_KEY_SECRET"),
)
