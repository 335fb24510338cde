"""The Twilio SDK vectors rebuilt through our client, over real HTTP to a local recording server (the
``Host`` stays the cloud's, as when the vectors were captured), and the vectors' canned error answers
classified as the reference's table says."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from wire_server import Recorded, Reply, Retarget, form_params, recording_server

from flask_otp_conversion.providers import AuthError, PermanentError, ProviderError, RetryableError, ThrottledError
from flask_otp_conversion.providers.base import ConversionReport
from flask_otp_conversion.providers.settings import TwilioSettings
from flask_otp_conversion.providers.toolkit import basic_authorization
from flask_otp_conversion.providers.twilio import TwilioProvider

pytestmark = pytest.mark.timeout(30)

TIMEOUT = httpx.Timeout(5.0)
VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parent.parent / "data" / "provider-vectors-more.json").read_text(encoding="utf-8")
)
SENDS = ["A-twilio-CreateMessage", "A-twilio-CreateMessage-apikey"]
FEEDBACKS = ["A-twilio-MessageFeedback", "A-twilio-MessageFeedback-apikey"]


def vector(vector_id: str) -> dict[str, Any]:
    for v in [*VECTORS["vectors"], *VECTORS["error_handling"]]:
        if v["id"] == vector_id:
            return copy.deepcopy(v)
    raise KeyError(vector_id)


def settings_of(v: dict[str, Any]) -> TwilioSettings:
    inputs = v["inputs"]
    values: dict[str, Any] = {"account_sid": inputs["account_sid"], "sender": "+15017122661"}
    if inputs["username"] == inputs["account_sid"]:
        values["auth_token"] = inputs["password"]
    else:
        values.update(api_key_sid=inputs["username"], api_key_secret=inputs["password"])
    return TwilioSettings(**values)


def exchange(v: dict[str, Any], reply: Reply | None = None) -> tuple[Recorded, Any]:
    with recording_server(reply or Reply.canned(v["response"])) as server:
        with TwilioProvider(settings_of(v), timeout=TIMEOUT, transport=Retarget(server.port)) as client:
            if v["operation"] == "CreateMessage":
                result: Any = client.send_otp(v["inputs"]["params"]["To"], "123456")
            else:
                client.report_conversion(ConversionReport(v["inputs"]["message_sid"], "+15558675310", 0.0))
                result = None
        (recorded,) = server.requests
    return recorded, result


@pytest.mark.parametrize("vector_id", SENDS + FEEDBACKS)
def test_request_line_is_the_vectors(vector_id: str) -> None:
    v = vector(vector_id)
    recorded, _ = exchange(v)
    assert (recorded.method, recorded.target) == (v["request"]["method"], v["request"]["path"])


@pytest.mark.parametrize("vector_id", SENDS + FEEDBACKS)
def test_authorization_is_the_vectors_byte_for_byte(vector_id: str) -> None:
    v = vector(vector_id)
    recorded, _ = exchange(v)
    assert recorded.header("Authorization") == v["signing"]["authorization"]


@pytest.mark.parametrize("vector_id", SENDS + FEEDBACKS)
def test_form_parameters_are_the_vectors(vector_id: str) -> None:
    v = vector(vector_id)
    recorded, _ = exchange(v)
    assert form_params(recorded.body) == form_params(v["request"]["body"])


@pytest.mark.parametrize("vector_id", SENDS + FEEDBACKS)
def test_body_bytes_match_the_sdks_encoding_too(vector_id: str) -> None:
    v = vector(vector_id)
    recorded, _ = exchange(v)
    assert recorded.body == v["request"]["body"].encode()


@pytest.mark.parametrize("vector_id", SENDS + FEEDBACKS)
def test_host_and_content_type_are_the_vectors(vector_id: str) -> None:
    v = vector(vector_id)
    recorded, _ = exchange(v)
    assert recorded.header("Host") == dict(v["request"]["headers"])["Host"]
    assert recorded.header("Content-Type") == "application/x-www-form-urlencoded"


@pytest.mark.parametrize("vector_id", SENDS)
def test_send_returns_the_sid_of_the_answer(vector_id: str) -> None:
    v = vector(vector_id)
    _, sent = exchange(v)
    assert (sent.message_id, sent.provider) == (v["sdk_outcome"]["sid"], "twilio")


def test_basic_authorization_is_rfc_7617_base64_of_user_colon_password() -> None:
    signing = vector("A-twilio-CreateMessage")["signing"]
    assert basic_authorization(signing["userid"], signing["password"]) == signing["authorization"]


def test_negative_outcome_is_sent_as_unconfirmed() -> None:
    v = vector("A-twilio-MessageFeedback")
    with recording_server(Reply.canned(v["response"])) as server:
        with TwilioProvider(settings_of(v), timeout=TIMEOUT, transport=Retarget(server.port)) as client:
            client.report_conversion(ConversionReport(v["inputs"]["message_sid"], "+15558675310", 0.0, converted=False))
        assert form_params(server.last.body) == {"Outcome": "unconfirmed"}


ERRORS: list[tuple[str, type[ProviderError]]] = [
    ("A-err-twilio-20003", AuthError),
    ("A-err-twilio-20404", PermanentError),
    ("A-err-twilio-20429", ThrottledError),
    ("A-err-twilio-21211", PermanentError),
    ("A-err-twilio-20500", RetryableError),
]


@pytest.mark.parametrize(("case_id", "kind"), ERRORS)
def test_canned_error_answers_are_classified_as_the_reference_says(case_id: str, kind: type[ProviderError]) -> None:
    case = vector(case_id)
    v = vector("A-twilio-MessageFeedback")
    with pytest.raises(ProviderError) as raised:
        exchange(v, Reply.canned(case["response"]))
    assert type(raised.value) is kind
    assert (raised.value.code, raised.value.status) == (str(case["sdk_outcome"]["code"]), case["sdk_outcome"]["status"])
