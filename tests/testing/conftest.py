"""Fixtures of the emulator's own tests (the plugin's ``provider_emulator``/``provider_emulator_server``
under short names, a ``Wire`` client, the remote view and the shared sandbox emulator)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from emulator_wire import Wire

from flask_otp_conversion.testing import EmulatorServer, ProviderEmulator
from flask_otp_conversion.testing.remote import RemoteEmulator
from flask_otp_conversion.testing.shared import SharedEmulator


@pytest.fixture
def emu(provider_emulator: ProviderEmulator) -> ProviderEmulator:
    return provider_emulator


@pytest.fixture
def wire(provider_emulator_server: EmulatorServer) -> Iterator[Wire]:
    with httpx.Client(timeout=httpx.Timeout(10.0), verify=False) as client:  # plain http; skips TLS setup
        yield Wire.of(provider_emulator_server, client)


@pytest.fixture
def remote(provider_emulator_server: EmulatorServer) -> RemoteEmulator:
    """The ``provider_emulator_server`` seen over its ``/_emulator/`` routes, as another process would."""
    return RemoteEmulator(provider_emulator_server.url)


@pytest.fixture
def attach_shared(tmp_path: Path) -> Iterator[Callable[[], SharedEmulator]]:
    """``attach()``: one more attachment to the shared emulator recorded at ``tmp_path/sandbox.json``; every
    attachment is closed after the test (then the emulator process exits by itself)."""
    made: list[SharedEmulator] = []

    def attach() -> SharedEmulator:
        made.append(SharedEmulator.attach(str(tmp_path / "sandbox.json")))
        return made[-1]

    yield attach
    for shared in made:
        shared.close()
