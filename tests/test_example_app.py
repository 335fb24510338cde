"""The example app end to end: its routes, over the real provider client, against the embedded emulator."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from example_app import ExampleState
from flask_otp_conversion.testing import EmulatorServer
from flask_otp_conversion.testing.remote import RemoteEmulator
from flask_otp_conversion.testing.shared import read_record

from .conftest import ExampleAppFactory, FakeClock

PHONE = "+8613711112222"
ROOT = Path(__file__).resolve().parent.parent


def state_of(app: Flask) -> ExampleState:
    state: ExampleState = app.extensions["example_app"]
    return state


def emulator_of(app: Flask) -> RemoteEmulator:
    sandbox = state_of(app).sandbox
    assert sandbox is not None
    return sandbox.emulator


def send(client: FlaskClient, phone: str = PHONE) -> Any:
    return client.post("/otp/send", json={"phone": phone})


def verify(client: FlaskClient, code: str, phone: str = PHONE) -> Any:
    return client.post("/otp/verify", json={"phone": phone, "code": code})


def sent_code(app: Flask, phone: str = PHONE) -> str:
    """Send through the route and read the code back from what the emulator received."""
    assert send(app.test_client(), phone).status_code == 202
    code = emulator_of(app).code_for(phone)
    assert code is not None
    return code


def test_send_answers_202_and_the_provider_receives_a_six_digit_code(make_example_app: ExampleAppFactory) -> None:
    app = make_example_app()
    response = send(app.test_client(), "+86 137-1111-2222")
    assert response.status_code == 202
    assert response.get_json() == {"sent": True, "phone": PHONE, "expires_in": 300, "resend_after": 60}
    [call] = emulator_of(app).calls("SendSms")
    assert call.ok and call.params["PhoneNumberSet"] == [PHONE]
    assert len(call.params["TemplateParamSet"][0]) == 6 and call.params["TemplateParamSet"][0].isdigit()


def test_right_code_verifies(make_example_app: ExampleAppFactory) -> None:
    app = make_example_app()
    code = sent_code(app)
    response = verify(app.test_client(), code)
    assert (response.status_code, response.get_json()) == (200, {"verified": True})


def test_code_is_used_up_by_a_successful_verify(make_example_app: ExampleAppFactory) -> None:
    app = make_example_app()
    code = sent_code(app)
    client = app.test_client()
    assert verify(client, code).status_code == 200
    response = verify(client, code)
    assert response.status_code == 400
    assert response.get_json()["verified"] is False


def test_wrong_code_is_401(make_example_app: ExampleAppFactory) -> None:
    app = make_example_app()
    code = sent_code(app)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    response = verify(app.test_client(), wrong)
    assert (response.status_code, response.get_json()) == (401, {"verified": False, "error": "wrong code"})


def test_code_past_five_minutes_is_400_expired(make_example_app: ExampleAppFactory, clock: FakeClock) -> None:
    app = make_example_app(EXAMPLE_OTP_CLOCK=clock)
    code = sent_code(app)
    clock.advance(300)
    response = verify(app.test_client(), code)
    assert response.status_code == 400
    assert "expired" in response.get_json()["error"]


def test_sixth_attempt_is_429_even_with_the_right_code(make_example_app: ExampleAppFactory) -> None:
    app = make_example_app()
    code = sent_code(app)
    client = app.test_client()
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    assert [verify(client, wrong).status_code for _ in range(5)] == [401] * 5
    response = verify(client, code)
    assert response.status_code == 429
    assert response.get_json()["verified"] is False


def test_second_send_within_a_minute_is_429_with_retry_after(
    make_example_app: ExampleAppFactory, clock: FakeClock
) -> None:
    app = make_example_app(EXAMPLE_OTP_CLOCK=clock)
    client = app.test_client()
    assert send(client).status_code == 202
    clock.advance(20)
    response = send(client)
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "40"
    assert response.get_json()["retry_after"] == 40
    assert len(emulator_of(app).calls("SendSms")) == 1


def test_send_is_allowed_again_after_a_minute(make_example_app: ExampleAppFactory, clock: FakeClock) -> None:
    app = make_example_app(EXAMPLE_OTP_CLOCK=clock)
    client = app.test_client()
    assert send(client).status_code == 202
    clock.advance(60)
    assert send(client).status_code == 202


def test_a_new_code_replaces_the_old_one(make_example_app: ExampleAppFactory, clock: FakeClock) -> None:
    app = make_example_app(EXAMPLE_OTP_CLOCK=clock)
    old = sent_code(app)
    clock.advance(60)
    new = sent_code(app)
    client = app.test_client()
    if old != new:
        assert verify(client, old).status_code == 401
    assert verify(client, new).status_code == 200


def test_provider_refusal_is_502_and_does_not_hold_the_resend_slot(make_example_app: ExampleAppFactory) -> None:
    app = make_example_app()
    emulator = emulator_of(app)
    emulator.refuse_phone(PHONE, "InvalidParameterValue.IncorrectPhoneNumber")
    client = app.test_client()
    response = send(client)
    assert response.status_code == 502
    assert response.get_json()["provider_error"] == "InvalidParameterValue.IncorrectPhoneNumber"
    assert verify(client, "123456").status_code == 400  # nothing pending
    emulator.reset()
    assert send(client).status_code == 202


_TOO_BIG = '{"phone": "' + "1" * 5000 + '"}'
BAD_INPUT = [
    # (route, body or json, content type, status)
    ("send", "phone=+8613711112222", "application/x-www-form-urlencoded", 415),
    ("send", '{"phone": ', "application/json", 400),
    ("send", '["+8613711112222"]', "application/json", 400),
    ("send", "{}", "application/json", 400),
    ("send", '{"phone": 8613711112222}', "application/json", 400),
    ("send", '{"phone": null}', "application/json", 400),
    ("send", '{"phone": "13711112222"}', "application/json", 400),
    ("send", '{"phone": "+0123"}', "application/json", 400),
    ("send", '{"phone": "' + "+86" + "1" * 40 + '"}', "application/json", 400),
    ("send", _TOO_BIG, "application/json", 413),
    ("send", '{"phone": "+86' + "\\uff11" * 11 + '"}', "application/json", 400),  # fullwidth digits
    ("send", '{"phone": "+20' + "\\u0661" * 10 + '"}', "application/json", 400),  # Arabic-Indic digits
    ("send", '{"phone": "+91' + "\\u0969" * 10 + '"}', "application/json", 400),  # Devanagari digits
    ("verify", "code=123456", "application/x-www-form-urlencoded", 415),
    ("verify", "not json", "application/json", 400),
    ("verify", '"123456"', "application/json", 400),
    ("verify", '{"code": "123456"}', "application/json", 400),
    ("verify", '{"phone": "+8613711112222"}', "application/json", 400),
    ("verify", '{"phone": "+8613711112222", "code": 123456}', "application/json", 400),
    ("verify", '{"phone": "+8613711112222", "code": "12a456"}', "application/json", 400),
    ("verify", '{"phone": "+8613711112222", "code": "1234567"}', "application/json", 400),
    ("verify", '{"phone": "+8613711112222", "code": "' + "\\uff11" * 6 + '"}', "application/json", 400),  # fullwidth
    ("verify", '{"phone": ["+8613711112222"], "code": "123456"}', "application/json", 400),
    ("verify", '{"phone": "555-0100", "code": "123456"}', "application/json", 400),
    ("verify", '{"phone": "+86' + "\\uff11" * 11 + '", "code": "123456"}', "application/json", 400),  # fullwidth
    ("verify", _TOO_BIG, "application/json", 413),
]


@pytest.mark.parametrize(("route", "body", "content_type", "status"), BAD_INPUT)
def test_bad_input_is_a_4xx_json_error(
    make_example_app: ExampleAppFactory, route: str, body: str, content_type: str, status: int
) -> None:
    app = make_example_app()
    response = app.test_client().post(f"/otp/{route}", data=body.encode(), content_type=content_type)
    assert response.status_code == status
    data = response.get_json()
    assert isinstance(data["error"], str) and data["error"]
    if route == "verify":
        assert data["verified"] is False
    assert emulator_of(app).calls() == []


@pytest.mark.parametrize(("method", "path", "status"), [("GET", "/nowhere", 404), ("GET", "/otp/send", 405)])
def test_http_errors_are_json(make_example_app: ExampleAppFactory, method: str, path: str, status: int) -> None:
    response = make_example_app().test_client().open(path, method=method)
    assert response.status_code == status
    assert "error" in response.get_json()


def test_unexpected_failure_is_a_json_500_without_details(make_example_app: ExampleAppFactory) -> None:
    app = make_example_app()
    state_of(app).codes.close()  # the code store is gone: every send fails inside the view
    app.config["PROPAGATE_EXCEPTIONS"] = False
    response = send(app.test_client())
    assert (response.status_code, response.get_json()) == (500, {"error": "internal server error"})


def test_verified_otp_is_reported_to_the_emulator(make_example_app: ExampleAppFactory) -> None:
    app = make_example_app()
    code = sent_code(app)
    assert verify(app.test_client(), code).status_code == 200
    conversion = state_of(app).conversion
    assert conversion is not None
    with app.app_context():
        assert conversion.flush(timeout=10) == 0
    emulator = emulator_of(app)
    [message] = emulator.messages()
    [report] = emulator.calls("ReportConversion")
    assert report.ok and report.params["SerialNo"] == message.message_id


def test_reporter_autostarts_and_delivers_without_a_flush(make_example_app: ExampleAppFactory) -> None:
    app = make_example_app(OTP_CONVERSION_REPORTER_AUTOSTART=True)
    code = sent_code(app)
    assert verify(app.test_client(), code).status_code == 200
    emulator = emulator_of(app)
    deadline = time.monotonic() + 15
    while not emulator.conversions() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert [c.message_id for c in emulator.conversions()] == [emulator.messages()[0].message_id]


def test_alibaba_sandbox_sends_the_code_as_template_param_and_reports(make_example_app: ExampleAppFactory) -> None:
    app = make_example_app(OTP_CONVERSION_PROVIDER="alibaba")
    code = sent_code(app)
    emulator = emulator_of(app)
    [sent] = emulator.calls("SendMessageWithTemplate")
    assert sent.ok and sent.provider == "alibaba"
    assert verify(app.test_client(), code).status_code == 200
    conversion = state_of(app).conversion
    assert conversion is not None
    with app.app_context():
        assert conversion.flush(timeout=10) == 0
    [report] = emulator.calls("SmsConversion")
    assert report.ok and report.params["MessageId"] == emulator.messages()[0].message_id


def test_app_without_the_extension_sends_and_verifies_and_records_nothing(
    make_example_app: ExampleAppFactory,
) -> None:
    app = make_example_app(conversion=False)
    assert "otp_conversion" not in app.extensions
    code = sent_code(app)
    client = app.test_client()
    assert verify(client, code).status_code == 200
    assert client.get("/otp-conversion/stats").status_code == 404
    assert emulator_of(app).calls("ReportConversion") == []


def test_codes_are_shared_by_apps_on_one_code_file(make_example_app: ExampleAppFactory, tmp_path: Any) -> None:
    db = str(tmp_path / "shared-codes.db")
    sender, verifier = make_example_app(EXAMPLE_OTP_DB=db), make_example_app(EXAMPLE_OTP_DB=db)
    code = sent_code(sender)
    assert verify(verifier.test_client(), code).status_code == 200
    assert send(verifier.test_client()).status_code == 429


def test_issued_code_verifies_without_any_sms(make_example_app: ExampleAppFactory) -> None:
    app = make_example_app()
    codes = state_of(app).codes.issue_many(["+86 137 1111 2222", "+8613711113333"])
    assert set(codes) == {PHONE, "+8613711113333"}
    client = app.test_client()
    assert [verify(client, code, phone).status_code for phone, code in codes.items()] == [200, 200]
    assert emulator_of(app).calls() == []


def test_index_page_shows_the_generated_stats_token_that_the_stats_endpoint_accepts(
    make_example_app: ExampleAppFactory,
) -> None:
    app = make_example_app()
    token = state_of(app).shown_stats_token
    assert token
    client = app.test_client()
    page = client.get("/")
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert token in page.get_data(as_text=True)
    assert "/otp-conversion/stats" in page.get_data(as_text=True)
    assert client.get("/otp-conversion/stats").status_code == 401
    stats = client.get("/otp-conversion/stats", headers={"Authorization": f"Bearer {token}"})
    assert stats.status_code == 200 and stats.get_json()["provider_name"] == "tencent"


def test_configured_stats_token_is_never_shown(make_example_app: ExampleAppFactory) -> None:
    app = make_example_app(OTP_CONVERSION_STATS_TOKEN="operator-secret-token")
    assert state_of(app).shown_stats_token is None
    assert "operator-secret-token" not in app.test_client().get("/").get_data(as_text=True)


def test_sandbox_code_route_returns_the_captured_code(make_example_app: ExampleAppFactory) -> None:
    app = make_example_app()
    code = sent_code(app)
    client = app.test_client()
    response = client.get("/sandbox/last-code", query_string={"phone": PHONE})
    assert response.get_json() == {"phone": PHONE, "code": code}
    assert client.get("/sandbox/last-code", query_string={"phone": "+8613799999999"}).status_code == 404


def test_with_credentials_there_is_no_sandbox_and_no_code_route(
    make_example_app: ExampleAppFactory, provider_emulator_server: EmulatorServer
) -> None:
    emulator = provider_emulator_server.emulator
    app = make_example_app(
        OTP_CONVERSION_TENCENT_SECRET_ID=emulator.TENCENT_SECRET_ID,
        OTP_CONVERSION_TENCENT_SECRET_KEY=emulator.TENCENT_SECRET_KEY,
        OTP_CONVERSION_TENCENT_SDK_APP_ID=emulator.TENCENT_SDK_APP_ID,
        OTP_CONVERSION_TENCENT_ENDPOINT=provider_emulator_server.url,
        OTP_CONVERSION_TENCENT_SIGN_NAME="Example",
        OTP_CONVERSION_TENCENT_TEMPLATE_ID="1110",
    )
    assert state_of(app).sandbox is None and state_of(app).shown_stats_token is None
    client = app.test_client()
    assert send(client).status_code == 202
    assert emulator.code_for(PHONE) is not None
    assert client.get("/sandbox/last-code", query_string={"phone": PHONE}).status_code == 404


# One emulator per sandbox -------------------------------------------------------------------------------


def one_sandbox(tmp_path: Path) -> dict[str, str]:
    """The config of apps in one sandbox: the same store (what makes a sandbox) and the same codes."""
    return {
        "OTP_CONVERSION_STORE_URL": f"sqlite:///{tmp_path / 'sandbox' / 'otp_conversion.db'}",
        "EXAMPLE_OTP_DB": str(tmp_path / "sandbox" / "codes.db"),
    }


def test_apps_of_one_sandbox_share_one_emulator(make_example_app: ExampleAppFactory, tmp_path: Path) -> None:
    first, second = make_example_app(**one_sandbox(tmp_path)), make_example_app(**one_sandbox(tmp_path))
    assert emulator_of(first).url == emulator_of(second).url


def test_apps_with_stores_of_their_own_have_emulators_of_their_own(make_example_app: ExampleAppFactory) -> None:
    assert emulator_of(make_example_app()).url != emulator_of(make_example_app()).url


def test_a_report_delivered_by_another_app_of_the_sandbox_reaches_the_emulator_that_sent(
    make_example_app: ExampleAppFactory, tmp_path: Path
) -> None:
    web, other = make_example_app(**one_sandbox(tmp_path)), make_example_app(**one_sandbox(tmp_path))
    code = sent_code(web)
    assert verify(web.test_client(), code).status_code == 200
    conversion = state_of(other).conversion
    assert conversion is not None
    with other.app_context():
        assert conversion.flush(timeout=10) == 0
    [report] = emulator_of(other).calls("ReportConversion")
    assert report.ok and report.params["SerialNo"] == emulator_of(web).messages()[0].message_id


@pytest.mark.timeout(60)
def test_a_cli_command_of_the_sandbox_delivers_to_the_servers_emulator(
    make_example_app: ExampleAppFactory, tmp_path: Path
) -> None:
    config = one_sandbox(tmp_path)
    web = make_example_app(**config)
    code = sent_code(web)
    assert verify(web.test_client(), code).status_code == 200
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLASK_")}
    env.update({f"FLASK_{key}": value for key, value in config.items()})
    result = subprocess.run(
        [sys.executable, "-m", "flask", "--app", "example_app", "otp-conversion", "flush", "--timeout", "10"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=50,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    [report] = emulator_of(web).calls("ReportConversion")
    assert report.ok and report.params["SerialNo"] == emulator_of(web).messages()[0].message_id


@pytest.mark.timeout(60)
def test_an_app_started_after_the_sandbox_emulator_died_starts_it_again_on_its_port(
    make_example_app: ExampleAppFactory, tmp_path: Path
) -> None:
    first = make_example_app(**one_sandbox(tmp_path))
    sandbox = state_of(first).sandbox
    assert sandbox is not None
    record = read_record(sandbox.record)
    assert record is not None
    os.kill(record["pid"], signal.SIGKILL)  # the emulator this test started
    deadline = time.monotonic() + 20
    while emulator_of(first).answers() and time.monotonic() < deadline:
        time.sleep(0.05)
    make_example_app(**one_sandbox(tmp_path))
    assert send(first.test_client()).status_code == 202  # the first app's endpoint is right again
