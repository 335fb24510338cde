"""Routes and JSON error handlers. The verify view is the same function with or without the extension."""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any

from flask import Flask, Response, abort, current_app, jsonify, render_template, request
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException

from flask_otp_conversion.phone import mask_phone, normalize_phone
from flask_otp_conversion.providers import ProviderError, ThrottledError

from .otp import CODE_DIGITS, CheckResult, ResendTooSoon

if TYPE_CHECKING:
    from . import ExampleState

STATE_KEY = "example_app"
_CODE = re.compile(rf"[0-9]{{{CODE_DIGITS}}}")

#: status and error for each failed check (see the table in the package docstring)
_CHECK_ERRORS: dict[CheckResult, tuple[int, str]] = {
    CheckResult.WRONG: (401, "wrong code"),
    CheckResult.LOCKED: (429, "too many attempts; request a new code"),
    CheckResult.EXPIRED: (400, "the code has expired; request a new one"),
    CheckResult.UNKNOWN: (400, "no code is pending for this phone; request one"),
}


def _state() -> ExampleState:
    state: ExampleState = current_app.extensions[STATE_KEY]
    return state


def _json_object() -> dict[str, Any]:
    if not request.is_json:
        abort(415, "send a JSON object with Content-Type: application/json")
    data = request.get_json(silent=True)  # a body over MAX_CONTENT_LENGTH still raises 413 here
    if not isinstance(data, dict):
        abort(400, "the body must be a JSON object")
    return data


def _phone(data: dict[str, Any]) -> str:
    if "phone" not in data:
        abort(400, "phone is required")
    try:
        return normalize_phone(data["phone"])
    except ValueError as exc:
        abort(400, str(exc))


def _code(data: dict[str, Any]) -> str:
    code = data.get("code")
    if code is None:
        abort(400, "code is required")
    if not isinstance(code, str) or not _CODE.fullmatch(code.strip()):
        abort(400, f"code must be a string of {CODE_DIGITS} digits")
    return code.strip()


def send() -> ResponseReturnValue:
    """``POST /otp/send``: issue a code, send it with the provider, record the message id."""
    state = _state()
    phone = _phone(_json_object())
    try:
        code = state.codes.issue_for_send(phone)
    except ResendTooSoon as exc:
        retry_after = math.ceil(exc.retry_after)
        body = jsonify(error=str(exc), retry_after=retry_after)
        return body, 429, {"Retry-After": str(retry_after)}
    try:
        sent = state.sender.send(phone, code)
    except ProviderError as exc:
        state.codes.discard(phone, code)
        current_app.logger.warning("OTP to %s not sent: %s", mask_phone(phone), exc)
        body = jsonify(error="the SMS provider did not accept the message", provider_error=exc.code or None)
        if isinstance(exc, ThrottledError):
            retry_after = math.ceil(exc.retry_after or 1)
            return body, 503, {"Retry-After": str(retry_after)}
        return body, 502
    if state.conversion is not None:
        try:
            state.conversion.record_sent(phone, sent.message_id)
        except ValueError as exc:  # the SMS went out; a record we cannot make must not fail the send
            current_app.logger.warning("OTP send to %s not recorded: %s", mask_phone(phone), exc)
    return jsonify(
        sent=True,
        phone=phone,
        expires_in=math.ceil(state.codes.ttl),
        resend_after=math.ceil(state.codes.resend_interval),
    ), 202


def verify() -> ResponseReturnValue:
    """``POST /otp/verify``: 200 when the code is right; with the extension, that 200 marks the OTP verified."""
    data = _json_object()
    phone, code = _phone(data), _code(data)
    result = _state().codes.check(phone, code)
    if result is CheckResult.OK:
        return jsonify(verified=True), 200
    status, error = _CHECK_ERRORS[result]
    return jsonify(verified=False, error=error), status


def last_code() -> ResponseReturnValue:
    """``GET /sandbox/last-code?phone=``: the code the emulator captured (sandbox only; 404 otherwise)."""
    sandbox = _state().sandbox
    if sandbox is None:
        abort(404, "the sandbox is off: real SMS are being sent")
    try:
        phone = normalize_phone(request.args.get("phone", ""))
    except ValueError as exc:
        abort(400, str(exc))
    code = sandbox.emulator.code_for(phone)
    if code is None:
        abort(404, "no code was sent to this phone")
    return jsonify(phone=phone, code=code)


def index() -> ResponseReturnValue:
    state = _state()
    return render_template(
        "index.html",
        provider=current_app.config["OTP_CONVERSION_PROVIDER"],
        sandbox_url=state.sandbox.url if state.sandbox is not None else None,
        stats_url=state.stats_url,
        stats_token=state.shown_stats_token,
    )


def json_error(exc: HTTPException) -> ResponseReturnValue:
    """Every HTTP error as JSON (unhandled exceptions arrive here as a 500 without their details)."""
    status = exc.code or 500
    body: dict[str, Any] = {"error": exc.description if status < 500 else "internal server error"}
    if request.endpoint == "verify":
        body = {"verified": False, **body}
    response: Response = jsonify(body)
    response.status_code = status
    for name, value in exc.get_headers():
        if name.lower() not in ("content-type", "content-length"):
            response.headers[name] = value
    return response


def register(app: Flask, state: ExampleState) -> None:
    app.add_url_rule("/", view_func=index, methods=["GET"])
    app.add_url_rule("/otp/send", view_func=send, methods=["POST"])
    verify_view = verify if state.conversion is None else state.conversion.verify_route(phone="phone")(verify)
    app.add_url_rule("/otp/verify", endpoint="verify", view_func=verify_view, methods=["POST"])
    app.add_url_rule("/sandbox/last-code", view_func=last_code, methods=["GET"])
    app.register_error_handler(HTTPException, json_error)
