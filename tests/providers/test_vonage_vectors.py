"""The Vonage SDK vectors rebuilt through our client, over real HTTP to a local recording server (the signed
``Host`` stays the cloud's, as when the vectors were captured), and the vectors' canned error answers
classified as the reference's table says.

One deliberate difference from the SDK, checked explicitly: we send ``delivered=true``/``false`` (the API's
documented form) where the SDK sends Python's ``True``. With ``True`` put back, the vector's signature.
"""

from __future__ import annotations

import copy
import json
from calendar import timegm
from pathlib import Path
from typing import Any

import httpx
import pytest
from wire_server import Recorded, Reply, Retarget, form_params, recording_server

from flask_otp_conversion.providers import AuthError, PermanentError, ProviderError, RetryableError, ThrottledError
from flask_otp_conversion.providers.base import ConversionReport
from flask_otp_conversion.providers.settings import VonageSettings
from flask_otp_conversion.providers.vonage import VonageProvider
from flask_otp_conversion.providers.vonage_models import sign_params

pytestmark = pytest.mark.timeout(30)

TIMEOUT = httpx.Timeout(5.0)
VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parent.parent / "data" / "provider-vectors-more.json").read_text(encoding="utf-8")
)
MESSAGE_ID = "0C000000217B7F02"
CONVERSION_AT = "2024-06-01 11:59:50"


def vector(vector_id: str) -> dict[str, Any]:
    for v in [*VECTORS["vectors"], *VECTORS["error_handling"]]:
        if v["id"] == vector_id:
            return copy.deepcopy(v)
    raise KeyError(vector_id)


def settings_of(v: dict[str, Any], **extra: Any) -> VonageSettings:
    inputs = v["inputs"]
    values: dict[str, Any] = {"api_key": inputs["api_key"], "sender": "AcmeInc", **extra}
    if "api_secret" in inputs:
        values["api_secret"] = inputs["api_secret"]
    if "signature_secret" in inputs:
        values.update(signature_secret=inputs["signature_secret"], signature_method=inputs["signature_method"])
    return VonageSettings(**values)


def exchange(v: dict[str, Any], call: Any, reply: Reply | None = None, **extra: Any) -> tuple[Recorded, Any]:
    settings = settings_of(v, **extra)
    clock = float(v["inputs"].get("timestamp", 1717243200))
    with recording_server(reply or Reply.canned(v["response"])) as server:
        with VonageProvider(settings, timeout=TIMEOUT, clock=lambda: clock, transport=Retarget(server.port)) as p:
            result = call(p)
        (recorded,) = server.requests
    return recorded, result


def send(p: VonageProvider) -> Any:
    return p.send_sms("+447700900000", "AcmeInc", "Your verification code is 123456")


def convert(p: VonageProvider) -> Any:
    return p.conversion(MESSAGE_ID, delivered=True, timestamp=CONVERSION_AT)


SENDS = ["A-vonage-SendSms", "A-vonage-SendSms-sig-sha256", "A-vonage-SendSms-body-credentials"]
CONVERSIONS = ["A-vonage-SmsConversion", "A-vonage-SmsConversion-sig-sha256"]


@pytest.mark.parametrize("vector_id", SENDS + CONVERSIONS)
def test_client_posts_the_vector_form_to_the_vector_path_and_host(vector_id: str) -> None:
    v = vector(vector_id)
    recorded, _ = exchange(v, send if vector_id in SENDS else convert, auth=_auth(vector_id))
    assert recorded.method == v["request"]["method"]
    assert recorded.target == v["request"]["path"]
    assert recorded.header("Host") == v["inputs"]["host"]
    assert recorded.header("Content-Type") == "application/x-www-form-urlencoded"


@pytest.mark.parametrize("vector_id", SENDS)
def test_client_sends_exactly_the_vector_send_parameters(vector_id: str) -> None:
    v = vector(vector_id)
    recorded, _ = exchange(v, send, auth=_auth(vector_id))
    assert form_params(recorded.body) == form_params(v["request"]["body"])


@pytest.mark.parametrize("vector_id", CONVERSIONS)
def test_client_sends_the_vector_conversion_parameters_with_delivered_in_lower_case(vector_id: str) -> None:
    v = vector(vector_id)
    recorded, _ = exchange(v, convert, auth=_auth(vector_id))
    sent, expected = form_params(recorded.body), form_params(v["request"]["body"])
    assert expected["delivered"] == "True" and sent["delivered"] == "true"
    sent.pop("sig", None), expected.pop("sig", None)
    assert {**sent, "delivered": "True"} == expected


@pytest.mark.parametrize("vector_id", ["A-vonage-SendSms", "A-vonage-SmsConversion"])
def test_basic_client_sends_the_vector_authorization(vector_id: str) -> None:
    v = vector(vector_id)
    recorded, _ = exchange(v, send if vector_id in SENDS else convert)
    assert recorded.header("Authorization") == v["signing"]["authorization"]


