"""AWS wire checks and answers over raw HTTP: SigV4 recomputed from the received bytes, JSON 1.0, the two
operations, and the faults in AWS's own shapes."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from flask_otp_conversion.providers.sigv4 import amz_date, sigv4_sign
from flask_otp_conversion.testing import EmulatorServer, Fault

PHONE = "+12065550150"
CONTENT_TYPE = "application/x-amz-json-1.0"


class Aws:
    """Signed requests built by hand, so each check controls exactly what is sent and signed."""

    def __init__(self, server: EmulatorServer, client: httpx.Client) -> None:
        self.emu = server.emulator
        self.url = server.url
        self.host = server.url.removeprefix("http://")
        self.client = client
        self.account = dict(server.emulator.credentials("aws"))

    def post(
        self,
        action: str,
        params: dict[str, Any] | None = None,
        *,
        body: bytes | None = None,
        region: str = "us-east-1",
        service: str = "sms-voice",
        secret: str | None = None,
        key_id: str | None = None,
        at: float | None = None,
        extra: dict[str, str] | None = None,
        unsigned: dict[str, str] | None = None,
        tamper: bytes | None = None,
    ) -> httpx.Response:
        content = body if body is not None else json.dumps(params or {}).encode()
        headers = {
            "Content-Type": CONTENT_TYPE,
            "Host": self.host,
            "X-Amz-Date": amz_date(time.time() if at is None else at),
            "X-Amz-Target": f"PinpointSMSVoiceV2.{action}",
            **(extra or {}),
        }
        signature = sigv4_sign(
            access_key_id=key_id or self.account["access_key_id"],
            secret_access_key=secret or self.account["secret_access_key"],
            region=region,
            service=service,
            method="POST",
            path="/",
            headers=headers,
            body=content,
            amz_date=headers["X-Amz-Date"],
        )
        sent = {**headers, "Authorization": signature.authorization, **(unsigned or {})}
        return self.client.post(self.url + "/", content=tamper if tamper is not None else content, headers=sent)

    def send(self, **params: Any) -> httpx.Response:
        fields = {"DestinationPhoneNumber": PHONE, "MessageBody": "Your code is 482913", "MessageFeedbackEnabled": True}
        return self.post("SendTextMessage", {**fields, **params})

    def feedback(self, message_id: str, status: str = "RECEIVED", **kwargs: Any) -> httpx.Response:
        return self.post("PutMessageFeedback", {"MessageId": message_id, "MessageFeedbackStatus": status}, **kwargs)


@pytest.fixture
def aws(provider_emulator_server: EmulatorServer) -> Iterator[Aws]:
    with httpx.Client(timeout=10.0) as client:
        yield Aws(provider_emulator_server, client)


def error_type(response: httpx.Response) -> str:
    value: str = response.json()["__type"]
    return value.rsplit("#", 1)[-1]


def test_send_answers_a_uuid_message_id(aws: Aws) -> None:
    response = aws.send()
    assert response.status_code == 200
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", response.json()["MessageId"])
    assert response.headers["content-type"] == CONTENT_TYPE and response.headers["x-amzn-requestid"]


def test_send_remembers_the_code_and_records_the_region(aws: Aws) -> None:
    aws.send()
    assert aws.emu.code_for(PHONE) == "482913"
    [call] = aws.emu.calls(provider="aws")
    assert (call.action, call.version, call.region, call.signature_method) == (
        "SendTextMessage",
        "2022-03-31",
        "us-east-1",
        "AWS4-HMAC-SHA256",
    )


def test_feedback_records_the_conversion(aws: Aws) -> None:
    message_id = aws.send().json()["MessageId"]
    response = aws.feedback(message_id)
    assert response.json() == {"MessageId": message_id, "MessageFeedbackStatus": "RECEIVED"}
    [conversion] = aws.emu.conversions("aws")
    assert (conversion.message_id, conversion.phone, conversion.delivered) == (message_id, PHONE, True)


def test_failed_feedback_is_recorded_as_not_delivered(aws: Aws) -> None:
    message_id = aws.send().json()["MessageId"]
    assert aws.feedback(message_id, "FAILED").json()["MessageFeedbackStatus"] == "FAILED"
    assert [c.delivered for c in aws.emu.conversions("aws")] == [False]


def test_a_body_changed_after_signing_is_invalid_signature(aws: Aws) -> None:
    other = json.dumps({"DestinationPhoneNumber": "+12065550199", "MessageBody": "1234"}).encode()
    response = aws.post("SendTextMessage", {"DestinationPhoneNumber": PHONE, "MessageBody": "1234"}, tamper=other)
    assert (response.status_code, error_type(response)) == (400, "InvalidSignatureException")
    assert "Canonical String" in response.json()["message"]


def test_a_wrong_secret_is_invalid_signature(aws: Aws) -> None:
    response = aws.post("SendTextMessage", {"DestinationPhoneNumber": PHONE}, secret="x" * 40)
    assert error_type(response) == "InvalidSignatureException"


def test_an_unknown_key_is_unrecognized_client(aws: Aws) -> None:
    response = aws.post("SendTextMessage", {"DestinationPhoneNumber": PHONE}, key_id="AKIAUNKNOWN000000000")
    assert (response.status_code, error_type(response)) == (400, "UnrecognizedClientException")


def test_no_authorization_is_missing_authentication_token(aws: Aws) -> None:
    headers = {"Content-Type": CONTENT_TYPE, "X-Amz-Target": "PinpointSMSVoiceV2.SendTextMessage"}
    response = aws.client.post(aws.url + "/", content=b"{}", headers=headers)
    assert error_type(response) == "MissingAuthenticationTokenException"


def test_a_date_six_minutes_old_is_signature_expired(aws: Aws) -> None:
    response = aws.post("SendTextMessage", {"DestinationPhoneNumber": PHONE}, at=time.time() - 360)
    assert error_type(response) == "InvalidSignatureException"
    assert response.json()["message"].startswith("Signature expired:")


def test_a_date_six_minutes_ahead_is_not_yet_current(aws: Aws) -> None:
    response = aws.post("SendTextMessage", {"DestinationPhoneNumber": PHONE}, at=time.time() + 360)
    assert response.json()["message"].startswith("Signature not yet current:")


def test_a_scope_for_another_service_is_refused(aws: Aws) -> None:
    response = aws.post("SendTextMessage", {"DestinationPhoneNumber": PHONE}, service="sms")
    assert error_type(response) == "InvalidSignatureException"


def test_an_unsigned_amz_header_is_refused(aws: Aws) -> None:
    response = aws.post("SendTextMessage", {"DestinationPhoneNumber": PHONE}, unsigned={"X-Amz-Meta": "x"})
    assert error_type(response) == "InvalidSignatureException"


def test_temporary_key_needs_its_session_token_signed(aws: Aws) -> None:
    temporary = {"key_id": aws.account["temporary_access_key_id"], "secret": aws.account["temporary_secret_access_key"]}
    token = {"X-Amz-Security-Token": aws.account["session_token"]}
    params = {"DestinationPhoneNumber": PHONE, "MessageBody": "1234"}
    without = aws.post("SendTextMessage", params, **temporary)
    assert error_type(without) == "UnrecognizedClientException"
    signed = aws.post("SendTextMessage", params, extra=token, **temporary)
    assert signed.status_code == 200


def test_an_unknown_operation_is_refused(aws: Aws) -> None:
    response = aws.post("SendVoiceMessage", {})
    assert error_type(response) == "UnknownOperationException"


def test_a_string_boolean_is_a_serialization_error(aws: Aws) -> None:
    response = aws.send(MessageFeedbackEnabled="true")
    assert error_type(response) == "SerializationException"


def test_a_body_that_is_not_json_is_a_serialization_error(aws: Aws) -> None:
    response = aws.post("SendTextMessage", body=b"To=+1")
    assert error_type(response) == "SerializationException"


@pytest.mark.parametrize(
    "params",
    [{"DestinationPhoneNumber": None}, {"DestinationPhoneNumber": "0123"}, {"MessageBody": ""}, {"TimeToLive": 1},
     {"MessageType": "OTP"}],
)
def test_bad_send_members_are_validation_errors(aws: Aws, params: dict[str, Any]) -> None:
    response = aws.send(**params)
    assert (response.status_code, error_type(response)) == (400, "ValidationException")
    assert response.json()["__type"].startswith("com.amazonaws.pinpointsmsvoicev2#")


def test_a_lowercase_status_is_a_validation_error_with_its_reason(aws: Aws) -> None:
    message_id = aws.send().json()["MessageId"]
    body = aws.feedback(message_id, "received").json()
    assert (body["__type"].rsplit("#", 1)[-1], body["Reason"]) == ("ValidationException", "FIELD_VALIDATION_FAILED")


def test_feedback_for_an_unknown_message_is_resource_not_found(aws: Aws) -> None:
    body = aws.feedback("a1b2c3d4-5678-90ab-cdef-000000000001").json()
    assert (body["__type"].rsplit("#", 1)[-1], body["ResourceType"]) == ("ResourceNotFoundException", "message")


def test_feedback_from_another_region_is_resource_not_found(aws: Aws) -> None:
    message_id = aws.send().json()["MessageId"]
    assert error_type(aws.feedback(message_id, region="eu-west-1")) == "ResourceNotFoundException"


def test_feedback_for_a_message_sent_without_feedback_is_resource_not_found(aws: Aws) -> None:
    message_id = aws.send(MessageFeedbackEnabled=False).json()["MessageId"]
    assert error_type(aws.feedback(message_id)) == "ResourceNotFoundException"


def test_the_feedback_configuration_set_enables_feedback(aws: Aws) -> None:
    params = {"ConfigurationSetName": aws.account["configuration_set"]}
    message_id = aws.post("SendTextMessage", {"DestinationPhoneNumber": PHONE, "MessageBody": "1234", **params})
    assert aws.feedback(message_id.json()["MessageId"]).status_code == 200


def test_an_unknown_configuration_set_is_resource_not_found(aws: Aws) -> None:
    assert error_type(aws.send(ConfigurationSetName="nope")) == "ResourceNotFoundException"


def test_a_refused_phone_is_a_conflict_opted_out(aws: Aws) -> None:
    aws.emu.refuse_phone(PHONE)
    body = aws.send().json()
    assert body["__type"].rsplit("#", 1)[-1] == "ConflictException"
    assert body["Reason"] == "DESTINATION_PHONE_NUMBER_OPTED_OUT"


def test_throttle_fault_is_a_400_throttling_exception_without_a_hint(aws: Aws) -> None:
    aws.emu.inject("PutMessageFeedback", Fault.throttle(retry_after=5), provider="aws")
    response = aws.feedback(aws.emu.issue_message_id("aws", PHONE))
    assert (response.status_code, error_type(response)) == (400, "ThrottlingException")
    assert "retry-after" not in response.headers


def test_rate_limit_answers_throttling_past_the_cap(aws: Aws) -> None:
    aws.emu.set_rate_limit("SendTextMessage", 2)
    assert [aws.send().status_code for _ in range(3)] == [200, 200, 400]
    assert aws.emu.calls(provider="aws")[-1].error_code == "ThrottlingException"


def test_http_500_fault_is_internal_server_exception(aws: Aws) -> None:
    aws.emu.inject("*", Fault.http_500(), provider="aws")
    response = aws.send()
    assert (response.status_code, error_type(response)) == (500, "InternalServerException")


def test_error_fault_takes_the_service_shape(aws: Aws) -> None:
    aws.emu.inject("SendTextMessage", Fault.error("AccessDeniedException", "Account is disabled"), provider="aws")
    response = aws.send()
    assert response.json() == {
        "__type": "com.amazonaws.pinpointsmsvoicev2#AccessDeniedException",
        "Message": "Account is disabled",
    }


def test_the_phone_of_a_feedback_call_is_the_messages(aws: Aws) -> None:
    message_id = aws.emu.issue_message_id("aws", PHONE)
    aws.feedback(message_id)
    assert aws.emu.phone_of(aws.emu.calls("PutMessageFeedback")[0]) == PHONE
