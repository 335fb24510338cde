"""pytest plugin ``otp_conversion`` (a ``pytest11`` entry point): provider emulator fixtures.

Registered when the package is installed; nothing else is added to pytest's global state.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .emulator import ProviderEmulator
from .server import EmulatorServer

__all__ = ["provider_emulator", "provider_emulator_server"]


@pytest.fixture
def provider_emulator() -> ProviderEmulator:
    """A fresh :class:`~flask_otp_conversion.testing.ProviderEmulator` with the default fake credentials
    (``TENCENT_SECRET_ID``, ``ALIBABA_ACCESS_KEY_ID``, ... attributes), no faults and no history."""
    return ProviderEmulator()


@pytest.fixture
def provider_emulator_server(provider_emulator: ProviderEmulator) -> Iterator[EmulatorServer]:
    """The ``provider_emulator`` served over HTTP on 127.0.0.1 (``.url``; the emulator is ``.emulator``,
    the same object the ``provider_emulator`` fixture gives). Stopped after the test, hangs released."""
    with EmulatorServer(provider_emulator) as server:
        yield server
