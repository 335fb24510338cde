"""The emulator verifies TC3, ACS3 and v1 signatures from the received request, as the clouds do."""

from __future__ import annotations

import json
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest
from emulator_wire import CN_PHONE, Wire

from flask_otp_conversion.providers.signing import acs_timestamp, sha256_hex
from flask_otp_conversion.testing import ProviderEmulator

DESCRIBE = {"PhoneNumberSet": [CN_PHONE]}
CAMS = "ChatappSyncPhoneNumber"


def cams_params(emu: ProviderEmulator) -> dict[str, str]:
    return {"CustSpaceId": emu.ALIBABA_CUST_SPACE_ID}


# ---- Tencent TC3-HMAC-SHA256 ---------------------------------------------------------------------------


def test_tencent_correctly_signed_request_is_answered(wire: Wire) -> None:
    payload = wire.tencent_response("DescribePhoneNumberInfo", DESCRIBE)
    assert payload["PhoneNumberInfoSet"][0]["Code"] == "Ok"
    (call,) = wire.emu.calls()
    assert call.ok and call.signature_method == "TC3-HMAC-SHA256" and call.region == "ap-guangzhou"


def test_tencent_documented_x_tc_action_signed_header_is_accepted(wire: Wire) -> None:
    payload = wire.tencent_response("DescribePhoneNumberInfo", DESCRIBE, sign_action=True)
    assert "Error" not in payload
    (call,) = wire.emu.calls()
    assert "SignedHeaders=content-type;host;x-tc-action," in call.headers["authorization"]


def test_tencent_signed_action_must_match_the_sent_action(wire: Wire) -> None:
    from flask_otp_conversion.providers.signing import tc3_sign

    ts = int(time.time())
    body = json.dumps(DESCRIBE).encode()
    signed_for_other_action = tc3_sign(
        secret_id=wire.emu.TENCENT_SECRET_ID,
        secret_key=wire.emu.TENCENT_SECRET_KEY,
        host=wire.host,
        content_type="application/json",
        body=body,
        timestamp=ts,
        extra_headers={"X-TC-Action": "SendSms"},
    )
    code = wire.tencent_error(
        "DescribePhoneNumberInfo", {}, body=body, timestamp=ts, authorization=signed_for_other_action.authorization
    )
    assert code == "AuthFailure.SignatureFailure"


def test_tencent_body_changed_after_signing_is_signature_failure(wire: Wire) -> None:
    signed = json.dumps(DESCRIBE).encode()
    sent = json.dumps({"PhoneNumberSet": ["+8613700000000"]}).encode()
    code = wire.tencent_error("DescribePhoneNumberInfo", {}, body=sent, signed_body=signed)
    assert code == "AuthFailure.SignatureFailure"


def test_tencent_wrong_secret_key_is_signature_failure(wire: Wire) -> None:
    code = wire.tencent_error("DescribePhoneNumberInfo", DESCRIBE, secret_key="not-the-key")
    assert code == "AuthFailure.SignatureFailure"


def test_tencent_unknown_secret_id_is_secret_id_not_found(wire: Wire) -> None:
    code = wire.tencent_error("DescribePhoneNumberInfo", DESCRIBE, secret_id="AKIDsomeoneElse")
    assert code == "AuthFailure.SecretIdNotFound"


def test_tencent_host_without_port_in_signature_is_signature_failure(wire: Wire) -> None:
    code = wire.tencent_error("DescribePhoneNumberInfo", DESCRIBE, sign_host="127.0.0.1")
    assert code == "AuthFailure.SignatureFailure"


@pytest.mark.parametrize("offset", [-301, 301])
def test_tencent_timestamp_over_five_minutes_off_is_signature_expire(wire: Wire, offset: int) -> None:
    code = wire.tencent_error("DescribePhoneNumberInfo", DESCRIBE, timestamp=int(time.time()) + offset)
    assert code == "AuthFailure.SignatureExpire"


def test_tencent_timestamp_within_skew_is_accepted(wire: Wire) -> None:
    payload = wire.tencent_response("DescribePhoneNumberInfo", DESCRIBE, timestamp=int(time.time()) - 240)
    assert "Error" not in payload


