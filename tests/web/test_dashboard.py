"""The dashboard at ``/otp-conversion/``: auth (token, cookie, ``stats_auth``), its figures, the degrade switch."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

import flask_otp_conversion
from flask_otp_conversion import OTPConversion
from flask_otp_conversion.web.dashboard import CHART_MINUTES, COOKIE
from tests.alarm.ranges import PREFIX, PREFIX_CONFIG, pump_a_range
from tests.conftest import AppFactory

TOKEN = "dashboard-token"
OFFLINE = "http://127.0.0.1:9"
PACKAGE = Path(flask_otp_conversion.__file__).parent
CN = "+8613711112222"


def dashboard_app(make_app: AppFactory, **config: Any) -> tuple[Flask, OTPConversion]:
    config.setdefault("OTP_CONVERSION_STATS_TOKEN", TOKEN)
    config.setdefault("OTP_CONVERSION_TENCENT_ENDPOINT", OFFLINE)
    return make_app(**config)


def signed_in(app: Flask) -> FlaskClient:
    client = app.test_client()
    assert client.post("/otp-conversion/login", data={"token": TOKEN}).status_code == 303
    return client


def csrf_of(client: FlaskClient) -> str:
    match = re.search(r'name="csrf" value="([0-9a-f]+)"', client.get("/otp-conversion/").get_data(as_text=True))
    assert match is not None
    return match.group(1)


def sends(app: Flask, conversion: OTPConversion) -> None:
    with app.app_context():
        for i in range(4):
            conversion.record_sent(CN[:-1] + str(i), f"cn-{i}", sent_at=time.time() - 120)
        conversion.record_verified(CN[:-1] + "0", "cn-0", verified_at=time.time() - 100)


def test_the_page_asks_for_the_token_first(make_app: AppFactory) -> None:
    app, _ = dashboard_app(make_app)
    page = app.test_client().get("/otp-conversion/").get_data(as_text=True)
    assert ('name="token"' in page, 'id="chart"' in page) == (True, False)


def test_a_wrong_token_sets_no_cookie(make_app: AppFactory) -> None:
    app, _ = dashboard_app(make_app)
    response = app.test_client().post("/otp-conversion/login", data={"token": "guess"})
    assert (response.status_code, response.headers.get("Set-Cookie")) == (401, None)


def test_the_token_buys_an_httponly_strict_cookie(make_app: AppFactory) -> None:
    app, _ = dashboard_app(make_app)
    cookie = app.test_client().post("/otp-conversion/login", data={"token": TOKEN}).headers["Set-Cookie"]
    assert all(part in cookie for part in ("HttpOnly", "SameSite=Strict", "Path=/otp-conversion/"))
    assert TOKEN not in cookie


def test_the_cookie_opens_the_page(make_app: AppFactory) -> None:
    app, _ = dashboard_app(make_app)
    response = signed_in(app).get("/otp-conversion/")
    assert (response.status_code, 'id="chart"' in response.get_data(as_text=True)) == (200, True)


def test_a_tampered_cookie_is_refused(make_app: AppFactory) -> None:
    app, _ = dashboard_app(make_app)
    client = app.test_client()
    client.set_cookie(COOKIE, "eyJhdCI6MX0.forged.signature", path="/otp-conversion/")
    assert client.get("/otp-conversion/dashboard.json").status_code == 401


def test_a_new_token_signs_everyone_out(make_app: AppFactory) -> None:
    app, _ = dashboard_app(make_app)
    client = signed_in(app)
    other, _ = dashboard_app(make_app, name="rotated", OTP_CONVERSION_STATS_TOKEN="a-new-token")
    moved = other.test_client()
    cookie = client.get_cookie(COOKIE, path="/otp-conversion/")
    assert cookie is not None
    moved.set_cookie(COOKIE, cookie.value, path="/otp-conversion/")
    assert moved.get("/otp-conversion/dashboard.json").status_code == 401


def test_the_bearer_token_reads_the_figures(make_app: AppFactory) -> None:
    app, _ = dashboard_app(make_app)
    response = app.test_client().get("/otp-conversion/dashboard.json", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200


def test_the_apps_stats_auth_callable_opens_the_page(make_app: AppFactory) -> None:
    app, conversion = dashboard_app(make_app, OTP_CONVERSION_STATS_TOKEN="")
    conversion.stats_auth(lambda: True)
    assert app.test_client().get("/otp-conversion/").status_code == 200


def test_the_figures_hold_the_sends_per_country(make_app: AppFactory) -> None:
    app, conversion = dashboard_app(make_app)
    sends(app, conversion)
    (row,) = signed_in(app).get("/otp-conversion/dashboard.json").get_json()["countries"]
    assert (row["calling_code"], row["requested"], row["verified"], row["conversion_rate"]) == ("86", 4, 1, 0.25)


def test_a_prefix_alarm_is_on_its_countrys_row_and_not_the_whole_code(make_app: AppFactory) -> None:
    app, conversion = dashboard_app(make_app, **PREFIX_CONFIG)
    pump_a_range(app, conversion)
    (row,) = signed_in(app).get("/otp-conversion/dashboard.json").get_json()["countries"]
    assert (row["calling_code"], row["alarm"], [a["prefix"] for a in row["prefix_alarms"]]) == ("44", False, [PREFIX])


def test_the_chart_has_every_minute_and_the_sends_in_theirs(make_app: AppFactory) -> None:
    app, conversion = dashboard_app(make_app)
    sends(app, conversion)
    chart = signed_in(app).get("/otp-conversion/dashboard.json").get_json()["chart"]
    assert len(chart) == CHART_MINUTES
    assert sum(p["requested"] for p in chart) == 4


def test_the_pipeline_shows_pending_and_delivery_figures(make_app: AppFactory) -> None:
    app, conversion = dashboard_app(make_app)
    sends(app, conversion)
    pipeline = signed_in(app).get("/otp-conversion/dashboard.json").get_json()["pipeline"]
    assert (pipeline["pending"], pipeline["delivered"], pipeline["retried"], pipeline["breaker_state"]) == (
        1,
        0,
        0,
        "closed",
    )


def test_the_page_forbids_every_script_but_its_own(make_app: AppFactory) -> None:
    app, _ = dashboard_app(make_app)
    response = signed_in(app).get("/otp-conversion/")
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert not re.search(r'(src|href)="(https?:)?//', response.get_data(as_text=True))


def test_the_script_and_styles_ship_in_the_package(make_app: AppFactory) -> None:
    app, _ = dashboard_app(make_app)
    client = app.test_client()
    for name in ("dashboard.js", "dashboard.css"):
        assert (PACKAGE / "web" / "static" / "otp_conversion" / name).is_file()
        assert client.get(f"/otp-conversion/assets/otp_conversion/{name}").status_code == 200


def test_the_page_is_read_only_by_default(make_app: AppFactory) -> None:
    app, _ = dashboard_app(make_app)
    client = signed_in(app)
    assert 'name="csrf"' not in client.get("/otp-conversion/").get_data(as_text=True)
    assert client.post("/otp-conversion/degrade", data={"mode": "on", "csrf": "x"}).status_code == 403


def test_the_switch_turns_degradation_on(make_app: AppFactory) -> None:
    app, _ = dashboard_app(make_app, OTP_CONVERSION_DASHBOARD_CONTROLS=True)
    client = signed_in(app)
    response = client.post("/otp-conversion/degrade", data={"mode": "on", "csrf": csrf_of(client)})
    assert response.status_code == 303
    assert app.extensions["otp_conversion"].reporter.degraded


def test_the_switch_refuses_a_wrong_csrf_token(make_app: AppFactory) -> None:
    app, _ = dashboard_app(make_app, OTP_CONVERSION_DASHBOARD_CONTROLS=True)
    client = signed_in(app)
    assert client.post("/otp-conversion/degrade", data={"mode": "on", "csrf": "0" * 64}).status_code == 403
    assert not app.extensions["otp_conversion"].reporter.degraded


def test_the_switch_refuses_another_origin(make_app: AppFactory) -> None:
    app, _ = dashboard_app(make_app, OTP_CONVERSION_DASHBOARD_CONTROLS=True)
    client = signed_in(app)
    data = {"mode": "on", "csrf": csrf_of(client)}
    response = client.post("/otp-conversion/degrade", data=data, headers={"Origin": "https://evil.example"})
    assert response.status_code == 403


def test_a_bad_mode_is_a_400(make_app: AppFactory) -> None:
    app, _ = dashboard_app(make_app, OTP_CONVERSION_DASHBOARD_CONTROLS=True)
    client = signed_in(app)
    assert client.post("/otp-conversion/degrade", data={"mode": "maybe", "csrf": csrf_of(client)}).status_code == 400


def test_signing_out_drops_the_cookie(make_app: AppFactory) -> None:
    app, _ = dashboard_app(make_app)
    client = signed_in(app)
    client.post("/otp-conversion/logout")
    assert client.get("/otp-conversion/dashboard.json").status_code == 401
