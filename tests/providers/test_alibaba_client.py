"""AlibabaProvider on the wire: per site and signature, what each operation sends and returns.

A local recording server stands in for Alibaba; every check is on the request as it arrived.
"""

from __future__ import annotations

import json
import re
import time
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qsl

import pytest
from provider_factories import ALIBABA_KEY_ID, ALIBABA_KEY_SECRET, alibaba
from wire_server import Recorded, RecordingServer, Reply, recording_server

from flask_otp_conversion.providers import PermanentError, provider_class
from flask_otp_conversion.providers.alibaba import AlibabaProvider
from flask_otp_conversion.providers.alibaba_models import ChatappSyncPhoneNumberResponse
from flask_otp_conversion.providers.base import ConversionReport, SentMessage
from flask_otp_conversion.providers.signing import EMPTY_SHA256, acs3_parse_authorization, acs3_sign, v1_sign

pytestmark = pytest.mark.timeout(30)


def reply(payload: dict[str, Any]) -> Reply:
    return Reply(
        headers=(("Content-Type", "application/json;charset=utf-8"),),
        body=json.dumps({"RequestId": "R-1", **payload}).encode(),
    )


INTL_SEND_OK = reply({"ResponseCode": "OK", "ResponseDescription": "OK", "MessageId": "1008030300123456"})
CHINA_SEND_OK = reply({"Code": "OK", "Message": "OK", "BizId": "900619746936498440^0"})
INTL_REPORT_OK = reply({"ResponseCode": "OK", "ResponseDescription": "OK"})
CHINA_REPORT_OK = reply({"Code": "OK", "Message": "OK"})
CAMS_OK = reply(
    {
        "Code": "OK",
        "Success": True,
        "PhoneNumbers": [
            {
                "PhoneNumber": "8613800001234",
                "Status": "CONNECTED",
                "QualityRating": "GREEN",
                "IsOfficial": "true",
            }
        ],
    }
)


def params(recorded: Recorded) -> dict[str, str]:
    return dict(parse_qsl(recorded.query, keep_blank_values=True))


def action(recorded: Recorded) -> tuple[str, str]:
    if recorded.has_header("x-acs-action"):
        return recorded.header("x-acs-action"), recorded.header("x-acs-version")
    sent = params(recorded)
    return sent["Action"], sent["Version"]


OPERATION_FIELDS = {"Action", "Version", "Format", "Timestamp", "SignatureMethod", "SignatureVersion"}
OPERATION_FIELDS |= {"SignatureNonce", "AccessKeyId", "Signature"}


def fields(recorded: Recorded) -> dict[str, str]:
    """The operation's own parameters, without v1's common ones."""
    return {k: v for k, v in params(recorded).items() if k not in OPERATION_FIELDS}


def test_registry_resolves_alibaba_to_this_client() -> None:
    assert provider_class("alibaba") is AlibabaProvider


# ---- sites: which action, which version, which fields --------------------------------------------------


@pytest.mark.parametrize("signature", ["acs3", "v1"])
def test_intl_send_is_send_message_with_template_2018(signature: str) -> None:
    with recording_server(INTL_SEND_OK) as server, alibaba(server.url, signature=signature) as provider:
        sent = provider.send_otp("+6581234567", "4370")
    assert action(server.last) == ("SendMessageWithTemplate", "2018-05-01")
    assert fields(server.last) == {
        "To": "6581234567",
        "From": "TestSign",
        "TemplateCode": "SMS_154950909",
        "TemplateParam": '{"code":"4370"}',
    }
    assert sent == SentMessage("1008030300123456", "+6581234567", "alibaba")


@pytest.mark.parametrize("signature", ["acs3", "v1"])
def test_china_send_is_sendsms_2017_returning_biz_id(signature: str) -> None:
    with (
        recording_server(CHINA_SEND_OK) as server,
        alibaba(server.url, site="china", signature=signature) as provider,
    ):
        sent = provider.send_otp("+6581234567", "4370")
    assert action(server.last) == ("SendSms", "2017-05-25")
    assert fields(server.last) == {
        "PhoneNumbers": "6581234567",
        "SignName": "TestSign",
        "TemplateCode": "SMS_154950909",
        "TemplateParam": '{"code":"4370"}',
    }
    assert sent.message_id == "900619746936498440^0"


