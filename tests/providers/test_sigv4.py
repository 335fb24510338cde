"""SigV4 from scratch, byte for byte against botocore's sms-voice vectors and AWS's published suite examples."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from flask_otp_conversion.providers.sigv4 import amz_date, canonical_query, parse_authorization, sigv4_sign

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parent.parent / "data" / "provider-vectors-more.json").read_text(encoding="utf-8")
)
AWS_VECTORS = [v["id"] for v in VECTORS["vectors"] if v["provider"] == "aws"]
SIGNED = ("content-type", "host", "x-amz-date", "x-amz-target")


def vector(vector_id: str) -> dict[str, Any]:
    for v in VECTORS["vectors"]:
        if v["id"] == vector_id:
            return copy.deepcopy(v)
    raise KeyError(vector_id)


def sign(v: dict[str, Any]) -> Any:
    inputs = v["inputs"]
    headers = {name: value for name, value in v["request"]["headers"] if name.lower() in SIGNED}
    return sigv4_sign(
        access_key_id=inputs["access_key_id"],
        secret_access_key=inputs["secret_access_key"],
        region=inputs["region"],
        service=inputs["service"],
        method=v["request"]["method"],
        path=v["request"]["path"],
        headers=headers,
        body=v["request"]["body"].encode("utf-8"),
        amz_date=inputs["timestamp"],
    )


@pytest.mark.parametrize(
    "field",
    [
        "credential_scope",
        "signed_headers",
        "canonical_headers",
        "hashed_payload",
        "canonical_request",
        "hashed_canonical_request",
        "string_to_sign",
        "signature",
        "authorization",
    ],
)
@pytest.mark.parametrize("vector_id", AWS_VECTORS)
def test_every_signing_step_is_the_vectors(vector_id: str, field: str) -> None:
    v = vector(vector_id)
    assert getattr(sign(v), field) == v["signing"][field]


@pytest.mark.parametrize("key", ["k_date", "k_region", "k_service", "k_signing"])
@pytest.mark.parametrize("vector_id", AWS_VECTORS)
def test_derived_keys_are_the_vectors(vector_id: str, key: str) -> None:
    v = vector(vector_id)
    assert getattr(sign(v), key).hex() == v["signing"][f"{key}_hex"]


def test_amz_date_is_utc_basic_format() -> None:
    assert amz_date(1717243200.9) == "20240601T120000Z"


EXAMPLE = {"access_key_id": "AKIDEXAMPLE", "secret_access_key": "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"}
SUITE_HEADERS = {"Host": "example.amazonaws.com", "X-Amz-Date": "20150830T123600Z"}


@pytest.mark.parametrize(
    ("method", "query", "signature"),
    [
        ("GET", [], "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"),  # get-vanilla
        ("POST", [], "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"),  # post-vanilla
        (  # get-vanilla-query-order-key-case
            "GET",
            [("Param2", "value2"), ("Param1", "value1")],
            "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
        ),
    ],
)
def test_aws_suite_examples(method: str, query: list[tuple[str, str]], signature: str) -> None:
    signed = sigv4_sign(
        **EXAMPLE,
        region="us-east-1",
        service="service",
        method=method,
        path="/",
        headers=SUITE_HEADERS,
        body=b"",
        amz_date="20150830T123600Z",
        query=query,
    )
    assert signed.signature == signature


def test_header_values_are_trimmed_and_inner_spaces_collapsed() -> None:
    signed = sigv4_sign(
        **EXAMPLE,
        region="us-east-1",
        service="s",
        method="POST",
        path="/",
        headers={"Host": "h", "X-Amz-Date": "20150830T123600Z", "X-Odd": "  a   b  "},
        body=b"",
        amz_date="20150830T123600Z",
    )
    assert "x-odd:a b\n" in signed.canonical_headers


def test_session_token_header_is_signed_when_given() -> None:
    headers = {"Host": "h", "X-Amz-Date": "20240601T120000Z", "X-Amz-Security-Token": "tok"}
    signed = sigv4_sign(
        **EXAMPLE,
        region="us-east-1",
        service="sms-voice",
        method="POST",
        path="/",
        headers=headers,
        body=b"{}",
        amz_date="20240601T120000Z",
    )
    assert signed.signed_headers == "host;x-amz-date;x-amz-security-token"


def test_canonical_query_encodes_and_sorts() -> None:
    assert canonical_query([("b", "x y"), ("a", "2"), ("a", "1")]) == "a=1&a=2&b=x%20y"


def test_authorization_parses_back_into_its_parts() -> None:
    parsed = parse_authorization(vector("A-aws-PutMessageFeedback")["signing"]["authorization"])
    assert (parsed.access_key_id, parsed.date, parsed.region, parsed.service) == (
        "AKIASETAEXAMPLE00001",
        "20240601",
        "us-east-1",
        "sms-voice",
    )
    assert parsed.signed_headers == ["content-type", "host", "x-amz-date", "x-amz-target"]


@pytest.mark.parametrize(
    "value", ["", "AWS4-HMAC-SHA256 Credential=AKID/20240601/us-east-1/sms-voice/aws4_request", "Basic dXNlcjpwYXNz"]
)
def test_a_malformed_authorization_is_refused(value: str) -> None:
    with pytest.raises(ValueError):
        parse_authorization(value)


def test_a_header_given_twice_in_other_case_is_refused() -> None:
    with pytest.raises(ValueError, match="twice"):
        sigv4_sign(
            **EXAMPLE,
            region="r",
            service="s",
            method="POST",
            path="/",
            headers={"Host": "a", "host": "b"},
            body=b"",
            amz_date="20240601T120000Z",
        )
