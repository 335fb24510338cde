"""The documentation cannot rot silently: every config key is on the configuration page with its real default,
and the code blocks the docs promise to work (the quick start, the testing example) are run against the
emulator."""

from __future__ import annotations

import hmac
import re
from collections.abc import Callable, Iterator
from importlib.metadata import distribution
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from flask_otp_conversion.config import PREFIX, Settings
from flask_otp_conversion.providers import ENTRY_POINT_GROUP, Provider
from flask_otp_conversion.providers.settings import TencentSettings
from flask_otp_conversion.providers.tencent import TencentProvider
from flask_otp_conversion.testing import EmulatorServer, ProviderEmulator

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PHONE = "+8613711112222"
_ROW = re.compile(r"^\|\s*`(OTP_CONVERSION_[A-Z0-9_]+)`\s*\|([^|]*)\|([^|]*)\|", re.MULTILINE)
_PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def _builtin_providers() -> dict[str, type[Provider]]:
    """The providers this distribution registers (its own entry points), not whatever else is installed."""
    eps = distribution("flask-otp-conversion").entry_points
    return {ep.name: ep.load() for ep in eps if ep.group == ENTRY_POINT_GROUP}


def _model_keys() -> dict[str, FieldInfo]:
    """Every configuration key, derived from the pydantic models the config is validated with."""
    keys = {PREFIX + name.upper(): info for name, info in Settings.model_fields.items() if name != "provider_settings"}
    for provider_name, cls in _builtin_providers().items():
        model: type[BaseModel] = cls.settings_model
        for name, info in model.model_fields.items():
            keys[f"{PREFIX}{provider_name.upper()}_{name.upper()}"] = info
    return keys


def _documented_rows() -> dict[str, tuple[str, str]]:
    """Key -> (type cell, default cell) of the tables on the configuration page."""
    text = (DOCS / "configuration.md").read_text(encoding="utf-8")
    return {m.group(1): (m.group(2).strip(), m.group(3).strip()) for m in _ROW.finditer(text)}


def _shown(value: object) -> str:
    """A default as the configuration page writes it (a Python value)."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, (int, float)):
        return f"{value:g}"
    if isinstance(value, str):
        return f'"{value}"'
    return repr(value)


def _python_blocks(path: Path) -> list[str]:
    return _PYTHON_BLOCK.findall(path.read_text(encoding="utf-8"))


def test_builtin_providers_are_found_for_the_key_list() -> None:
    assert {"tencent", "alibaba"} <= set(_builtin_providers())


def test_every_config_key_is_on_the_configuration_page() -> None:
    missing = sorted(set(_model_keys()) - set(_documented_rows()))
    assert not missing, f"add these keys to docs/configuration.md: {missing}"


def test_configuration_page_lists_no_key_that_does_not_exist() -> None:
    stale = sorted(set(_documented_rows()) - set(_model_keys()))
    assert not stale, f"docs/configuration.md documents keys the code does not read: {stale}"


def test_configuration_page_shows_the_real_defaults() -> None:
    rows = _documented_rows()
    wrong = []
    for key, info in _model_keys().items():
        if key not in rows:
            continue  # reported by the test above
        cell = rows[key][1]
        if info.is_required():
            expected = "required"
            ok = cell == expected
        else:
            expected = f"`{_shown(info.get_default(call_default_factory=True))}`"
            ok = cell == expected or cell.startswith(expected + " (")
        if not ok:
            wrong.append(f"{key}: page says {cell!r}, code says {expected!r}")
    assert not wrong, "\n".join(wrong)


# ---- code blocks, run against the emulator --------------------------------------------------------------


@pytest.fixture
def emulator_server() -> Iterator[EmulatorServer]:
    with EmulatorServer(ProviderEmulator()) as server:
        yield server


def test_readme_shows_the_quick_start_snippet_of_the_docs() -> None:
    assert _python_blocks(ROOT / "README.md")[0] == _python_blocks(DOCS / "index.md")[0]


def test_quick_start_snippet_reports_a_verified_otp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, emulator_server: EmulatorServer
) -> None:
    emulator = emulator_server.emulator
    for key, value in {
        "PROVIDER": "tencent",
        "TENCENT_SECRET_ID": emulator.TENCENT_SECRET_ID,
        "TENCENT_SECRET_KEY": emulator.TENCENT_SECRET_KEY,
        "TENCENT_SDK_APP_ID": emulator.TENCENT_SDK_APP_ID,
        "TENCENT_ENDPOINT": emulator_server.url,
        "STORE_URL": f"sqlite:///{tmp_path / 'otp.db'}",
        "REPORTER_AUTOSTART": "false",
    }.items():
        monkeypatch.setenv(f"FLASK_OTP_CONVERSION_{key}", value)
    settings = TencentSettings(
        secret_id=emulator.TENCENT_SECRET_ID,
        secret_key=emulator.TENCENT_SECRET_KEY,
        sdk_app_id=emulator.TENCENT_SDK_APP_ID,
        endpoint=emulator_server.url,
        sign_name="Example",
        template_id="1110",
    )

    class SmsClient:
        """The reader's own SMS code, here the real Tencent client talking to the emulator."""

        def __init__(self) -> None:
            self.provider = TencentProvider(settings)

        def send(self, phone: str, code: str) -> str:
            return self.provider.send_otp(phone, code).message_id

    def check_code(phone: object, code: object) -> bool:
        sent = emulator.code_for(phone) if isinstance(phone, str) else None
        return isinstance(code, str) and sent is not None and hmac.compare_digest(sent, code)

    sms_client = SmsClient()
    namespace: dict[str, Any] = {"__name__": "quickstart", "sms_client": sms_client, "check_code": check_code}
    exec(compile(_python_blocks(DOCS / "index.md")[0], "docs/index.md", "exec"), namespace)
    app: Flask = namespace["app"]
    try:
        namespace["send_code"](PHONE, "482913")
        client = app.test_client()
        wrong = client.post("/otp/verify", json={"phone": PHONE, "code": "000000"})
        right = client.post("/otp/verify", json={"phone": PHONE, "code": "482913"})
        with app.app_context():
            left = namespace["conversion"].flush(timeout=10)
    finally:
        app.extensions["otp_conversion"].shutdown()
        sms_client.provider.close()
    assert (wrong.status_code, right.status_code, right.get_json()) == (400, 200, {"verified": True})
    assert left == 0
    [message] = emulator.messages("tencent")
    assert [c.message_id for c in emulator.conversions("tencent")] == [message.message_id]


def test_testing_page_example_passes(tmp_path: Path) -> None:
    namespace: dict[str, Any] = {"__name__": "testing_example"}
    exec(compile(_python_blocks(DOCS / "testing.md")[0], "docs/testing.md", "exec"), namespace)
    made: list[Flask] = []
    make_app: Callable[..., tuple[Flask, Any]] = namespace["make_app"]

    def recording_make_app(*args: Any) -> tuple[Flask, Any]:
        app, conversion = make_app(*args)
        made.append(app)
        return app, conversion

    namespace["make_app"] = recording_make_app  # the examples look it up at call time; we shut the apps down
    tests = {name: fn for name, fn in namespace.items() if name.startswith("test_") and callable(fn)}
    assert len(tests) == 2
    try:
        for name, fn in tests.items():
            with EmulatorServer(ProviderEmulator()) as server:
                fn(tmp_path / name, server)
    finally:
        for app in made:
            app.extensions["otp_conversion"].shutdown()
