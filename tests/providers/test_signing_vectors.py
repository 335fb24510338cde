"""The signer reproduces every SDK-generated vector byte for byte, and its helpers behave at the edges."""

from __future__ import annotations

import hashlib
import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from provider_vectors import VECTORS, header, headers_without_authorization, vector_ids, vectors_by

from flask_otp_conversion.providers.signing import (
    EMPTY_SHA256,
    acs3_parse_authorization,
    acs3_sign,
    canonical_query,
    percent_encode,
    tc3_parse_authorization,
    tc3_sign,
    tc3_signing_key,
    v1_sign,
)

TC3 = vectors_by("TC3-HMAC-SHA256")
ACS3 = vectors_by("ACS3-HMAC-SHA256")
V1 = vectors_by("HMAC-SHA1")


def test_every_vector_is_covered_by_one_algorithm() -> None:
    assert len(TC3) + len(ACS3) + len(V1) == len(VECTORS["vectors"])
    assert len(TC3) == 6 and len(ACS3) == 5 and len(V1) == 4


# ---- Tencent TC3 ---------------------------------------------------------------------------------------


def _tc3(v: dict[str, Any]) -> Any:
    inputs = v["inputs"]
    return tc3_sign(
        secret_id=inputs["secret_id"],
        secret_key=inputs["secret_key"],
        host=header(v, "Host"),
        content_type=header(v, "Content-Type"),
        body=v["request"]["body"].encode("utf-8"),
        timestamp=inputs["timestamp"],
        service=inputs["service"],
    )


@pytest.mark.parametrize("v", TC3, ids=vector_ids(TC3))
def test_tc3_body_is_json_dumps_defaults_of_params(v: dict[str, Any]) -> None:
    body = json.dumps(v["inputs"]["params"]).encode("utf-8")
    assert body == v["request"]["body"].encode("utf-8")
    assert hashlib.sha256(body).hexdigest() == v["request"]["body_sha256"]


@pytest.mark.parametrize("v", TC3, ids=vector_ids(TC3))
def test_tc3_intermediates_match_vector(v: dict[str, Any]) -> None:
    sig = _tc3(v)
    expected = v["signing"]
    assert sig.date == expected["date"]
    assert sig.credential_scope == expected["credential_scope"]
    assert sig.canonical_request == expected["canonical_request"]
    assert hashlib.sha256(sig.canonical_request.encode()).hexdigest() == expected["hashed_canonical_request"]
    assert sig.string_to_sign == expected["string_to_sign"]
    assert sig.signature == expected["signature"]
    assert sig.authorization == expected["authorization"]


@pytest.mark.parametrize("v", TC3, ids=vector_ids(TC3))
def test_tc3_authorization_equals_header_the_sdk_sent(v: dict[str, Any]) -> None:
    assert _tc3(v).authorization == header(v, "Authorization")


@pytest.mark.parametrize("v", TC3, ids=vector_ids(TC3))
def test_tc3_key_chain_matches_vector(v: dict[str, Any]) -> None:
    k_date, k_service, k_signing = tc3_signing_key(
        v["inputs"]["secret_key"], v["signing"]["date"], v["inputs"]["service"]
    )
    assert k_date.hex() == v["signing"]["k_date_hex"]
    assert k_service.hex() == v["signing"]["k_service_hex"]
    assert k_signing.hex() == v["signing"]["k_signing_hex"]


def test_tc3_scope_date_is_utc_not_local() -> None:
    # 2024-05-31T23:30:00Z is already 07:30 on June 1st in UTC+8; the scope must still say May 31st.
    sig = tc3_sign(
        secret_id="id",
        secret_key="key",
        host="h",
        content_type="application/json",
        body=b"{}",
        timestamp=1717198200,
    )
    assert sig.date == "2024-05-31"
    assert sig.credential_scope == "2024-05-31/sms/tc3_request"


def test_tc3_host_with_port_is_signed_as_given() -> None:
    sig = tc3_sign(
        secret_id="id",
        secret_key="key",
        host="127.0.0.1:8443",
        content_type="application/json",
        body=b"{}",
        timestamp=1717243200,
    )
    assert "\nhost:127.0.0.1:8443\n" in sig.canonical_request


@pytest.mark.parametrize("v", TC3, ids=vector_ids(TC3))
def test_tc3_parse_authorization_round_trips_vector(v: dict[str, Any]) -> None:
    secret_id, scope, signed, signature = tc3_parse_authorization(v["signing"]["authorization"])
    assert secret_id == v["inputs"]["secret_id"]
    assert scope == v["signing"]["credential_scope"]
    assert signed == ["content-type", "host"]
    assert signature == v["signing"]["signature"]


