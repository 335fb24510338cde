"""A local emulator of the SMS providers' APIs (Tencent Cloud, Alibaba Cloud and every dialect plugged in through
:mod:`flask_otp_conversion.testing.dialects`), for tests and benchmarks.

    from flask_otp_conversion.testing import EmulatorServer, Fault, ProviderEmulator

    emu = ProviderEmulator()
    with EmulatorServer(emu) as server:
        ...  # point a provider client at server.url; inspect emu.calls(), emu.code_for(phone)
        emu.inject("ReportConversion", Fault.http_500(times=3))

pytest fixtures ``provider_emulator`` and ``provider_emulator_server`` come from the ``otp_conversion``
plugin (:mod:`flask_otp_conversion.testing.pytest_plugin`). ``python -m flask_otp_conversion.testing``
runs the emulator standalone.
"""

from __future__ import annotations

from .emulator import (
    DropConnection,
    EmulatorCall,
    EmulatorConversion,
    EmulatorMessage,
    Fault,
    FaultKind,
    ProviderEmulator,
)
from .server import EmulatorServer

__all__ = [
    "DropConnection",
    "EmulatorCall",
    "EmulatorConversion",
    "EmulatorMessage",
    "EmulatorServer",
    "Fault",
    "FaultKind",
    "ProviderEmulator",
]
