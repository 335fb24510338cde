"""AWS End User Messaging SMS (``pinpoint-sms-voice-v2``, JSON 1.0) as the emulator serves it:
``SendTextMessage`` and ``PutMessageFeedback``.

SigV4 is recomputed from the received bytes with ``providers/sigv4.py``, as AWS does: the credential scope
(date, region, service ``sms-voice``), the clock (5 minutes), the signed headers (host, content-type and every
``x-amz-*`` sent), the session token of temporary credentials, and the signature itself. Errors are
``{"__type", "Message"}`` with HTTP 400 (500 for ``InternalServerException``); throttling is an HTTP 400
``ThrottlingException``, with no retry-after hint (AWS sends none). Message ids are UUIDs, kept per region:
feedback must go to the region of the send.

Choices where AWS documents nothing (reference 2.4, 2.5), so that a client bug shows:

- feedback for an unknown id, one of another region, or a message sent without feedback enabled (neither
  ``MessageFeedbackEnabled: true`` nor the emulator's feedback configuration set) is
  ``ResourceNotFoundException``;
- feedback more than an hour after the send answers 200 with ``MessageFeedbackStatus: FAILED`` (AWS failed
  the record by itself) and records no conversion;
- a ``Content-Type`` other than ``application/x-amz-json-1.0``, a body that is not a JSON object, or a member
  of the wrong JSON type (``"true"`` for a boolean) is ``SerializationException``;
- a send to a refused phone (``refuse_phone``) is ``ConflictException`` ``DESTINATION_PHONE_NUMBER_OPTED_OUT``.
"""

from __future__ import annotations

import hmac
import json
import re
import uuid
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from ..providers.sigv4 import parse_authorization, sigv4_sign
from .dialects import (
    Answer,
    ApiError,
    DialectSpec,
    EmulatorConversion,
    EmulatorMessage,
    Exchange,
    Incoming,
    State,
    json_body,
)

__all__ = ["API_VERSION", "SPEC", "AwsDialect"]

API_VERSION = "2022-03-31"
SERVICE = "sms-voice"
TARGET_PREFIX = "PinpointSMSVoiceV2."
CONTENT_TYPE = "application/x-amz-json-1.0"
SEND = "SendTextMessage"
FEEDBACK = "PutMessageFeedback"
#: Requests whose X-Amz-Date is further than this from server time are refused (seconds).
MAX_SKEW = 300
#: AWS fails a message's feedback record by itself this long after the send (seconds).
FEEDBACK_WINDOW = 3600
_NAMESPACE = "com.amazonaws.pinpointsmsvoicev2#"
#: Errors of the front door, not of the service model: bare ``__type`` and a lower-case ``message``.
_FRONT_DOOR = frozenset(
    {
        "InvalidSignatureException",
        "IncompleteSignatureException",
        "UnrecognizedClientException",
        "MissingAuthenticationTokenException",
        "UnknownOperationException",
        "SerializationException",
    }
)
_STATUS: Mapping[str, int] = {"InternalServerException": 500, "ServiceUnavailableException": 503}
_PHONE = re.compile(r"^\+?[1-9][0-9]{1,18}$")
_MESSAGE_ID = re.compile(r"^[A-Za-z0-9_:/-]{1,64}$")
_CODE_IN_TEXT = re.compile(r"(?<!\d)\d{4,8}(?!\d)")
_AMZ_DATE = re.compile(r"^\d{8}T\d{6}Z$")
#: member -> (JSON type, required) of each operation.
_SPEC: Mapping[str, Mapping[str, tuple[type, bool]]] = {
    SEND: {
        "DestinationPhoneNumber": (str, True),
        "OriginationIdentity": (str, False),
        "MessageBody": (str, False),
        "MessageType": (str, False),
        "Keyword": (str, False),
        "ConfigurationSetName": (str, False),
        "MaxPrice": (str, False),
        "TimeToLive": (int, False),
        "Context": (dict, False),
        "DestinationCountryParameters": (dict, False),
        "DryRun": (bool, False),
        "ProtectConfigurationId": (str, False),
        "MessageFeedbackEnabled": (bool, False),
    },
    FEEDBACK: {"MessageId": (str, True), "MessageFeedbackStatus": (str, True)},
}


def _stamp(value: str) -> float:
    return datetime.strptime(value, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc).timestamp()


