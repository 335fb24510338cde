"""Injected faults, latency and rate limits, each in the shape the real provider would answer."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
from emulator_wire import CN_PHONE, SG_PHONE, Wire

from flask_otp_conversion.testing import EmulatorCall, EmulatorServer, Fault, ProviderEmulator

DESCRIBE = {"PhoneNumberSet": [CN_PHONE]}


def cams(wire: Wire) -> httpx.Response:
    return wire.acs3("ChatappSyncPhoneNumber", "2020-06-06", {"CustSpaceId": wire.emu.ALIBABA_CUST_SPACE_ID})


def describe(wire: Wire) -> httpx.Response:
    return wire.tencent("DescribePhoneNumberInfo", DESCRIBE)


def wait_for_call(emu: ProviderEmulator, action: str) -> EmulatorCall:
    """The first recorded call of ``action``, once it has arrived (polls; the test's timeout bounds it)."""
    while not emu.calls(action):
        time.sleep(0.01)
    return emu.calls(action)[0]


@pytest.fixture
def short_wire(provider_emulator_server: EmulatorServer) -> Iterator[Wire]:
    """A client that gives up reading after 0.3 s."""
    with httpx.Client(timeout=httpx.Timeout(5.0, read=0.3), verify=False) as client:
        yield Wire.of(provider_emulator_server, client)


# ---- http_500, malformed_json, error ----------------------------------------------------------------------


def test_http_500_from_tencent_is_an_html_page(wire: Wire) -> None:
    wire.emu.inject("DescribePhoneNumberInfo", Fault.http_500())
    response = describe(wire)
    assert response.status_code == 500
    assert response.headers["content-type"] == "text/html"
    (call,) = wire.emu.calls()
    assert (call.ok, call.http_status, call.fault) == (False, 500, "http_500")


def test_http_500_from_alibaba_is_internal_error_json(wire: Wire) -> None:
    wire.emu.inject("ChatappSyncPhoneNumber", Fault.http_500())
    response = cams(wire)
    assert (response.status_code, response.json()["Code"]) == (500, "InternalError")


def test_malformed_json_is_a_truncated_body_with_status_200(wire: Wire) -> None:
    wire.emu.inject("DescribePhoneNumberInfo", Fault.malformed_json())
    response = describe(wire)
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.content)


def test_error_fault_on_tencent_is_response_error_in_http_200(wire: Wire) -> None:
    wire.emu.inject("DescribePhoneNumberInfo", Fault.error("InternalError.Timeout", "backend timed out"))
    assert wire.tencent_error("DescribePhoneNumberInfo", DESCRIBE) == "InternalError.Timeout"


def test_error_fault_with_isv_code_on_alibaba_is_a_business_error(wire: Wire) -> None:
    wire.emu.inject("SmsConversion", Fault.error("isv.DAY_LIMIT_CONTROL"))
    response = wire.acs3("SmsConversion", "2018-05-01", {"MessageId": "1", "Delivered": "true"})
    assert (response.status_code, response.json()["ResponseCode"]) == (200, "isv.DAY_LIMIT_CONTROL")


def test_error_fault_with_gateway_code_on_alibaba_uses_the_status(wire: Wire) -> None:
    wire.emu.inject("ChatappSyncPhoneNumber", Fault.error("ServiceUnavailable", status=503))
    response = cams(wire)
    assert (response.status_code, response.json()["Code"]) == (503, "ServiceUnavailable")
    assert response.json()["HostId"]


# ---- throttling ------------------------------------------------------------------------------------------


def test_throttle_on_tencent_is_request_limit_exceeded_in_http_200(wire: Wire) -> None:
    wire.emu.inject("DescribePhoneNumberInfo", Fault.throttle(retry_after=2))
    assert wire.tencent_error("DescribePhoneNumberInfo", DESCRIBE) == "RequestLimitExceeded"


def test_throttle_on_dysmsapi_is_throttling_user_with_retry_after_in_ms(wire: Wire) -> None:
    wire.emu.inject("SmsConversion", Fault.throttle(retry_after=1.5))
    response = wire.acs3("SmsConversion", "2018-05-01", {"MessageId": "1", "Delivered": "true"})
    assert (response.status_code, response.json()["Code"]) == (400, "Throttling.User")
    assert response.headers["x-acs-retry-after"] == "1500"


