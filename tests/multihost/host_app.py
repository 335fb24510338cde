"""The app each "host" of the multi-host tests serves (under gunicorn), from an instance folder of its own.

Configured from ``FLASK_OTP_CONVERSION_*`` variables (``from_prefixed_env``) and ``OTP_TEST_INSTANCE`` (the
instance folder: the spool and the deliverer lock live there, so hosts share nothing on disk). Every answer
carries the pid. ``/send`` answers 503 should the store refuse the send: the caller may try again, as an app
would. ``/status`` says whether this process delivers, is degraded, and how many records it holds in memory.
"""

from __future__ import annotations

import os

from flask import Flask, jsonify, request
from flask.typing import ResponseReturnValue

from flask_otp_conversion import OTPConversion
from tests.gunicorn_app import log_to_stderr


def create_app() -> Flask:
    app = Flask(__name__, instance_path=os.environ["OTP_TEST_INSTANCE"])
    app.config.from_prefixed_env()
    log_to_stderr()
    conversion = OTPConversion(app)

    @app.post("/send")
    def send() -> ResponseReturnValue:
        body = request.get_json(force=True)
        try:
            recorded = conversion.record_sent(body["phone"], body["message_id"])
        except OSError as exc:  # the store is unreachable (PostgreSQLUnavailableError is a ConnectionError)
            return jsonify(pid=os.getpid(), error=type(exc).__name__), 503
        return jsonify(pid=os.getpid(), recorded=recorded)

    @app.post("/verify")
    @conversion.verify_route(phone="phone")
    def verify() -> ResponseReturnValue:
        return jsonify(pid=os.getpid())

    @app.post("/degrade")
    def degrade() -> ResponseReturnValue:
        conversion.degrade(bool(request.get_json(force=True)["on"]))
        return jsonify(pid=os.getpid())

    @app.get("/status")
    def status() -> ResponseReturnValue:
        state = app.extensions["otp_conversion"]
        reporter, holding = state.reporter, state.holding
        held = 0 if holding is None else holding.counts().held
        return jsonify(pid=os.getpid(), delivering=state.delivering, degraded=reporter.degraded, held=held)

    return app
