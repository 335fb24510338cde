"""Plivo wire checks and answers: the Message API (202 with time-based UUIDs) and the conversion feedback,
JSON only, HTTP Basic auth_id:auth_token, errors as ``{"api_id", "error"}`` with HTTP statuses, over
hand-built requests so each test breaks one thing."""

from __future__ import annotations

import base64
import json
import time
import uuid
from datetime import datetime, timezone
from typing import Any

import httpx
import pytest
from emulator_wire import Wire

from flask_otp_conversion.testing import Fault, ProviderEmulator

PHONE = "+14155552222"


def auth(emu: ProviderEmulator, token: str | None = None) -> dict[str, str]:
    c = emu.credentials("plivo")
    raw = base64.b64encode(f"{c['auth_id']}:{token or c['auth_token']}".encode()).decode()
    return {"Authorization": f"Basic {raw}"}


def auth_id(emu: ProviderEmulator) -> str:
    return emu.credentials("plivo")["auth_id"]


def post(
    wire: Wire, path: str, body: Any, headers: dict[str, str] | None = None, *, raw: bytes | None = None
) -> httpx.Response:
    content = raw if raw is not None else json.dumps(body).encode()
    sent = {"Content-Type": "application/json", **auth(wire.emu), **(headers or {})}
    return wire.client.post(wire.url + path.lstrip("/"), content=content, headers=sent)


def message_path(wire: Wire) -> str:
    return f"/v1/Account/{auth_id(wire.emu)}/Message/"


def conversion_path(wire: Wire, message_uuid: str) -> str:
    return f"/v1/account/{auth_id(wire.emu)}/message/{message_uuid}/conversion/"


def message(**override: Any) -> dict[str, Any]:
    text = "Your verification code is 482913"
    return {"dst": PHONE[1:], "text": text, "src": "14155551111", "trackable": True, **override}