def test_throttle_without_retry_after_sends_no_header(wire: Wire) -> None:
    wire.emu.inject("SmsConversion", Fault.throttle())
    response = wire.acs3("SmsConversion", "2018-05-01", {"MessageId": "1", "Delivered": "true"})
    assert "x-acs-retry-after" not in response.headers


def test_throttle_on_cams_is_system_limit_control(wire: Wire) -> None:
    wire.emu.inject("ChatappSyncPhoneNumber", Fault.throttle())
    response = cams(wire)
    assert (response.status_code, response.json()["Code"]) == (400, "System.LimitControl")


# ---- how long faults last and whom they hit --------------------------------------------------------------


def test_fault_with_times_affects_that_many_calls(wire: Wire) -> None:
    wire.emu.inject("DescribePhoneNumberInfo", Fault.http_500(times=2))
    assert [describe(wire).status_code for _ in range(3)] == [500, 500, 200]


def test_fault_without_times_lasts_until_cleared(wire: Wire) -> None:
    wire.emu.inject("DescribePhoneNumberInfo", Fault.http_500())
    assert [describe(wire).status_code for _ in range(3)] == [500, 500, 500]
    wire.emu.clear_faults()
    assert describe(wire).status_code == 200


def test_clearing_one_action_keeps_faults_of_others(wire: Wire) -> None:
    wire.emu.inject("DescribePhoneNumberInfo", Fault.http_500())
    wire.emu.inject("ChatappSyncPhoneNumber", Fault.http_500())
    wire.emu.clear_faults("DescribePhoneNumberInfo")
    assert (describe(wire).status_code, cams(wire).status_code) == (200, 500)


def test_faults_for_one_call_are_used_in_order(wire: Wire) -> None:
    wire.emu.inject("DescribePhoneNumberInfo", Fault.http_500(times=1))
    wire.emu.inject("DescribePhoneNumberInfo", Fault.malformed_json(times=1))
    for _ in range(3):
        describe(wire)
    assert [c.fault for c in wire.emu.calls()] == ["http_500", "malformed_json", None]


def test_fault_for_one_provider_leaves_the_other_alone(wire: Wire) -> None:
    wire.emu.inject("SendSms", Fault.http_500(), provider="alibaba")
    tencent = wire.tencent("SendSms", wire.sms_params([CN_PHONE], ["1234"]))
    alibaba = wire.acs3(
        "SendSms", "2017-05-25", {"PhoneNumbers": "6581234567", "SignName": "S", "TemplateCode": "SMS_1"}
    )
    assert (tencent.status_code, alibaba.status_code) == (200, 500)


def test_wildcard_fault_applies_to_every_action(wire: Wire) -> None:
    wire.emu.inject("*", Fault.http_500())
    assert (describe(wire).status_code, cams(wire).status_code) == (500, 500)


def test_times_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="times"):
        Fault.http_500(times=0)


# ---- connections: drop, hang, slow, latency --------------------------------------------------------------


def test_drop_connection_closes_without_an_answer(wire: Wire) -> None:
    wire.emu.inject("DescribePhoneNumberInfo", Fault.drop_connection(times=1))
    with pytest.raises(httpx.RemoteProtocolError):
        describe(wire)
    (call,) = wire.emu.calls()
    assert (call.http_status, call.fault, call.ok) == (None, "drop_connection", False)
    assert describe(wire).status_code == 200


def test_drop_after_processing_loses_the_answer_but_not_the_report(wire: Wire) -> None:
    serial = wire.send_tencent()
    wire.emu.inject("ReportConversion", Fault.drop_connection(after_processing=True))
    with pytest.raises(httpx.RemoteProtocolError):
        wire.tencent("ReportConversion", wire.report_params(serial), region="ap-singapore")
    assert [c.message_id for c in wire.emu.conversions()] == [serial]


def test_http_500_before_processing_takes_no_effect(wire: Wire) -> None:
    wire.emu.inject("SendSms", Fault.http_500())
    wire.tencent("SendSms", wire.sms_params([CN_PHONE], ["1234"]))
    assert wire.emu.messages() == [] and wire.emu.code_for(CN_PHONE) is None


