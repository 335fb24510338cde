"""The ``otp_conversion`` pytest plugin: fixtures available through the installed entry point."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest

from flask_otp_conversion.testing import EmulatorServer, ProviderEmulator


def test_provider_emulator_fixture_is_a_fresh_emulator(provider_emulator: ProviderEmulator) -> None:
    assert provider_emulator.calls() == []
    assert provider_emulator.TENCENT_SDK_APP_ID == "1400006666"


def test_provider_emulator_server_serves_the_provider_emulator(
    provider_emulator: ProviderEmulator, provider_emulator_server: EmulatorServer
) -> None:
    assert provider_emulator_server.emulator is provider_emulator
    httpx.post(provider_emulator_server.url, content=b"{}")
    assert len(provider_emulator.calls()) == 1


@pytest.mark.timeout(60)
def test_plugin_fixtures_reach_a_project_that_only_installs_the_package(tmp_path: Path) -> None:
    (tmp_path / "test_uses_plugin.py").write_text(
        textwrap.dedent(
            """
            import httpx
            import pytest

            urls = []

            def test_server_answers(provider_emulator, provider_emulator_server):
                urls.append(provider_emulator_server.url)
                assert httpx.post(provider_emulator_server.url, content=b"{}").status_code == 400
                assert provider_emulator.calls()[0].provider == "unknown"

            def test_server_was_stopped_after_the_test():
                with pytest.raises(httpx.ConnectError):
                    httpx.post(urls[0], content=b"{}")
            """
        )
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 passed" in result.stdout
