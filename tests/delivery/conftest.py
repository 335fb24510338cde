"""Fixtures for the worker's end-to-end tests (the parts themselves are in ``delivery_helpers``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from delivery_helpers import Env
from flask import Flask

from flask_otp_conversion import OTPConversion, signals
from flask_otp_conversion.testing import EmulatorServer, ProviderEmulator


@pytest.fixture
def env(tmp_path: Path, provider_emulator: ProviderEmulator, provider_emulator_server: EmulatorServer) -> Iterator[Env]:
    e = Env(tmp_path, provider_emulator, provider_emulator_server.url)
    yield e
    e.close()


@pytest.fixture
def received() -> Iterator[dict[str, list[dict[str, Any]]]]:
    """Every reporter signal sent while the test runs, by signal name."""
    seen: dict[str, list[dict[str, Any]]] = {}
    sigs = [
        signals.conversion_reported,
        signals.conversion_failed,
        signals.conversion_dead_lettered,
        signals.breaker_opened,
        signals.breaker_closed,
    ]
    receivers = []
    for sig in sigs:

        def receiver(sender: object, _name: str = sig.name, **kwargs: Any) -> None:
            seen.setdefault(_name, []).append(kwargs)

        sig.connect(receiver)
        receivers.append((sig, receiver))
    yield seen
    for sig, receiver in receivers:
        sig.disconnect(receiver)


@pytest.fixture
def make_process_app(
    tmp_path: Path, provider_emulator: ProviderEmulator, provider_emulator_server: EmulatorServer
) -> Iterator[Callable[..., tuple[Flask, OTPConversion]]]:
    """An app as production runs it: autostart on, not testing, so its deliverer delivers from a child process
    (``delivery/process.py``); a POST to ``/verify`` is its verify route. Shut down after the test."""
    made: list[Flask] = []

    def factory(**config: Any) -> tuple[Flask, OTPConversion]:
        app = Flask("process_app", instance_path=str(tmp_path / f"instance{len(made)}"))
        app.config.update(provider_emulator.app_config("tencent", provider_emulator_server.url))
        app.config["OTP_CONVERSION_PROVIDER"] = "tencent"
        app.config.update(config)
        conversion = OTPConversion(app)

        @app.post("/verify")
        @conversion.verify_route()
        def verify() -> dict[str, bool]:
            return {"ok": True}

        made.append(app)
        return app, conversion

    yield factory
    for app in made:
        app.extensions["otp_conversion"].shutdown()