@pytest.mark.parametrize(
    "value",
    [
        "",
        "ACS3-HMAC-SHA256 Credential=a/2024-06-01/sms/tc3_request, SignedHeaders=host, Signature=ab",
        "TC3-HMAC-SHA256 Credential=a/2024-06-01/sms/tc3_request,SignedHeaders=host,Signature=ab",
        "TC3-HMAC-SHA256 Credential=a, SignedHeaders=host, Signature=ab",
        "TC3-HMAC-SHA256 Credential=/2024-06-01/sms/tc3_request, SignedHeaders=host, Signature=ab",
        "TC3-HMAC-SHA256 Credential=a/2024-06-01/sms/tc3_request, SignedHeaders=host",
        "TC3-HMAC-SHA256 Credential=a/2024-06-01/sms/tc3_request, SignedHeaders=, Signature=ab",
        "TC3-HMAC-SHA256 Credential=a/2024-06-01/sms/tc3_request, SignedHeaders=host;, Signature=ab",
        "TC3-HMAC-SHA256 Credential=a/d/s/tc3_request, SignedHeaders=host, Signature=ab, Signature=cd",
    ],
)
def test_tc3_parse_authorization_rejects_malformed(value: str) -> None:
    with pytest.raises(ValueError):
        tc3_parse_authorization(value)


# ---- Alibaba ACS3 --------------------------------------------------------------------------------------


def _acs3(v: dict[str, Any]) -> Any:
    return acs3_sign(
        access_key_id=v["inputs"]["access_key_id"],
        access_key_secret=v["inputs"]["access_key_secret"],
        method=v["request"]["method"],
        query=v["request"]["query"],
        headers=headers_without_authorization(v),
        body=v["request"]["body"].encode("utf-8"),
    )


@pytest.mark.parametrize("v", ACS3, ids=vector_ids(ACS3))
def test_acs3_intermediates_match_vector(v: dict[str, Any]) -> None:
    sig = _acs3(v)
    expected = v["signing"]
    assert sig.canonical_query_string == expected["canonical_query_string"]
    assert sig.canonical_headers == expected["canonical_headers"]
    assert sig.signed_headers == expected["signed_headers"]
    assert sig.canonical_request == expected["canonical_request"]
    assert sig.string_to_sign == expected["string_to_sign"]
    assert sig.signature == expected["signature"]
    assert sig.authorization == expected["authorization"]


@pytest.mark.parametrize("v", ACS3, ids=vector_ids(ACS3))
def test_acs3_authorization_equals_header_the_sdk_sent(v: dict[str, Any]) -> None:
    assert _acs3(v).authorization == header(v, "Authorization")


@pytest.mark.parametrize("v", ACS3, ids=vector_ids(ACS3))
def test_acs3_query_params_are_the_operation_fields(v: dict[str, Any]) -> None:
    assert v["request"]["query"] == v["inputs"]["params"]
    assert canonical_query(v["inputs"]["params"]) == v["signing"]["canonical_query_string"]


@pytest.mark.parametrize("v", ACS3, ids=vector_ids(ACS3))
def test_acs3_content_sha256_header_is_empty_body_hash(v: dict[str, Any]) -> None:
    assert header(v, "x-acs-content-sha256") == EMPTY_SHA256 == v["signing"]["hashed_payload"]


@pytest.mark.parametrize("v", ACS3, ids=vector_ids(ACS3))
def test_acs3_parse_authorization_round_trips_vector(v: dict[str, Any]) -> None:
    key_id, signed, signature = acs3_parse_authorization(v["signing"]["authorization"])
    assert key_id == v["inputs"]["access_key_id"]
    assert ";".join(signed) == v["signing"]["signed_headers"]
    assert signature == v["signing"]["signature"]


@pytest.mark.parametrize(
    "value",
    [
        "",
        "TC3-HMAC-SHA256 Credential=a,SignedHeaders=host,Signature=ab",
        "ACS3-HMAC-SHA256 Credential=a, SignedHeaders=host, Signature=ab",
        "ACS3-HMAC-SHA256 Credential=a,SignedHeaders=host",
        "ACS3-HMAC-SHA256 Credential=,SignedHeaders=host,Signature=ab",
        "ACS3-HMAC-SHA256 Credential=a,SignedHeaders=host;;x,Signature=ab",
        "ACS3-HMAC-SHA256 Credential=a,SignedHeaders=host,Signature=ab,Extra=1",
    ],
)
def test_acs3_parse_authorization_rejects_malformed(value: str) -> None:
    with pytest.raises(ValueError):
        acs3_parse_authorization(value)