@pytest.mark.timeout(20)
def test_hang_outlasts_the_client_read_timeout(short_wire: Wire) -> None:
    short_wire.emu.inject("DescribePhoneNumberInfo", Fault.hang(30, times=1))
    with pytest.raises(httpx.ReadTimeout):
        describe(short_wire)
    assert wait_for_call(short_wire.emu, "DescribePhoneNumberInfo").fault == "hang"


@pytest.mark.timeout(20)
def test_release_hangs_ends_a_hang_without_an_answer(wire: Wire) -> None:
    wire.emu.inject("DescribePhoneNumberInfo", Fault.hang(60, times=1))
    outcome: list[BaseException] = []

    def call() -> None:
        try:
            describe(wire)
        except httpx.HTTPError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=call)
    thread.start()
    wait_for_call(wire.emu, "DescribePhoneNumberInfo")
    wire.emu.release_hangs()
    thread.join()
    assert [type(e) for e in outcome] == [httpx.RemoteProtocolError]


@pytest.mark.timeout(20)
def test_stopping_the_server_ends_a_hang() -> None:
    emu = ProviderEmulator()
    emu.inject("*", Fault.hang(60))
    server = EmulatorServer(emu).start()
    errors: list[BaseException] = []

    def call() -> None:
        try:
            httpx.post(server.url, headers={"X-TC-Action": "SendSms"}, timeout=30)
        except httpx.HTTPError as exc:
            errors.append(exc)

    thread = threading.Thread(target=call)
    thread.start()
    wait_for_call(emu, "SendSms")
    server.stop()
    thread.join()
    assert len(errors) == 1 and isinstance(errors[0], httpx.TransportError)


def test_slow_answer_arrives_whole_in_several_pieces(wire: Wire) -> None:
    wire.emu.inject("DescribePhoneNumberInfo", Fault.slow(0.5, times=1))
    body = json.dumps(DESCRIBE).encode()
    with wire.client.stream("POST", wire.url, content=body, headers=signed_tencent_headers(wire)) as response:
        pieces = list(response.iter_raw())
    assert len(pieces) > 1
    assert json.loads(b"".join(pieces))["Response"]["PhoneNumberInfoSet"][0]["Code"] == "Ok"
    assert wire.emu.calls()[0].fault == "slow"


def signed_tencent_headers(wire: Wire) -> dict[str, str]:
    from flask_otp_conversion.providers.signing import tc3_sign

    ts = int(time.time())
    signature = tc3_sign(
        secret_id=wire.emu.TENCENT_SECRET_ID,
        secret_key=wire.emu.TENCENT_SECRET_KEY,
        host=wire.host,
        content_type="application/json",
        body=json.dumps(DESCRIBE).encode(),
        timestamp=ts,
    )
    return {
        "Content-Type": "application/json",
        "X-TC-Action": "DescribePhoneNumberInfo",
        "X-TC-Version": "2021-01-11",
        "X-TC-Timestamp": str(ts),
        "X-TC-Region": "ap-guangzhou",
        "Authorization": signature.authorization,
    }


@pytest.mark.timeout(20)
def test_latency_fault_delays_past_a_short_timeout_then_answers_normally(
    short_wire: Wire, wire: Wire
) -> None:
    short_wire.emu.inject("DescribePhoneNumberInfo", Fault.latency(5, times=1))
    with pytest.raises(httpx.ReadTimeout):
        describe(short_wire)
    assert describe(wire).status_code == 200


@pytest.mark.timeout(20)
def test_global_latency_delays_every_answer(short_wire: Wire, wire: Wire) -> None:
    short_wire.emu.latency = 5
    with pytest.raises(httpx.ReadTimeout):
        describe(short_wire)
    with pytest.raises(httpx.ReadTimeout):
        cams(short_wire)
    short_wire.emu.latency = 0
    short_wire.emu.release_hangs()
    assert describe(wire).status_code == 200


# ---- rate limits -----------------------------------------------------------------------------------------


