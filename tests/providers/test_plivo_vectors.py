"""The Plivo SDK vectors rebuilt through our client, over real HTTP to a local recording server (the signed
``Host`` stays ``api.plivo.com``): path, JSON body text and Basic ``Authorization`` byte for byte, and the
vectors' canned error answers classified as the reference's table says."""

from __future__ import annotations

import copy
import json
from calendar import timegm
from pathlib import Path
from typing import Any

import httpx
import pytest
from wire_server import Recorded, Reply, Retarget, recording_server

from flask_otp_conversion.providers import AuthError, PermanentError, ProviderError, RetryableError, ThrottledError
from flask_otp_conversion.providers.base import ConversionReport
from flask_otp_conversion.providers.plivo import PlivoProvider
from flask_otp_conversion.providers.settings import PlivoSettings

pytestmark = pytest.mark.timeout(30)

TIMEOUT = httpx.Timeout(5.0)
VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parent.parent / "data" / "provider-vectors-more.json").read_text(encoding="utf-8")
)
UUID = "db3ce55a-7f1d-11e1-8ea7-1231380bc196"
VERIFIED_AT = float(timegm((2024, 6, 1, 11, 59, 50, 0, 0, 0)))  # the vectors' 2024-06-01T11:59:50Z
SDK_PATH = "/v1/Account/{auth_id}/Message/{message_uuid}/Conversion/"


def vector(vector_id: str) -> dict[str, Any]:
    for v in [*VECTORS["vectors"], *VECTORS["error_handling"]]:
        if v["id"] == vector_id:
            return copy.deepcopy(v)
    raise KeyError(vector_id)


def exchange(v: dict[str, Any], call: Any, reply: Reply | None = None, **extra: Any) -> tuple[Recorded, Any]:
    inputs = v["inputs"]
    settings = PlivoSettings(
        auth_id=inputs["auth_id"],
        auth_token=inputs["auth_token"],
        endpoint=f"https://{inputs['host']}",
        sender=inputs["params"].get("src", "14155551111"),
        **extra,
    )
    with recording_server(reply or Reply.canned(v["response"])) as server:
        with PlivoProvider(settings, timeout=TIMEOUT, transport=Retarget(server.port)) as provider:
            result = call(provider)
        (recorded,) = server.requests
    return recorded, result


def send(p: PlivoProvider) -> Any:
    return p.send_message("+14155552222", "Your verification code is 123456")


def report(p: PlivoProvider) -> None:
    p.report_conversion(ConversionReport(message_id=UUID, phone="+14155552222", verified_at=VERIFIED_AT))


CALLS = {
    "A-plivo-SendMessage": (send, {}),
    "A-plivo-Conversion": (report, {}),
    "A-plivo-Conversion-sdk-generic-path": (report, {"conversion_path": SDK_PATH}),
}


@pytest.mark.parametrize("vector_id", sorted(CALLS))
def test_client_posts_to_the_vector_path_and_host(vector_id: str) -> None:
    v = vector(vector_id)
    call, extra = CALLS[vector_id]
    recorded, _ = exchange(v, call, **extra)
    assert recorded.method == "POST"
    assert recorded.target == v["request"]["path"]
    assert recorded.header("Host") == v["inputs"]["host"]


@pytest.mark.parametrize("vector_id", sorted(CALLS))
def test_client_sends_the_vector_json_body_bytes(vector_id: str) -> None:
    v = vector(vector_id)
    call, extra = CALLS[vector_id]
    recorded, _ = exchange(v, call, **extra)
    assert recorded.body == v["request"]["body"].encode("utf-8")
    assert recorded.header("Content-Type") == "application/json"


@pytest.mark.parametrize("vector_id", sorted(CALLS))
def test_client_sends_the_vector_authorization(vector_id: str) -> None:
    v = vector(vector_id)
    call, extra = CALLS[vector_id]
    recorded, _ = exchange(v, call, **extra)
    assert recorded.header("Authorization") == v["signing"]["authorization"]


def test_send_answer_of_the_vector_gives_its_message_uuid() -> None:
    v = vector("A-plivo-SendMessage")
    assert v["response"]["status"] == 202
    _, sent = exchange(v, lambda p: p.send_otp("+14155552222", "123456"))
    assert [sent.message_id] == v["sdk_outcome"]["message_uuid"]


def test_send_otp_sends_the_configured_text_with_the_code() -> None:
    v = vector("A-plivo-SendMessage")
    recorded, _ = exchange(v, lambda p: p.send_otp("+14155552222", "123456"))
    assert recorded.body == v["request"]["body"].encode("utf-8")


def test_negative_outcome_is_sent_as_not_converted() -> None:
    v = vector("A-plivo-Conversion")
    negative = ConversionReport(message_id=UUID, phone="+14155552222", verified_at=VERIFIED_AT, converted=False)
    recorded, _ = exchange(v, lambda p: p.report_conversion(negative))
    assert json.loads(recorded.body) == {"status": "NOT_CONVERTED", "timestamp": "2024-06-01T11:59:50Z"}


ERRORS: dict[str, type[ProviderError]] = {
    "A-err-plivo-400": PermanentError,
    "A-err-plivo-401": AuthError,
    "A-err-plivo-404": PermanentError,
    "A-err-plivo-429": ThrottledError,
    "A-err-plivo-500": RetryableError,
}


@pytest.mark.parametrize("case_id", sorted(ERRORS))
def test_vector_error_answers_are_classified_as_the_reference_says(case_id: str) -> None:
    case = vector(case_id)
    with pytest.raises(ProviderError) as caught:
        exchange(vector("A-plivo-Conversion"), report, Reply.canned(case["response"]))
    assert type(caught.value) is ERRORS[case_id]
    assert caught.value.request_id == json.loads(case["response"]["body"])["api_id"]
