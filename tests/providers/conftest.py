"""Fixtures of the provider client tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from flask_otp_conversion.testing import EmulatorServer, ProviderEmulator


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorServer]:
    """An emulator served for the whole module (``emu`` empties it around each test)."""
    with EmulatorServer(ProviderEmulator()) as running:
        yield running


@pytest.fixture
def emu(server: EmulatorServer) -> Iterator[ProviderEmulator]:
    server.emulator.reset()
    yield server.emulator
    server.emulator.reset()
