"""Shared fixtures: Flask apps wired to a real SQLite file and, where delivery matters, the provider emulator."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from example_app import create_app, shutdown
from flask_otp_conversion import OTPConversion
from flask_otp_conversion.store import Store, open_store
from flask_otp_conversion.testing import ProviderEmulator
from tests.servers.postgresql import postgresql_server, postgresql_url, private_postgresql_server  # noqa: F401
from tests.servers.redis import private_redis_server, redis_server  # noqa: F401  (Redis servers, for any test)

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
        # Several of these apps in one test process stand for processes: their delivery runs on their threads
        # (tests/delivery/test_process.py, the gunicorn and multi-host tests run the delivery process).
        app.config["OTP_CONVERSION_DELIVERY_PROCESS"] = False
        app.config.update(config)
        conversion = OTPConversion(app)
        made.append(app)
        return app, conversion

    yield factory
    for app in made:
        state = app.extensions["otp_conversion"]
        state.shutdown()


class FakeClock:
    """UNIX seconds that move only when a test says so."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


ExampleAppFactory = Callable[..., Flask]


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Path:
    return tmp_path / "otp.db"


@pytest.fixture
def sqlite_store(sqlite_db: Path) -> Iterator[Store]:
    """A real SQLite store that gives up on a locked file within 50 ms: for tests of a store refusing writes
    (``tests/sqlite_lock.py``)."""
    opened = open_store(f"sqlite:///{sqlite_db}?busy_timeout=0.05")
    yield opened
    opened.close()


@pytest.fixture
def make_example_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ExampleAppFactory]:
    """Build ``example_app.create_app`` with its code DB and outbox under tmp_path, the reporter not autostarted
    and no ``FLASK_*`` variables from the environment; keyword args override config. Everything it started
    (reporter, sandbox server, connections) is stopped after the test."""
    for key in list(os.environ):
        if key.startswith("FLASK_"):
            monkeypatch.delenv(key)
    made: list[Flask] = []

    def factory(*, conversion: bool = True, **config: Any) -> Flask:
        n = len(made)
        base = {
            "EXAMPLE_OTP_DB": str(tmp_path / f"codes{n}.db"),
            "OTP_CONVERSION_STORE_URL": f"sqlite:///{tmp_path / f'conversion{n}.db'}",
            "OTP_CONVERSION_REPORTER_AUTOSTART": False,
        }
        app = create_app({**base, **config}, conversion=conversion)
        made.append(app)
        return app

    yield factory
    for app in made:
        shutdown(app)
