"""The embedded provider sandbox: the package's emulator on a loopback port, when no credentials are configured.

The real provider client runs against it, signing and all, so the whole flow (send, verify, the conversion
report) works offline. The emulator lives in this process: with several workers each has its own, so the
sandbox is for one-process runs (``make run``); give real credentials (or an endpoint of your own) otherwise.
"""

from __future__ import annotations

import atexit
from collections.abc import MutableMapping
from typing import Any

from flask_otp_conversion.testing import EmulatorServer, ProviderEmulator

#: The keys whose presence means "credentials are configured, talk to the real endpoint".
CREDENTIAL_KEYS = {
    "tencent": ("OTP_CONVERSION_TENCENT_SECRET_ID", "OTP_CONVERSION_TENCENT_SECRET_KEY"),
    "alibaba": ("OTP_CONVERSION_ALIBABA_ACCESS_KEY_ID", "OTP_CONVERSION_ALIBABA_ACCESS_KEY_SECRET"),
}
#: Template settings the emulator accepts; used only where the config has none.
SANDBOX_SIGN_NAME = "Example"
SANDBOX_TENCENT_TEMPLATE_ID = "1110"
SANDBOX_ALIBABA_TEMPLATE_CODE = "SMS_123456"


def wants_sandbox(config: MutableMapping[str, Any]) -> bool:
    """True for a built-in provider with none of its credential keys set."""
    keys = CREDENTIAL_KEYS.get(str(config.get("OTP_CONVERSION_PROVIDER")))
    return keys is not None and not any(config.get(key) for key in keys)


def start_sandbox(config: MutableMapping[str, Any]) -> EmulatorServer:
    """Start the emulator and point the configured provider at it (credentials, endpoints, templates).

    The server is also stopped at interpreter exit; :meth:`EmulatorServer.stop` is idempotent.
    """
    server = EmulatorServer(ProviderEmulator()).start()
    atexit.register(server.stop)
    emulator = server.emulator
    if config["OTP_CONVERSION_PROVIDER"] == "tencent":
        config.update(
            OTP_CONVERSION_TENCENT_SECRET_ID=emulator.TENCENT_SECRET_ID,
            OTP_CONVERSION_TENCENT_SECRET_KEY=emulator.TENCENT_SECRET_KEY,
            OTP_CONVERSION_TENCENT_SDK_APP_ID=emulator.TENCENT_SDK_APP_ID,
            OTP_CONVERSION_TENCENT_ENDPOINT=server.url,
        )
        config.setdefault("OTP_CONVERSION_TENCENT_SIGN_NAME", SANDBOX_SIGN_NAME)
        config.setdefault("OTP_CONVERSION_TENCENT_TEMPLATE_ID", SANDBOX_TENCENT_TEMPLATE_ID)
    else:
        config.update(
            OTP_CONVERSION_ALIBABA_ACCESS_KEY_ID=emulator.ALIBABA_ACCESS_KEY_ID,
            OTP_CONVERSION_ALIBABA_ACCESS_KEY_SECRET=emulator.ALIBABA_ACCESS_KEY_SECRET,
            OTP_CONVERSION_ALIBABA_ENDPOINT=server.url,
            OTP_CONVERSION_ALIBABA_CAMS_ENDPOINT=server.url,
        )
        config.setdefault("OTP_CONVERSION_ALIBABA_CUST_SPACE_ID", emulator.ALIBABA_CUST_SPACE_ID)
        config.setdefault("OTP_CONVERSION_ALIBABA_SIGN_NAME", SANDBOX_SIGN_NAME)
        config.setdefault("OTP_CONVERSION_ALIBABA_TEMPLATE_CODE", SANDBOX_ALIBABA_TEMPLATE_CODE)
    return server