def test_acs3_header_names_are_lowercased_and_values_stripped() -> None:
    common = {"access_key_id": "k", "access_key_secret": "s", "method": "POST", "query": {"A": "1"}}
    loose = acs3_sign(**common, headers={"Host": " example.com ", "X-Acs-Action": "SendSms"})
    tight = acs3_sign(**common, headers={"host": "example.com", "x-acs-action": "SendSms"})
    assert loose.signature == tight.signature
    assert loose.signed_headers == "host;x-acs-action"


def test_acs3_refuses_a_header_given_twice_under_different_case() -> None:
    with pytest.raises(ValueError):
        acs3_sign(
            access_key_id="k",
            access_key_secret="s",
            method="POST",
            query={},
            headers={"Host": "a", "host": "b"},
        )


def test_acs3_signature_changes_with_every_signed_input() -> None:
    base: dict[str, Any] = {
        "access_key_id": "k",
        "access_key_secret": "s",
        "method": "POST",
        "query": {"A": "1"},
        "headers": {"host": "h"},
        "body": b"",
    }
    reference = acs3_sign(**base).signature
    for change in (
        {"access_key_secret": "t"},
        {"method": "GET"},
        {"query": {"A": "2"}},
        {"headers": {"host": "i"}},
        {"body": b"x"},
    ):
        assert acs3_sign(**{**base, **change}).signature != reference


# ---- Alibaba v1 ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("v", V1, ids=vector_ids(V1))
def test_v1_intermediates_match_vector(v: dict[str, Any]) -> None:
    sig = v1_sign(
        access_key_secret=v["inputs"]["access_key_secret"],
        method=v["request"]["method"],
        params=v["signing"]["signed_params"],
    )
    assert sig.canonicalized_query_string == v["signing"]["canonicalized_query_string"]
    assert sig.string_to_sign == v["signing"]["string_to_sign"]
    assert sig.signature == v["signing"]["signature"]
    assert v["signing"]["hmac_key"] == v["inputs"]["access_key_secret"] + "&"


@pytest.mark.parametrize("v", V1, ids=vector_ids(V1))
def test_v1_signature_equals_the_one_on_the_sdk_url(v: dict[str, Any]) -> None:
    sent = parse_qs(urlsplit(v["request"]["url"]).query)
    params = {k: vals[0] for k, vals in sent.items() if k != "Signature"}
    assert params == v["signing"]["signed_params"]
    sig = v1_sign(access_key_secret=v["inputs"]["access_key_secret"], method="POST", params=params)
    assert sent["Signature"] == [sig.signature]


def test_v1_refuses_signature_among_params() -> None:
    with pytest.raises(ValueError):
        v1_sign(access_key_secret="s", method="POST", params={"Signature": "x"})


# ---- encoding ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "encoded"),
    [
        ("a b", "a%20b"),
        ("*", "%2A"),
        ("~", "~"),
        ("/", "%2F"),
        ("+", "%2B"),
        ("^", "%5E"),
        ("-_.", "-_."),
        ('{"code":"1234"}', "%7B%22code%22%3A%221234%22%7D"),
        ("签名", "%E7%AD%BE%E5%90%8D"),
        ("%", "%25"),
    ],
)
def test_percent_encode_follows_rfc3986_with_uppercase_hex(raw: str, encoded: str) -> None:
    assert percent_encode(raw) == encoded


def test_canonical_query_sorts_by_name_and_keeps_empty_values() -> None:
    assert canonical_query({"b": "2", "B": "x y", "a": ""}) == "B=x%20y&a=&b=2"


def test_canonical_query_of_nothing_is_empty() -> None:
    assert canonical_query({}) == ""


def test_tc3_extra_signed_headers_are_lowercased_sorted_and_listed() -> None:
    from flask_otp_conversion.providers.signing import tc3_sign

    signed = tc3_sign(
        secret_id="AKIDexample",
        secret_key="key",
        host="sms.tencentcloudapi.com",
        content_type="application/json",
        body=b"{}",
        timestamp=1717243200,
        extra_headers={"X-TC-Action": " ReportConversion "},
    )
    assert "host:sms.tencentcloudapi.com\nx-tc-action:reportconversion\n\ncontent-type;host;x-tc-action\n" in (
        signed.canonical_request
    )
    assert "SignedHeaders=content-type;host;x-tc-action," in signed.authorization
