"""The ``OTPConversion`` Flask extension, the public API: ``init_app`` wires an app's ``ConversionState``
(``state.py``) into Flask (signals, middleware, blueprint, CLI, exit)."""

from __future__ import annotations

import atexit
import logging
import time
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

from flask import Flask, current_app

from .alarm import SendDecision
from .cli import register_cli
from .config import load_settings
from .delivery.activity import CountingMiddleware
from .signals import otp_sent, otp_verified
from .state import EXTENSION_KEY, ConversionState
from .store.base import VerifyOutcome
from .verify import FieldSource, make_verify_route
from .web.operator import register_operator_views
from .web.stats import make_blueprint

F = TypeVar("F", bound=Callable[..., Any])


class OTPConversion:
    """Records OTP sends and verifications and reports conversions to the SMS provider.

    ``OTPConversion(app)`` or, with an app factory, ``conversion = OTPConversion()`` then
    ``conversion.init_app(app)``. One instance may serve several apps; each has its own state.
    """

    def __init__(self, app: Flask | None = None) -> None:
        self.logger = logging.getLogger("flask_otp_conversion")
        self._stats_auth: Callable[[], bool] | None = None
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Validate config (``ConfigurationError`` names a bad key), open the store, connect the signals."""
        if EXTENSION_KEY in app.extensions:
            raise RuntimeError("OTPConversion is already initialised on this app")
        settings = load_settings(app.config, instance_path=app.instance_path)
        state = ConversionState(app, settings, self.logger)
        app.extensions[EXTENSION_KEY] = state
        register_cli(app)  # a disabled app's commands say so, rather than "No such command"
        if not settings.enabled:
            return
        # Connected for any sender, each state picking its own app: an app may send with ``current_app``, a proxy
        # that blinker would take for another sender. Weak references keep a test suite's many apps collectable.
        otp_sent.connect(state.on_otp_sent)
        otp_verified.connect(state.on_otp_verified)
        if settings.reporter_autostart:
            assert state.activity is not None
            app.wsgi_app = CountingMiddleware(  # type: ignore[method-assign]
                app.wsgi_app, state.activity, state.start_background
            )
        atexit.register(_shutdown_at_exit, weakref.ref(state))
        state.stats = state.make_stats(auth=lambda: self._stats_auth)
        app.register_blueprint(make_blueprint(settings.url_prefix, state.stats))
        register_operator_views(app, state)

    def _state(self, app: Flask | None = None) -> ConversionState:
        app = app or current_app
        try:
            state: ConversionState = app.extensions[EXTENSION_KEY]
        except KeyError:
            raise RuntimeError("OTPConversion.init_app(app) has not been called for this app") from None
        return state

    def record_sent(
        self, phone: str, message_id: str, provider: str | None = None, *, sent_at: float | None = None
    ) -> bool:
        """Record an OTP send. ``ValueError`` on bad input; False if the message was already recorded. A store
        that refuses the write does not fail the call: the record is held in memory until it takes it (True), or
        counted lost when too many are held (False)."""
        return self._state().record_sent(phone, message_id, provider, sent_at)

    def record_verified(
        self, phone: str, message_id: str | None = None, *, verified_at: float | None = None
    ) -> VerifyOutcome | None:
        """Record that the user typed the code in; enqueues the provider report. ``ValueError`` on bad input."""
        return self._state().record_verified(phone, message_id, verified_at)

    def verify_route(
        self, phone: FieldSource = "phone", message_id: FieldSource | None = None
    ) -> Callable[[F], F]:
        """Decorate a verify view: a 2xx answer marks the OTP for ``phone`` (a JSON/form field or a callable)
        verified; a non-2xx answer or an exception does not."""
        return make_verify_route(self, phone, message_id)

    def degrade(self, on: bool = True) -> None:
        """Stop (True) or resume (False) every provider call, in every process sharing the store."""
        reporter = self._state().reporter
        if reporter is None:
            raise RuntimeError("flask-otp-conversion is disabled (OTP_CONVERSION_ENABLED is false)")
        reporter.set_degraded(on)

    def flush(self, timeout: float = 10.0) -> int:
        """Apply spooled verifications, then deliver every report due now; returns how many are still pending."""
        state = self._state()
        state.apply_spool()
        return 0 if state.reporter is None else state.reporter.flush(timeout)

    def send_allowed(self, phone: str) -> SendDecision:
        """Advisory, before sending an OTP: no (with a reason) while the number's calling code (or, with the
        per-prefix alarm on, its prefix) is under an SMS-pumping alarm, or the number or its prefix has too many
        unverified sends in the alarm window (counted in the store: every worker and host agrees). Always yes on a
        disabled app, and while the store cannot answer. ``ValueError`` for a phone that is not a plausible
        number."""
        limits = self._state().send_limits
        if limits is None:
            return SendDecision(True)
        return limits.decide(phone, time.time())

    def stats_auth(self, func: Callable[[], bool]) -> Callable[[], bool]:
        """Register a callable deciding, inside the request, whether the stats endpoint may answer."""
        self._stats_auth = func
        return func

    def __repr__(self) -> str:
        return "<OTPConversion>"


def _shutdown_at_exit(ref: weakref.ReferenceType[ConversionState]) -> None:
    state = ref()
    if state is not None:
        state.shutdown()


__all__ = ["EXTENSION_KEY", "ConversionState", "OTPConversion"]