def test_tencent_scope_date_other_than_utc_date_of_timestamp_is_signature_failure(wire: Wire) -> None:
    from flask_otp_conversion.providers.signing import tc3_sign

    ts = int(time.time())
    body = json.dumps(DESCRIBE).encode()
    good = tc3_sign(
        secret_id=wire.emu.TENCENT_SECRET_ID,
        secret_key=wire.emu.TENCENT_SECRET_KEY,
        host=wire.host,
        content_type="application/json",
        body=body,
        timestamp=ts,
    )
    yesterday = (datetime.fromtimestamp(ts, tz=timezone.utc) - timedelta(days=1)).strftime("%Y-%m-%d")
    forged = good.authorization.replace(good.date, yesterday)
    code = wire.tencent_error("DescribePhoneNumberInfo", {}, body=body, timestamp=ts, authorization=forged)
    assert code == "AuthFailure.SignatureFailure"


@pytest.mark.parametrize("authorization", ["", "TC3-HMAC-SHA256 Credential=x", "Basic dXNlcjpwYXNz"])
def test_tencent_missing_or_malformed_authorization_is_invalid_authorization(wire: Wire, authorization: str) -> None:
    code = wire.tencent_error("DescribePhoneNumberInfo", DESCRIBE, authorization=authorization)
    assert code == "AuthFailure.InvalidAuthorization"


# ---- Alibaba ACS3-HMAC-SHA256 --------------------------------------------------------------------------


def test_acs3_correctly_signed_request_is_answered(wire: Wire) -> None:
    response = wire.acs3(CAMS, "2020-06-06", cams_params(wire.emu))
    assert response.status_code == 200
    assert response.json()["Code"] == "OK"
    (call,) = wire.emu.calls()
    assert call.ok and call.signature_method == "ACS3-HMAC-SHA256"


def test_acs3_query_changed_after_signing_is_signature_does_not_match(wire: Wire) -> None:
    response = wire.acs3(CAMS, "2020-06-06", {"CustSpaceId": "1"}, signed_params=cams_params(wire.emu))
    assert response.status_code == 400
    body = response.json()
    assert body["Code"] == "SignatureDoesNotMatch"
    assert "server string to sign is:ACS3-HMAC-SHA256\n" in body["Message"]
    assert body["RequestId"] and body["HostId"]


def test_acs3_wrong_secret_is_signature_does_not_match(wire: Wire) -> None:
    response = wire.acs3(CAMS, "2020-06-06", cams_params(wire.emu), secret="not-the-secret")
    assert (response.status_code, response.json()["Code"]) == (400, "SignatureDoesNotMatch")


def test_acs3_unknown_access_key_is_not_found_404(wire: Wire) -> None:
    response = wire.acs3(CAMS, "2020-06-06", cams_params(wire.emu), key_id="LTAIsomeoneElse")
    assert (response.status_code, response.json()["Code"]) == (404, "InvalidAccessKeyId.NotFound")


def test_acs3_date_over_fifteen_minutes_old_is_expired(wire: Wire) -> None:
    stale = acs_timestamp(datetime.now(timezone.utc) - timedelta(minutes=16))
    response = wire.acs3(CAMS, "2020-06-06", cams_params(wire.emu), date=stale)
    assert (response.status_code, response.json()["Code"]) == (400, "InvalidTimeStamp.Expired")


def test_acs3_date_within_fifteen_minutes_is_accepted(wire: Wire) -> None:
    recent = acs_timestamp(datetime.now(timezone.utc) - timedelta(minutes=14))
    assert wire.acs3(CAMS, "2020-06-06", cams_params(wire.emu), date=recent).status_code == 200


def test_acs3_date_not_iso_utc_is_format_error(wire: Wire) -> None:
    response = wire.acs3(CAMS, "2020-06-06", cams_params(wire.emu), date="Mon, 01 Jun 2024 12:00:00 GMT")
    assert (response.status_code, response.json()["Code"]) == (400, "InvalidTimeStamp.Format")


