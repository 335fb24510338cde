"""Alibaba wire checks and answers: dysmsapi 2017-05-25 / 2018-05-01 sends and conversions, cams."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable

import pytest
from emulator_wire import CN_PHONE, SG_PHONE, Wire

CHINA, INTL, CAMS = "2017-05-25", "2018-05-01", "2020-06-06"


def now_ms() -> str:
    return str(int(time.time() * 1000))


def conversion(wire: Wire, message_id: str, **params: str) -> dict[str, str]:
    return {"MessageId": message_id, "Delivered": "true", "ConversionTime": now_ms(), **params}


# ---- 2017-05-25 SendSms / SmsConversionIntl --------------------------------------------------------------


def test_send_sms_answers_a_biz_id_and_remembers_the_code(wire: Wire) -> None:
    params = {
        "PhoneNumbers": "13711112222",
        "SignName": "阿里云短信测试",
        "TemplateCode": "SMS_154950909",
        "TemplateParam": '{"code":"4321"}',
    }
    response = wire.acs3("SendSms", CHINA, params)
    assert response.status_code == 200
    body = response.json()
    assert (body["Code"], body["Message"]) == ("OK", "OK")
    assert re.fullmatch(r"\d{18}\^0", body["BizId"])
    assert wire.emu.code_for(CN_PHONE) == "4321"
    assert wire.emu.code_for("13711112222") == "4321"


def test_send_sms_international_number_with_plus_is_a_business_error(wire: Wire) -> None:
    params = {"PhoneNumbers": SG_PHONE, "SignName": "S", "TemplateCode": "SMS_1"}
    response = wire.acs3("SendSms", CHINA, params)
    assert (response.status_code, response.json()["Code"]) == (200, "isv.MOBILE_NUMBER_ILLEGAL")


def test_send_sms_number_value_in_template_param_is_invalid_json_param(wire: Wire) -> None:
    params = {
        "PhoneNumbers": "6581234567",
        "SignName": "S",
        "TemplateCode": "SMS_1",
        "TemplateParam": '{"code":1234}',
    }
    response = wire.acs3("SendSms", CHINA, params)
    assert (response.status_code, response.json()["Code"]) == (200, "isv.INVALID_JSON_PARAM")


def test_send_sms_without_phone_numbers_is_a_gateway_400(wire: Wire) -> None:
    response = wire.acs3("SendSms", CHINA, {"SignName": "S", "TemplateCode": "SMS_1"})
    body = response.json()
    assert (response.status_code, body["Code"]) == (400, "MissingPhoneNumbers")
    assert {"RequestId", "HostId", "Code", "Message"} <= set(body)


def test_send_sms_to_a_refused_phone_is_business_limit_control(wire: Wire) -> None:
    wire.emu.refuse_phone(SG_PHONE)
    params = {"PhoneNumbers": "6581234567", "SignName": "S", "TemplateCode": "SMS_1"}
    response = wire.acs3("SendSms", CHINA, params)
    assert (response.status_code, response.json()["Code"]) == (200, "isv.BUSINESS_LIMIT_CONTROL")
    (message,) = wire.emu.messages("alibaba")
    assert not message.accepted


def test_sms_conversion_intl_of_a_biz_id_is_ok_and_recorded(wire: Wire) -> None:
    biz_id = wire.send_alibaba(SG_PHONE, site="china")
    sent_ms = now_ms()
    response = wire.acs3("SmsConversionIntl", CHINA, conversion(wire, biz_id, ConversionTime=sent_ms))
    assert response.json() == {"RequestId": response.json()["RequestId"], "Code": "OK", "Message": "OK"}
    (recorded,) = wire.emu.conversions()
    assert (recorded.action, recorded.message_id, recorded.phone, recorded.delivered) == (
        "SmsConversionIntl",
        biz_id,
        SG_PHONE,
        True,
    )
    assert recorded.conversion_time == int(sent_ms) / 1000


def test_sms_conversion_intl_of_a_2018_message_id_is_rejected(wire: Wire) -> None:
    message_id = wire.send_alibaba(site="intl")
    response = wire.acs3("SmsConversionIntl", CHINA, conversion(wire, message_id))
    assert (response.status_code, response.json()["Code"]) == (200, "isv.INVALID_PARAMETERS")


# ---- 2018-05-01 SendMessageWithTemplate / SmsConversion --------------------------------------------------


def test_send_message_with_template_answers_a_message_id(wire: Wire) -> None:
    params = {
        "To": "6581234567",
        "From": "Brand",
        "TemplateCode": "SMS_1",
        "TemplateParam": '{"code":"9876"}',
    }
    body = wire.acs3("SendMessageWithTemplate", INTL, params).json()
    assert (body["ResponseCode"], body["To"], body["NumberDetail"]["Country"]) == (
        "OK",
        "6581234567",
        "Singapore",
    )
    assert re.fullmatch(r"\d{16}", body["MessageId"])
    assert wire.emu.code_for(SG_PHONE) == "9876"


def test_sms_conversion_of_a_known_message_id_is_ok(wire: Wire) -> None:
    message_id = wire.send_alibaba(SG_PHONE)
    body = wire.acs3("SmsConversion", INTL, conversion(wire, message_id, To="6581234567")).json()
    assert (body["ResponseCode"], body["ResponseDescription"]) == ("OK", "OK")
    assert [c.message_id for c in wire.emu.conversions()] == [message_id]


def test_sms_conversion_delivered_false_is_recorded_as_not_used(wire: Wire) -> None:
    message_id = wire.send_alibaba()
    wire.acs3("SmsConversion", INTL, conversion(wire, message_id, Delivered="false"))
    (recorded,) = wire.emu.conversions()
    assert recorded.delivered is False


@pytest.mark.parametrize("delivered", ["True", "1", "yes"])
def test_sms_conversion_delivered_other_than_true_false_is_invalid_parameter(
    wire: Wire, delivered: str
) -> None:
    response = wire.acs3("SmsConversion", INTL, conversion(wire, wire.send_alibaba(), Delivered=delivered))
    assert (response.status_code, response.json()["Code"]) == (400, "InvalidParameter")


@pytest.mark.parametrize(
    ("shift", "why"),
    [
        (lambda ms: ms // 1000, "seconds"),
        (lambda ms: ms + 120_000, "future"),
        (lambda ms: ms - 3_600_000, "before the send"),
    ],
)
def test_implausible_conversion_time_is_invalid_parameters(
    wire: Wire, shift: Callable[[int], int], why: str
) -> None:
    message_id = wire.send_alibaba()
    value = str(shift(int(now_ms())))
    body = wire.acs3("SmsConversion", INTL, conversion(wire, message_id, ConversionTime=value)).json()
    assert body["ResponseCode"] == "isv.INVALID_PARAMETERS", why
    assert wire.emu.conversions() == []


def test_sms_conversion_to_with_plus_is_mobile_number_illegal(wire: Wire) -> None:
    response = wire.acs3("SmsConversion", INTL, conversion(wire, wire.send_alibaba(SG_PHONE), To=SG_PHONE))
    assert response.json()["ResponseCode"] == "isv.MOBILE_NUMBER_ILLEGAL"


def test_sms_conversion_to_another_recipient_is_rejected(wire: Wire) -> None:
    response = wire.acs3(
        "SmsConversion", INTL, conversion(wire, wire.send_alibaba(SG_PHONE), To="6590000000")
    )
    assert response.json()["ResponseCode"] == "isv.INVALID_PARAMETERS"


def test_sms_conversion_of_an_unknown_message_id_answers_response_code(wire: Wire) -> None:
    response = wire.acs3("SmsConversion", INTL, conversion(wire, "1008030300123456"))
    body = response.json()
    assert (response.status_code, body["ResponseCode"]) == (200, "isv.INVALID_PARAMETERS")
    assert "Code" not in body


def test_sms_conversion_in_version_2017_05_25_is_not_an_action(wire: Wire) -> None:
    response = wire.acs3("SmsConversion", CHINA, conversion(wire, wire.send_alibaba(site="china")))
    assert (response.status_code, response.json()["Code"]) == (404, "InvalidAction.NotFound")


def test_unknown_version_is_invalid_version(wire: Wire) -> None:
    response = wire.acs3("SendSms", "2016-09-27", {"PhoneNumbers": "13711112222"})
    assert (response.status_code, response.json()["Code"]) == (400, "InvalidVersion")


def test_v1_conversion_is_verified_and_recorded_like_acs3(wire: Wire) -> None:
    message_id = wire.send_alibaba()
    response = wire.v1("SmsConversion", INTL, conversion(wire, message_id))
    assert response.json()["ResponseCode"] == "OK"
    (call,) = wire.emu.calls("SmsConversion")
    assert call.params["MessageId"] == message_id and "Signature" not in call.params


# ---- cams ------------------------------------------------------------------------------------------------


def test_chatapp_sync_phone_number_lists_the_space_numbers(wire: Wire) -> None:
    wire.emu.set_cams_phone_numbers(
        [
            {
                "PhoneNumber": "6581234567",
                "Status": "FLAGGED",
                "QualityRating": "YELLOW",
                "MessagingLimitTier": "TIER_1K",
            }
        ]
    )
    body = wire.acs3("ChatappSyncPhoneNumber", CAMS, {"CustSpaceId": wire.emu.ALIBABA_CUST_SPACE_ID}).json()
    assert (body["Code"], body["Success"]) == ("OK", True)
    (number,) = body["PhoneNumbers"]
    assert (number["Status"], number["QualityRating"], number["MessagingLimitTier"]) == (
        "FLAGGED",
        "YELLOW",
        "TIER_1K",
    )


def test_chatapp_sync_phone_number_default_number_is_connected(wire: Wire) -> None:
    body = wire.acs3("ChatappSyncPhoneNumber", CAMS, {"CustSpaceId": wire.emu.ALIBABA_CUST_SPACE_ID}).json()
    (number,) = body["PhoneNumbers"]
    assert number["Status"] == "CONNECTED" and not number["PhoneNumber"].startswith("+")


def test_chatapp_sync_phone_number_of_another_space_is_unknown_resource_owner(wire: Wire) -> None:
    response = wire.acs3("ChatappSyncPhoneNumber", CAMS, {"CustSpaceId": "111"})
    assert (response.status_code, response.json()["Code"]) == (400, "Unknown.ResourceOwnerId")


def test_alibaba_answers_are_json_utf8_with_an_uppercase_request_id(wire: Wire) -> None:
    response = wire.acs3("ChatappSyncPhoneNumber", CAMS, {"CustSpaceId": wire.emu.ALIBABA_CUST_SPACE_ID})
    assert response.headers["content-type"] == "application/json;charset=utf-8"
    assert re.fullmatch(r"[0-9A-F-]{36}", json.loads(response.content)["RequestId"])
