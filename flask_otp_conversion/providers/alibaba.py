"""Placeholder until the Alibaba client lands (being written now)."""

from __future__ import annotations

from .base import Provider
from .settings import AlibabaSettings


class AlibabaProvider(Provider):  # type: ignore[misc]
    name = "alibaba"
    settings_model = AlibabaSettings
