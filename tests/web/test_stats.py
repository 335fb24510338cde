"""The stats endpoint and CLI: real SQLite counts, real provider statistics from the emulator over HTTP."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, request
from flask.testing import FlaskClient
from recorded import CN, record_four_sends

import flask_otp_conversion
from flask_otp_conversion import OTPConversion, otp_verified
from flask_otp_conversion.providers import Provider
from flask_otp_conversion.providers.settings import TencentSettings
from flask_otp_conversion.providers.tencent import TencentProvider
from flask_otp_conversion.store import SQLiteStore
from flask_otp_conversion.store.quarantine import quarantined
from flask_otp_conversion.store.spool import SUFFIX, Spool
from flask_otp_conversion.testing import EmulatorServer, Fault, ProviderEmulator
from flask_otp_conversion.web.stats import DeliveryStatus, StatsService, parse_window
from tests.conftest import AppFactory

TOKEN = "s3cret-stats-token"
PACKAGE = Path(flask_otp_conversion.__file__).parent
LOGGER = logging.getLogger("test_stats")

AUTH = {"Authorization": f"Bearer {TOKEN}"}
#: Tests not about the provider's figures point it at a closed local port: no test may reach the real cloud.
OFFLINE = "http://127.0.0.1:9"


def stats_app(make_app: AppFactory, server: EmulatorServer | None = None, **config: Any) -> Flask:
    config.setdefault("OTP_CONVERSION_STATS_TOKEN", TOKEN)
    config["OTP_CONVERSION_TENCENT_ENDPOINT"] = OFFLINE if server is None else server.url
    app, _ = make_app(**config)
    return app


def get(client: FlaskClient, query: str = "", headers: dict[str, str] | None = None) -> Any:
    return client.get(f"/otp-conversion/stats{query}", headers=AUTH if headers is None else headers)


# Local counts ---------------------------------------------------------------------------------------


def test_counts_and_conversion_rate_match_known_sends(make_app: AppFactory) -> None:
    app = stats_app(make_app)
    record_four_sends(app)
    body = get(app.test_client()).get_json()
    assert (body["requested"], body["verified"], body["conversion_rate"]) == (4, 2, 0.5)


def test_counts_are_split_by_calling_code(make_app: AppFactory) -> None:
    app = stats_app(make_app)
    record_four_sends(app)
    by_code = get(app.test_client()).get_json()["by_calling_code"]
    assert by_code["86"] == {"requested": 3, "verified": 2, "unmatched": 0, "conversion_rate": 2 / 3}
    assert by_code["1"]["conversion_rate"] == 0.0


def test_counts_are_split_by_provider(make_app: AppFactory) -> None:
    app = stats_app(make_app)
    record_four_sends(app)
    assert get(app.test_client()).get_json()["by_provider"]["tencent"]["requested"] == 4


def test_hourly_series_is_in_utc_hours(make_app: AppFactory) -> None:
    app = stats_app(make_app)
    record_four_sends(app)
    hourly = get(app.test_client()).get_json()["hourly"]
    assert sum(h["requested"] for h in hourly) == 4
    for entry in hourly:
        hour = datetime.fromisoformat(entry["hour"].replace("Z", "+00:00"))
        assert hour.utcoffset() == timedelta(0) and hour.minute == 0


def test_unmatched_verifications_are_counted(make_app: AppFactory) -> None:
    app, conversion = make_app(OTP_CONVERSION_STATS_TOKEN=TOKEN, OTP_CONVERSION_TENCENT_ENDPOINT=OFFLINE)
    with app.app_context():
        conversion.record_verified(CN)
    body = get(app.test_client()).get_json()
    assert (body["unmatched"], body["verified"]) == (1, 0)


def test_conversion_rate_is_null_when_nothing_was_requested(make_app: AppFactory) -> None:
    app = stats_app(make_app)
    body = get(app.test_client()).get_json()
    assert body["requested"] == 0 and body["conversion_rate"] is None


def test_sends_outside_the_window_are_not_counted(make_app: AppFactory) -> None:
    app, conversion = make_app(OTP_CONVERSION_STATS_TOKEN=TOKEN, OTP_CONVERSION_TENCENT_ENDPOINT=OFFLINE)
    with app.app_context():
        conversion.record_sent(CN, "old", sent_at=time.time() - 3 * 86400)
    assert get(app.test_client(), "?since=24h").get_json()["requested"] == 0


def test_reporter_section_shows_pending_reports(make_app: AppFactory) -> None:
    app = stats_app(make_app)
    record_four_sends(app)
    reporter = get(app.test_client()).get_json()["reporter"]
    assert reporter["pending"] == 2 and reporter["dead"] == 0
    assert reporter["breaker_state"] == "closed" and reporter["degraded"] is False


def test_reporter_section_says_whether_the_answering_process_delivers(make_app: AppFactory) -> None:
    app = stats_app(make_app, OTP_CONVERSION_STATS_CACHE_TTL=0)
    assert get(app.test_client()).get_json()["reporter"]["delivering"] is False
    app.extensions["otp_conversion"].reporter.ensure_running()
    assert get(app.test_client()).get_json()["reporter"]["delivering"] is True


def test_reporter_section_counts_verifications_not_yet_applied_from_the_spool(make_app: AppFactory) -> None:
    app = stats_app(make_app, OTP_CONVERSION_STATS_CACHE_TTL=0)
    with app.app_context():
        OTPConversion().record_sent(CN, "cn-0")
    otp_verified.send(app, phone=CN)  # spooled; nothing applies it with the reporter not autostarted
    assert get(app.test_client()).get_json()["reporter"]["spooled"] == 1
    with app.app_context():
        OTPConversion().flush(timeout=0.1)
    reporter = get(app.test_client()).get_json()["reporter"]
    assert reporter["spooled"] == 0 and reporter["pending"] == 1


# Window (parsed by stats_window.py: tests/web/test_stats_window.py) ------------------------------------


def _span(body: dict[str, Any]) -> timedelta:
    window = body["window"]
    return datetime.fromisoformat(window["to"].replace("Z", "+00:00")) - datetime.fromisoformat(
        window["from"].replace("Z", "+00:00")
    )


def test_default_window_is_the_last_24_hours(make_app: AppFactory) -> None:
    app = stats_app(make_app)
    assert _span(get(app.test_client()).get_json()) == timedelta(hours=24)


def test_from_with_offset_in_the_query_is_converted_to_utc(make_app: AppFactory) -> None:
    app = stats_app(make_app)
    body = get(app.test_client(), "?from=2026-01-01T08:00:00%2B08:00&to=2026-01-01T12:00:00Z").get_json()
    assert body["window"]["from"] == "2026-01-01T00:00:00Z"


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("?since=abc", "since must be"),
        ("?from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z", "from must not be after to"),
        ("?since=33d", "at most 32 days"),
    ],
)
def test_bad_window_is_a_400_with_a_message(make_app: AppFactory, query: str, message: str) -> None:
    app = stats_app(make_app)
    response = get(app.test_client(), query)
    assert response.status_code == 400
    assert message in response.get_json()["error"]


# Auth -----------------------------------------------------------------------------------------------


def test_without_token_or_callable_every_request_is_refused(make_app: AppFactory) -> None:
    app, _ = make_app(OTP_CONVERSION_TENCENT_ENDPOINT=OFFLINE)
    assert app.test_client().get("/otp-conversion/stats", headers=AUTH).status_code == 401


def _warnings(caplog: pytest.LogCaptureFixture) -> int:
    return sum("refuses every request" in r.getMessage() for r in caplog.records)


def test_without_token_the_warning_is_logged_once_when_the_endpoint_is_served(
    make_app: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    app, _ = make_app(OTP_CONVERSION_TENCENT_ENDPOINT=OFFLINE)
    client = app.test_client()
    with caplog.at_level(logging.WARNING, logger="flask_otp_conversion"):
        get(client)
        get(client)
    assert _warnings(caplog) == 1


def test_without_token_building_the_app_logs_no_warning(
    make_app: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="flask_otp_conversion"):
        make_app(OTP_CONVERSION_TENCENT_ENDPOINT=OFFLINE)  # what every CLI command does first
    assert _warnings(caplog) == 0


def test_with_a_stats_auth_callable_the_endpoint_logs_no_warning(
    make_app: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    app, conversion = make_app(OTP_CONVERSION_TENCENT_ENDPOINT=OFFLINE)
    conversion.stats_auth(lambda: True)
    with caplog.at_level(logging.WARNING, logger="flask_otp_conversion"):
        assert get(app.test_client(), headers={}).status_code == 200
    assert _warnings(caplog) == 0


def test_missing_token_is_401_with_www_authenticate(make_app: AppFactory) -> None:
    app = stats_app(make_app)
    response = get(app.test_client(), headers={})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.get_json() == {"error": "unauthorized"}


def test_wrong_token_is_401(make_app: AppFactory) -> None:
    app = stats_app(make_app)
    assert get(app.test_client(), headers={"Authorization": "Bearer nope"}).status_code == 401


def test_right_token_is_200(make_app: AppFactory) -> None:
    app = stats_app(make_app)
    assert get(app.test_client()).status_code == 200


def test_callable_returning_true_allows(make_app: AppFactory) -> None:
    app, conversion = make_app(OTP_CONVERSION_TENCENT_ENDPOINT=OFFLINE)

    @conversion.stats_auth
    def allow() -> bool:
        return request.headers.get("X-Operator") == "yes"

    assert get(app.test_client(), headers={"X-Operator": "yes"}).status_code == 200


def test_callable_returning_false_refuses(make_app: AppFactory) -> None:
    app, conversion = make_app(OTP_CONVERSION_TENCENT_ENDPOINT=OFFLINE)
    conversion.stats_auth(lambda: False)
    assert get(app.test_client(), headers={"X-Operator": "yes"}).status_code == 401


def test_callable_that_raises_refuses(make_app: AppFactory) -> None:
    app, conversion = make_app(OTP_CONVERSION_TENCENT_ENDPOINT=OFFLINE)

    @conversion.stats_auth
    def broken() -> bool:
        raise RuntimeError("auth backend down")

    assert get(app.test_client(), headers={}).status_code == 401


def test_no_cors_headers(make_app: AppFactory) -> None:
    app = stats_app(make_app)
    response = get(app.test_client(), headers={**AUTH, "Origin": "https://evil.example"})
    assert not [k for k, _ in response.headers.items() if k.lower().startswith("access-control-")]


# Provider figures, cache, single flight, failures -----------------------------------------------------


def test_provider_figures_come_from_the_emulator(
    make_app: AppFactory, provider_emulator_server: EmulatorServer
) -> None:
    app = stats_app(
        make_app,
        provider_emulator_server,
        OTP_CONVERSION_TENCENT_TEMPLATE_ID="1110",
        OTP_CONVERSION_TENCENT_SIGN_NAME="Example",
    )
    with app.extensions["otp_conversion"].make_provider() as provider:
        provider.send_otp(CN, "123456")
    body = get(app.test_client()).get_json()
    assert body["provider"]["send"]["request_count"] == 1
    assert body["provider_time_zone"] == "UTC+08:00"


def test_repeated_requests_hit_the_cache(make_app: AppFactory, provider_emulator_server: EmulatorServer) -> None:
    app = stats_app(make_app, provider_emulator_server)
    client = app.test_client()
    get(client)
    get(client)
    assert len(provider_emulator_server.emulator.calls(action="SendStatusStatistics")) == 1


def test_degraded_mode_makes_no_provider_statistics_calls(
    make_app: AppFactory, provider_emulator_server: EmulatorServer
) -> None:
    app = stats_app(make_app, provider_emulator_server, OTP_CONVERSION_DEGRADED=True)
    body = get(app.test_client()).get_json()
    assert provider_emulator_server.emulator.calls() == []
    assert body["provider"] is None
    assert body["provider_error"].startswith("degraded")


def test_degraded_mode_serves_the_last_provider_figures_as_stale(
    make_app: AppFactory, provider_emulator_server: EmulatorServer
) -> None:
    app = stats_app(make_app, provider_emulator_server, OTP_CONVERSION_STATS_CACHE_TTL=0)
    client = app.test_client()
    fresh = get(client).get_json()
    calls = len(provider_emulator_server.emulator.calls())
    with app.app_context():
        OTPConversion().degrade(True)
    body = get(client).get_json()
    assert len(provider_emulator_server.emulator.calls()) == calls
    assert body["stale"] is True and body["provider"] == fresh["provider"]


@pytest.mark.timeout(60)
def test_fifty_concurrent_requests_make_one_provider_call(
    make_app: AppFactory, provider_emulator_server: EmulatorServer
) -> None:
    emulator = provider_emulator_server.emulator
    emulator.latency = 0.2  # keep the first fetch in flight while the others arrive
    app = stats_app(make_app, provider_emulator_server)
    assert concurrently(app, 50) == [200] * 50
    assert len(emulator.calls(action="CallbackStatusStatistics")) == 1
    assert len(emulator.calls(action="SendStatusStatistics")) == 1


def concurrently(app: Flask, n: int) -> list[int]:
    barrier = threading.Barrier(n)
    statuses: list[int] = []

    def one() -> None:
        client = app.test_client()
        barrier.wait()
        statuses.append(get(client).status_code)

    threads = [threading.Thread(target=one) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return statuses


@pytest.mark.timeout(60)
def test_concurrent_requests_share_one_failed_provider_call(
    make_app: AppFactory, provider_emulator_server: EmulatorServer
) -> None:
    emulator = provider_emulator_server.emulator
    emulator.latency = 0.2
    emulator.inject("CallbackStatusStatistics", Fault.http_500())
    app = stats_app(make_app, provider_emulator_server)
    assert concurrently(app, 50) == [200] * 50
    assert len(emulator.calls(action="CallbackStatusStatistics")) == 1


def test_provider_failure_after_a_good_fetch_serves_stale(
    make_app: AppFactory, provider_emulator_server: EmulatorServer
) -> None:
    app = stats_app(make_app, provider_emulator_server, OTP_CONVERSION_STATS_CACHE_TTL=0)  # every request misses
    client = app.test_client()
    good = get(client).get_json()["provider"]
    provider_emulator_server.emulator.inject("CallbackStatusStatistics", Fault.http_500())
    body = get(client).get_json()
    assert body["stale"] is True and body["provider"] == good


def test_provider_failure_with_nothing_cached_serves_local_figures(
    make_app: AppFactory, provider_emulator_server: EmulatorServer
) -> None:
    provider_emulator_server.emulator.inject("CallbackStatusStatistics", Fault.http_500())
    app = stats_app(make_app, provider_emulator_server)
    record_four_sends(app)
    response = get(app.test_client())
    body = response.get_json()
    assert response.status_code == 200
    assert body["provider"] is None and body["provider_error"] and body["requested"] == 4


def test_provider_error_carries_no_secret(make_app: AppFactory, provider_emulator_server: EmulatorServer) -> None:
    provider_emulator_server.emulator.inject("CallbackStatusStatistics", Fault.http_500())
    app = stats_app(make_app, provider_emulator_server)
    text = get(app.test_client()).get_data(as_text=True)
    emulator = provider_emulator_server.emulator
    assert emulator.TENCENT_SECRET_KEY not in text and TOKEN not in text


# CLI ------------------------------------------------------------------------------------------------


def test_cli_prints_a_table(make_app: AppFactory, provider_emulator_server: EmulatorServer) -> None:
    app = stats_app(make_app, provider_emulator_server)
    record_four_sends(app)
    result = app.test_cli_runner().invoke(args=["otp-conversion", "stats"])
    assert result.exit_code == 0, result.output
    assert "conversion rate  50.0%" in result.output
    assert "provider tencent (hours in UTC+08:00)" in result.output


def test_cli_json_matches_the_endpoint_figures(make_app: AppFactory, provider_emulator_server: EmulatorServer) -> None:
    app = stats_app(make_app, provider_emulator_server)
    record_four_sends(app)
    result = app.test_cli_runner().invoke(args=["otp-conversion", "stats", "--since", "7d", "--json"])
    figures = json.loads(result.output)
    assert (figures["requested"], figures["verified"], figures["conversion_rate"]) == (4, 2, 0.5)
    assert _span(figures) == timedelta(days=7)


def test_cli_refuses_a_bad_since(make_app: AppFactory) -> None:
    app = stats_app(make_app)
    result = app.test_cli_runner().invoke(args=["otp-conversion", "stats", "--since", "forever"])
    assert result.exit_code == 2 and "since must be" in result.output


def test_cli_refuses_a_since_too_long_to_represent(make_app: AppFactory) -> None:
    app = stats_app(make_app)
    result = app.test_cli_runner().invoke(args=["otp-conversion", "stats", "--since", "999999d"])
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.exit_code == 2 and "since must be at most 3660 days" in result.output


def test_endpoint_follows_the_url_prefix(make_app: AppFactory) -> None:
    app = stats_app(make_app, OTP_CONVERSION_URL_PREFIX="/ops/otp")
    assert app.test_client().get("/ops/otp/stats", headers=AUTH).status_code == 200


def test_disabled_extension_has_no_endpoint(make_app: AppFactory) -> None:
    app = stats_app(make_app, OTP_CONVERSION_ENABLED=False)
    assert get(app.test_client()).status_code == 404


def test_alibaba_with_a_cust_space_serves_the_cams_sender_numbers(
    make_app: AppFactory, provider_emulator_server: EmulatorServer
) -> None:
    emulator = provider_emulator_server.emulator
    emulator.set_cams_phone_numbers(
        [
            {
                "PhoneNumber": "6581234567",
                "Status": "CONNECTED",
                "QualityRating": "GREEN",
                "MessagingLimitTier": "TIER_1K",
            }
        ]
    )
    app, _ = make_app(
        OTP_CONVERSION_STATS_TOKEN=TOKEN,
        OTP_CONVERSION_PROVIDER="alibaba",
        OTP_CONVERSION_ALIBABA_ACCESS_KEY_ID=emulator.ALIBABA_ACCESS_KEY_ID,
        OTP_CONVERSION_ALIBABA_ACCESS_KEY_SECRET=emulator.ALIBABA_ACCESS_KEY_SECRET,
        OTP_CONVERSION_ALIBABA_ENDPOINT=provider_emulator_server.url,
        OTP_CONVERSION_ALIBABA_CAMS_ENDPOINT=provider_emulator_server.url,
        OTP_CONVERSION_ALIBABA_CUST_SPACE_ID=emulator.ALIBABA_CUST_SPACE_ID,
    )
    body = get(app.test_client(), "?since=40d").get_json()
    assert body["provider_name"] == "alibaba"
    text = json.dumps(body["provider"])
    assert "6581234567" in text and "GREEN" in text and "TIER_1K" in text
    assert len(emulator.calls(action="ChatappSyncPhoneNumber", ok=True)) == 1


# The service on its own: given what it reads, served without the extension ----------------------------


class WeeklyTencent(TencentProvider):
    """A provider whose statistics go back a week at most: the span comes from the class, not from its name."""

    statistics_max_span = timedelta(days=7)
    statistics_time_zone = "UTC+09:00"


#: ``make_standalone_stats(provider_class, token)`` (tests/web/conftest.py)
StandaloneFactory = Callable[[type[Provider], str], Flask]


def test_service_built_from_its_parts_serves_without_the_extension(
    make_standalone_stats: StandaloneFactory, provider_emulator_server: EmulatorServer
) -> None:
    app = make_standalone_stats(TencentProvider, TOKEN)
    body = get(app.test_client()).get_json()
    assert (body["requested"], body["reporter"]["spooled"], body["provider_time_zone"]) == (1, 3, "UTC+08:00")
    assert len(provider_emulator_server.emulator.calls(action="SendStatusStatistics", ok=True)) == 1


def test_longest_window_comes_from_the_provider_class(make_standalone_stats: StandaloneFactory) -> None:
    app = make_standalone_stats(WeeklyTencent, TOKEN)
    response = get(app.test_client(), "?since=8d")
    assert response.status_code == 400
    assert "WeeklyTencent" not in response.get_json()["error"]
    assert "allows at most 7 days" in response.get_json()["error"]


class UnboundedTencent(TencentProvider):
    """A provider without a statistics span of its own: the package's own longest window applies."""

    statistics_max_span = None