def iso(moment: float) -> str:
    return datetime.fromtimestamp(int(moment), tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def sent_uuid(wire: Wire, **override: Any) -> str:
    response = post(wire, message_path(wire), message(**override))
    assert response.status_code == 202
    (message_uuid,) = response.json()["message_uuid"]
    return str(message_uuid)


def feedback(status: str = "CONVERTED", at: float | None = None) -> dict[str, str]:
    return {"status": status, "timestamp": iso(time.time() if at is None else at)}


# ---- Message API -----------------------------------------------------------------------------------------


def test_send_answers_202_with_a_time_based_uuid_and_remembers_the_code(wire: Wire) -> None:
    response = post(wire, message_path(wire), message())
    body = response.json()
    assert (response.status_code, body["message"]) == (202, "message(s) queued")
    (message_uuid,) = body["message_uuid"]
    assert uuid.UUID(message_uuid).version == 1
    assert wire.emu.code_for(PHONE) == "482913"


def test_send_with_a_wrong_token_is_401(wire: Wire) -> None:
    response = post(wire, message_path(wire), message(), auth(wire.emu, "wrong"))
    assert response.status_code == 401
    assert set(response.json()) == {"api_id", "error"}


def test_send_to_another_accounts_path_is_401(wire: Wire) -> None:
    response = post(wire, "/v1/Account/MAOTHERACCOUNT0000001/Message/", message())
    assert response.status_code == 401


def test_send_as_a_form_is_400(wire: Wire) -> None:
    response = post(wire, message_path(wire), None, {"Content-Type": "application/x-www-form-urlencoded"}, raw=b"dst=1")
    assert response.status_code == 400
    assert "application/json" in response.json()["error"]


def test_send_with_trackable_as_a_string_is_400(wire: Wire) -> None:
    assert post(wire, message_path(wire), message(trackable="true")).status_code == 400


def test_send_without_src_or_powerpack_is_400(wire: Wire) -> None:
    body = message()
    del body["src"]
    assert post(wire, message_path(wire), body).status_code == 400


def test_send_to_several_numbers_answers_one_uuid_each_in_order(wire: Wire) -> None:
    response = post(wire, message_path(wire), message(dst="14155552222<14155553333"))
    uuids = response.json()["message_uuid"]
    assert [m.message_id for m in wire.emu.messages("plivo")] == uuids
    assert [m.phone for m in wire.emu.messages("plivo")] == ["+14155552222", "+14155553333"]


# ---- conversion feedback ---------------------------------------------------------------------------------


def test_conversion_is_answered_200_and_recorded(wire: Wire) -> None:
    message_uuid = sent_uuid(wire)
    at = int(time.time())
    response = post(wire, conversion_path(wire, message_uuid), feedback(at=at))
    assert (response.status_code, response.json()["message"]) == (200, "conversion feedback recorded")
    (recorded,) = wire.emu.conversions("plivo")
    assert (recorded.message_id, recorded.phone, recorded.delivered, recorded.conversion_time) == (
        message_uuid,
        PHONE,
        True,
        at,
    )


def test_not_converted_is_recorded_as_not_delivered(wire: Wire) -> None:
    post(wire, conversion_path(wire, sent_uuid(wire)), feedback("NOT_CONVERTED"))
    (recorded,) = wire.emu.conversions("plivo")
    assert recorded.delivered is False


def test_conversion_at_the_sdks_capitalised_path_is_accepted(wire: Wire) -> None:
    message_uuid = sent_uuid(wire)
    path = f"/v1/Account/{auth_id(wire.emu)}/Message/{message_uuid}/Conversion/"
    assert post(wire, path, feedback()).status_code == 200


def test_conversion_with_an_unknown_status_is_400(wire: Wire) -> None:
    response = post(wire, conversion_path(wire, sent_uuid(wire)), feedback("converted"))
    assert response.status_code == 400
    assert "CONVERTED, NOT_CONVERTED" in response.json()["error"]


def test_conversion_timestamp_without_a_zone_is_400(wire: Wire) -> None:
    body = {"status": "CONVERTED", "timestamp": "2024-06-01 11:59:50"}
    assert post(wire, conversion_path(wire, sent_uuid(wire)), body).status_code == 400


def test_conversion_of_an_unknown_message_is_404(wire: Wire) -> None:
    assert post(wire, conversion_path(wire, str(uuid.uuid1())), feedback()).status_code == 404


def test_conversion_of_a_message_sent_without_trackable_is_400(wire: Wire) -> None:
    message_uuid = sent_uuid(wire, trackable=False)
    response = post(wire, conversion_path(wire, message_uuid), feedback())
    assert response.status_code == 400
    assert "trackable" in response.json()["error"]


def test_issued_message_id_takes_a_conversion(wire: Wire) -> None:
    message_uuid = wire.emu.issue_message_id("plivo", PHONE)
    assert uuid.UUID(message_uuid).version == 1
    assert post(wire, conversion_path(wire, message_uuid), feedback()).status_code == 200


# ---- faults in Plivo's shapes ----------------------------------------------------------------------------


def test_throttle_fault_is_429_with_retry_after(wire: Wire) -> None:
    message_uuid = sent_uuid(wire)
    wire.emu.inject("Conversion", Fault.throttle(retry_after=4.0, times=1))
    response = post(wire, conversion_path(wire, message_uuid), feedback())
    assert (response.status_code, response.headers["Retry-After"]) == (429, "4")
    assert response.json()["error"] == "too many requests"


def test_rate_limit_throttles_conversions_past_the_cap(wire: Wire) -> None:
    message_uuid = sent_uuid(wire)
    wire.emu.set_rate_limit("Conversion", 1)
    statuses = [post(wire, conversion_path(wire, message_uuid), feedback()).status_code for _ in range(2)]
    assert statuses == [200, 429]


@pytest.mark.parametrize(("fault", "status"), [(Fault.http_500(times=1), 500), (Fault.error("not_found", "gone"), 404)])
def test_error_faults_answer_plivos_error_body(wire: Wire, fault: Fault, status: int) -> None:
    message_uuid = sent_uuid(wire)
    wire.emu.inject("Conversion", fault)
    response = post(wire, conversion_path(wire, message_uuid), feedback())
    assert response.status_code == status
    assert set(response.json()) == {"api_id", "error"}
