"""Provider selection by name: the built-ins and a third party's entry point."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from flask_otp_conversion.config import ConfigurationError, load_settings
from flask_otp_conversion.providers import available_providers, provider_class
from flask_otp_conversion.providers.alibaba import AlibabaProvider
from flask_otp_conversion.providers.tencent import TencentProvider

PLUGIN = '''
from __future__ import annotations
from pydantic import BaseModel
from flask_otp_conversion.providers.base import Provider

class AcmeSettings(BaseModel):
    api_key: str

class AcmeProvider(Provider):
    name = "acme"
    settings_model = AcmeSettings
    rate_limits = {"Report": 5.0}
    report_action = "Report"
    account = "acme-account"

    @classmethod
    def from_settings(cls, settings, *, timeout=None):
        return cls()

    def send_otp(self, phone, code): raise NotImplementedError
    def report_conversion(self, report): raise NotImplementedError
    def statistics(self, begin, end): return None
    def close(self): pass

NotAProvider = object()
'''


@pytest.fixture
def third_party(tmp_path: Path) -> Iterator[None]:
    """Install a real distribution with an entry point, the way pip would lay it out."""
    (tmp_path / "acme_sms.py").write_text(textwrap.dedent(PLUGIN))
    dist = tmp_path / "acme_sms-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-sms\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[flask_otp_conversion.providers]\nacme = acme_sms:AcmeProvider\nbroken = acme_sms:NotAProvider\n"
    )
    sys.path.insert(0, str(tmp_path))
    yield
    sys.path.remove(str(tmp_path))
    sys.modules.pop("acme_sms", None)


def test_builtin_providers_resolve_by_name() -> None:
    assert provider_class("tencent") is TencentProvider
    assert provider_class("alibaba") is AlibabaProvider


def test_unknown_provider_names_the_choices() -> None:
    with pytest.raises(LookupError, match=r"available: alibaba, .*plivo, tencent, .*vonage"):
        provider_class("nope")


def test_third_party_entry_point_is_selectable_and_validated(third_party: None) -> None:
    assert "acme" in available_providers()
    settings = load_settings(
        {"OTP_CONVERSION_PROVIDER": "acme", "OTP_CONVERSION_ACME_API_KEY": "k"}, instance_path="/i"
    )
    assert provider_class("acme").__name__ == "AcmeProvider"
    assert settings.provider_settings.api_key == "k"
    with pytest.raises(ConfigurationError, match="OTP_CONVERSION_ACME_API_KEY"):
        load_settings({"OTP_CONVERSION_PROVIDER": "acme"}, instance_path="/i")


def test_entry_point_that_is_not_a_provider_is_refused(third_party: None) -> None:
    with pytest.raises(LookupError, match="not a Provider subclass"):
        provider_class("broken")
