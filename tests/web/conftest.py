"""Fixtures of the stats tests: the stats service built from its parts, served by a bare Flask app."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask
from pydantic import SecretStr

from flask_otp_conversion.providers import Provider
from flask_otp_conversion.providers.settings import TencentSettings
from flask_otp_conversion.store import SQLiteStore
from flask_otp_conversion.testing import EmulatorServer, ProviderEmulator
from flask_otp_conversion.web.stats import DeliveryStatus, StatsService, make_blueprint

StandaloneFactory = Callable[[type[Provider], str], Flask]


@pytest.fixture
def make_standalone_stats(tmp_path: Path, provider_emulator_server: EmulatorServer) -> Iterator[StandaloneFactory]:
    """``factory(provider_class, token)``: a Flask app without the extension serving a ``StatsService`` given
    only what it reads: a SQLite store holding one send, clients of ``provider_class`` on the emulator, a fixed
    delivery status, 3 spooled verifications, ``token``. Store and clients are closed after the test."""
    made: list[tuple[StatsService, SQLiteStore]] = []
    settings = TencentSettings(
        secret_id=ProviderEmulator.TENCENT_SECRET_ID,
        secret_key=ProviderEmulator.TENCENT_SECRET_KEY,
        sdk_app_id=ProviderEmulator.TENCENT_SDK_APP_ID,
        endpoint=provider_emulator_server.url,
    )

    def factory(cls: type[Provider], token: str) -> Flask:
        store = SQLiteStore(str(tmp_path / f"stats{len(made)}.db"))
        service = StatsService(
            store=store,
            provider_class=cls,
            provider_factory=lambda: cls.from_settings(settings),
            delivery=lambda: DeliveryStatus(delivering=False, breaker_state="closed", degraded=False, last_error=None),
            spooled=lambda: 3,
            token=SecretStr(token),
        )
        made.append((service, store))
        store.record_sent(phone="+8613711112222", message_id="cn-0", provider=cls.name, sent_at=time.time() - 60)
        app = Flask("standalone")
        app.register_blueprint(make_blueprint("/otp-conversion", service))
        return app

    yield factory
    for service, store in made:
        service.close()
        store.close()
