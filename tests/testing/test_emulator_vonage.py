"""Vonage wire checks and answers: the SMS API (HTTP 200 whatever happens, the outcome in the message status)
and the Conversion API (200 with an empty body, or an HTTP error with an RFC 7807 body), each authenticated
by Basic, by parameters or by a signature, over hand-built requests so each test breaks one thing."""

from __future__ import annotations

import base64
import re
import time
from typing import Any

import httpx
import pytest
from emulator_wire import Wire

from flask_otp_conversion.providers.vonage_models import conversion_time, sign_params
from flask_otp_conversion.testing import Fault, ProviderEmulator

PHONE = "+447700900000"


def creds(emu: ProviderEmulator) -> dict[str, str]:
    return dict(emu.credentials("vonage"))


def basic(emu: ProviderEmulator, secret: str | None = None) -> dict[str, str]:
    c = creds(emu)
    token = base64.b64encode(f"{c['api_key']}:{secret or c['api_secret']}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def signed(emu: ProviderEmulator, params: dict[str, str], *, stamp: bool = True) -> dict[str, str]:
    c = creds(emu)
    sent = {**params, "api_key": c["api_key"]}
    if stamp:
        sent.setdefault("timestamp", str(int(time.time())))
    sent["sig"] = sign_params(sent, secret=c["signature_secret"], method="sha256").sig
    return sent


def post(wire: Wire, path: str, params: dict[str, str], headers: dict[str, str] | None = None) -> httpx.Response:
    return wire.client.post(wire.url + path.lstrip("/"), data=params, headers=headers or {})


def sms(wire: Wire, **override: str) -> dict[str, str]:
    return {"from": "AcmeInc", "to": PHONE[1:], "text": "Your verification code is 482913", **override}


def status_of(response: httpx.Response) -> str:
    assert response.status_code == 200
    status: str = response.json()["messages"][0]["status"]
    return status


def sent_id(wire: Wire) -> str:
    response = post(wire, "/sms/json", sms(wire), basic(wire.emu))
    assert status_of(response) == "0"
    message_id: str = response.json()["messages"][0]["message-id"]
    return message_id


def conversion(message_id: str, **override: str) -> dict[str, str]:
    return {"message-id": message_id, "delivered": "true", "timestamp": conversion_time(time.time()), **override}


# ---- SMS API ---------------------------------------------------------------------------------------------


def test_send_answers_a_hex_message_id_and_remembers_the_code(wire: Wire) -> None:
    response = post(wire, "/sms/json", sms(wire), basic(wire.emu))
    part = response.json()["messages"][0]
    assert part["status"] == "0" and part["to"] == PHONE[1:]
    assert re.fullmatch(r"[0-9A-F]{16}", part["message-id"])
    assert wire.emu.code_for(PHONE) == "482913"
    (message,) = wire.emu.messages("vonage")
    assert message.message_id == part["message-id"] and message.phone == PHONE


def test_send_with_a_wrong_secret_is_status_4_in_an_http_200(wire: Wire) -> None:
    assert status_of(post(wire, "/sms/json", sms(wire), basic(wire.emu, "WrongSecret00000"))) == "4"


def test_send_to_a_number_with_plus_is_status_3(wire: Wire) -> None:
    assert status_of(post(wire, "/sms/json", sms(wire, to=PHONE), basic(wire.emu))) == "3"


def test_send_without_from_is_status_2(wire: Wire) -> None:
    params = sms(wire)
    del params["from"]
    assert status_of(post(wire, "/sms/json", params, basic(wire.emu))) == "2"


def test_send_with_credentials_as_parameters_is_accepted(wire: Wire) -> None:
    c = creds(wire.emu)
    params = sms(wire, api_key=c["api_key"], api_secret=c["api_secret"])
    assert status_of(post(wire, "/sms/json", params)) == "0"
    (call,) = wire.emu.calls("SendSms")
    assert "api_secret" not in call.params


def test_signed_send_is_accepted(wire: Wire) -> None:
    assert status_of(post(wire, "/sms/json", signed(wire.emu, sms(wire)))) == "0"


def test_signed_send_with_a_parameter_changed_after_signing_is_status_14(wire: Wire) -> None:
    params = signed(wire.emu, sms(wire))
    params["text"] = "Your verification code is 000000"
    assert status_of(post(wire, "/sms/json", params)) == "14"


def test_signed_send_with_a_stale_timestamp_is_status_14(wire: Wire) -> None:
    params = signed(wire.emu, sms(wire, timestamp=str(int(time.time()) - 3600)))
    assert status_of(post(wire, "/sms/json", params)) == "14"


def test_signature_and_api_secret_together_is_status_32(wire: Wire) -> None:
    params = {**signed(wire.emu, sms(wire)), "api_secret": creds(wire.emu)["api_secret"]}
    assert status_of(post(wire, "/sms/json", params)) == "32"


def test_refused_phone_is_the_configured_status(wire: Wire) -> None:
    wire.emu.refuse_phone(PHONE, "29", "Non White-listed Destination")
    response = post(wire, "/sms/json", sms(wire), basic(wire.emu))
    assert status_of(response) == "29"
    assert response.json()["messages"][0]["error-text"] == "Non White-listed Destination"


# ---- Conversion API --------------------------------------------------------------------------------------


def test_conversion_answers_an_empty_200_and_is_recorded(wire: Wire) -> None:
    message_id = sent_id(wire)
    at = int(time.time())
    response = post(wire, "/conversions/sms", conversion(message_id, timestamp=conversion_time(at)), basic(wire.emu))
    assert (response.status_code, response.content) == (200, b"")
    (recorded,) = wire.emu.conversions("vonage")
    assert (recorded.message_id, recorded.phone, recorded.delivered) == (message_id, PHONE, True)
    assert recorded.conversion_time == at


def test_conversion_delivered_false_is_recorded_as_not_delivered(wire: Wire) -> None:
    message_id = sent_id(wire)
    post(wire, "/conversions/sms", conversion(message_id, delivered="false"), basic(wire.emu))
    (recorded,) = wire.emu.conversions("vonage")
    assert recorded.delivered is False


def test_conversion_with_the_sdks_capitalised_true_is_420(wire: Wire) -> None:
    response = post(wire, "/conversions/sms", conversion(sent_id(wire), delivered="True"), basic(wire.emu))
    assert response.status_code == 420
    assert response.json()["type"].endswith("api-errors#3")


def test_conversion_of_an_unknown_message_is_420(wire: Wire) -> None:
    response = post(wire, "/conversions/sms", conversion("0C000000DEADBEEF"), basic(wire.emu))
    assert response.status_code == 420


def test_conversion_timestamp_in_iso_form_is_420(wire: Wire) -> None:
    params = conversion(sent_id(wire), timestamp="2024-06-01T11:59:50Z")
    assert post(wire, "/conversions/sms", params, basic(wire.emu)).status_code == 420


def test_conversion_with_bad_credentials_is_401_with_vonages_problem_body(wire: Wire) -> None:
    response = post(wire, "/conversions/sms", conversion(sent_id(wire)), basic(wire.emu, "WrongSecret00000"))
    assert response.status_code == 401
    assert response.json()["title"] == "Invalid credentials supplied"


def test_signed_conversion_with_its_own_timestamp_is_accepted(wire: Wire) -> None:
    params = signed(wire.emu, conversion(sent_id(wire)), stamp=False)
    assert post(wire, "/conversions/sms", params).status_code == 200


def test_signed_conversion_with_a_wrong_sig_is_401(wire: Wire) -> None:
    params = signed(wire.emu, conversion(sent_id(wire)), stamp=False)
    params["delivered"] = "false"
    assert post(wire, "/conversions/sms", params).status_code == 401


def test_issued_message_id_takes_a_conversion(wire: Wire) -> None:
    message_id = wire.emu.issue_message_id("vonage", PHONE)
    assert re.fullmatch(r"[0-9A-F]{16}", message_id)
    assert post(wire, "/conversions/sms", conversion(message_id), basic(wire.emu)).status_code == 200


# ---- faults in Vonage's shapes ---------------------------------------------------------------------------


def test_throttled_send_is_status_1_with_the_wait_in_milliseconds(wire: Wire) -> None:
    wire.emu.inject("SendSms", Fault.throttle(retry_after=2.0, times=1))
    response = post(wire, "/sms/json", sms(wire), basic(wire.emu))
    assert status_of(response) == "1"
    assert "wait [ 2000 ]" in response.json()["messages"][0]["error-text"]


def test_throttled_conversion_is_429_with_retry_after(wire: Wire) -> None:
    message_id = sent_id(wire)
    wire.emu.inject("SmsConversion", Fault.throttle(retry_after=3.0, times=1))
    response = post(wire, "/conversions/sms", conversion(message_id), basic(wire.emu))
    assert (response.status_code, response.headers["Retry-After"]) == (429, "3")
    assert response.json()["type"].endswith("#throttled")


def test_rate_limit_throttles_sends_past_the_cap(wire: Wire) -> None:
    wire.emu.set_rate_limit("SendSms", 1)
    statuses = [status_of(post(wire, "/sms/json", sms(wire), basic(wire.emu))) for _ in range(2)]
    assert statuses == ["0", "1"]


def test_conversion_not_enabled_fault_is_402(wire: Wire) -> None:
    message_id = sent_id(wire)
    wire.emu.inject("SmsConversion", Fault.error("402"))
    response = post(wire, "/conversions/sms", conversion(message_id), basic(wire.emu))
    assert response.status_code == 402
    assert response.json()["title"] == "Conversion has not been enabled for your account"


@pytest.mark.parametrize(
    ("path", "content_type"), [("/sms/json", "text/html"), ("/conversions/sms", "application/json")]
)
def test_server_error_fault_is_an_http_500(wire: Wire, path: str, content_type: str) -> None:
    params: dict[str, Any] = sms(wire) if path == "/sms/json" else conversion(sent_id(wire))
    wire.emu.inject("*", Fault.http_500(times=1), provider="vonage")
    response = post(wire, path, params, basic(wire.emu))
    assert response.status_code == 500
    assert response.headers["Content-Type"] == content_type