def test_a_window_longer_than_ten_years_is_a_400_without_a_provider_limit(
    make_standalone_stats: StandaloneFactory,
) -> None:
    app = make_standalone_stats(UnboundedTencent, TOKEN)
    response = get(app.test_client(), "?from=1970-01-01T00:00:00Z&to=9998-12-31T00:00:00Z")
    assert response.status_code == 400
    assert "at most 3660 days" in response.get_json()["error"]


def test_the_reporter_section_counts_spool_lines_moved_to_the_quarantine(
    tmp_path: Path, provider_emulator_server: EmulatorServer
) -> None:
    store = SQLiteStore(str(tmp_path / "quarantine.db"))
    spool = Spool(store, str(tmp_path / "spool"), provider="tencent", match_window=900.0, logger=LOGGER)
    (tmp_path / "spool" / ("dead" + SUFFIX)).write_bytes(b'not json\n["+6590000001",null,1e300]\n')
    spool.apply_pending()
    service = StatsService(
        store=store,
        provider_class=UnboundedTencent,
        provider_factory=lambda: UnboundedTencent.from_settings(
            TencentSettings(
                secret_id=ProviderEmulator.TENCENT_SECRET_ID,
                secret_key=ProviderEmulator.TENCENT_SECRET_KEY,
                sdk_app_id=ProviderEmulator.TENCENT_SDK_APP_ID,
                endpoint=provider_emulator_server.url,
            )
        ),
        delivery=lambda: DeliveryStatus(delivering=False, breaker_state="closed", degraded=False, last_error=None),
        quarantined=lambda: quarantined(spool.directory),
    )
    try:
        assert service.collect(parse_window({}, provider=UnboundedTencent))["reporter"]["quarantined"] == 2
    finally:
        service.close()
        store.close()


def test_time_zone_comes_from_the_provider_class(make_standalone_stats: StandaloneFactory) -> None:
    app = make_standalone_stats(WeeklyTencent, TOKEN)
    assert get(app.test_client()).get_json()["provider_time_zone"] == "UTC+09:00"


def test_stats_module_imports_neither_the_extension_nor_the_cli() -> None:
    # The package's __init__ imports the extension: stand in an empty package to see the module's own imports.
    probe = (
        "import sys, types\n"
        f"pkg = types.ModuleType('flask_otp_conversion'); pkg.__path__ = [{str(PACKAGE)!r}]\n"
        "sys.modules['flask_otp_conversion'] = pkg\n"
        "import flask_otp_conversion.web.stats\n"
        "print('flask_otp_conversion.extension' in sys.modules, 'flask_otp_conversion.cli' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "False"]
