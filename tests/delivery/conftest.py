"""Fixtures for the worker's end-to-end tests (the parts themselves are in ``delivery_helpers``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from delivery_helpers import Env

from flask_otp_conversion import signals
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
