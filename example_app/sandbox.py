"""The provider sandbox: the package's emulator on a loopback port, when no credentials are configured.

The real provider client runs against it, signing and all, so the whole flow (send, verify, the conversion
report) works offline. One emulator serves every process of a sandbox -- gunicorn workers, a second ``make run``
on another port, ``flask otp-conversion stats`` or ``flush`` -- so a message id issued through one process is
reported to the emulator that issued it, whichever process delivers it, and every process shows the same
provider figures. The processes of a sandbox are those sharing the extension's store (rows are delivered by
whoever shares it): the emulator is recorded beside the store file (by default in the instance folder); see
:mod:`flask_otp_conversion.testing.shared` for how it is started, found, restarted and stopped.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping
from typing import Any

from flask_otp_conversion.testing.dialects import registered_dialects
from flask_otp_conversion.testing.shared import SharedEmulator

#: Provider -> the keys whose presence means "credentials are configured, talk to the real endpoint"; every
#: provider the emulator has a dialect of (built-in or plugged in) can run in the sandbox.
CREDENTIAL_KEYS = {
    name: tuple(f"OTP_CONVERSION_{name.upper()}_{key}" for key in spec.credential_keys)
    for name, spec in registered_dialects().items()
}


def wants_sandbox(config: MutableMapping[str, Any]) -> bool:
    """True for a built-in provider with none of its credential keys set."""
    keys = CREDENTIAL_KEYS.get(str(config.get("OTP_CONVERSION_PROVIDER")))
    return keys is not None and not any(config.get(key) for key in keys)


def sandbox_record(config: Mapping[str, Any], instance_path: str) -> str:
    """Where the sandbox's emulator is recorded: beside the SQLite store (a relative path is in the instance
    folder, as the extension reads it), or in the instance folder for a store of no file."""
    url = str(config.get("OTP_CONVERSION_STORE_URL") or "sqlite:///otp_conversion.db")
    path = url[len("sqlite:///") :].split("?", 1)[0] if url.startswith("sqlite:///") else ""
    if not path or path == ":memory:":
        return os.path.join(instance_path, "otp_sandbox_emulator.json")
    return os.path.join(instance_path, path) + ".sandbox-emulator.json"


def start_sandbox(config: MutableMapping[str, Any], instance_path: str) -> SharedEmulator:
    """Attach to the sandbox's emulator (starting it if none answers) and point the configured provider at it
    (credentials, endpoints, templates). ``close()`` lets it go; process exit does too."""
    server = SharedEmulator.attach(sandbox_record(config, instance_path))
    provider = str(config["OTP_CONVERSION_PROVIDER"])
    account = server.emulator.app_config(provider, server.url, defaults=False)
    for key, value in server.emulator.app_config(provider, server.url).items():
        if key not in account:
            config.setdefault(key, value)  # templates and such: the app's own win
    config.update(account)
    return server