def test_acs3_reused_nonce_is_signature_nonce_used(wire: Wire) -> None:
    nonce = uuid.uuid4().hex
    first = wire.acs3(CAMS, "2020-06-06", cams_params(wire.emu), nonce=nonce)
    second = wire.acs3(CAMS, "2020-06-06", cams_params(wire.emu), nonce=nonce)
    assert first.status_code == 200
    assert (second.status_code, second.json()["Code"]) == (400, "SignatureNonceUsed")


def test_acs3_content_sha256_not_of_the_body_is_rejected(wire: Wire) -> None:
    response = wire.acs3(CAMS, "2020-06-06", cams_params(wire.emu), body=b"unexpected")
    assert (response.status_code, response.json()["Code"]) == (400, "SignatureDoesNotMatch")
    assert "x-acs-content-sha256" in response.json()["Message"]


def test_acs3_body_hashed_into_content_sha256_is_accepted(wire: Wire) -> None:
    body = b"CustSpaceId=" + wire.emu.ALIBABA_CUST_SPACE_ID.encode()
    response = wire.acs3(
        CAMS,
        "2020-06-06",
        {},
        body=body,
        content_sha256=sha256_hex(body),
        extra_headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200, response.text


def test_acs3_unsigned_acs_header_is_incomplete_signature(wire: Wire) -> None:
    response = wire.acs3(CAMS, "2020-06-06", cams_params(wire.emu), unsigned_headers={"x-acs-security-token": "token"})
    assert (response.status_code, response.json()["Code"]) == (400, "IncompleteSignature")


def test_acs3_plus_for_space_in_the_wire_query_verifies(wire: Wire) -> None:
    """The SDK sends ``+`` for spaces but signs ``%20``; a server decodes both alike."""
    params = {"To": "6581234567", "From": "My Brand", "TemplateCode": "SMS_1"}
    query = "From=My+Brand&TemplateCode=SMS_1&To=6581234567"
    response = wire.acs3("SendMessageWithTemplate", "2018-05-01", params, query=query)
    assert response.json()["ResponseCode"] == "OK", response.text


# ---- Alibaba v1 (HMAC-SHA1) ----------------------------------------------------------------------------


def test_v1_correctly_signed_request_is_answered(wire: Wire) -> None:
    response = wire.v1(CAMS, "2020-06-06", cams_params(wire.emu))
    assert response.status_code == 200
    assert response.json()["Code"] == "OK"
    (call,) = wire.emu.calls()
    assert call.signature_method == "HMAC-SHA1" and call.params == cams_params(wire.emu)


def test_v1_wrong_secret_is_signature_does_not_match(wire: Wire) -> None:
    response = wire.v1(CAMS, "2020-06-06", cams_params(wire.emu), secret="not-the-secret")
    assert (response.status_code, response.json()["Code"]) == (400, "SignatureDoesNotMatch")
    assert "server string to sign is:POST&%2F&" in response.json()["Message"]


def test_v1_reused_nonce_is_signature_nonce_used(wire: Wire) -> None:
    assert wire.v1(CAMS, "2020-06-06", cams_params(wire.emu), nonce="fixed-nonce").status_code == 200
    again = wire.v1(CAMS, "2020-06-06", cams_params(wire.emu), nonce="fixed-nonce")
    assert (again.status_code, again.json()["Code"]) == (400, "SignatureNonceUsed")


def test_v1_stale_timestamp_is_expired(wire: Wire) -> None:
    stale = acs_timestamp(datetime.now(timezone.utc) - timedelta(minutes=16))
    response = wire.v1(CAMS, "2020-06-06", cams_params(wire.emu), timestamp=stale)
    assert (response.status_code, response.json()["Code"]) == (400, "InvalidTimeStamp.Expired")


def test_v1_without_format_json_is_answered_in_xml(wire: Wire) -> None:
    response = wire.v1(CAMS, "2020-06-06", cams_params(wire.emu), fmt=None)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/xml")
    assert "<Code>OK</Code>" in response.text
