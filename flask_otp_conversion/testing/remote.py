"""An emulator running in another process, seen through its ``/_emulator/`` routes with the same methods (and the
same record types) as an in-process :class:`~flask_otp_conversion.testing.ProviderEmulator`."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import httpx

from ._common import EmulatorConversion, EmulatorMessage
from ._control import CONTROL_PREFIX, IDENTITY
from .dialects import registered_dialects
from .emulator import EmulatorCall, ProviderEmulator, app_config_of

__all__ = ["RemoteEmulator"]


class RemoteEmulator:
    """The emulator at ``url`` (``http://127.0.0.1:PORT``), e.g. the shared sandbox one. Its emulated accounts
    are the defaults (``python -m flask_otp_conversion.testing`` takes no credentials)."""

    TENCENT_SECRET_ID = ProviderEmulator.TENCENT_SECRET_ID
    TENCENT_SECRET_KEY = ProviderEmulator.TENCENT_SECRET_KEY
    TENCENT_SDK_APP_ID = ProviderEmulator.TENCENT_SDK_APP_ID
    ALIBABA_ACCESS_KEY_ID = ProviderEmulator.ALIBABA_ACCESS_KEY_ID
    ALIBABA_ACCESS_KEY_SECRET = ProviderEmulator.ALIBABA_ACCESS_KEY_SECRET
    ALIBABA_CUST_SPACE_ID = ProviderEmulator.ALIBABA_CUST_SPACE_ID

    def __init__(self, url: str, *, timeout: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self._timeout = timeout

    def __repr__(self) -> str:
        return f"<RemoteEmulator {self.url}>"

    @property
    def providers(self) -> list[str]:
        """The providers a standalone emulator of this process's dialects serves."""
        return list(registered_dialects())

    def credentials(self, provider: str) -> Mapping[str, str]:
        """The emulated account of ``provider``: its dialect's default credentials."""
        specs = registered_dialects()
        if provider not in specs:
            raise ValueError(f"provider must be one of {', '.join(specs)}")
        return dict(specs[provider].credentials)

    def app_config(self, provider: str, url: str | None = None, *, defaults: bool = True) -> dict[str, str]:
        """``OTP_CONVERSION_<PROVIDER>_*`` settings pointing ``provider``'s client at this emulator."""
        return app_config_of(
            registered_dialects(), provider, url or self.url, self.credentials(provider), defaults=defaults
        )

    def _get(self, route: str, **query: str | None) -> Any:
        params = {k: v for k, v in query.items() if v is not None}
        response = httpx.get(f"{self.url}{CONTROL_PREFIX}{route}", params=params, timeout=self._timeout)
        response.raise_for_status()
        return response.json()

    def _post(self, route: str, payload: dict[str, Any] | None = None) -> None:
        response = httpx.post(f"{self.url}{CONTROL_PREFIX}{route}", json=payload or {}, timeout=self._timeout)
        response.raise_for_status()

    def answers(self) -> bool:
        """Whether an emulator of this package answers at ``url`` now (1 s at most)."""
        try:
            response = httpx.get(f"{self.url}{CONTROL_PREFIX}health", timeout=1.0)
            return response.status_code == 200 and response.json().get("emulator") == IDENTITY
        except (httpx.HTTPError, ValueError):
            return False

    def calls(
        self, action: str | None = None, *, provider: str | None = None, ok: bool | None = None
    ) -> list[EmulatorCall]:
        flag = None if ok is None else ("true" if ok else "false")
        found = self._get("calls", action=action, provider=provider, ok=flag)["calls"]
        return [EmulatorCall(**{**c, "body": base64.b64decode(c["body"])}) for c in found]

    def messages(self, provider: str | None = None) -> list[EmulatorMessage]:
        return [EmulatorMessage(**m) for m in self._get("messages", provider=provider)["messages"]]

    def conversions(self, provider: str | None = None) -> list[EmulatorConversion]:
        return [EmulatorConversion(**c) for c in self._get("conversions", provider=provider)["conversions"]]

    def code_for(self, phone: str) -> str | None:
        response = httpx.get(f"{self.url}{CONTROL_PREFIX}code", params={"phone": phone}, timeout=self._timeout)
        if response.status_code == 404:
            return None
        response.raise_for_status()
        code: str = response.json()["code"]
        return code

    def refuse_phone(self, phone: str, code: str | None = None, message: str | None = None) -> None:
        self._post("refuse-phone", {"phone": phone, "code": code, "message": message})

    def reset(self) -> None:
        self._post("reset")
