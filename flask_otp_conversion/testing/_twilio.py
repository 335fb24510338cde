"""Twilio's REST API ``2010-04-01`` as the emulator serves it: Messages.json and Messages/{Sid}/Feedback.json.

HTTP Basic is checked as Twilio does (account SID + auth token, or API key SID + secret); a wrong pair is
401 ``20003`` with ``WWW-Authenticate``. Errors are ``{code, message, more_info, status}`` with the HTTP status;
creates answer 201. Sids are ``SM`` + 32 hex.

Choices where Twilio documents nothing (reference 1.5, 1.6), so that a client bug shows:

- feedback for an unknown SID, another account's, or a message sent without ``ProvideFeedback=true`` is 404
  ``20404``; the account SID in the path not the credentials' account is 404 ``20404`` too;
- a feedback without ``Outcome``, or one other than ``confirmed``/``unconfirmed``, and a ``ProvideFeedback``
  other than ``true``/``false``, are 400 ``21000`` ("invalid parameter"): Twilio's own default is unknown,
  and our client always sends it;
- posting feedback again is accepted and recorded again (Twilio overwrites);
- a send to a refused phone (``refuse_phone``) is 400 ``21610`` (recipient unsubscribed) unless another
  code is given.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
import uuid
from collections.abc import Mapping
from email.utils import formatdate
from typing import Any

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

__all__ = ["API_VERSION", "SPEC", "TwilioDialect"]

API_VERSION = "2010-04-01"
SEND = "CreateMessage"
FEEDBACK = "CreateMessageFeedback"
_PREFIX = f"/{API_VERSION}/Accounts/"
_MESSAGES = re.compile(r"^/2010-04-01/Accounts/([^/]+)/Messages\.json$")
_FEEDBACK = re.compile(r"^/2010-04-01/Accounts/([^/]+)/Messages/([^/]+)/Feedback\.json$")
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_SENDER_ID = re.compile(r"^[A-Za-z0-9 ]{1,11}$")
_SERVICE_SID = re.compile(r"^MG[0-9a-fA-F]{32}$")
_CODE_IN_TEXT = re.compile(r"(?<!\d)\d{4,8}(?!\d)")
_STATUS_OF: Mapping[int, int] = {20003: 401, 20005: 401, 20403: 403, 20404: 404, 20429: 429, 20500: 500, 20503: 503}
_JSON = ("Content-Type", "application/json; charset=utf-8")


def _date(now: float) -> str:
    """RFC 2822 in GMT, as Twilio's ``date_created``: ``Sat, 01 Jun 2024 12:00:00 +0000``."""
    return formatdate(now, usegmt=False).replace("-0000", "+0000")


