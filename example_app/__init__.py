"""Example app: OTP send and verify with flask-otp-conversion, on a local provider sandbox by default.

``make run`` (``flask --app example_app run``) starts it. Configuration comes from ``FLASK_*`` environment
variables (``app.config.from_prefixed_env()``), e.g. ``FLASK_OTP_CONVERSION_PROVIDER=alibaba``. Without the
chosen provider's credentials, the package's emulator runs on a loopback port (one emulator process for the
whole sandbox) and the real provider client (signing included) talks to it; with credentials, the real cloud is
used.

Routes (every error is JSON ``{"error": "..."}``; ``/otp/verify`` errors also carry ``"verified": false``)::

    POST /otp/send {"phone": "+8613711112222"}
        202  issued and sent: {"sent": true, "phone": <E.164>, "expires_in": 300, "resend_after": 60}
        400  not a JSON object; phone missing, not a string, or not a plausible E.164 number
        413  body over MAX_CONTENT_LENGTH
        415  not Content-Type: application/json
        429  a code went to this phone less than EXAMPLE_OTP_RESEND_INTERVAL ago (Retry-After, "retry_after")
        502  the provider refused the send ("provider_error": its code); 503 + Retry-After if it throttled
    POST /otp/verify {"phone": ..., "code": "123456"}
        200  {"verified": true}; with the extension, this answer marks the OTP converted
        400  bad input as above, code not a string of 6 ASCII digits, the code expired, or no code pending
             (never sent, or already used)
        401  wrong code (counts as an attempt)
        429  EXAMPLE_OTP_MAX_ATTEMPTS wrong guesses were made: request a new code
    GET /sandbox/last-code?phone=...
        200  {"phone", "code"}: what the emulator captured; 404 outside sandbox mode or nothing sent; 400 bad phone
    GET /
        200  a page to try it all, statistics from the extension's endpoint included

Own config keys (all optional): ``EXAMPLE_OTP_DB`` (SQLite file of the codes, default
``<instance>/example_otp.db``; share it between workers), ``EXAMPLE_OTP_TTL`` (300 s),
``EXAMPLE_OTP_MAX_ATTEMPTS`` (5), ``EXAMPLE_OTP_RESEND_INTERVAL`` (60 s), ``EXAMPLE_OTP_CLOCK`` (a callable
returning UNIX seconds, for tests), ``SECRET_KEY`` (HMAC key of the stored codes; default a random key kept in
the codes file), ``MAX_CONTENT_LENGTH`` (4096 bytes). The extension's keys are its own (``OTP_CONVERSION_*``);
the provider defaults to ``tencent``. In sandbox mode without ``OTP_CONVERSION_STATS_TOKEN``, a random token is
generated and shown on the page (a configured token never is). Every process of one sandbox (those sharing the
extension's store: workers, a second server, CLI commands) shares one emulator process (``example_app.sandbox``).

``shutdown(app)`` stops what ``create_app`` started (it also happens at interpreter exit).
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flask import Flask

from flask_otp_conversion import OTPConversion
from flask_otp_conversion.extension import EXTENSION_KEY, ConversionState
from flask_otp_conversion.testing.shared import SharedEmulator

from . import views
from .otp import CheckResult, CodeStore, ResendTooSoon
from .sandbox import start_sandbox, wants_sandbox
from .sms import SmsSender, provider_factory

__all__ = ["CheckResult", "CodeStore", "ExampleState", "ResendTooSoon", "create_app", "shutdown"]

DEFAULTS: Mapping[str, Any] = {
    "OTP_CONVERSION_PROVIDER": "tencent",
    "MAX_CONTENT_LENGTH": 4096,
    "EXAMPLE_OTP_TTL": 300,
    "EXAMPLE_OTP_MAX_ATTEMPTS": 5,
    "EXAMPLE_OTP_RESEND_INTERVAL": 60,
}


@dataclass
class ExampleState:
    """What the example app owns, in ``app.extensions["example_app"]``."""

    codes: CodeStore
    sender: SmsSender
    #: None for ``create_app(conversion=False)``
    conversion: OTPConversion | None
    #: The sandbox's shared emulator in sandbox mode (``.url``, ``.emulator``), else None
    sandbox: SharedEmulator | None
    #: Where the extension's statistics endpoint is, if it is mounted
    stats_url: str | None
    #: The stats token generated for the sandbox (shown on the page); never a token from the config
    shown_stats_token: str | None


def create_app(
    config: Mapping[str, Any] | None = None, *, conversion: bool = True, instance_path: str | None = None
) -> Flask:
    """Build the example app: defaults, then ``FLASK_*`` environment variables, then ``config``.

    ``conversion=False`` builds the same app without the extension: same routes, same code checks, the verify
    view undecorated and nothing recorded (a baseline for measuring the extension's overhead).
    ``instance_path`` (default: Flask's ``instance/`` folder) holds the codes, the store and the sandbox record;
    it is given here, at ``Flask(...)``, because the extension reads it once, in ``init_app``.
    """
    app = Flask(__name__, instance_path=instance_path)
    app.config.update(DEFAULTS)
    app.config.from_prefixed_env()
    app.config.update(config or {})

    sandbox = start_sandbox(app.config, app.instance_path) if wants_sandbox(app.config) else None
    try:
        state = _build_state(app, sandbox, conversion)
    except BaseException:
        conversion_state = app.extensions.get(EXTENSION_KEY)
        if conversion_state is not None:
            conversion_state.shutdown()
        if sandbox is not None:
            sandbox.stop()
        raise
    app.extensions[views.STATE_KEY] = state
    views.register(app, state)
    return app


def _build_state(app: Flask, sandbox: SharedEmulator | None, conversion: bool) -> ExampleState:
    shown_token = None
    if sandbox is not None and not app.config.get("OTP_CONVERSION_STATS_TOKEN"):
        shown_token = app.config["OTP_CONVERSION_STATS_TOKEN"] = secrets.token_urlsafe(24)
    ext: OTPConversion | None = None
    stats_url = None
    factory = None
    if conversion:
        ext = OTPConversion(app)
        conversion_state: ConversionState = app.extensions[EXTENSION_KEY]
        if conversion_state.settings.enabled:
            factory = conversion_state.make_provider
            stats_url = conversion_state.settings.url_prefix.rstrip("/") + "/stats"
    if factory is None:
        factory = provider_factory(app.config, app.instance_path)
    codes = CodeStore(
        app.config.get("EXAMPLE_OTP_DB") or os.path.join(app.instance_path, "example_otp.db"),
        key=app.secret_key.encode() if isinstance(app.secret_key, str) else app.secret_key,
        ttl=float(app.config["EXAMPLE_OTP_TTL"]),
        max_attempts=int(app.config["EXAMPLE_OTP_MAX_ATTEMPTS"]),
        resend_interval=float(app.config["EXAMPLE_OTP_RESEND_INTERVAL"]),
        clock=app.config.get("EXAMPLE_OTP_CLOCK") or time.time,
    )
    return ExampleState(codes, SmsSender(factory), ext, sandbox, stats_url, shown_token)


def shutdown(app: Flask) -> None:
    """Stop everything ``create_app`` started: the extension's reporter (flushing within its shutdown timeout),
    the provider client, the code store, then this app's hold on the sandbox emulator (which exits once no
    process of the sandbox holds it). Also happens at interpreter exit; idempotent."""
    state: ExampleState = app.extensions[views.STATE_KEY]
    conversion_state: ConversionState | None = app.extensions.get(EXTENSION_KEY)
    if conversion_state is not None:
        conversion_state.shutdown()
    state.sender.close()
    state.codes.close()
    if state.sandbox is not None:
        state.sandbox.stop()