def _amz(moment: float) -> str:
    return datetime.fromtimestamp(moment, tz=timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def _invalid(member: str, message: str) -> ApiError:
    field = member[0].lower() + member[1:]
    text = f"1 validation error detected: Value at '{field}' failed to satisfy constraint: {message}"
    return ApiError("ValidationException", text)


class AwsDialect:
    name = "aws"

    def __init__(self, state: State, credentials: Mapping[str, str]) -> None:
        self.state = state
        self.region = credentials["region"]
        self.configuration_set = credentials["configuration_set"]
        #: access key id -> (secret, session token or None).
        self._keys: dict[str, tuple[str, str | None]] = {
            credentials["access_key_id"]: (credentials["secret_access_key"], None),
            credentials["temporary_access_key_id"]: (
                credentials["temporary_secret_access_key"],
                credentials["session_token"],
            ),
        }
        #: message id -> (region, feedback enabled).
        self._sent: dict[str, tuple[str, bool]] = {}

    # ---- recognising and recording ------------------------------------------------------------------------

    def route(self, inc: Incoming, ex: Exchange) -> None:
        ex.provider = self.name
        ex.version = API_VERSION
        ex.request_id = str(uuid.uuid4())
        ex.signature_method = "AWS4-HMAC-SHA256"
        target = inc.headers.get("x-amz-target", "")
        ex.action = target[len(TARGET_PREFIX) :] if target.startswith(TARGET_PREFIX) else ""
        try:
            ex.region = parse_authorization(inc.headers.get("authorization", "")).region
        except ValueError:
            ex.region = None
        try:
            body = json.loads(inc.body) if inc.body else {}
        except ValueError:
            body = None
        if isinstance(body, dict):
            ex.params = body

    def issue_message_id(self, action: str | None, now: float) -> tuple[str, str]:
        """A message sent in the emulator's default region with feedback enabled."""
        if action not in (None, SEND):
            raise ValueError(f"not an AWS send action: {action!r}")
        message_id = str(uuid.uuid4())
        self._sent[message_id] = (self.region, True)
        return SEND, message_id

    def phone_of(self, params: Mapping[str, object]) -> str | None:
        phone = params.get("DestinationPhoneNumber")
        if isinstance(phone, str) and phone:
            return phone if phone.startswith("+") else "+" + phone
        message_id = params.get("MessageId")
        sent = self.state.messages.get(message_id) if isinstance(message_id, str) else None
        return sent[0].phone if sent else None

    # ---- answers ------------------------------------------------------------------------------------------

    def _json(self, ex: Exchange, status: int, payload: Mapping[str, Any], ok: bool, code: str | None) -> Answer:
        headers = [("Content-Type", CONTENT_TYPE), ("x-amzn-RequestId", ex.request_id)]
        return Answer(status, headers, json_body(dict(payload)), ok, code)

    def error(
        self, ex: Exchange, code: str, message: str, status: int | None = None, **members: Any
    ) -> Answer:
        if code in _FRONT_DOOR:
            payload: dict[str, Any] = {"__type": code, "message": message}
        else:
            payload = {"__type": _NAMESPACE + code, "Message": message, **members}
        return self._json(ex, status or _STATUS.get(code, 400), payload, False, code)

    def throttle(self, ex: Exchange, retry_after: float | None, count: int = 0, limit: float = 0) -> Answer:
        """HTTP 400 ``ThrottlingException``; AWS sends no retry-after hint, so ``retry_after`` is not used."""
        return self.error(ex, "ThrottlingException", "Rate exceeded")

    def server_error(self, ex: Exchange) -> Answer:
        return self.error(ex, "InternalServerException", "Internal failure", 500, RequestId=ex.request_id)

    def malformed(self, ex: Exchange) -> Answer:
        return Answer(200, [("Content-Type", CONTENT_TYPE)], b'{"MessageId": "a1b2', False, None)

    # ---- the request --------------------------------------------------------------------------------------

    def handle(self, inc: Incoming, ex: Exchange, now: float) -> Answer:
        """Verify and execute one call. The caller holds ``state.lock``."""
        try:
            self._authenticate(inc, now)
            if inc.method != "POST" or inc.path != "/" or ex.action not in _SPEC:
                raise ApiError("UnknownOperationException", "")
            params = self._params(inc, ex)
            admitted, _, _ = self.state.admit(ex.action, now)
            if not admitted:
                ex.rate_limited = True
                return self.throttle(ex, None)
            if ex.action == SEND:
                return self._send(ex, params, now)
            return self._feedback(ex, params, now)
        except _Refused as refused:
            return self.error(ex, refused.code, refused.message, None, **refused.members)
        except ApiError as err:
            return self.error(ex, err.code, err.message, err.status)

    def _authenticate(self, inc: Incoming, now: float) -> None:
        authorization = inc.headers.get("authorization")
        if not authorization:
            raise ApiError("MissingAuthenticationTokenException", "Missing Authentication Token")
        try:
            parsed = parse_authorization(authorization)
        except ValueError:
            raise ApiError(
                "IncompleteSignatureException",
                "Authorization header requires 'Credential', 'Signature' and 'SignedHeaders' parameters.",
            ) from None
        date = inc.headers.get("x-amz-date", "")
        if not _AMZ_DATE.match(date):
            raise ApiError(
                "IncompleteSignatureException", "Authorization header requires existence of either a 'X-Amz-Date' "
                "or a 'Date' header."
            )
        moment = _stamp(date)
        if moment < now - MAX_SKEW:
            raise ApiError(
                "InvalidSignatureException",
                f"Signature expired: {date} is now earlier than {_amz(now - MAX_SKEW)} ({_amz(now)} - 5 min.)",
            )
        if moment > now + MAX_SKEW:
            raise ApiError(
                "InvalidSignatureException",
                f"Signature not yet current: {date} is still later than {_amz(now + MAX_SKEW)} ({_amz(now)} + 5 min.)",
            )
        key = self._keys.get(parsed.access_key_id)
        if key is None:
            raise ApiError("UnrecognizedClientException", "The security token included in the request is invalid.")
        secret, token = key
        sent_token = inc.headers.get("x-amz-security-token")
        if token is not None and (sent_token is None or not hmac.compare_digest(sent_token, token)):
            raise ApiError("UnrecognizedClientException", "The security token included in the request is invalid.")
        if parsed.date != date[:8] or parsed.service != SERVICE:
            raise ApiError(
                "InvalidSignatureException",
                f"Credential should be scoped to a valid date and service: '{date[:8]}/<region>/{SERVICE}'.",
            )
        signed = parsed.signed_headers
        must_sign = {"host", "content-type"} | {name for name in inc.headers if name.startswith("x-amz-")}
        if not must_sign <= set(signed) or any(name not in inc.headers for name in signed):
            raise ApiError(
                "InvalidSignatureException",
                "'Host', 'Content-Type' and every 'X-Amz-*' header sent must be signed, and every signed header "
                f"sent; got SignedHeaders={';'.join(signed)}.",
            )
        expected = sigv4_sign(
            access_key_id=parsed.access_key_id,
            secret_access_key=secret,
            region=parsed.region,
            service=SERVICE,
            method=inc.method,
            path=inc.path,
            query=inc.query_pairs(),
            headers={name: inc.headers[name] for name in signed},
            body=inc.body,
            amz_date=date,
        )
        if not hmac.compare_digest(expected.signature, parsed.signature):
            raise ApiError(
                "InvalidSignatureException",
                "The request signature we calculated does not match the signature you provided. Check your AWS "
                "Secret Access Key and signing method. Consult the service documentation for details.\n\n"
                f"The Canonical String for this request should have been\n'{expected.canonical_request}'\n\n"
                f"The String-to-Sign should have been\n'{expected.string_to_sign}'\n",
            )

    def _params(self, inc: Incoming, ex: Exchange) -> dict[str, Any]:
        content_type = inc.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if content_type != CONTENT_TYPE:
            raise ApiError("SerializationException", f"Content-Type must be {CONTENT_TYPE}, not {content_type!r}.")
        try:
            params = json.loads(inc.body)
        except ValueError:
            raise ApiError("SerializationException", "The request body is not valid JSON.") from None
        if not isinstance(params, dict):
            raise ApiError("SerializationException", "Start of list found where not expected")
        spec = _SPEC[ex.action]
        for name, value in params.items():
            if name in spec and value is not None:  # JSON null is an absent member
                kind = spec[name][0]
                if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
                    raise ApiError("SerializationException", f"{name}: expected a JSON {kind.__name__}.")
        for name, (_, required) in spec.items():
            if required and params.get(name) is None:
                raise _invalid(name, "Member must not be null")
        return params

    def _send(self, ex: Exchange, params: dict[str, Any], now: float) -> Answer:
        phone: str = params["DestinationPhoneNumber"]
        if not _PHONE.match(phone):
            pattern = r"\+?[1-9][0-9]{1,18}"
            raise _invalid("DestinationPhoneNumber", f"Member must satisfy regular expression pattern: {pattern}")
        text = params.get("MessageBody", "")
        if not 1 <= len(text) <= 1600:
            raise _invalid("MessageBody", "Member must have length between 1 and 1600")
        if params.get("MessageType", "TRANSACTIONAL") not in ("TRANSACTIONAL", "PROMOTIONAL"):
            raise _invalid("MessageType", "Member must satisfy enum value set: [TRANSACTIONAL, PROMOTIONAL]")
        ttl = params.get("TimeToLive")
        if ttl is not None and not 5 <= ttl <= 259200:
            raise _invalid("TimeToLive", "Member must have value between 5 and 259200")
        config_set = params.get("ConfigurationSetName")
        if config_set is not None and config_set != self.configuration_set:
            raise _Refused(
                "ResourceNotFoundException",
                f"Configuration set {config_set} not found",
                ResourceType="configuration-set",
                ResourceId=config_set,
            )
        flag = params.get("MessageFeedbackEnabled")
        feedback = flag if flag is not None else config_set is not None  # the emulator's set has feedback on
        e164 = phone if phone.startswith("+") else "+" + phone
        refusal = self.state.refusals.get(e164)
        if refusal is not None:
            code, message = refusal
            refused = EmulatorMessage(
                self.name, SEND, "", e164, None, now, accepted=False, error_code=code or "ConflictException"
            )
            self.state.record_send(refused)
            if code:
                raise ApiError(code, message or "Refused by the emulator.")
            raise _Refused(
                "ConflictException",
                message or "The destination phone number is opted out.",
                Reason="DESTINATION_PHONE_NUMBER_OPTED_OUT",
                ResourceType="opt-out-list",
                ResourceId="Default",
            )
        message_id = str(uuid.uuid4())
        self._sent[message_id] = (ex.region or self.region, bool(feedback))
        found = _CODE_IN_TEXT.search(text)
        status, description, reason = self.state.delivery_of(e164)
        self.state.record_send(
            EmulatorMessage(
                self.name,
                SEND,
                message_id,
                e164,
                found.group(0) if found else None,
                now,
                accepted=True,
                report_status=status,
                report_description=description,
                failure_reason=reason,
            )
        )
        return self._json(ex, 200, {"MessageId": message_id}, True, None)

    def _feedback(self, ex: Exchange, params: dict[str, Any], now: float) -> Answer:
        message_id: str = params["MessageId"]
        status: str = params["MessageFeedbackStatus"]
        if not _MESSAGE_ID.match(message_id):
            raise _invalid("MessageId", "Member must satisfy regular expression pattern: [A-Za-z0-9_:/-]+")
        if status not in ("RECEIVED", "FAILED"):
            raise _Refused(
                "ValidationException",
                f"1 validation error detected: Value '{status}' at 'messageFeedbackStatus' failed to satisfy "
                "constraint: Member must satisfy enum value set: [RECEIVED, FAILED]",
                Reason="FIELD_VALIDATION_FAILED",
                Fields=[{"Name": "MessageFeedbackStatus", "Message": "Member must satisfy enum value set"}],
            )
        sent = self.state.find_message(message_id, self.name, frozenset({SEND}))
        region, enabled = self._sent.get(message_id, ("", False))
        if sent is None or region != (ex.region or self.region) or not enabled:
            raise _Refused(
                "ResourceNotFoundException", "Message not found", ResourceType="message", ResourceId=message_id
            )
        if now - sent.sent_at > FEEDBACK_WINDOW:
            return self._json(ex, 200, {"MessageId": message_id, "MessageFeedbackStatus": "FAILED"}, True, None)
        self.state.conversions.append(
            EmulatorConversion(self.name, FEEDBACK, message_id, sent.phone, None, status == "RECEIVED", now)
        )
        return self._json(ex, 200, {"MessageId": message_id, "MessageFeedbackStatus": status}, True, None)


class _Refused(Exception):
    """An error answer with the service model's extra members (``Reason``, ``ResourceType``...)."""

    def __init__(self, code: str, message: str, **members: Any) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.members = members


def _recognises(inc: Incoming) -> bool:
    return inc.headers.get("x-amz-target", "").startswith(TARGET_PREFIX) or inc.headers.get(
        "authorization", ""
    ).startswith("AWS4-HMAC-SHA256")


SPEC = DialectSpec(
    name="aws",
    recognises=_recognises,
    build=AwsDialect,
    # Fake credentials of the emulated account, not secrets of anyone's.
    credentials={
        "region": "us-east-1",
        "access_key_id": "AKIAEMULATOR00000001",
        "secret_access_key": "EmulatorAwsSecretAccessKey00000000000001",
        "temporary_access_key_id": "ASIAEMULATOR00000002",
        "temporary_secret_access_key": "EmulatorAwsTemporarySecretKey00000000002",
        "session_token": "EmulatorAwsSessionToken//////////0000000000000000000000000002",
        "configuration_set": "otp-feedback",
        "origination_identity": "+12065550100",
    },
    app_config=lambda url, c: {
        "ENDPOINT": url,
        "REGION": c["region"],
        "ACCESS_KEY_ID": c["access_key_id"],
        "SECRET_ACCESS_KEY": c["secret_access_key"],
    },
    app_defaults=lambda c: {"ORIGINATION_IDENTITY": c["origination_identity"]},
    credential_keys=("ACCESS_KEY_ID", "SECRET_ACCESS_KEY"),
)
