"""Shared fixtures: Flask apps wired to a real SQLite file and, where delivery matters, the provider emulator."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from flask_otp_conversion import OTPConversion
from flask_otp_conversion.testing import ProviderEmulator

TENCENT_KEYS = {
    "OTP_CONVERSION_PROVIDER": "tencent",
    "OTP_CONVERSION_TENCENT_SECRET_ID": ProviderEmulator.TENCENT_SECRET_ID,
    "OTP_CONVERSION_TENCENT_SECRET_KEY": ProviderEmulator.TENCENT_SECRET_KEY,
    "OTP_CONVERSION_TENCENT_SDK_APP_ID": ProviderEmulator.TENCENT_SDK_APP_ID,
}

AppFactory = Callable[..., tuple[Flask, OTPConversion]]


@pytest.fixture
def make_app(tmp_path: Path) -> Iterator[AppFactory]:
    """Build an app with the extension on a SQLite file under tmp_path; keyword args override config."""
    made: list[Flask] = []

    def factory(name: str = "app", **config: Any) -> tuple[Flask, OTPConversion]:
        app = Flask(name, instance_path=str(tmp_path / name / "instance"))
        app.config.update(TENCENT_KEYS)
        app.config["OTP_CONVERSION_REPORTER_AUTOSTART"] = False
        app.config.update(config)
        conversion = OTPConversion(app)
        made.append(app)
        return app, conversion

    yield factory
    for app in made:
        state = app.extensions["otp_conversion"]
        state.shutdown()
