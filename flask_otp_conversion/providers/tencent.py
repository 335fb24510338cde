"""Placeholder until the Tencent client lands (being written now)."""

from __future__ import annotations

from .base import Provider
from .settings import TencentSettings


class TencentProvider(Provider):  # type: ignore[misc]
    name = "tencent"
    settings_model = TencentSettings
