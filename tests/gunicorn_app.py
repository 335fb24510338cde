"""A tiny app for tests/test_gunicorn.py, served by a real multi-worker gunicorn.

Configured only from ``FLASK_OTP_CONVERSION_*`` environment variables (``app.config.from_prefixed_env()``),
so the test can point it at an emulator and a SQLite file it owns. Every answer carries ``os.getpid()``
so the test can prove which worker served it; ``only_pid`` / ``avoid_pid`` in the JSON body make a worker
refuse (409, recording nothing: the decorator marks a verification only on a 2xx answer) so the test can
steer sends to one worker and verifications to the others. The extension logs at INFO to stderr, which
the test writes to gunicorn's log file, so a failing run shows what each worker did.
"""

from __future__ import annotations

import logging
import os
import sys

from flask import Flask, jsonify, request
from flask.typing import ResponseReturnValue

from flask_otp_conversion import OTPConversion


def log_to_stderr() -> None:
    """The extension's INFO records on stderr, each with its worker's pid (gunicorn writes them to its log)."""
    logger = logging.getLogger("flask_otp_conversion")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("[%(process)d] %(levelname)s %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def create_app() -> Flask:
    app = Flask(__name__)
    app.config.from_prefixed_env()
    log_to_stderr()
    conversion = OTPConversion(app)

    @app.post("/send")
    def send() -> ResponseReturnValue:
        body = request.get_json(force=True)
        if body.get("only_pid") not in (None, os.getpid()):
            return jsonify(pid=os.getpid()), 409
        recorded = conversion.record_sent(body["phone"], body["message_id"])
        return jsonify(pid=os.getpid(), recorded=recorded)

    @app.post("/verify")
    @conversion.verify_route(phone="phone")
    def verify() -> ResponseReturnValue:
        if request.get_json(force=True).get("avoid_pid") == os.getpid():
            return jsonify(pid=os.getpid()), 409
        return jsonify(pid=os.getpid())

    @app.get("/delivering")
    def delivering() -> ResponseReturnValue:
        state = app.extensions["otp_conversion"]
        child = None if state.delivery_process is None else state.delivery_process.child_pid
        return jsonify(pid=os.getpid(), delivering=state.delivering, child=child)

    return app