class FrozenClock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def frozen() -> Iterator[tuple[Wire, FrozenClock]]:
    clock = FrozenClock()
    with (
        EmulatorServer(ProviderEmulator(clock=clock)) as server,
        httpx.Client(timeout=10, verify=False) as client,
    ):
        yield Wire.of(server, client), clock


def test_rate_limit_throttles_calls_over_the_cap_within_a_second(frozen: tuple[Wire, FrozenClock]) -> None:
    wire, _ = frozen
    wire.emu.set_rate_limit("DescribePhoneNumberInfo", 3)
    codes = [describe(wire).json()["Response"].get("Error", {}).get("Code") for _ in range(5)]
    assert codes == [None, None, None, "RequestLimitExceeded", "RequestLimitExceeded"]
    assert [c.fault for c in wire.emu.calls()] == [None, None, None, "rate_limit", "rate_limit"]


def test_rate_limit_admits_again_a_second_later(frozen: tuple[Wire, FrozenClock]) -> None:
    wire, clock = frozen
    wire.emu.set_rate_limit("DescribePhoneNumberInfo", 1)
    assert "Error" not in describe(wire).json()["Response"]
    assert "Error" in describe(wire).json()["Response"]
    clock.now += 1.0
    assert "Error" not in describe(wire).json()["Response"]


def test_rate_limit_on_alibaba_answers_throttling_user(frozen: tuple[Wire, FrozenClock]) -> None:
    wire, _ = frozen
    wire.emu.set_rate_limit("SendMessageWithTemplate", 1)
    params = {"To": SG_PHONE.lstrip("+"), "From": "B", "TemplateCode": "SMS_1"}
    first = wire.acs3("SendMessageWithTemplate", "2018-05-01", params)
    second = wire.acs3("SendMessageWithTemplate", "2018-05-01", params)
    assert (first.status_code, second.status_code, second.json()["Code"]) == (200, 400, "Throttling.User")


def test_removed_rate_limit_no_longer_throttles(frozen: tuple[Wire, FrozenClock]) -> None:
    wire, _ = frozen
    wire.emu.set_rate_limit("DescribePhoneNumberInfo", 1)
    wire.emu.set_rate_limit("DescribePhoneNumberInfo", None)
    assert all("Error" not in describe(wire).json()["Response"] for _ in range(3))


# ---- the record ------------------------------------------------------------------------------------------


def test_rejected_calls_are_recorded_with_their_headers(wire: Wire) -> None:
    wire.tencent("DescribePhoneNumberInfo", DESCRIBE, secret_key="wrong")
    (call,) = wire.emu.calls()
    assert (call.provider, call.action, call.ok, call.error_code) == (
        "tencent",
        "DescribePhoneNumberInfo",
        False,
        "AuthFailure.SignatureFailure",
    )
    assert call.headers["x-tc-action"] == "DescribePhoneNumberInfo"
    assert call.headers["authorization"].startswith("TC3-HMAC-SHA256 ")
    assert call.params == DESCRIBE and call.body == json.dumps(DESCRIBE).encode()


def test_calls_filter_by_action_provider_and_outcome(wire: Wire) -> None:
    describe(wire)
    cams(wire)
    wire.tencent("DescribePhoneNumberInfo", DESCRIBE, secret_key="wrong")
    assert len(wire.emu.calls("DescribePhoneNumberInfo")) == 2
    assert [c.action for c in wire.emu.calls(provider="alibaba")] == ["ChatappSyncPhoneNumber"]
    assert len(wire.emu.calls(ok=False)) == 1


def test_unrecognisable_request_is_400_and_recorded(wire: Wire) -> None:
    response = wire.client.post(wire.url, content=b"{}")
    assert response.status_code == 400
    (call,) = wire.emu.calls()
    assert (call.provider, call.ok) == ("unknown", False)


def test_reset_forgets_calls_faults_codes_and_limits(wire: Wire) -> None:
    wire.send_tencent(CN_PHONE, "1234")
    wire.emu.inject("*", Fault.http_500())
    wire.emu.set_rate_limit("DescribePhoneNumberInfo", 1)
    wire.emu.reset()
    assert wire.emu.calls() == [] and wire.emu.code_for(CN_PHONE) is None and wire.emu.messages() == []
    assert [describe(wire).status_code for _ in range(2)] == [200, 200]
