"""How failures are classified: the reference's canned error replies, the code tables, and transport trouble.

The canned replies are served over HTTP exactly as recorded (status, headers, body) and go through the
client's real call path; the expected class of each is written out here, not derived from the code.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import httpx
import pytest
from provider_factories import alibaba, tencent
from provider_vectors import VECTORS, error_case
from wire_server import Reply, recording_server

from flask_otp_conversion.delivery.breaker import Breaker, Opened
from flask_otp_conversion.delivery.policy import Answer, DeliveryPolicy, Retry, Row, classify
from flask_otp_conversion.providers import (
    AuthError,
    PermanentError,
    Provider,
    ProviderError,
    RetryableError,
    ThrottledError,
)
from flask_otp_conversion.providers import alibaba as alibaba_module
from flask_otp_conversion.providers import tencent as tencent_module
from flask_otp_conversion.providers.base import ConversionReport

pytestmark = pytest.mark.timeout(30)

NOW = datetime.now(timezone.utc)


def _report(provider: Provider) -> None:
    provider.report_conversion(ConversionReport("5000:1045", "+6581234567", verified_at=time.time() - 10))


def _send(provider: Provider) -> None:
    provider.send_otp("+8613800000000", "1234")


def _stats(provider: Provider) -> None:
    provider.statistics(NOW, NOW)


# id -> (how to build the client, what to call, expected class, code, retry_after seconds)
CASES: dict[
    str, tuple[Callable[[str], Provider], Callable[[Provider], None], type[ProviderError], str, Any]
] = {
    "A-err-tc-RequestLimitExceeded": (tencent, _report, ThrottledError, "RequestLimitExceeded", None),
    "A-err-tc-AuthFailure.SignatureFailure": (
        tencent,
        _report,
        AuthError,
        "AuthFailure.SignatureFailure",
        None,
    ),
    "A-err-tc-http502": (tencent, _report, RetryableError, "ServerNetworkError", None),
    "A-err-tc-SendSms-per-number-failure": (
        tencent,
        _send,
        PermanentError,
        "LimitExceeded.PhoneNumberThirtySecondLimit",
        None,
    ),
    "A-err-ali-SendSms-BUSINESS_LIMIT_CONTROL-http200": (
        lambda url: alibaba(url, site="china"),
        _send,
        PermanentError,
        "isv.BUSINESS_LIMIT_CONTROL",
        None,
    ),
    "A-err-ali-Throttling.User-http400": (
        lambda url: alibaba(url, site="china"),
        _send,
        ThrottledError,
        "Throttling.User",
        None,
    ),
    "A-err-ali-SignatureDoesNotMatch-http400": (
        lambda url: alibaba(url, site="china"),
        _send,
        AuthError,
        "SignatureDoesNotMatch",
        None,
    ),
    "A-err-ali-ServiceUnavailable-http503": (
        lambda url: alibaba(url, site="china"),
        _send,
        RetryableError,
        "ServiceUnavailable",
        None,
    ),
    "A-err-ali-throttle-retry-after-http429": (
        lambda url: alibaba(url, site="china"),
        _send,
        ThrottledError,
        "Throttling.Api",
        1.5,
    ),
    "A-err-ali-SmsConversion-ResponseCode-http200": (
        alibaba,
        _report,
        PermanentError,
        "ILLUSTRATIVE_NON_OK_CODE",
        None,
    ),
    "A-err-ali-cams-System.LimitControl-http400": (
        lambda url: alibaba(url, cust_space_id="2934839"),
        _stats,
        ThrottledError,
        "System.LimitControl",
        None,
    ),
}


def test_every_canned_error_reply_has_an_expectation() -> None:
    assert sorted(CASES) == sorted(case["id"] for case in VECTORS["error_handling"])


def _raise_for(case_id: str) -> ProviderError:
    case = error_case(case_id)
    build, call, *_ = CASES[case_id]
    with (
        recording_server(Reply.canned(case["response"])) as server,
        build(server.url) as provider,
        pytest.raises(ProviderError) as info,
    ):
        call(provider)
    assert len(server.requests) == 1
    return info.value


@pytest.mark.parametrize("case_id", sorted(CASES))
def test_canned_error_reply_is_classified(case_id: str) -> None:
    _, _, expected_class, _, _ = CASES[case_id]
    assert type(_raise_for(case_id)) is expected_class


@pytest.mark.parametrize("case_id", sorted(CASES))
def test_canned_error_reply_keeps_code_status_and_retry_after(case_id: str) -> None:
    _, _, _, code, retry_after = CASES[case_id]
    error = _raise_for(case_id)
    assert error.code == code
    assert error.status == error_case(case_id)["response"]["status"]
    assert error.retry_after == retry_after


@pytest.mark.parametrize("case_id", sorted(CASES))
def test_canned_error_reply_keeps_the_request_id(case_id: str) -> None:
    case = error_case(case_id)
    outcome = case["sdk_outcome"]
    expected = outcome.get("request_id") or (outcome.get("parsed_body") or outcome.get("parsed") or {}).get(
        "RequestId"
    )
    assert _raise_for(case_id).request_id == (expected or "")


# ---- the code tables -----------------------------------------------------------------------------------

TENCENT_TABLE = [
    # transient / throttling
    ("RequestLimitExceeded", "ReportConversion", ThrottledError),
    ("RequestLimitExceeded.UinLimitExceeded", "ReportConversion", ThrottledError),
    ("RequestLimitExceeded.GlobalRegionUinLimitExceeded", "SendSms", ThrottledError),
    ("RequestLimitExceeded.IPLimitExceeded", "SendSms", ThrottledError),
    ("LimitExceeded.GlobalSmsSendingRateLimit", "SendSms", ThrottledError),
    ("InternalError", "ReportConversion", RetryableError),
    ("InternalError.Timeout", "SendSms", RetryableError),
    ("InternalError.SendAndRecvFail", "ReportConversion", RetryableError),
    ("InternalError.UnknownError", "ReportConversion", RetryableError),
    ("InternalError.OtherError", "ReportConversion", RetryableError),
    # clock: a retry carries a fresh signature
    ("AuthFailure.SignatureExpire", "ReportConversion", RetryableError),
    ("InternalError.RequestTimeException", "ReportConversion", RetryableError),
    # auth / permission
    ("AuthFailure.SignatureFailure", "ReportConversion", AuthError),
    ("AuthFailure.SecretIdNotFound", "SendSms", AuthError),
    ("AuthFailure.InvalidSecretId", "ReportConversion", AuthError),
    ("AuthFailure.UnauthorizedOperation", "ReportConversion", AuthError),
    ("UnauthorizedOperation.SmsSdkAppIdVerifyFail", "ReportConversion", AuthError),
    ("UnauthorizedOperation.ServiceSuspendDueToArrears", "SendSms", AuthError),
    ("IpNotInWhitelist", "ReportConversion", AuthError),
    ("IpInBlacklist", "ReportConversion", AuthError),
    # quota / per-number policy: permanent for a send, wait-and-retry for a report
    ("LimitExceeded.PhoneNumberThirtySecondLimit", "SendSms", PermanentError),
    ("LimitExceeded.AppDailyLimit", "SendSms", PermanentError),
    ("FailedOperation.InsufficientBalanceInSmsPackage", "SendSms", PermanentError),
    ("LimitExceeded.AppDailyLimit", "ReportConversion", RetryableError),
    ("LimitExceeded.DeliveryFrequencyLimit", "ReportConversion", RetryableError),
    ("FailedOperation.InsufficientBalanceInSmsPackage", "ReportConversion", RetryableError),
    # not allow-listed for ReportConversion: wait for support, like a permission
    ("UnsupportedRegion", "ReportConversion", AuthError),
    ("UnsupportedOperation", "ReportConversion", AuthError),
    ("UnsupportedRegion", "SendSms", PermanentError),
    # permanent request errors
    ("InvalidParameter", "ReportConversion", PermanentError),
    ("InvalidParameterValue.IncorrectPhoneNumber", "SendSms", PermanentError),
    ("InvalidParameterValue.BeginTimeVerifyFail", "SendStatusStatistics", PermanentError),
    ("MissingParameter", "ReportConversion", PermanentError),
    ("FailedOperation.PhoneNumberInBlacklist", "SendSms", PermanentError),
    ("FailedOperation.JsonParseFail", "ReportConversion", PermanentError),
    ("InternalError.RestApiInterfaceNotExist", "ReportConversion", PermanentError),
    ("InvalidAction", "ReportConversion", PermanentError),
    ("NoSuchVersion", "ReportConversion", PermanentError),
    ("SomethingNobodyDocumented", "ReportConversion", PermanentError),
]


@pytest.mark.parametrize(("code", "action", "expected"), TENCENT_TABLE)
def test_tencent_code_is_classified(code: str, action: str, expected: type[ProviderError]) -> None:
    assert type(tencent_module.classify_error(code, "m", action=action)) is expected


def test_tencent_quota_code_on_report_waits_an_hour() -> None:
    error = tencent_module.classify_error("LimitExceeded.AppDailyLimit", "m", action="ReportConversion")
    assert error.retry_after == tencent_module.QUOTA_RETRY_AFTER == 3600.0


ALIBABA_TABLE = [
    ("Throttling", "report", 400, ThrottledError),
    ("Throttling.User", "send", 400, ThrottledError),
    ("Throttling.Api", "report", 400, ThrottledError),
    ("System.LimitControl", "other", 400, ThrottledError),
    ("", "report", 429, ThrottledError),
    ("ServiceUnavailable", "report", 503, RetryableError),
    ("InternalError", "report", 500, RetryableError),
    ("isp.SYSTEM_ERROR", "send", 200, RetryableError),
    ("SignatureNonceUsed", "report", 400, RetryableError),
    ("InvalidTimeStamp.Expired", "report", 400, RetryableError),
    ("SomethingNobodyDocumented", "report", 502, RetryableError),
    ("InvalidAccessKeyId.NotFound", "report", 404, AuthError),
    ("InvalidAccessKeyId.Inactive", "report", 400, AuthError),
    ("SignatureDoesNotMatch", "send", 400, AuthError),
    ("IncompleteSignature", "report", 400, AuthError),
    ("InvalidSecurityToken.Expired", "report", 400, AuthError),
    ("Forbidden.RAM", "report", 403, AuthError),
    ("isp.RAM_PERMISSION_DENY", "send", 200, AuthError),
    ("Ram.PermissionDeny", "other", 400, AuthError),
    ("isv.ACCOUNT_NOT_EXISTS", "send", 200, AuthError),
    ("isv.PRODUCT_UN_SUBSCRIPT", "report", 200, AuthError),
    ("Product.Unsubscript", "other", 400, AuthError),
    ("isv.DENY_IP_RANGE", "report", 200, AuthError),
    ("Unknown.ResourceOwnerId", "other", 400, AuthError),
    ("isv.BUSINESS_LIMIT_CONTROL", "send", 200, PermanentError),
    ("isv.DAY_LIMIT_CONTROL", "send", 200, PermanentError),
    ("isv.AMOUNT_NOT_ENOUGH", "send", 200, PermanentError),
    ("isv.BUSINESS_LIMIT_CONTROL", "report", 200, RetryableError),
    ("isv.OUT_OF_SERVICE", "report", 200, RetryableError),
    ("MissingParameter", "report", 400, PermanentError),
    ("InvalidParameter", "report", 400, PermanentError),
    ("isv.MOBILE_NUMBER_ILLEGAL", "send", 200, PermanentError),
    ("isv.INVALID_JSON_PARAM", "send", 200, PermanentError),
    ("InvalidAction.NotFound", "report", 404, PermanentError),
    ("InvalidVersion", "report", 400, PermanentError),
    ("SomethingNobodyDocumented", "report", 200, PermanentError),
]


@pytest.mark.parametrize(("code", "operation", "status", "expected"), ALIBABA_TABLE)
def test_alibaba_code_is_classified(
    code: str, operation: Any, status: int, expected: type[ProviderError]
) -> None:
    error = alibaba_module.classify_error(code, "m", action="X", operation=operation, status=status)
    assert type(error) is expected


def test_alibaba_retry_after_header_makes_any_error_a_throttle() -> None:
    error = alibaba_module.classify_error(
        "InvalidParameter", "m", action="X", operation="report", status=400, retry_after=2.0
    )
    assert type(error) is ThrottledError and error.retry_after == 2.0


# ---- over the wire: replies that are not what they should be ------------------------------------------

JSON = (("Content-Type", "application/json"),)
HTML = (("Content-Type", "text/html"),)
MOVED = (("Location", "https://login.proxy.example/"), ("Content-Type", "text/html"))


def _tc_error(code: str, status: int = 200) -> Reply:
    payload = {"Response": {"Error": {"Code": code, "Message": "m"}, "RequestId": "r"}}
    return Reply(status=status, headers=JSON, body=json.dumps(payload).encode())


@pytest.mark.parametrize(
    ("reply", "expected", "code"),
    [
        (Reply(body=b"<html>oops</html>"), RetryableError, "MalformedResponse"),
        (Reply(body=b'{"Response": {"ReportConversionStatus": {}}}'), RetryableError, "MalformedResponse"),
        (Reply(body=b"[1, 2]"), RetryableError, "MalformedResponse"),
        (Reply(status=500, body=b"{}"), RetryableError, "ServerNetworkError"),
        (Reply(status=429, body=b""), RetryableError, "ServerNetworkError"),
        (Reply(status=404, headers=HTML, body=b"<html>not found</html>"), RetryableError, "ServerNetworkError"),
        (Reply(status=403, headers=HTML, body=b"<html>denied by a WAF</html>"), RetryableError, "ServerNetworkError"),
        (Reply(status=400, body=b'{"message": "bad request"}'), RetryableError, "ServerNetworkError"),
        (Reply(status=400, body=b'{"Response": {"Error": {"Message": "m"}}}'), RetryableError, "ServerNetworkError"),
        (Reply(body=b'{"Response": {"Error": {"Code": 42}}}'), RetryableError, "MalformedResponse"),
        (Reply(status=301, headers=MOVED), RetryableError, "ServerNetworkError"),
        (Reply(status=302, headers=MOVED, body=b"<html>login</html>"), RetryableError, "ServerNetworkError"),
        (Reply(body=b'{"Response": {"ReportConver', length=100), RetryableError, "ClientNetworkError"),
        (_tc_error("InvalidParameter", status=400), PermanentError, "InvalidParameter"),
        (_tc_error("InternalError", status=500), RetryableError, "InternalError"),
    ],
    ids=[
        "200-html",
        "200-missing-fields",
        "200-json-array",
        "500-no-error",
        "429-empty",
        "404-html",
        "403-html",
        "400-foreign-json",
        "400-error-without-code",
        "200-error-code-not-a-string",
        "301-not-followed",
        "302-not-followed",
        "truncated",
        "error-body-on-400",
        "error-body-on-500",
    ],
)
def test_tencent_odd_reply_is_classified(reply: Reply, expected: type[ProviderError], code: str) -> None:
    with (
        recording_server(reply) as server,
        tencent(server.url) as provider,
        pytest.raises(ProviderError) as info,
    ):
        _report(provider)
    assert type(info.value) is expected and info.value.code == code


@pytest.mark.parametrize(
    ("reply", "expected", "code", "retry_after"),
    [
        (Reply(body=b"<xml/>"), RetryableError, "MalformedResponse", None),
        (Reply(body=b'{"RequestId": "r"}'), RetryableError, "MalformedResponse", None),
        (Reply(status=500, body=b"<html/>"), RetryableError, "", None),
        (Reply(status=404, headers=HTML, body=b"<html/>"), RetryableError, "", None),
        (Reply(status=403, headers=HTML, body=b"<html>denied by a WAF</html>"), RetryableError, "", None),
        (Reply(status=400, body=b'{"code": "NotAlibaba"}'), RetryableError, "", None),
        (Reply(status=400, body=b'{"Code": 400}'), RetryableError, "", None),
        (Reply(body=b'{"ResponseCode": 0}'), RetryableError, "MalformedResponse", None),
        (Reply(status=302, headers=MOVED), RetryableError, "", None),
        (Reply(status=307, headers=MOVED, body=b'{"Code": "InvalidParameter"}'), RetryableError, "", None),
        (Reply(body=b'{"ResponseCode": "O', length=100), RetryableError, "ClientNetworkError", None),
        (Reply(status=429, body=b""), ThrottledError, "", None),
        (Reply(status=503, headers=(("x-acs-retry-after", "250"),), body=b""), ThrottledError, "", 0.25),
        (
            Reply(status=400, headers=(("x-acs-retry-after", "soon"),), body=b'{"Code": "Throttling"}'),
            ThrottledError,
            "Throttling",
            None,
        ),
        (
            Reply(body=b'{"ResponseCode": "isv.OUT_OF_SERVICE", "RequestId": "r"}'),
            RetryableError,
            None,
            3600.0,
        ),
    ],
    ids=[
        "200-xml",
        "200-no-code",
        "500-html",
        "404-html",
        "403-html",
        "400-foreign-json",
        "400-code-not-a-string",
        "200-code-not-a-string",
        "302-not-followed",
        "307-with-a-code-not-followed",
        "truncated",
        "429-empty",
        "503-retry-after",
        "bad-header",
        "quota",
    ],
)
def test_alibaba_odd_reply_is_classified(
    reply: Reply, expected: type[ProviderError], code: str | None, retry_after: float | None
) -> None:
    with (
        recording_server(reply) as server,
        alibaba(server.url) as provider,
        pytest.raises(ProviderError) as info,
    ):
        _report(provider)
    assert type(info.value) is expected
    assert info.value.retry_after == retry_after
    if code is not None:
        assert info.value.code == code


# ---- transport failures --------------------------------------------------------------------------------

BUILDERS: dict[str, Callable[..., Provider]] = {"tencent": tencent, "alibaba": alibaba}


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_read_timeout_is_retryable_with_code_timeout(name: str) -> None:
    timeout = httpx.Timeout(connect=2.0, read=0.2, write=2.0, pool=2.0)
    with (
        recording_server(Reply(delay=1.0)) as server,
        BUILDERS[name](server.url, timeout=timeout) as provider,
        pytest.raises(RetryableError) as info,
    ):
        _report(provider)
    assert type(info.value) is RetryableError and info.value.code == "Timeout"


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_dropped_connection_is_retryable_with_code_client_network_error(name: str) -> None:
    with (
        recording_server(Reply(drop=True)) as server,
        BUILDERS[name](server.url) as provider,
        pytest.raises(RetryableError) as info,
    ):
        _report(provider)
    assert type(info.value) is RetryableError and info.value.code == "ClientNetworkError"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_refused_connection_is_retryable_with_code_client_network_error(name: str) -> None:
    with (
        BUILDERS[name](f"http://127.0.0.1:{_closed_port()}") as provider,
        pytest.raises(RetryableError) as info,
    ):
        _report(provider)
    assert info.value.code == "ClientNetworkError"


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_no_retry_happens_inside_the_client(name: str) -> None:
    with (
        recording_server(Reply(status=503, body=b"{}")) as server,
        BUILDERS[name](server.url) as provider,
        pytest.raises(RetryableError),
    ):
        _report(provider)
    assert len(server.requests) == 1


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_an_answer_that_trickles_in_is_a_timeout_at_the_total_deadline(name: str) -> None:
    # Each byte comes well within the read timeout; only the total deadline (connect + read) can end it.
    timeout = httpx.Timeout(2.0, connect=0.5, read=0.5)
    with (
        recording_server(Reply(body=b'{"Response": {}}', drip=0.2)) as server,
        BUILDERS[name](server.url, timeout=timeout) as provider,
        pytest.raises(RetryableError) as info,
    ):
        _report(provider)
    assert type(info.value) is RetryableError and info.value.code == "Timeout"


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_an_answer_over_the_size_bound_is_retryable_with_code_response_too_large(name: str) -> None:
    with (
        recording_server(Reply(body=b" " * (5 << 20))) as server,
        BUILDERS[name](server.url) as provider,
        pytest.raises(RetryableError) as info,
    ):
        _report(provider)
    assert type(info.value) is RetryableError and info.value.code == "ResponseTooLarge"


# ---- what the reporter makes of answers that are not the provider's -------------------------------------

NOT_THE_PROVIDERS = {
    "302-from-a-proxy": Reply(status=302, headers=MOVED, body=b"<html>moved</html>"),
    "404-html-from-a-gateway": Reply(status=404, headers=HTML, body=b"<html><h1>404 Not Found</h1></html>"),
}


def _answer_of(name: str, reply: Reply) -> Answer:
    with recording_server(reply) as server, BUILDERS[name](server.url) as provider:
        try:
            _report(provider)
        except ProviderError as exc:
            return classify(exc)
    pytest.fail("the call did not fail")


def _policy(threshold: int) -> DeliveryPolicy:
    return DeliveryPolicy(cap=100.0, concurrency=1, max_report_age=86400.0, breaker=Breaker(threshold=threshold))


@pytest.mark.parametrize("reply_id", sorted(NOT_THE_PROVIDERS))
@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_an_answer_not_from_the_provider_keeps_the_row_pending(name: str, reply_id: str) -> None:
    now = time.time()
    decision = _policy(5).decide(_answer_of(name, NOT_THE_PROVIDERS[reply_id]), Row(now, 0), now)
    assert isinstance(decision.verdict, Retry)


@pytest.mark.parametrize("reply_id", sorted(NOT_THE_PROVIDERS))
@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_answers_not_from_the_provider_open_the_breaker(name: str, reply_id: str) -> None:
    now = time.time()
    policy = _policy(2)
    decisions = [policy.decide(_answer_of(name, NOT_THE_PROVIDERS[reply_id]), Row(now, 0), now) for _ in range(2)]
    assert isinstance(decisions[-1].transition, Opened)
