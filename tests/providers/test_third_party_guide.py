"""docs/third-party-providers.md proven: the guide's code is installed as a real distribution with both entry
points (provider and emulator dialect), the way pip lays one out, and runs end to end through the emulator,
the guide's own tests and the example app."""

from __future__ import annotations

import re
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from flask_otp_conversion.config import ConfigurationError, load_settings
from flask_otp_conversion.providers import provider_class
from flask_otp_conversion.testing import EmulatorServer, Fault, ProviderEmulator

pytestmark = pytest.mark.timeout(60)

GUIDE = Path(__file__).resolve().parent.parent.parent / "docs" / "third-party-providers.md"
_BLOCK = re.compile(r"^```(python|toml)\n(.*?)^```", re.MULTILINE | re.DOTALL)
PHONE = "+14155552222"
ExampleAppFactory = Callable[..., Flask]  # the root conftest's make_example_app


def guide_files() -> dict[str, str]:
    """The guide's code blocks by the file they are: a Python block's first line names it, the TOML is the
    distribution's ``pyproject.toml``."""
    files = {}
    for kind, text in _BLOCK.findall(GUIDE.read_text(encoding="utf-8")):
        if kind == "toml":
            files["pyproject.toml"] = text
        else:
            first = text.splitlines()[0]
            assert first.startswith("# "), f"a python block of the guide does not name its file: {first!r}"
            files[first[2:]] = text
    return files


def entry_points_txt(pyproject: str) -> str:
    """``[project.entry-points."group"]`` tables as the ``entry_points.txt`` of an installed distribution
    (sections named by group, values unquoted), as pip writes it."""
    text = re.sub(r'^\[project\.entry-points\."([^"]+)"\]$', r"[\1]", pyproject, flags=re.MULTILINE)
    return re.sub(r'^(\w+) = "([^"]+)"$', r"\1 = \2", text, flags=re.MULTILINE)


@pytest.fixture
def acme_installed(tmp_path: Path) -> Iterator[dict[str, str]]:
    """The guide's ``acme_sms`` package and a dist-info with its entry points on ``sys.path``."""
    files = guide_files()
    package = tmp_path / "acme_sms"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name in ("acme_sms/provider.py", "acme_sms/emulator.py"):
        (tmp_path / name).write_text(files[name])
    dist = tmp_path / "acme_sms-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-sms\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(entry_points_txt(files["pyproject.toml"]))
    sys.path.insert(0, str(tmp_path))
    yield files
    sys.path.remove(str(tmp_path))
    for module in [m for m in sys.modules if m == "acme_sms" or m.startswith("acme_sms.")]:
        del sys.modules[module]


@pytest.fixture
def acme_server(acme_installed: dict[str, str]) -> Iterator[EmulatorServer]:
    """An emulator built after the install, which finds the dialect through its entry point."""
    with EmulatorServer(ProviderEmulator()) as server:
        yield server


def acme_config(account_id: str) -> dict[str, str]:
    return {
        "OTP_CONVERSION_PROVIDER": "acme",
        "OTP_CONVERSION_ACME_ACCOUNT_ID": account_id,
        "OTP_CONVERSION_ACME_API_TOKEN": "t",
    }


def test_the_guide_provider_is_selected_by_its_entry_point(acme_installed: dict[str, str]) -> None:
    assert provider_class("acme").__module__ == "acme_sms.provider"
    settings = load_settings(acme_config("AC0000beef"), instance_path="/i")
    assert settings.provider_settings.account_id == "AC0000beef"


def test_the_guide_providers_keys_are_validated_at_init_app(acme_installed: dict[str, str]) -> None:
    with pytest.raises(ConfigurationError, match="OTP_CONVERSION_ACME_ACCOUNT_ID"):
        load_settings(acme_config("nope"), instance_path="/i")


def test_every_emulator_serves_the_guide_dialect_from_its_entry_point(acme_server: EmulatorServer) -> None:
    assert "acme" in acme_server.emulator.providers
    assert acme_server.emulator.app_config("acme", acme_server.url)["OTP_CONVERSION_ACME_ENDPOINT"] == acme_server.url


def test_the_guides_own_tests_pass(acme_installed: dict[str, str], acme_server: EmulatorServer) -> None:
    namespace: dict[str, Any] = {}
    exec(compile(textwrap.dedent(acme_installed["tests/test_acme.py"]), "tests/test_acme.py", "exec"), namespace)
    tests = [name for name in namespace if name.startswith("test_")]
    assert len(tests) == 2
    for name in tests:
        acme_server.emulator.reset()
        namespace[name](acme_server)


def test_the_guide_provider_runs_end_to_end_through_the_example_app(
    make_example_app: ExampleAppFactory, acme_server: EmulatorServer
) -> None:
    emulator = acme_server.emulator
    app = make_example_app(OTP_CONVERSION_PROVIDER="acme", **emulator.app_config("acme", acme_server.url))
    emulator.inject("Feedback", Fault.throttle(retry_after=1, times=1))
    client = app.test_client()
    assert client.post("/otp/send", json={"phone": PHONE}).status_code == 202
    code = emulator.code_for(PHONE)
    assert client.post("/otp/verify", json={"phone": PHONE, "code": code}).status_code == 200
    assert _flush(app) == 0
    assert [call.http_status for call in emulator.calls("Feedback")] == [429, 204]
    [conversion] = emulator.conversions("acme")
    assert conversion.delivered and conversion.message_id == emulator.messages()[0].message_id


def test_the_guide_providers_negative_outcome_is_reported(
    make_example_app: ExampleAppFactory, acme_server: EmulatorServer
) -> None:
    emulator = acme_server.emulator
    config = emulator.app_config("acme", acme_server.url)
    app = make_example_app(
        OTP_CONVERSION_PROVIDER="acme", OTP_CONVERSION_REPORT_UNVERIFIED=True, OTP_CONVERSION_MATCH_WINDOW=1, **config
    )
    assert app.test_client().post("/otp/send", json={"phone": PHONE}).status_code == 202
    time.sleep(1.2)  # the match window ends unverified
    assert _flush(app) == 0
    [conversion] = emulator.conversions("acme")
    assert conversion.delivered is False


def _flush(app: Flask) -> int:
    conversion = app.extensions["example_app"].conversion
    with app.app_context():
        result: int = conversion.flush(timeout=10)
    return result
