"""Tencent wire checks and answers: ReportConversion, SendSms, statistics, receipts, number lookup."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from emulator_wire import CN_PHONE, SG_PHONE, Wire, hour

SINGAPORE = "ap-singapore"


def report(wire: Wire, serial: str, **extra: object) -> dict[str, Any]:
    return wire.tencent_response("ReportConversion", wire.report_params(serial, **extra), region=SINGAPORE)


# ---- ReportConversion ------------------------------------------------------------------------------------


def test_report_of_a_sent_message_is_ok_and_recorded(wire: Wire) -> None:
    serial = wire.send_tencent(CN_PHONE)
    now = int(time.time())
    payload = report(wire, serial, ConversionTime=now)
    assert payload["ReportConversionStatus"] == {"Code": "ok", "Message": "report success"}
    (conversion,) = wire.emu.conversions()
    assert (conversion.message_id, conversion.phone, conversion.conversion_time) == (serial, CN_PHONE, now)


def test_report_outside_singapore_is_unsupported_region(wire: Wire) -> None:
    serial = wire.send_tencent()
    code = wire.tencent_error("ReportConversion", wire.report_params(serial), region="ap-guangzhou")
    assert code == "UnsupportedRegion"
    assert wire.emu.conversions() == []


def test_sdk_app_id_sent_as_a_number_is_invalid_parameter(wire: Wire) -> None:
    serial = wire.send_tencent()
    params = {"SmsSdkAppId": int(wire.emu.TENCENT_SDK_APP_ID), "SerialNo": serial}
    assert wire.tencent_error("ReportConversion", params, region=SINGAPORE) == "InvalidParameter"


def test_sdk_app_id_of_another_account_fails_verification(wire: Wire) -> None:
    params = {"SmsSdkAppId": "1400009999", "SerialNo": wire.send_tencent()}
    code = wire.tencent_error("ReportConversion", params, region=SINGAPORE)
    assert code == "UnauthorizedOperation.SmsSdkAppIdVerifyFail"


def test_sdk_app_id_that_is_no_app_id_does_not_exist(wire: Wire) -> None:
    params = {"SmsSdkAppId": "my-app", "SerialNo": wire.send_tencent()}
    code = wire.tencent_error("ReportConversion", params, region=SINGAPORE)
    assert code == "InvalidParameterValue.SdkAppIdNotExist"


@pytest.mark.parametrize(
    "conversion_time",
    [
        pytest.param(lambda now: now * 1000, id="milliseconds"),
        pytest.param(lambda now: now + 120, id="two-minutes-ahead"),
        pytest.param(lambda now: now - 31 * 86400, id="a-month-old"),
    ],
)
def test_implausible_conversion_time_is_invalid_parameter_value(
    wire: Wire, conversion_time: Callable[[int], int]
) -> None:
    serial = wire.send_tencent()
    value = conversion_time(int(time.time()))
    params = wire.report_params(serial, ConversionTime=value)
    assert wire.tencent_error("ReportConversion", params, region=SINGAPORE) == "InvalidParameterValue"


def test_conversion_time_within_a_minute_ahead_is_accepted(wire: Wire) -> None:
    payload = report(wire, wire.send_tencent(), ConversionTime=int(time.time()) + 30)
    assert payload["ReportConversionStatus"]["Code"] == "ok"


def test_conversion_time_as_a_string_is_invalid_parameter(wire: Wire) -> None:
    params = wire.report_params(wire.send_tencent(), ConversionTime=str(int(time.time())))
    assert wire.tencent_error("ReportConversion", params, region=SINGAPORE) == "InvalidParameter"


def test_unknown_serial_no_fails_in_the_status_not_the_envelope(wire: Wire) -> None:
    payload = report(wire, "5000:1045710669157053657849499619")
    assert "Error" not in payload
    assert payload["ReportConversionStatus"]["Code"] == "InvalidParameterValue"
    (call,) = wire.emu.calls("ReportConversion")
    assert not call.ok and call.error_code == "InvalidParameterValue"


def test_report_of_an_issued_message_id_needs_no_send_call(wire: Wire) -> None:
    serial = wire.emu.issue_message_id("tencent", CN_PHONE, code="1234")
    assert report(wire, serial)["ReportConversionStatus"]["Code"] == "ok"


# ---- the envelope ----------------------------------------------------------------------------------------


def test_other_api_version_is_no_such_version(wire: Wire) -> None:
    code = wire.tencent_error("DescribePhoneNumberInfo", {"PhoneNumberSet": [CN_PHONE]}, version="2019-07-11")
    assert code == "NoSuchVersion"


def test_unknown_action_is_invalid_action(wire: Wire) -> None:
    assert wire.tencent_error("SendSmsNow", {}) == "InvalidAction"


def test_unknown_region_is_unsupported_region(wire: Wire) -> None:
    code = wire.tencent_error("DescribePhoneNumberInfo", {"PhoneNumberSet": [CN_PHONE]}, region="eu-moon-1")
    assert code == "UnsupportedRegion"


def test_unknown_parameter_is_rejected(wire: Wire) -> None:
    params = {"SmsSdkAppid": wire.emu.TENCENT_SDK_APP_ID, "SerialNo": "x"}  # the 2019-07-11 spelling
    assert wire.tencent_error("ReportConversion", params, region=SINGAPORE) == "UnknownParameter"


def test_missing_required_parameter_is_missing_parameter(wire: Wire) -> None:
    params = {"SmsSdkAppId": wire.emu.TENCENT_SDK_APP_ID}
    assert wire.tencent_error("ReportConversion", params, region=SINGAPORE) == "MissingParameter"


def test_null_for_an_optional_field_is_invalid_parameter(wire: Wire) -> None:
    params = wire.report_params(wire.send_tencent(), ConversionTime=None)
    assert wire.tencent_error("ReportConversion", params, region=SINGAPORE) == "InvalidParameter"


def test_body_that_is_not_json_is_json_parse_fail(wire: Wire) -> None:
    code = wire.tencent_error("DescribePhoneNumberInfo", {}, body=b"PhoneNumberSet=+8613711112222")
    assert code == "FailedOperation.JsonParseFail"


# ---- SendSms ---------------------------------------------------------------------------------------------


def test_send_sms_issues_a_unique_serial_no_per_number(wire: Wire) -> None:
    phones = [CN_PHONE, "+8613711113333"]
    payload = wire.tencent_response("SendSms", wire.sms_params(phones, ["123456"], SessionContext="ctx-1"))
    statuses = payload["SendStatusSet"]
    assert [s["PhoneNumber"] for s in statuses] == phones
    assert all(s["Code"] == "Ok" and s["IsoCode"] == "CN" and s["Fee"] == 1 for s in statuses)
    assert all(s["SessionContext"] == "ctx-1" for s in statuses)
    serials = [s["SerialNo"] for s in statuses]
    assert all(re.fullmatch(r"5000:\d{28}", s) for s in serials)
    assert len(set(serials)) == 2


def test_send_sms_remembers_the_code_per_phone(wire: Wire) -> None:
    wire.send_tencent(CN_PHONE, "111111")
    wire.send_tencent(SG_PHONE, "222222")
    wire.send_tencent(CN_PHONE, "333333")
    assert (wire.emu.code_for(CN_PHONE), wire.emu.code_for(SG_PHONE)) == ("333333", "222222")


def test_code_for_a_phone_never_sent_to_is_none(wire: Wire) -> None:
    assert wire.emu.code_for("+6590000000") is None


def test_send_sms_number_without_plus_is_incorrect_phone_number(wire: Wire) -> None:
    code = wire.tencent_error("SendSms", wire.sms_params(["8613711112222"], ["1234"]))
    assert code == "InvalidParameterValue.IncorrectPhoneNumber"


@pytest.mark.parametrize("value", ["1234567", "12ab"])
def test_send_sms_verification_parameter_must_be_up_to_six_digits(wire: Wire, value: str) -> None:
    code = wire.tencent_error("SendSms", wire.sms_params([CN_PHONE], [value]))
    assert code == "InvalidParameterValue.TemplateParameterFormatError"


def test_send_sms_mainland_without_sign_name_is_missing_parameter(wire: Wire) -> None:
    params = wire.sms_params([CN_PHONE], ["1234"])
    del params["SignName"]
    assert wire.tencent_error("SendSms", params) == "MissingParameter"


def test_send_sms_mixing_mainland_and_international_is_unsupported(wire: Wire) -> None:
    code = wire.tencent_error("SendSms", wire.sms_params([CN_PHONE, SG_PHONE], ["1234"]))
    assert code == "UnsupportedOperation.ContainDomesticAndInternationalPhoneNumber"


def test_refused_number_fails_in_its_status_without_an_error(wire: Wire) -> None:
    wire.emu.refuse_phone(CN_PHONE)
    payload = wire.tencent_response("SendSms", wire.sms_params([CN_PHONE], ["1234"]))
    assert "Error" not in payload
    (status,) = payload["SendStatusSet"]
    assert (status["Code"], status["SerialNo"], status["Fee"]) == (
        "LimitExceeded.PhoneNumberThirtySecondLimit",
        "",
        0,
    )
    assert wire.emu.code_for(CN_PHONE) is None


# ---- statistics ------------------------------------------------------------------------------------------


def now_window() -> tuple[datetime, datetime]:
    now = datetime.now(timezone.utc)
    return now - timedelta(hours=1), now


def test_send_status_statistics_count_what_was_sent_in_the_window(wire: Wire) -> None:
    wire.send_tencent(CN_PHONE)
    wire.send_tencent("+8613711113333")
    wire.emu.refuse_phone("+8613711114444")
    wire.tencent_response("SendSms", wire.sms_params(["+8613711114444"], ["1234"]))
    payload = wire.tencent_response("SendStatusStatistics", wire.statistics_params(*now_window()))
    assert payload["SendStatusStatistics"] == {"FeeCount": 2, "RequestCount": 3, "RequestSuccessCount": 2}


def test_statistics_of_a_window_before_the_sends_are_zero(wire: Wire) -> None:
    wire.send_tencent()
    now = datetime.now(timezone.utc)
    params = wire.statistics_params(now - timedelta(days=3), now - timedelta(days=2))
    payload = wire.tencent_response("SendStatusStatistics", params)
    assert payload["SendStatusStatistics"] == {"FeeCount": 0, "RequestCount": 0, "RequestSuccessCount": 0}


def test_callback_statistics_count_failed_deliveries_by_reason(wire: Wire) -> None:
    wire.emu.fail_delivery("+8613711113333", "shutdown")
    wire.send_tencent(CN_PHONE)
    wire.send_tencent("+8613711113333")
    payload = wire.tencent_response("CallbackStatusStatistics", wire.statistics_params(*now_window()))
    assert payload["CallbackStatusStatistics"] == {
        "CallbackCount": 2,
        "RequestSuccessCount": 2,
        "CallbackFailCount": 1,
        "CallbackSuccessCount": 1,
        "InternalErrorCount": 0,
        "InvalidNumberCount": 0,
        "ShutdownErrorCount": 1,
        "BlackListCount": 0,
        "FrequencyLimitCount": 0,
    }


def test_statistics_end_before_begin_fails_end_time_check(wire: Wire) -> None:
    begin, end = now_window()
    code = wire.tencent_error("CallbackStatusStatistics", wire.statistics_params(end, begin))
    assert code == "InvalidParameterValue.EndTimeVerifyFail"


def test_statistics_span_over_32_days_fails_end_time_check(wire: Wire) -> None:
    end = datetime.now(timezone.utc)
    code = wire.tencent_error("SendStatusStatistics", wire.statistics_params(end - timedelta(days=33), end))
    assert code == "InvalidParameterValue.EndTimeVerifyFail"


@pytest.mark.parametrize(
    ("field", "code"),
    [
        ("Limit", "InvalidParameterValue.LimitVerifyFail"),
        ("Offset", "InvalidParameterValue.OffsetVerifyFail"),
    ],
)
def test_statistics_limit_and_offset_must_be_zero(wire: Wire, field: str, code: str) -> None:
    params = wire.statistics_params(*now_window(), **{field: 10})
    assert wire.tencent_error("CallbackStatusStatistics", params) == code


def test_statistics_without_limit_is_missing_parameter(wire: Wire) -> None:
    params = wire.statistics_params(*now_window())
    del params["Limit"]
    assert wire.tencent_error("SendStatusStatistics", params) == "MissingParameter"


@pytest.mark.parametrize(
    ("begin", "code"),
    [("2024-05-01 13", "InvalidParameterValue.BeginTimeVerifyFail"), (2024050113, "InvalidParameter")],
)
def test_statistics_begin_time_must_be_an_hour_string(wire: Wire, begin: object, code: str) -> None:
    params = wire.statistics_params(*now_window(), BeginTime=begin)
    assert wire.tencent_error("SendStatusStatistics", params) == code


def test_statistics_end_hour_is_included(wire: Wire) -> None:
    wire.send_tencent()
    now = datetime.now(timezone.utc)
    params = {**wire.statistics_params(now, now), "BeginTime": hour(now), "EndTime": hour(now)}
    payload = wire.tencent_response("SendStatusStatistics", params)
    assert payload["SendStatusStatistics"]["RequestCount"] == 1


# ---- receipts and number lookup --------------------------------------------------------------------------


def test_pull_sms_send_status_returns_each_receipt_once(wire: Wire) -> None:
    serial = wire.send_tencent(CN_PHONE)
    params = {"Limit": 100, "SmsSdkAppId": wire.emu.TENCENT_SDK_APP_ID}
    first = wire.tencent_response("PullSmsSendStatus", params)["PullSmsSendStatusSet"]
    second = wire.tencent_response("PullSmsSendStatus", params)["PullSmsSendStatusSet"]
    assert [(r["SerialNo"], r["ReportStatus"], r["CountryCode"], r["SubscriberNumber"]) for r in first] == [
        (serial, "SUCCESS", "86", "13711112222")
    ]
    assert second == []


def test_pull_sms_send_status_limit_over_100_fails(wire: Wire) -> None:
    params = {"Limit": 101, "SmsSdkAppId": wire.emu.TENCENT_SDK_APP_ID}
    assert wire.tencent_error("PullSmsSendStatus", params) == "InvalidParameterValue.LimitVerifyFail"


def test_describe_phone_number_info_parses_and_flags_unparseable(wire: Wire) -> None:
    payload = wire.tencent_response("DescribePhoneNumberInfo", {"PhoneNumberSet": ["+6581234567", "12"]})
    good, bad = payload["PhoneNumberInfoSet"]
    assert (good["Code"], good["NationCode"], good["SubscriberNumber"], good["IsoCode"]) == (
        "Ok",
        "65",
        "81234567",
        "SG",
    )
    assert (bad["Code"], bad["PhoneNumber"], bad["IsoCode"]) == (
        "InvalidParameterValue.IncorrectPhoneNumber",
        "12",
        "DEF",
    )


def test_tencent_answers_are_json_with_a_request_id(wire: Wire) -> None:
    response = wire.tencent("SendSmsNow", {})
    assert response.headers["content-type"] == "application/json"
    body = json.loads(response.content)
    assert set(body) == {"Response"} and re.fullmatch(r"[0-9a-f-]{36}", body["Response"]["RequestId"])
