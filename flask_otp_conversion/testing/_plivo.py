"""Plivo as the emulator serves it: ``POST /v1/Account/{auth_id}/Message/`` and the conversion feedback
``POST /v1/account/{auth_id}/message/{message_uuid}/conversion/``, built only on the public dialect interface
(:mod:`.dialects`).

Every call is JSON with HTTP Basic ``auth_id:auth_token``, the auth id in the path the same account. Errors
are ``{"api_id", "error"}`` with HTTP 400 (invalid parameter), 401 (authentication), 404 (unknown message),
429 (rate) or 500. Message ids are time-based UUIDs, one per destination.

Choices where Plivo documents nothing (reference 4.3 leaves them open):

- the conversion path is matched without regard to case (the docs write it in lower case, the SDK's generic
  builder capitalises it); the Message path is the SDK's, case and trailing slash included;
- a conversion answers HTTP 200 ``{"api_id", "message": "conversion feedback recorded"}``; one for a message
  sent without ``trackable: true`` is HTTP 400; for an unknown message, 404;
- ``timestamp`` must be ISO 8601 with a zone (``Z`` or an offset), not in the future by more than 60 s nor
  before the send;
- a 429 carries a ``Retry-After`` in seconds when the fault gives one.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import re
import uuid
from collections.abc import Mapping
from datetime import datetime
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
    to_e164,
)

__all__ = ["SPEC", "PlivoDialect"]

SEND = "Message"
CONVERSION = "Conversion"
STATUSES = ("CONVERTED", "NOT_CONVERTED", "CONVERTED_WITH_OTHERS")
_MESSAGE_PATH = re.compile(r"/v1/Account/(?P<auth_id>[^/]+)/Message/")
_CONVERSION_PATH = re.compile(r"/v1/account/(?P<auth_id>[^/]+)/message/(?P<uuid>[^/]+)/conversion/", re.IGNORECASE)
_DST = re.compile(r"\+?[1-9]\d{6,14}")
_CODE_IN_TEXT = re.compile(r"(?<!\d)\d{4,8}(?!\d)")
_STATUS_OF_ERROR = {"invalid_parameter": 400, "authentication_failed": 401, "not_found": 404}


class PlivoDialect:
    name = "plivo"

    def __init__(self, state: State, credentials: Mapping[str, str]) -> None:
        self.state = state
        self.auth_id = credentials["auth_id"]
        self.auth_token = credentials["auth_token"]
        #: Messages sent without ``trackable: true``: a conversion for one is refused.
        self._untracked: set[str] = set()

    # ---- the dialect interface ---------------------------------------------------------------------------

    def issue_message_id(self, action: str | None, now: float) -> tuple[str, str]:
        if action not in (None, SEND):
            raise ValueError(f"not a Plivo send action: {action!r}")
        return SEND, str(uuid.uuid1())

    def phone_of(self, params: Mapping[str, object]) -> str | None:
        dst = params.get("dst")
        if isinstance(dst, str) and dst:
            first = dst.split("<", 1)[0]
            return to_e164(first) or first
        message_uuid = params.get("message_uuid")
        sent = self.state.messages.get(message_uuid) if isinstance(message_uuid, str) else None
        return sent[0].phone if sent else None

    def route(self, inc: Incoming, ex: Exchange) -> None:
        """``params`` are the JSON body's fields; a conversion's also have the ``message_uuid`` of its path."""
        ex.provider = self.name
        ex.request_id = str(uuid.uuid1())
        ex.signature_method = "basic" if inc.headers.get("authorization", "").startswith("Basic ") else ""
        try:
            body = json.loads(inc.body) if inc.body else {}
        except ValueError:
            body = None
        params: dict[str, Any] = dict(body) if isinstance(body, dict) else {}
        conversion = _CONVERSION_PATH.fullmatch(inc.path)
        if conversion is not None:
            ex.action = CONVERSION
            params["message_uuid"] = conversion.group("uuid")
        elif _MESSAGE_PATH.fullmatch(inc.path):
            ex.action = SEND
        ex.params = params

    # ---- answers ------------------------------------------------------------------------------------------

    def _json(self, ex: Exchange, status: int, data: Mapping[str, Any], *, error: str | None = None) -> Answer:
        body = json_body({"api_id": ex.request_id, **data})
        return Answer(status, [("Content-Type", "application/json")], body, error is None, error)

    def error(self, ex: Exchange, code: str, message: str, status: int | None = None) -> Answer:
        """``{"api_id", "error": message}`` with HTTP ``status``, or the status ``code`` names (``"400"``,
        or one of the docs' names such as ``invalid_parameter``), 400 otherwise."""
        http = status or (int(code) if code.isdigit() else _STATUS_OF_ERROR.get(code, 400))
        return self._json(ex, http, {"error": message or code}, error=str(http))

    def throttle(self, ex: Exchange, retry_after: float | None, count: int = 0, limit: float = 0) -> Answer:
        answer = self.error(ex, "429", "too many requests")
        if retry_after is not None:
            answer.headers.append(("Retry-After", str(max(1, round(retry_after)))))
        return answer

    def server_error(self, ex: Exchange) -> Answer:
        return self.error(ex, "500", "internal server error")

    def malformed(self, ex: Exchange) -> Answer:
        body = ('{"api_id": "' + ex.request_id + '", "mess').encode()
        return Answer(202 if ex.action == SEND else 200, [("Content-Type", "application/json")], body, False, None)

    # ---- the request --------------------------------------------------------------------------------------

    def handle(self, inc: Incoming, ex: Exchange, now: float) -> Answer:
        """Authenticate, validate and carry out one call. The caller holds ``state.lock``."""
        try:
            if not ex.action:
                raise ApiError("404", "not found")
            if inc.method != "POST":
                raise ApiError("405", "method not allowed")
            self._authenticate(inc)
            path = _CONVERSION_PATH.fullmatch(inc.path) or _MESSAGE_PATH.fullmatch(inc.path)
            assert path is not None  # route() found the action by these patterns
            if path.group("auth_id") != self.auth_id:
                raise ApiError("401", "authentication failed: the path's auth id is not the credentials'")
            content_type = inc.headers.get("content-type", "").split(";", 1)[0].strip().lower()
            if content_type != "application/json":
                raise ApiError("400", "The API only accepts input of the type application/json")
            try:
                body = json.loads(inc.body)
            except ValueError:
                raise ApiError("400", "invalid JSON body") from None
            if not isinstance(body, dict):
                raise ApiError("400", "the body must be a JSON object")
            if not self.state.admit(ex.action, now)[0]:
                ex.rate_limited = True
                return self.throttle(ex, None)
            if ex.action == SEND:
                return self._send(ex, body, now)
            return self._conversion(ex, str(ex.params["message_uuid"]), body, now)
        except ApiError as err:
            return self.error(ex, err.code, err.message, err.status)

    def _authenticate(self, inc: Incoming) -> None:
        authorization = inc.headers.get("authorization", "")
        if not authorization.startswith("Basic "):
            raise ApiError("401", "authentication failed")
        try:
            user, _, password = base64.b64decode(authorization[6:], validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise ApiError("401", "authentication failed") from None
        if not (hmac.compare_digest(user, self.auth_id) and hmac.compare_digest(password, self.auth_token)):
            raise ApiError("401", "authentication failed")

    # ---- actions ------------------------------------------------------------------------------------------

    def _send(self, ex: Exchange, body: dict[str, Any], now: float) -> Answer:
        dst, text = body.get("dst"), body.get("text")
        if not isinstance(dst, str) or not dst:
            raise ApiError("400", "dst is mandatory")
        if not isinstance(text, str) or not text:
            raise ApiError("400", "text is mandatory for an sms")
        if not body.get("src") and not body.get("powerpack_uuid"):
            raise ApiError("400", "src or powerpack_uuid is mandatory")
        if body.get("src") and body.get("powerpack_uuid"):
            raise ApiError("400", "src and powerpack_uuid cannot both be given")
        trackable = body.get("trackable", False)
        if not isinstance(trackable, bool):
            raise ApiError("400", "trackable must be a boolean")
        if body.get("type", "sms") != "sms":
            raise ApiError("400", "type must be sms for this emulator")
        numbers = dst.split("<")
        if not all(_DST.fullmatch(n) for n in numbers):
            raise ApiError("400", "dst must be numbers with their country code")
        found = _CODE_IN_TEXT.search(text)
        code = found.group() if found else None
        phones = ["+" + n.removeprefix("+") for n in numbers]
        for phone in phones:
            refusal = self.state.refusals.get(phone)
            if refusal is not None:
                self.state.record_send(
                    EmulatorMessage(self.name, SEND, "", phone, code, now, accepted=False, error_code="400", fee=0)
                )
                raise ApiError(refusal[0] or "400", refusal[1] or "destination number is not allowed")
        uuids = []
        for phone in phones:
            message_uuid = str(uuid.uuid1())
            uuids.append(message_uuid)
            if not trackable:
                self._untracked.add(message_uuid)
            status, description, reason = self.state.delivery_of(phone)
            self.state.record_send(
                EmulatorMessage(
                    self.name,
                    SEND,
                    message_uuid,
                    phone,
                    code,
                    now,
                    accepted=True,
                    report_status=status,
                    report_description=description,
                    failure_reason=reason,
                )
            )
        return self._json(ex, 202, {"message": "message(s) queued", "message_uuid": uuids})

    def _conversion(self, ex: Exchange, message_uuid: str, body: dict[str, Any], now: float) -> Answer:
        status, raw = body.get("status"), body.get("timestamp")
        if status not in STATUSES:
            raise ApiError("400", "status must be one of CONVERTED, NOT_CONVERTED, CONVERTED_WITH_OTHERS")
        if not isinstance(raw, str) or not raw:
            raise ApiError("400", "timestamp is mandatory")
        try:
            # Python 3.10's fromisoformat does not read a "Z" zone.
            moment = datetime.fromisoformat(raw[:-1] + "+00:00" if raw.endswith("Z") else raw)
        except ValueError:
            raise ApiError("400", "timestamp must be ISO 8601, e.g. 2020-08-01T11:32:26Z") from None
        if moment.tzinfo is None:
            raise ApiError("400", "timestamp must carry a zone (Z or an offset)")
        message = self.state.find_message(message_uuid, self.name, frozenset({SEND}))
        if message is None:
            raise ApiError("404", "not found")
        if message_uuid in self._untracked:
            raise ApiError("400", "message was not sent with trackable set to true")
        at = moment.timestamp()
        if at > now + 60:
            raise ApiError("400", "timestamp is in the future")
        if at < int(message.sent_at) - 1:
            raise ApiError("400", "timestamp is before the message was sent")
        self.state.conversions.append(
            EmulatorConversion(self.name, CONVERSION, message_uuid, message.phone, at, status != "NOT_CONVERTED", now)
        )
        return self._json(ex, 200, {"message": "conversion feedback recorded"})


def _recognises(inc: Incoming) -> bool:
    return inc.path.lower().startswith("/v1/account/")


SPEC = DialectSpec(
    name="plivo",
    recognises=_recognises,
    build=PlivoDialect,
    # Fake credentials of the emulated account, not secrets of anyone's.
    credentials={"auth_id": "MAEMULATORPLIVO00001", "auth_token": "EmulatorPlivoAuthToken0000000000000000001"},
    app_config=lambda url, c: {"AUTH_ID": c["auth_id"], "AUTH_TOKEN": c["auth_token"], "ENDPOINT": url},
    app_defaults=lambda c: {"SENDER": "14155551111"},
    credential_keys=("AUTH_ID", "AUTH_TOKEN"),
)