@pytest.mark.parametrize("vector_id", ["A-vonage-SendSms-sig-sha256", "A-vonage-SendSms-body-credentials"])
def test_client_without_basic_auth_sends_no_authorization_header(vector_id: str) -> None:
    v = vector(vector_id)
    recorded, _ = exchange(v, send, auth=_auth(vector_id))
    assert not recorded.has_header("Authorization")


@pytest.mark.parametrize("vector_id", ["A-vonage-SendSms-sig-sha256", "A-vonage-SmsConversion-sig-sha256"])
def test_signer_gives_the_vector_string_to_sign_and_sig(vector_id: str) -> None:
    signing = vector(vector_id)["signing"]
    signature = sign_params(signing["signed_params"], secret=signing["signature_secret"], method="sha256")
    assert signature.string_to_sign == signing["string_to_sign"]
    assert signature.sig == signing["sig"]


def test_signed_send_carries_the_vector_sig() -> None:
    v = vector("A-vonage-SendSms-sig-sha256")
    recorded, _ = exchange(v, send, auth="signature")
    assert form_params(recorded.body)["sig"] == v["signing"]["sig"]


def test_signed_conversion_with_the_sdk_true_put_back_gives_the_vector_sig() -> None:
    v = vector("A-vonage-SmsConversion-sig-sha256")
    recorded, _ = exchange(v, convert, auth="signature")
    sent = form_params(recorded.body)
    ours = sign_params(sent, secret=v["signing"]["signature_secret"], method="sha256")
    assert sent["sig"] == ours.sig  # what we sent is signed over what we sent
    sdk = sign_params({**sent, "delivered": "True"}, secret=v["signing"]["signature_secret"], method="sha256")
    assert sdk.string_to_sign == v["signing"]["string_to_sign"]
    assert sdk.sig == v["signing"]["sig"]


def test_signed_send_signs_exactly_what_it_sends_unlike_the_sdk_defect() -> None:
    defect = vector("A-vonage-SendSms-sig-SDK-DEFECT")
    v = vector("A-vonage-SendSms-sig-sha256")
    recorded, _ = exchange(v, send, auth="signature")
    sent = form_params(recorded.body)
    signature = sign_params(sent, secret=v["signing"]["signature_secret"], method="sha256")
    assert signature.string_to_sign == defect["server_string_to_sign"]
    assert sent["sig"] == signature.sig != form_params(defect["request"]["body"])["sig"]


def test_report_conversion_sends_the_verification_time_in_vonage_utc_format() -> None:
    v = vector("A-vonage-SmsConversion")
    verified_at = float(timegm((2024, 6, 1, 11, 59, 50, 0, 0, 0)))
    report = ConversionReport(message_id=MESSAGE_ID, phone="+447700900000", verified_at=verified_at)
    recorded, _ = exchange(v, lambda p: p.report_conversion(report))
    assert form_params(recorded.body)["timestamp"] == CONVERSION_AT


def test_send_answer_of_the_vector_gives_its_message_id() -> None:
    v = vector("A-vonage-SendSms")
    _, sent = exchange(v, lambda p: p.send_otp("+447700900000", "123456"))
    assert sent.message_id == v["sdk_outcome"]["message_id"]


def test_conversion_answer_of_the_vector_empty_200_is_success() -> None:
    v = vector("A-vonage-SmsConversion")
    assert v["response"]["body"] == ""
    _, result = exchange(v, convert)
    assert result is None


ERRORS: dict[str, type[ProviderError]] = {
    "A-err-vonage-conv-401": AuthError,
    "A-err-vonage-conv-402": AuthError,
    "A-err-vonage-conv-420": PermanentError,
    "A-err-vonage-conv-429": ThrottledError,
    "A-err-vonage-conv-500": RetryableError,
    "A-err-vonage-sms-200-status1": ThrottledError,
    "A-err-vonage-sms-200-status4": AuthError,
    "A-err-vonage-sms-200-status14": AuthError,
}


@pytest.mark.parametrize("case_id", sorted(ERRORS))
def test_vector_error_answers_are_classified_as_the_reference_says(case_id: str) -> None:
    case = vector(case_id)
    base = vector("A-vonage-SendSms" if case["operation"] == "SendSms" else "A-vonage-SmsConversion")
    with pytest.raises(ProviderError) as caught:
        exchange(base, send if case["operation"] == "SendSms" else convert, Reply.canned(case["response"]))
    assert type(caught.value) is ERRORS[case_id]


def test_sms_throttle_answer_says_how_long_to_wait() -> None:
    case = vector("A-err-vonage-sms-200-status1")  # "please wait [ 10 ] and retry"
    with pytest.raises(ThrottledError) as caught:
        exchange(vector("A-vonage-SendSms"), send, Reply.canned(case["response"]))
    assert caught.value.retry_after == pytest.approx(0.010)
    assert caught.value.code == "1"


def _auth(vector_id: str) -> str:
    if vector_id.endswith("sig-sha256"):
        return "signature"
    if vector_id.endswith("body-credentials"):
        return "body"
    return "basic"
