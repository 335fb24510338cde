"""Issue 21.5: the provider's figures say when they were fetched; delivery figures in the stats and the CLI."""

from __future__ import annotations

import time
from datetime import datetime

from recorded import deliver_one_report

from flask_otp_conversion.testing import EmulatorServer
from tests.conftest import AppFactory

TOKEN = "visibility-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
CN = "+8613711112222"


def test_provider_figures_carry_when_they_were_fetched(
    make_app: AppFactory, provider_emulator_server: EmulatorServer
) -> None:
    app, _ = make_app(OTP_CONVERSION_STATS_TOKEN=TOKEN, OTP_CONVERSION_TENCENT_ENDPOINT=provider_emulator_server.url)
    before = time.time()
    body = app.test_client().get("/otp-conversion/stats", headers=AUTH).get_json()
    fetched = datetime.fromisoformat(body["provider_fetched_at"].replace("Z", "+00:00")).timestamp()
    assert before - 1 <= fetched <= time.time()
    assert body["provider_age_seconds"] >= 0


def test_cached_figures_keep_their_fetch_time(make_app: AppFactory, provider_emulator_server: EmulatorServer) -> None:
    app, _ = make_app(OTP_CONVERSION_STATS_TOKEN=TOKEN, OTP_CONVERSION_TENCENT_ENDPOINT=provider_emulator_server.url)
    client = app.test_client()
    first = client.get("/otp-conversion/stats", headers=AUTH).get_json()["provider_fetched_at"]
    assert client.get("/otp-conversion/stats", headers=AUTH).get_json()["provider_fetched_at"] == first


def test_no_figures_have_no_fetch_time(make_app: AppFactory) -> None:
    app, _ = make_app(OTP_CONVERSION_STATS_TOKEN=TOKEN, OTP_CONVERSION_TENCENT_ENDPOINT="http://127.0.0.1:9")
    body = app.test_client().get("/otp-conversion/stats", headers=AUTH).get_json()
    assert (body["provider"], body["provider_fetched_at"], body["provider_age_seconds"]) == (None, None, None)


def test_stats_count_delivered_reports(make_app: AppFactory, provider_emulator_server: EmulatorServer) -> None:
    app, conversion = make_app(
        OTP_CONVERSION_STATS_TOKEN=TOKEN,
        OTP_CONVERSION_TENCENT_ENDPOINT=provider_emulator_server.url,
        OTP_CONVERSION_TENCENT_TEMPLATE_ID="1110",
        OTP_CONVERSION_TENCENT_SIGN_NAME="Example",
    )
    deliver_one_report(app, conversion, CN)
    body = app.test_client().get("/otp-conversion/stats", headers=AUTH).get_json()
    assert body["delivery"] == {"delivered": 1, "retried": 0, "dead_lettered": 0}


def test_the_stats_command_prints_delivered_and_retried(make_app: AppFactory) -> None:
    app, conversion = make_app(OTP_CONVERSION_TENCENT_ENDPOINT="http://127.0.0.1:9")
    with app.app_context():
        conversion.record_sent(CN, "m-1")
    output = app.test_cli_runner().invoke(args=["otp-conversion", "stats"]).output
    lines = {line.split()[0]: line.split()[-1] for line in output.splitlines() if line.strip()}
    assert (lines["requested"], lines["delivered"], lines["retried"]) == ("1", "0", "0")