@pytest.mark.parametrize("signature", ["acs3", "v1"])
def test_intl_report_is_sms_conversion_2018_with_ms_and_to(signature: str) -> None:
    verified_at = time.time() - 12.3456
    with recording_server(INTL_REPORT_OK) as server, alibaba(server.url, signature=signature) as provider:
        provider.report_conversion(
            ConversionReport("1008030300123456", "+6581234567", verified_at=verified_at)
        )
    assert action(server.last) == ("SmsConversion", "2018-05-01")
    assert fields(server.last) == {
        "MessageId": "1008030300123456",
        "Delivered": "true",
        "ConversionTime": str(int(verified_at * 1000)),
        "To": "6581234567",
    }


@pytest.mark.parametrize("signature", ["acs3", "v1"])
def test_china_report_is_sms_conversion_intl_2017_without_to(signature: str) -> None:
    verified_at = time.time() - 5
    with (
        recording_server(CHINA_REPORT_OK) as server,
        alibaba(server.url, site="china", signature=signature) as provider,
    ):
        provider.report_conversion(
            ConversionReport("900619746936498440^0", "+6581234567", verified_at=verified_at)
        )
    assert action(server.last) == ("SmsConversionIntl", "2017-05-25")
    assert fields(server.last) == {
        "MessageId": "900619746936498440^0",
        "Delivered": "true",
        "ConversionTime": str(int(verified_at * 1000)),
    }
    assert "MessageId=900619746936498440%5E0" in server.last.query


def test_report_of_an_unused_code_says_delivered_false() -> None:
    with recording_server(INTL_REPORT_OK) as server, alibaba(server.url) as provider:
        provider.report_conversion(
            ConversionReport("1", "+6581234567", verified_at=time.time(), converted=False)
        )
    assert fields(server.last)["Delivered"] == "false"


def test_report_time_in_the_future_is_sent_as_now() -> None:
    with recording_server(INTL_REPORT_OK) as server, alibaba(server.url) as provider:
        provider.report_conversion(ConversionReport("1", "+6581234567", verified_at=time.time() + 3600))
    assert int(fields(server.last)["ConversionTime"]) <= int(time.time() * 1000)


@pytest.mark.parametrize("site", ["intl", "china"])
def test_report_action_matches_the_site(site: str) -> None:
    with alibaba("http://127.0.0.1:9", site=site) as provider:
        assert provider.report_action == {"intl": "SmsConversion", "china": "SmsConversionIntl"}[site]
        assert provider.report_action in provider.rate_limits


def test_send_without_template_raises_before_any_call() -> None:
    with (
        recording_server() as server,
        alibaba(server.url, template_code=None) as provider,
        pytest.raises(PermanentError),
    ):
        provider.send_otp("+6581234567", "4370")
    assert server.requests == []


# ---- statistics: the cams numbers ----------------------------------------------------------------------


def test_statistics_without_cust_space_is_none_and_calls_nothing() -> None:
    with recording_server() as server, alibaba(server.url) as provider:
        assert (
            provider.statistics(datetime(2024, 6, 1, tzinfo=timezone.utc), datetime.now(timezone.utc)) is None
        )
    assert server.requests == []


@pytest.mark.parametrize("signature", ["acs3", "v1"])
def test_statistics_syncs_cams_numbers_on_the_cams_endpoint(signature: str) -> None:
    with (
        recording_server() as dysms,
        recording_server(CAMS_OK) as cams,
        alibaba(dysms.url, cams_endpoint=cams.url, cust_space_id="2934839", signature=signature) as provider,
    ):
        result = provider.statistics(datetime(2024, 6, 1, tzinfo=timezone.utc), datetime.now(timezone.utc))
    assert dysms.requests == []
    assert action(cams.last) == ("ChatappSyncPhoneNumber", "2020-06-06")
    assert fields(cams.last) == {"CustSpaceId": "2934839"}
    assert isinstance(result, ChatappSyncPhoneNumberResponse)
    (number,) = result.phone_numbers
    assert (number.phone_number, number.status, number.quality_rating, number.is_official) == (
        "8613800001234",
        "CONNECTED",
        "GREEN",
        True,
    )
    assert number.messaging_limit_tier is None


# ---- ACS3 wire -----------------------------------------------------------------------------------------


