"""The botocore vectors rebuilt through our AWS client, over real HTTP to a local recording server (the signed
``Host`` stays the cloud's), and the vectors' canned error answers classified as the reference's table says."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from wire_server import Recorded, Reply, Retarget, recording_server

from flask_otp_conversion.providers import AuthError, PermanentError, ProviderError, RetryableError, ThrottledError
from flask_otp_conversion.providers.aws import AwsProvider
from flask_otp_conversion.providers.base import ConversionReport
from flask_otp_conversion.providers.settings import AwsSettings
from flask_otp_conversion.providers.sigv4 import parse_authorization

pytestmark = pytest.mark.timeout(30)

TIMEOUT = httpx.Timeout(5.0)
VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parent.parent / "data" / "provider-vectors-more.json").read_text(encoding="utf-8")
)
AWS = ["A-aws-SendTextMessage", "A-aws-PutMessageFeedback"]
AT = 1717243200.0  # 20240601T120000Z, the vectors' pinned clock


def vector(vector_id: str) -> dict[str, Any]:
    for v in [*VECTORS["vectors"], *VECTORS["error_handling"]]:
        if v["id"] == vector_id:
            return copy.deepcopy(v)
    raise KeyError(vector_id)


def settings_of(v: dict[str, Any], **extra: Any) -> AwsSettings:
    inputs = vector("A-aws-SendTextMessage")["inputs"]
    values: dict[str, Any] = {
        "region": inputs["region"],
        "access_key_id": inputs["access_key_id"],
        "secret_access_key": inputs["secret_access_key"],
        "origination_identity": inputs["params"]["OriginationIdentity"],
        **extra,
    }
    return AwsSettings(**values)


def exchange(v: dict[str, Any], reply: Reply | None = None, **extra: Any) -> tuple[Recorded, Any]:
    with recording_server(reply or Reply.canned(v["response"])) as server:
        settings = settings_of(v, **extra)
        with AwsProvider(settings, timeout=TIMEOUT, clock=lambda: AT, transport=Retarget(server.port)) as client:
            if v["operation"] == "SendTextMessage":
                result: Any = client.send_otp(v["inputs"]["params"]["DestinationPhoneNumber"], "123456")
            else:
                client.report_conversion(ConversionReport(v["inputs"]["params"]["MessageId"], "+12065550150", AT))
                result = None
        (recorded,) = server.requests
    return recorded, result


@pytest.mark.parametrize("vector_id", AWS)
def test_authorization_is_the_vectors_byte_for_byte(vector_id: str) -> None:
    v = vector(vector_id)
    recorded, _ = exchange(v)
    assert recorded.header("Authorization") == v["signing"]["authorization"]


@pytest.mark.parametrize("vector_id", AWS)
def test_body_is_the_vectors_byte_for_byte(vector_id: str) -> None:
    v = vector(vector_id)
    recorded, _ = exchange(v)
    assert recorded.body == v["request"]["body"].encode()


@pytest.mark.parametrize("vector_id", AWS)
def test_request_line_is_post_slash_with_no_query(vector_id: str) -> None:
    v = vector(vector_id)
    recorded, _ = exchange(v)
    assert (recorded.method, recorded.target) == ("POST", v["request"]["path"])


@pytest.mark.parametrize("name", ["Host", "Content-Type", "X-Amz-Date", "X-Amz-Target"])
@pytest.mark.parametrize("vector_id", AWS)
def test_signed_headers_are_sent_as_the_vectors(vector_id: str, name: str) -> None:
    v = vector(vector_id)
    recorded, _ = exchange(v)
    assert recorded.header(name) == dict(v["request"]["headers"])[name]


def test_send_enables_feedback_as_a_json_boolean() -> None:
    recorded, _ = exchange(vector("A-aws-SendTextMessage"))
    assert json.loads(recorded.body)["MessageFeedbackEnabled"] is True


def test_send_returns_the_message_id_of_the_answer() -> None:
    v = vector("A-aws-SendTextMessage")
    _, sent = exchange(v)
    assert (sent.message_id, sent.provider) == (v["sdk_outcome"]["MessageId"], "aws")


def test_negative_outcome_is_sent_as_failed() -> None:
    v = vector("A-aws-PutMessageFeedback")
    reply = Reply.canned({**v["response"], "body": v["response"]["body"].replace("RECEIVED", "FAILED")})
    with recording_server(reply) as server:
        with AwsProvider(settings_of(v), timeout=TIMEOUT, clock=lambda: AT, transport=Retarget(server.port)) as client:
            message_id = v["inputs"]["params"]["MessageId"]
            client.report_conversion(ConversionReport(message_id, "+12065550150", AT, converted=False))
        assert json.loads(server.last.body)["MessageFeedbackStatus"] == "FAILED"


def test_session_token_is_sent_and_signed() -> None:
    recorded, _ = exchange(vector("A-aws-PutMessageFeedback"), session_token="TemporaryToken//0001")
    assert recorded.header("X-Amz-Security-Token") == "TemporaryToken//0001"
    signed = parse_authorization(recorded.header("Authorization")).signed_headers
    assert signed == ["content-type", "host", "x-amz-date", "x-amz-security-token", "x-amz-target"]


def test_an_answer_that_does_not_echo_the_status_sent_is_permanent() -> None:
    v = vector("A-aws-PutMessageFeedback")
    failed = Reply.canned({**v["response"], "body": v["response"]["body"].replace("RECEIVED", "FAILED")})
    with pytest.raises(PermanentError) as raised:
        exchange(v, failed)
    assert raised.value.code == "FeedbackNotApplied"


ERRORS: list[tuple[str, type[ProviderError]]] = [
    ("A-err-aws-ThrottlingException", ThrottledError),
    ("A-err-aws-ValidationException", PermanentError),
    ("A-err-aws-ResourceNotFoundException", PermanentError),
    ("A-err-aws-AccessDeniedException", AuthError),
    ("A-err-aws-InvalidSignatureException", RetryableError),  # "Signature expired": re-signed on retry
    ("A-err-aws-UnrecognizedClientException", AuthError),
    ("A-err-aws-InternalServerException", RetryableError),
]


@pytest.mark.parametrize(("case_id", "kind"), ERRORS)
def test_canned_error_answers_are_classified_as_the_reference_says(case_id: str, kind: type[ProviderError]) -> None:
    case = vector(case_id)
    with pytest.raises(ProviderError) as raised:
        exchange(vector("A-aws-PutMessageFeedback"), Reply.canned(case["response"]))
    assert type(raised.value) is kind
    assert (raised.value.code, raised.value.status) == (case["sdk_outcome"]["code"], case["sdk_outcome"]["http_status"])


def test_a_signature_mismatch_is_an_auth_error() -> None:
    body = '{"__type": "InvalidSignatureException", "message": "The request signature we calculated does not match"}'
    reply = Reply(status=400, headers=(("Content-Type", "application/x-amz-json-1.0"),), body=body.encode())
    with pytest.raises(AuthError):
        exchange(vector("A-aws-PutMessageFeedback"), reply)


def test_a_400_without_an_aws_error_body_is_retryable() -> None:
    reply = Reply(status=400, headers=(("Content-Type", "text/html"),), body=b"<html>Bad Request</html>")
    with pytest.raises(RetryableError) as raised:
        exchange(vector("A-aws-PutMessageFeedback"), reply)
    assert type(raised.value) is RetryableError


def test_the_error_type_header_names_the_code_when_the_body_does_not() -> None:
    reply = Reply(
        status=400,
        headers=(("Content-Type", "application/x-amz-json-1.0"), ("x-amzn-ErrorType", "ThrottlingException:http://x/")),
        body=b'{"message": "Rate exceeded"}',
    )
    with pytest.raises(ThrottledError):
        exchange(vector("A-aws-PutMessageFeedback"), reply)
