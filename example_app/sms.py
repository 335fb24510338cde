"""Sending the OTP with the configured provider client (the package's own; the app sends, the extension records)."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Mapping
from typing import Any

from flask_otp_conversion.config import load_settings, make_provider
from flask_otp_conversion.providers import Provider, SentMessage

ProviderFactory = Callable[[], Provider]


def provider_factory(config: Mapping[str, Any], instance_path: str) -> ProviderFactory:
    """Build clients from the ``OTP_CONVERSION_*`` keys without the extension (the ``conversion=False`` app),
    validated by the same settings models and with the same timeouts the extension's reporter uses."""
    settings = load_settings({**config, "OTP_CONVERSION_ENABLED": True}, instance_path=instance_path)
    return lambda: make_provider(settings)


class SmsSender:
    """One provider client per process, made on first use: an httpx client must not cross a fork."""

    def __init__(self, factory: ProviderFactory) -> None:
        self._factory = factory
        self._lock = threading.Lock()
        self._client: tuple[int, Provider] | None = None

    def send(self, phone: str, code: str) -> SentMessage:
        """Send ``code`` to ``phone`` (E.164); raises the provider's ``ProviderError`` when refused."""
        return self._provider().send_otp(phone, code)

    def close(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None and client[0] == os.getpid():
            client[1].close()

    def _provider(self) -> Provider:
        pid = os.getpid()
        client = self._client
        if client is not None and client[0] == pid:
            return client[1]
        with self._lock:
            if self._client is None or self._client[0] != pid:
                self._client = (pid, self._factory())
            return self._client[1]