def _acs3_exchange() -> RecordingServer:
    with recording_server(INTL_REPORT_OK, INTL_REPORT_OK) as server, alibaba(server.url) as provider:
        provider.sms_conversion("1 2*3~", delivered=True, conversion_time_ms=1717243190000, to="+6581234567")
        provider.sms_conversion("1", delivered=True)
    return server


def test_acs3_sends_canonical_query_and_empty_body() -> None:
    recorded = _acs3_exchange().requests[0]
    assert (
        recorded.target == "/?ConversionTime=1717243190000&Delivered=true&MessageId=1%202%2A3~&To=6581234567"
    )
    assert recorded.body == b""


def test_acs3_signs_host_with_port_and_every_header_it_sends() -> None:
    server = _acs3_exchange()
    recorded = server.requests[0]
    key_id, signed, _ = acs3_parse_authorization(recorded.header("Authorization"))
    assert key_id == ALIBABA_KEY_ID
    assert signed == [
        "accept",
        "host",
        "user-agent",
        "x-acs-action",
        "x-acs-content-sha256",
        "x-acs-date",
        "x-acs-signature-nonce",
        "x-acs-version",
    ]
    assert recorded.header("host") == f"127.0.0.1:{server.port}"
    assert recorded.header("accept") == "application/json"
    assert recorded.header("x-acs-content-sha256") == EMPTY_SHA256
    expected = acs3_sign(
        access_key_id=ALIBABA_KEY_ID,
        access_key_secret=ALIBABA_KEY_SECRET,
        method="POST",
        query=params(recorded),
        headers={name: recorded.header(name) for name in signed},
    )
    assert recorded.header("Authorization") == expected.authorization


def test_acs3_nonce_is_fresh_uuid4_hex_per_request() -> None:
    first, second = _acs3_exchange().requests
    nonces = [r.header("x-acs-signature-nonce") for r in (first, second)]
    assert nonces[0] != nonces[1]
    assert all(re.fullmatch(r"[0-9a-f]{32}", n) for n in nonces)


def test_acs3_date_is_current_utc_iso_8601() -> None:
    recorded = _acs3_exchange().requests[0]
    sent = datetime.strptime(recorded.header("x-acs-date"), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    assert abs(sent.timestamp() - time.time()) < 60


def test_user_agent_names_this_package() -> None:
    recorded = _acs3_exchange().requests[0]
    assert recorded.header("user-agent").startswith("flask-otp-conversion/")


def test_one_client_keeps_its_connection_alive() -> None:
    first, second = _acs3_exchange().requests
    assert first.client_port == second.client_port


# ---- v1 wire -------------------------------------------------------------------------------------------


def _v1_exchange() -> Recorded:
    with recording_server(INTL_REPORT_OK) as server, alibaba(server.url, signature="v1") as provider:
        provider.sms_conversion("1 2*3~", delivered=True, conversion_time_ms=1717243190000, to="+6581234567")
    return server.last


def test_v1_sends_common_params_with_format_json() -> None:
    sent = params(_v1_exchange())
    assert sent["Format"] == "JSON"
    assert sent["SignatureMethod"] == "HMAC-SHA1"
    assert sent["SignatureVersion"] == "1.0"
    assert sent["AccessKeyId"] == ALIBABA_KEY_ID
    assert re.fullmatch(r"[0-9a-f]{32}", sent["SignatureNonce"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", sent["Timestamp"])


def test_v1_signature_verifies_and_no_acs3_headers_are_sent() -> None:
    recorded = _v1_exchange()
    sent = params(recorded)
    signature = sent.pop("Signature")
    assert signature == v1_sign(access_key_secret=ALIBABA_KEY_SECRET, method="POST", params=sent).signature
    assert not recorded.has_header("Authorization")
    assert not recorded.has_header("x-acs-signature-nonce")
    assert recorded.body == b""


def test_from_settings_accepts_a_mapping_and_defaults_the_endpoint() -> None:
    provider = AlibabaProvider.from_settings(
        {"access_key_id": "a", "access_key_secret": "b", "site": "CHINA"}
    )
    with provider:
        assert "dysmsapi.aliyuncs.com" in repr(provider)
        assert provider.rate_limits["SendSms"] == 5000.0
        assert provider.rate_limits["ChatappSyncPhoneNumber"] == 10.0
