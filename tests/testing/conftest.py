"""Fixtures of the emulator's own tests (the plugin's ``provider_emulator``/``provider_emulator_server``
under short names, and a ``Wire`` client)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from emulator_wire import Wire

from flask_otp_conversion.testing import EmulatorServer, ProviderEmulator


@pytest.fixture
def emu(provider_emulator: ProviderEmulator) -> ProviderEmulator:
    return provider_emulator


@pytest.fixture
def wire(provider_emulator_server: EmulatorServer) -> Iterator[Wire]:
    with httpx.Client(timeout=httpx.Timeout(10.0), verify=False) as client:  # plain http; skips TLS setup
        yield Wire.of(provider_emulator_server, client)
