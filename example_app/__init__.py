"""Example app (placeholder until the example-app issue): the extension on an embedded provider sandbox.

``make run`` starts it. With no provider credentials in the environment it runs the provider emulator on a
loopback port inside the process and points the Tencent client at it, so nothing needs a cloud account.
"""

from __future__ import annotations

import atexit

from flask import Flask

from flask_otp_conversion import OTPConversion
from flask_otp_conversion.testing import EmulatorServer, ProviderEmulator

conversion = OTPConversion()


def _sandbox_config(app: Flask) -> None:
    server = EmulatorServer(ProviderEmulator())
    server.start()
    atexit.register(server.stop)
    emulator = server.emulator
    app.config.update(
        OTP_CONVERSION_PROVIDER="tencent",
        OTP_CONVERSION_TENCENT_SECRET_ID=emulator.TENCENT_SECRET_ID,
        OTP_CONVERSION_TENCENT_SECRET_KEY=emulator.TENCENT_SECRET_KEY,
        OTP_CONVERSION_TENCENT_SDK_APP_ID=emulator.TENCENT_SDK_APP_ID,
        OTP_CONVERSION_TENCENT_ENDPOINT=server.url,
    )
    app.extensions["otp_sandbox"] = server


def create_app() -> Flask:
    app = Flask(__name__)
    app.config.from_prefixed_env()
    if not any(key.endswith(("_SECRET_KEY", "_ACCESS_KEY_SECRET")) for key in app.config):
        _sandbox_config(app)
    conversion.init_app(app)

    @app.get("/")
    def index() -> dict[str, object]:
        sandbox = app.extensions.get("otp_sandbox")
        return {
            "app": "flask-otp-conversion example",
            "provider": app.config["OTP_CONVERSION_PROVIDER"],
            "sandbox": sandbox.url if sandbox else None,
        }

    return app
