"""TencentProvider on the wire: what each operation sends and how replies become results.

A local recording server stands in for Tencent; every check is on the request as it arrived.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from provider_factories import SDK_APP_ID, TENCENT_SECRET_ID, TENCENT_SECRET_KEY, tencent
from wire_server import RecordingServer, Reply, recording_server

from flask_otp_conversion.providers import PermanentError, provider_class
from flask_otp_conversion.providers.base import ConversionReport, SentMessage
from flask_otp_conversion.providers.signing import tc3_parse_authorization, tc3_sign
from flask_otp_conversion.providers.tencent import UTC8, TencentProvider, hour_string
from flask_otp_conversion.providers.tencent_models import TencentStatistics

pytestmark = pytest.mark.timeout(30)


def ok(payload: dict[str, Any]) -> Reply:
    return Reply(body=json.dumps({"Response": {**payload, "RequestId": "req-1"}}).encode())


SEND_OK = ok(
    {
        "SendStatusSet": [
            {
                "SerialNo": "5000:1045710669157053657849499619",
                "PhoneNumber": "+8613800000000",
                "Fee": 1,
                "Code": "Ok",
                "Message": "send success",
                "IsoCode": "CN",
            }
        ]
    }
)
REPORT_OK = ok({"ReportConversionStatus": {"Code": "ok", "Message": "report success"}})
SEND_STATS = ok({"SendStatusStatistics": {"FeeCount": 120, "RequestCount": 100, "RequestSuccessCount": 99}})
CALLBACK_STATS = ok({"CallbackStatusStatistics": {"CallbackCount": 90, "CallbackSuccessCount": 88}})


def body(server: RecordingServer, index: int = -1) -> Any:
    return json.loads(server.requests[index].body)


def test_registry_resolves_tencent_to_this_client() -> None:
    assert provider_class("tencent") is TencentProvider


def test_send_otp_sends_the_documented_sendsms_body() -> None:
    with recording_server(SEND_OK) as server, tencent(server.url) as provider:
        provider.send_otp("+8613800000000", "4370")
    assert body(server) == {
        "PhoneNumberSet": ["+8613800000000"],
        "SmsSdkAppId": SDK_APP_ID,
        "TemplateId": "1110",
        "SignName": "TestSign",
        "TemplateParamSet": ["4370"],
    }
    assert server.last.header("X-TC-Action") == "SendSms"
    assert server.last.header("X-TC-Region") == "ap-guangzhou"
    assert server.last.header("X-TC-Version") == "2021-01-11"


def test_send_otp_leaves_out_sign_name_when_none_is_configured() -> None:
    with recording_server(SEND_OK) as server, tencent(server.url, sign_name=None) as provider:
        provider.send_otp("+6581234567", "4370")
    assert "SignName" not in body(server)


def test_send_otp_returns_serial_number_and_normalised_phone() -> None:
    with recording_server(SEND_OK) as server, tencent(server.url) as provider:
        sent = provider.send_otp("+8613800000000", "4370")
    assert sent == SentMessage("5000:1045710669157053657849499619", "+8613800000000", "tencent")


def test_send_status_ok_is_compared_ignoring_case() -> None:
    upper = SEND_OK.body.replace(b'"Code": "Ok"', b'"Code": "OK"')
    with recording_server(Reply(body=upper)) as server, tencent(server.url) as provider:
        assert provider.send_otp("+8613800000000", "4370").message_id.startswith("5000:")


def test_send_otp_without_template_raises_before_any_call() -> None:
    with (
        recording_server() as server,
        tencent(server.url, template_id=None) as provider,
        pytest.raises(PermanentError),
    ):
        provider.send_otp("+8613800000000", "4370")
    assert server.requests == []


def test_report_goes_to_ap_singapore_whatever_the_send_region() -> None:
    with recording_server(REPORT_OK) as server, tencent(server.url, send_region="ap-beijing") as provider:
        provider.report_conversion(ConversionReport("5000:1", "+8613800000000", verified_at=time.time() - 5))
    assert server.last.header("X-TC-Region") == "ap-singapore"
    assert server.last.header("X-TC-Action") == "ReportConversion"


def test_report_body_has_string_app_id_and_integer_seconds() -> None:
    verified_at = time.time() - 30.7
    with recording_server(REPORT_OK) as server, tencent(server.url) as provider:
        provider.report_conversion(ConversionReport("5000:104", "+8613800000000", verified_at=verified_at))
    assert body(server) == {
        "SmsSdkAppId": SDK_APP_ID,
        "SerialNo": "5000:104",
        "ConversionTime": int(verified_at),
    }


def test_report_time_in_the_future_is_sent_as_now() -> None:
    with recording_server(REPORT_OK) as server, tencent(server.url) as provider:
        provider.report_conversion(
            ConversionReport("5000:1", "+8613800000000", verified_at=time.time() + 3600)
        )
    assert body(server)["ConversionTime"] <= int(time.time())


def test_report_of_an_unused_code_sends_nothing() -> None:
    with recording_server(REPORT_OK) as server, tencent(server.url) as provider:
        provider.report_conversion(
            ConversionReport("5000:1", "+86138", verified_at=time.time(), converted=False)
        )
    assert server.requests == []


@pytest.mark.parametrize("code", ["ok", "OK", "Ok"])
def test_report_status_ok_in_any_case_is_success(code: str) -> None:
    reply = ok({"ReportConversionStatus": {"Code": code, "Message": "report success"}})
    with recording_server(reply) as server, tencent(server.url) as provider:
        assert provider.report("5000:1").code == code


def test_authorization_signs_host_with_port_and_the_exact_body() -> None:
    with recording_server(REPORT_OK) as server, tencent(server.url) as provider:
        provider.report("5000:1", conversion_time=1717243190)
    recorded = server.last
    assert recorded.header("Host") == f"127.0.0.1:{server.port}"
    assert recorded.header("Content-Type") == "application/json"
    expected = tc3_sign(
        secret_id=TENCENT_SECRET_ID,
        secret_key=TENCENT_SECRET_KEY,
        host=recorded.header("Host"),
        content_type=recorded.header("Content-Type"),
        body=recorded.body,
        timestamp=int(recorded.header("X-TC-Timestamp")),
    )
    assert recorded.header("Authorization") == expected.authorization


def test_timestamp_is_current_time_in_seconds_and_scope_its_utc_date() -> None:
    with recording_server(REPORT_OK) as server, tencent(server.url) as provider:
        provider.report("5000:1")
    timestamp = int(server.last.header("X-TC-Timestamp"))
    assert abs(timestamp - time.time()) < 60
    _, scope, _, _ = tc3_parse_authorization(server.last.header("Authorization"))
    assert scope == datetime.fromtimestamp(timestamp, timezone.utc).strftime("%Y-%m-%d/sms/tc3_request")


def test_user_agent_names_this_package() -> None:
    with recording_server(REPORT_OK) as server, tencent(server.url) as provider:
        provider.report("5000:1")
    assert server.last.header("User-Agent").startswith("flask-otp-conversion/")


def test_one_client_keeps_its_connection_alive() -> None:
    with recording_server(REPORT_OK, REPORT_OK) as server, tencent(server.url) as provider:
        provider.report("5000:1")
        provider.report("5000:2")
    first, second = server.requests
    assert first.client_port == second.client_port


# ---- statistics ----------------------------------------------------------------------------------------


def test_hour_string_converts_aware_times_to_utc_plus_8() -> None:
    assert hour_string(datetime(2024, 5, 31, 16, 30, tzinfo=timezone.utc)) == "2024060100"
    assert hour_string(datetime(2024, 6, 1, 9, tzinfo=UTC8)) == "2024060109"


def test_hour_string_refuses_naive_datetimes() -> None:
    with pytest.raises(ValueError):
        hour_string(datetime(2024, 6, 1, 9))


def test_statistics_asks_both_actions_for_the_window_in_send_region() -> None:
    begin = datetime(2024, 5, 31, 0, tzinfo=UTC8)
    end = datetime(2024, 6, 1, 12, tzinfo=UTC8)
    with recording_server(SEND_STATS, CALLBACK_STATS) as server, tencent(server.url) as provider:
        provider.statistics(begin, end)
    actions = sorted(r.header("X-TC-Action") for r in server.requests)
    assert actions == ["CallbackStatusStatistics", "SendStatusStatistics"]
    for index, recorded in enumerate(server.requests):
        assert recorded.header("X-TC-Region") == "ap-guangzhou"
        assert body(server, index) == {
            "BeginTime": "2024053100",
            "EndTime": "2024060112",
            "SmsSdkAppId": SDK_APP_ID,
            "Limit": 0,
            "Offset": 0,
        }


def test_statistics_returns_both_results_in_one_model() -> None:
    begin = datetime(2024, 5, 31, 0, tzinfo=UTC8)
    with recording_server(SEND_STATS, CALLBACK_STATS) as server, tencent(server.url) as provider:
        stats = provider.statistics(begin, begin + timedelta(hours=5))
    assert isinstance(stats, TencentStatistics)
    assert (stats.begin_time, stats.end_time) == ("2024053100", "2024053105")
    assert stats.send.fee_count == 120 and stats.send.request_success_count == 99
    assert stats.callback.callback_success_count == 88 and stats.callback.black_list_count == 0


def test_statistics_allows_exactly_32_days() -> None:
    begin = datetime(2024, 5, 1, 0, tzinfo=UTC8)
    with recording_server(SEND_STATS, CALLBACK_STATS) as server, tencent(server.url) as provider:
        provider.statistics(begin, begin + timedelta(days=32))
    assert len(server.requests) == 2


@pytest.mark.parametrize(
    ("begin", "end"),
    [
        (datetime(2024, 5, 1, 0, tzinfo=UTC8), datetime(2024, 6, 2, 1, tzinfo=UTC8)),  # 32 days + 1 hour
        (datetime(2024, 6, 1, 12, tzinfo=UTC8), datetime(2024, 6, 1, 11, tzinfo=UTC8)),  # end before begin
        (datetime(2024, 6, 1, 0), datetime(2024, 6, 1, 5)),  # naive
    ],
    ids=["over-32-days", "reversed", "naive"],
)
def test_statistics_refuses_a_bad_window_before_any_call(begin: datetime, end: datetime) -> None:
    with recording_server() as server, tencent(server.url) as provider, pytest.raises(ValueError):
        provider.statistics(begin, end)
    assert server.requests == []


# ---- the other operations ------------------------------------------------------------------------------


def test_pull_sms_send_status_sends_limit_and_app_id() -> None:
    reply = ok(
        {"PullSmsSendStatusSet": [{"SerialNo": "5000:1", "ReportStatus": "SUCCESS", "UserReceiveTime": 1}]}
    )
    with recording_server(reply) as server, tencent(server.url) as provider:
        receipts = provider.pull_sms_send_status(50)
    assert body(server) == {"Limit": 50, "SmsSdkAppId": SDK_APP_ID}
    assert [r.report_status for r in receipts] == ["SUCCESS"]


def test_describe_phone_number_info_returns_typed_rows() -> None:
    reply = ok(
        {"PhoneNumberInfoSet": [{"Code": "Ok", "NationCode": "65", "PhoneNumber": "+6581234567", "X": 1}]}
    )
    with recording_server(reply) as server, tencent(server.url) as provider:
        (info,) = provider.describe_phone_number_info(["+6581234567"])
    assert body(server) == {"PhoneNumberSet": ["+6581234567"]}
    assert (info.code, info.nation_code, info.iso_code) == ("Ok", "65", None)


def test_replies_with_unknown_fields_still_parse() -> None:
    reply = ok(
        {
            "ReportConversionStatus": {"Code": "ok", "Message": "fine", "NewField": [1]},
            "DeprecatedWarning": "x",
        }
    )
    with recording_server(reply) as server, tencent(server.url) as provider:
        assert provider.report("5000:1").message == "fine"


def test_from_settings_accepts_a_mapping() -> None:
    provider = TencentProvider.from_settings(
        {"secret_id": "a", "secret_key": "b", "sdk_app_id": 1400006666, "endpoint": "http://127.0.0.1:9"}
    )
    with provider:
        assert provider.report_action == "ReportConversion"
        assert provider.rate_limits["ReportConversion"] == 1000.0
        assert provider.rate_limits["SendSms"] == 3000.0
