from __future__ import annotations

from pathlib import Path

import pytest

from example_app import create_app


def test_example_app_runs_on_the_embedded_sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLASK_OTP_CONVERSION_STORE_URL", f'"sqlite:///{tmp_path / "otp.db"}"')
    monkeypatch.setenv("FLASK_OTP_CONVERSION_REPORTER_AUTOSTART", "false")
    app = create_app()
    try:
        body = app.test_client().get("/").get_json()
        assert body["provider"] == "tencent"
        assert body["sandbox"].startswith("http://127.0.0.1:")
    finally:
        app.extensions["otp_conversion"].shutdown()
        app.extensions["otp_sandbox"].stop()