class TwilioDialect:
    name = "twilio"

    def __init__(self, state: State, credentials: Mapping[str, str]) -> None:
        self.state = state
        self.account_sid = credentials["account_sid"]
        self._passwords = {credentials["account_sid"]: credentials["auth_token"]}
        self._passwords[credentials["api_key_sid"]] = credentials["api_key_secret"]
        #: Message SIDs sent with ``ProvideFeedback=false`` (or none): feedback for them is refused.
        self._without_feedback: set[str] = set()

    # ---- recognising and recording ------------------------------------------------------------------------

    def route(self, inc: Incoming, ex: Exchange) -> None:
        ex.provider = self.name
        ex.version = API_VERSION
        ex.request_id = "RQ" + uuid.uuid4().hex
        ex.signature_method = "Basic"
        ex.params = dict(inc.form_pairs())
        if _MESSAGES.match(inc.path):
            ex.action = SEND
        elif found := _FEEDBACK.match(inc.path):
            ex.action = FEEDBACK
            ex.params["MessageSid"] = found.group(2)

    def issue_message_id(self, action: str | None, now: float) -> tuple[str, str]:
        if action not in (None, SEND):
            raise ValueError(f"not a Twilio send action: {action!r}")
        return SEND, "SM" + uuid.uuid4().hex

    def phone_of(self, params: Mapping[str, object]) -> str | None:
        to = params.get("To")
        if isinstance(to, str) and to:
            return to
        sid = params.get("MessageSid")
        sent = self.state.messages.get(sid) if isinstance(sid, str) else None
        return sent[0].phone if sent else None

    # ---- answers ------------------------------------------------------------------------------------------

    def error(self, ex: Exchange, code: str, message: str, status: int | None = None) -> Answer:
        number = int(code) if code.isdigit() else 20001
        status = status or _STATUS_OF.get(number, 400)
        body = {
            "code": number,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{number}",
            "status": status,
        }
        headers = [_JSON, ("Twilio-Request-Id", ex.request_id)]
        if status == 401:
            headers.append(("WWW-Authenticate", 'Basic realm="Twilio API"'))
        return Answer(status, headers, json_body(body), False, code)

    def throttle(self, ex: Exchange, retry_after: float | None, count: int = 0, limit: float = 0) -> Answer:
        """429 ``20429``; with ``retry_after`` a ``Retry-After`` in whole seconds (at least 1)."""
        answer = self.error(ex, "20429", "Too Many Requests", 429)
        if retry_after is not None:
            answer.headers.append(("Retry-After", str(max(1, round(retry_after)))))
        return answer

    def server_error(self, ex: Exchange) -> Answer:
        return self.error(ex, "20500", "Internal Server Error", 500)

    def malformed(self, ex: Exchange) -> Answer:
        return Answer(201, [_JSON], b'{"account_sid": "' + self.account_sid.encode() + b'", "sid', False, None)

    # ---- the request --------------------------------------------------------------------------------------

    def handle(self, inc: Incoming, ex: Exchange, now: float) -> Answer:
        """Verify and execute one call. The caller holds ``state.lock``."""
        try:
            self._authenticate(inc)
            found = _MESSAGES.match(inc.path) or _FEEDBACK.match(inc.path)
            if found is None or inc.method != "POST":
                raise ApiError("20404", f"The requested resource {inc.path} was not found", 404)
            if found.group(1) != self.account_sid:
                raise ApiError("20404", f"The requested resource {inc.path} was not found", 404)
            admitted, _, _ = self.state.admit(ex.action, now)
            if not admitted:
                ex.rate_limited = True
                return self.throttle(ex, None)
            if ex.action == SEND:
                return self._send(ex, now)
            return self._feedback(inc, ex, now)
        except ApiError as err:
            return self.error(ex, err.code, err.message, err.status)

    def _authenticate(self, inc: Incoming) -> None:
        scheme, _, encoded = inc.headers.get("authorization", "").partition(" ")
        try:
            user, colon, password = base64.b64decode(encoded, validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            user, colon, password = "", "", ""
        expected = self._passwords.get(user)
        if (
            scheme.lower() != "basic"
            or not colon
            or expected is None
            or not hmac.compare_digest(expected.encode(), password.encode())
        ):
            raise ApiError("20003", "Authenticate", 401)

    def _send(self, ex: Exchange, now: float) -> Answer:
        params: dict[str, Any] = ex.params
        to = params.get("To", "")
        if not to:
            raise ApiError("21604", "A 'To' phone number is required.")
        if not _E164.match(to):
            raise ApiError("21211", f"Invalid 'To' Phone Number: {to}")
        sender, service = params.get("From"), params.get("MessagingServiceSid")
        if not sender and not service:
            raise ApiError("21603", "A 'From' phone number is required.")
        if sender and not (_E164.match(sender) or _SENDER_ID.match(sender)):
            raise ApiError("21212", f"Invalid From Number (caller ID): {sender}")
        if service and not _SERVICE_SID.match(service):
            raise ApiError("21701", f"The Messaging Service Sid {service} is invalid.")
        text = params.get("Body", "")
        if not text:
            raise ApiError("21602", "Message body is required.")
        if len(text) > 1600:
            raise ApiError("21617", "The concatenated message body exceeds the 1600 character limit.")
        feedback = params.get("ProvideFeedback", "false")
        if feedback not in ("true", "false"):
            raise ApiError("21000", f"ProvideFeedback must be true or false, not {feedback!r}.")
        refusal = self.state.refusals.get(to)
        code_match = _CODE_IN_TEXT.search(text)
        if refusal is not None:
            code, message = refusal
            self.state.record_send(
                EmulatorMessage(self.name, SEND, "", to, None, now, accepted=False, error_code=code or "21610")
            )
            raise ApiError(code or "21610", message or "Attempt to send to unsubscribed recipient")
        sid = "SM" + uuid.uuid4().hex
        if feedback != "true":
            self._without_feedback.add(sid)
        status, description, reason = self.state.delivery_of(to)
        self.state.record_send(
            EmulatorMessage(
                self.name,
                SEND,
                sid,
                to,
                code_match.group(0) if code_match else None,
                now,
                accepted=True,
                report_status=status,
                report_description=description,
                failure_reason=reason,
            )
        )
        uri = f"{_PREFIX}{self.account_sid}/Messages/{sid}"
        resource = {
            "account_sid": self.account_sid,
            "api_version": API_VERSION,
            "body": text,
            "date_created": _date(now),
            "date_sent": None,
            "date_updated": _date(now),
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": sender or None,
            "messaging_service_sid": service or None,
            "num_media": "0",
            "num_segments": str(-(-len(text) // 160)),
            "price": None,
            "price_unit": "USD",
            "sid": sid,
            "status": "accepted" if service else "queued",
            "subresource_uris": {
                "media": f"{uri}/Media.json",
                **({"feedback": f"{uri}/Feedback.json"} if feedback == "true" else {}),
            },
            "to": to,
            "uri": f"{uri}.json",
        }
        return Answer(201, [_JSON, ("Twilio-Request-Id", ex.request_id)], json_body(resource), True, None)

    def _feedback(self, inc: Incoming, ex: Exchange, now: float) -> Answer:
        sid = str(ex.params["MessageSid"])
        outcome = ex.params.get("Outcome")
        if outcome not in ("confirmed", "unconfirmed"):
            raise ApiError("21000", f"Outcome must be confirmed or unconfirmed, not {outcome!r}.")
        sent = self.state.find_message(sid, self.name, frozenset({SEND}))
        if sent is None or sid in self._without_feedback:
            raise ApiError("20404", f"The requested resource {inc.path} was not found", 404)
        self.state.conversions.append(
            EmulatorConversion(self.name, FEEDBACK, sid, sent.phone, None, outcome == "confirmed", now)
        )
        resource = {
            "account_sid": self.account_sid,
            "message_sid": sid,
            "outcome": outcome,
            "date_created": _date(now),
            "date_updated": _date(now),
            "uri": inc.path,
        }
        return Answer(201, [_JSON, ("Twilio-Request-Id", ex.request_id)], json_body(resource), True, None)


def _recognises(inc: Incoming) -> bool:
    return inc.path.startswith(_PREFIX)


SPEC = DialectSpec(
    name="twilio",
    recognises=_recognises,
    build=TwilioDialect,
    # Fake credentials of the emulated account, not secrets of anyone's.
    credentials={
        "account_sid": "AC" + "e0" * 16,
        "auth_token": "EmulatorTwilioAuthToken000000000",
        "api_key_sid": "SK" + "e1" * 16,
        "api_key_secret": "EmulatorTwilioApiKeySecret000000",
        "sender": "+15005550006",
    },
    app_config=lambda url, c: {"ENDPOINT": url, "ACCOUNT_SID": c["account_sid"], "AUTH_TOKEN": c["auth_token"]},
    app_defaults=lambda c: {"SENDER": c["sender"]},
    credential_keys=("AUTH_TOKEN", "API_KEY_SECRET"),
)
