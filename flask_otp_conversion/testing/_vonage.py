"""Vonage as the emulator serves it: the SMS API (``POST /sms/json``) and the Conversion API
(``POST /conversions/sms``), built only on the public dialect interface (:mod:`.dialects`).

Both take their parameters from the query or a form body and authenticate the three ways Vonage does: HTTP
Basic ``api_key:api_secret``, ``api_key``/``api_secret`` parameters, or ``api_key`` + ``sig`` recomputed from
the received parameters with the account's signature secret and method. The SMS API answers HTTP 200 to
everything, the outcome in ``messages[0].status`` (1 throttled, 2 missing, 3 invalid, 4 bad credentials, 14
bad signature...); the Conversion API answers 200 with an empty body, or an HTTP error with an RFC 7807 body
(401, 402, 420, 429, 500).

Choices where Vonage documents nothing (reference 3.3-3.5 leaves them open):

- a signature ``timestamp`` in UNIX seconds must be within :data:`MAX_SKEW` of the emulator's clock; on the
  Conversion API a ``timestamp`` in the conversion format is taken as the signed timestamp, as the SDK does;
- ``delivered`` must be ``true``/``false`` (or ``1``/``0``, the docs' curl form): the SDK's ``True`` is refused;
- an unknown ``message-id``, a conversion ``timestamp`` not in ``yyyy-MM-dd HH:mm:ss``, more than 60 s in the
  future or before the send is HTTP 420 "Invalid parameters";
- a throttled SMS says ``please wait [ N ]`` in milliseconds; a throttled conversion (429) carries a
  ``Retry-After`` in seconds when the fault gives one.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
import secrets
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from ..providers.vonage_models import CONVERSION_TIME_FORMAT, SignatureMethod, sign_params
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
    to_e164,
)

__all__ = ["MAX_SKEW", "SPEC", "VonageDialect"]

SEND = "SendSms"
CONVERSION = "SmsConversion"
#: How far a signature's UNIX ``timestamp`` may be from the emulator's clock (seconds); Vonage states none.
MAX_SKEW = 300
_PATHS = {"/sms/json": SEND, "/conversions/sms": CONVERSION}
_TO = re.compile(r"\d{7,15}")
_CODE_IN_TEXT = re.compile(r"(?<!\d)\d{4,8}(?!\d)")
_ERRORS_URL = "https://developer.nexmo.com/api-errors"
#: Conversion API errors by HTTP status: (type fragment, title), as Vonage's common errors and the vectors.
_PROBLEMS: Mapping[int, tuple[str, str]] = {
    401: ("unauthorized", "Invalid credentials supplied"),
    402: ("forbidden", "Conversion has not been enabled for your account"),
    403: ("forbidden", "Forbidden"),
    420: ("3", "Invalid parameters. The value of one or more parameters is invalid."),
    423: ("3", "Invalid parameters. The value of one or more parameters is invalid."),
    429: ("throttled", "Rate Limit Hit"),
    500: ("internal-error", "Internal Error"),
}
_SMS_TEXTS: Mapping[str, str] = {
    "1": "Throughput Rate Exceeded - please wait [ 1000 ] and retry",
    "2": "Missing params",
    "3": "Invalid params",
    "4": "Bad Credentials",
    "5": "Internal Error",
    "7": "Number barred.",
    "14": "Invalid Signature",
    "32": "Signature And API Secret Disallowed",
}


class VonageDialect:
    name = "vonage"

    def __init__(self, state: State, credentials: Mapping[str, str]) -> None:
        self.state = state
        self.api_key = credentials["api_key"]
        self.api_secret = credentials["api_secret"]
        self.signature_secret = credentials["signature_secret"]
        method = credentials["signature_method"]
        if method not in ("md5hash", "md5", "sha1", "sha256", "sha512"):
            raise ValueError(f"vonage signature_method {method!r} is not one Vonage offers")
        self.signature_method: SignatureMethod = method  # type: ignore[assignment]

    # ---- the dialect interface ---------------------------------------------------------------------------

    def issue_message_id(self, action: str | None, now: float) -> tuple[str, str]:
        if action not in (None, SEND):
            raise ValueError(f"not a Vonage send action: {action!r}")
        return SEND, self._message_id()

    def phone_of(self, params: Mapping[str, object]) -> str | None:
        to = params.get("to")
        if isinstance(to, str) and to:
            return to_e164(to) or to
        message_id = params.get("message-id")
        sent = self.state.messages.get(message_id) if isinstance(message_id, str) else None
        return sent[0].phone if sent else None

    def route(self, inc: Incoming, ex: Exchange) -> None:
        ex.provider = self.name
        ex.action = _PATHS.get(inc.path, "")
        ex.request_id = secrets.token_hex(16)
        params = dict(inc.query_pairs() + inc.form_pairs())
        params.pop("api_secret", None)  # a credential: not kept in the call log
        ex.params = params
        if inc.headers.get("authorization", "").startswith("Basic "):
            ex.signature_method = "basic"
        elif "sig" in params:
            ex.signature_method = f"sig-{self.signature_method}"
        elif "api_key" in params:
            ex.signature_method = "parameters"

    # ---- answers ------------------------------------------------------------------------------------------

    def _sms(self, payload: Mapping[str, str], *, ok: bool) -> Answer:
        body = json_body({"message-count": "1", "messages": [dict(payload)]})
        return Answer(200, [("Content-Type", "application/json")], body, ok, None if ok else payload["status"])

    def _problem(self, ex: Exchange, status: int, title: str | None = None) -> Answer:
        fragment, default_title = _PROBLEMS.get(status, (str(status), "Error"))
        data = {"type": f"{_ERRORS_URL}#{fragment}", "title": title or default_title, "instance": ex.request_id}
        if status == 401:
            data["detail"] = "You did not provide correct credentials."
        body = json_body(data)
        return Answer(status, [("Content-Type", "application/json")], body, False, str(status))

    def error(self, ex: Exchange, code: str, message: str, status: int | None = None) -> Answer:
        """SMS API: HTTP 200 (or ``status``) with ``messages[0].status`` = ``code``. Conversion API: the HTTP
        status ``code`` (``"402"``...) or ``status``, with Vonage's problem body."""
        if ex.action == CONVERSION or ex.action == "":
            http = status or (int(code) if code.isdigit() else 400)
            return self._problem(ex, http, message if not message.startswith("Emulated") else None)
        answer = self._sms({"status": code, "error-text": message or _SMS_TEXTS.get(code, "Error")}, ok=False)
        answer.status = status or 200
        return answer

    def throttle(self, ex: Exchange, retry_after: float | None, count: int = 0, limit: float = 0) -> Answer:
        if ex.action == SEND:
            wait = max(1, round((retry_after if retry_after is not None else 1.0) * 1000))
            text = f"Throughput Rate Exceeded - please wait [ {wait} ] and retry"
            return self._sms({"status": "1", "error-text": text}, ok=False)
        answer = self._problem(ex, 429)
        if retry_after is not None:
            answer.headers.append(("Retry-After", str(max(1, round(retry_after)))))
        return answer

    def server_error(self, ex: Exchange) -> Answer:
        """The Conversion API's 500 problem body; the SMS API's front end answers an HTML page."""
        if ex.action == SEND:
            body = b"<html><body><h1>500 Internal Server Error</h1></body></html>"
            return Answer(500, [("Content-Type", "text/html")], body, False, None)
        return self._problem(ex, 500)

    def malformed(self, ex: Exchange) -> Answer:
        return Answer(200, [("Content-Type", "application/json")], b'{"message-count": "1", "messa', False, None)

    # ---- the request --------------------------------------------------------------------------------------

    def handle(self, inc: Incoming, ex: Exchange, now: float) -> Answer:
        """Authenticate, validate and carry out one call. The caller holds ``state.lock``."""
        if not ex.action or inc.method != "POST":
            return self._problem(ex, 404, "Not Found")
        params = dict(inc.query_pairs() + inc.form_pairs())
        try:
            self._authenticate(inc, params, now)
            if not self.state.admit(ex.action, now)[0]:
                ex.rate_limited = True
                return self.throttle(ex, None)
            if ex.action == SEND:
                return self._send(params, now)
            self._conversion(params, now)
        except ApiError as err:
            return self.error(ex, err.code, err.message, err.status)
        return Answer(200, [("Content-Type", "application/json")], b"", True, None)

    def _fail(self, code: str, message: str, conversion_status: int) -> ApiError:
        """One failure, in each API's terms: the SMS status code, or the Conversion API's HTTP status."""
        if conversion_status == 0:
            return ApiError(code, message)
        return ApiError(str(conversion_status), _PROBLEMS[conversion_status][1])

    def _authenticate(self, inc: Incoming, params: dict[str, str], now: float) -> None:
        conversion = _PATHS.get(inc.path) == CONVERSION
        unauthorized = 401 if conversion else 0
        authorization = inc.headers.get("authorization", "")
        if authorization.startswith("Basic "):
            try:
                user, _, password = base64.b64decode(authorization[6:], validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                raise self._fail("4", "Bad Credentials", unauthorized) from None
            if not (hmac.compare_digest(user, self.api_key) and hmac.compare_digest(password, self.api_secret)):
                raise self._fail("4", "Bad Credentials", unauthorized)
            return
        key = params.get("api_key")
        if not key:
            raise self._fail("2", "Missing api_key", unauthorized)
        if "sig" in params and "api_secret" in params:
            raise self._fail("32", _SMS_TEXTS["32"], unauthorized)
        if "api_secret" in params:
            secret = params["api_secret"]
            if not (hmac.compare_digest(key, self.api_key) and hmac.compare_digest(secret, self.api_secret)):
                raise self._fail("4", "Bad Credentials", unauthorized)
            return
        if "sig" not in params:
            raise self._fail("2", "Missing api_secret or sig", unauthorized)
        if not hmac.compare_digest(key, self.api_key):
            raise self._fail("4", "Bad Credentials", unauthorized)
        stamp = params.get("timestamp", "")
        if stamp.isdigit():
            if abs(now - int(stamp)) > MAX_SKEW:
                raise self._fail("14", "Invalid Signature: timestamp too far from now", unauthorized)
        elif not (conversion and stamp):
            raise self._fail("14", "Invalid Signature: no timestamp", unauthorized)
        expected = sign_params(params, secret=self.signature_secret, method=self.signature_method)
        if not hmac.compare_digest(expected.sig.lower(), params["sig"].lower()):
            raise self._fail("14", "Invalid Signature", unauthorized)

    # ---- actions ------------------------------------------------------------------------------------------

    def _message_id(self) -> str:
        """16 hexadecimal digits, upper case, like ``0C000000217B7F02``."""
        return f"{secrets.randbits(64):016X}"

    def _send(self, params: dict[str, str], now: float) -> Answer:
        for name in ("from", "to", "text"):
            if not params.get(name):
                raise ApiError("2", f"Missing {name} param")
        to = params["to"]
        if not _TO.fullmatch(to):
            raise ApiError("3", "Invalid to param: digits only, no '+' or '00'")
        if params.get("type", "text") not in ("text", "unicode"):
            raise ApiError("3", "Invalid type param")
        phone = "+" + to
        found = _CODE_IN_TEXT.search(params["text"])
        code = found.group() if found else None
        refusal = self.state.refusals.get(phone)
        if refusal is not None:
            status = refusal[0] or "7"
            self.state.record_send(
                EmulatorMessage(self.name, SEND, "", phone, code, now, accepted=False, error_code=status, fee=0)
            )
            raise ApiError(status, refusal[1] or _SMS_TEXTS.get(status, "Error"))
        message_id = self._message_id()
        status, description, reason = self.state.delivery_of(phone)
        self.state.record_send(
            EmulatorMessage(
                self.name,
                SEND,
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
        part: dict[str, Any] = {
            "to": to,
            "message-id": message_id,
            "status": "0",
            "remaining-balance": "15.53590000",
            "message-price": "0.03330000",
            "network": "23410",
        }
        if params.get("client-ref"):
            part["client-ref"] = params["client-ref"]
        return self._sms(part, ok=True)

    def _conversion(self, params: dict[str, str], now: float) -> None:
        invalid = "420"
        message_id = params.get("message-id", "")
        delivered = params.get("delivered", "")
        if not message_id or not delivered:
            raise ApiError(invalid, "Invalid parameters: message-id and delivered are required.")
        if delivered not in ("true", "false", "1", "0"):
            raise ApiError(invalid, "Invalid parameters: delivered must be true or false.")
        message = self.state.find_message(message_id, self.name, frozenset({SEND}))
        if message is None:
            raise ApiError(invalid, "Invalid parameters: message-id is not a message of this account.")
        at: float | None = None
        raw = params.get("timestamp")
        if raw is not None and not raw.isdigit():  # digits: the signature's UNIX timestamp, not a conversion time
            try:
                at = datetime.strptime(raw, CONVERSION_TIME_FORMAT).replace(tzinfo=timezone.utc).timestamp()
            except ValueError:
                raise ApiError(invalid, "Invalid parameters: timestamp must be UTC yyyy-MM-dd HH:mm:ss.") from None
            if at > now + 60:
                raise ApiError(invalid, "Invalid parameters: timestamp is in the future.")
            if at < int(message.sent_at) - 1:
                raise ApiError(invalid, "Invalid parameters: timestamp is before the message was sent.")
        self.state.conversions.append(
            EmulatorConversion(self.name, CONVERSION, message_id, message.phone, at, delivered in ("true", "1"), now)
        )


def _recognises(inc: Incoming) -> bool:
    return inc.path in _PATHS


SPEC = DialectSpec(
    name="vonage",
    recognises=_recognises,
    build=VonageDialect,
    # Fake credentials of the emulated account, not secrets of anyone's.
    credentials={
        "api_key": "e1a2b3c4",
        "api_secret": "EmulatorVonage01",
        "signature_secret": "EmulatorVonageSignatureSecret001",
        "signature_method": "sha256",
    },
    app_config=lambda url, c: {
        "API_KEY": c["api_key"],
        "API_SECRET": c["api_secret"],
        "SMS_ENDPOINT": url,
        "CONVERSION_ENDPOINT": url,
    },
    app_defaults=lambda c: {"SENDER": "Example"},
    credential_keys=("API_KEY", "API_SECRET", "SIGNATURE_SECRET"),
)
