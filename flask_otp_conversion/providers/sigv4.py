"""AWS Signature Version 4 (``AWS4-HMAC-SHA256``), from scratch: pure functions, no I/O and no clock.

The client (which signs) and the emulator (which recomputes the signature from the bytes it received, as AWS
does) share this one implementation, proven against ``tests/data/provider-vectors-more.json`` (botocore's
requests for ``sms-voice``) and AWS's own test-suite examples. Every intermediate string is returned, because
a signature mismatch is only debuggable by comparing them. Steps as in reference PROVIDERS-MORE.md 2.2.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import quote

__all__ = [
    "ALGORITHM",
    "ParsedAuthorization",
    "SigV4Signature",
    "amz_date",
    "canonical_query",
    "parse_authorization",
    "signing_keys",
    "sigv4_sign",
]

ALGORITHM = "AWS4-HMAC-SHA256"
_SPACES = re.compile(r" +")
_AUTHORIZATION = re.compile(
    r"^AWS4-HMAC-SHA256 Credential=([^/,\s]+)/(\d{8})/([^/,\s]+)/([^/,\s]+)/aws4_request,\s*"
    r"SignedHeaders=([a-z0-9;._-]+),\s*Signature=([0-9a-f]{64})$"
)


@dataclass(frozen=True)
class SigV4Signature:
    amz_date: str
    credential_scope: str
    signed_headers: str
    canonical_headers: str
    hashed_payload: str
    canonical_request: str
    string_to_sign: str
    k_date: bytes
    k_region: bytes
    k_service: bytes
    k_signing: bytes
    signature: str
    authorization: str

    @property
    def hashed_canonical_request(self) -> str:
        return hashlib.sha256(self.canonical_request.encode("utf-8")).hexdigest()


def amz_date(moment: float) -> str:
    """``X-Amz-Date``: UTC ``YYYYMMDDTHHMMSSZ``."""
    return datetime.fromtimestamp(moment, tz=timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode("utf-8"), hashlib.sha256).digest()


def signing_keys(secret_access_key: str, date: str, region: str, service: str) -> tuple[bytes, bytes, bytes, bytes]:
    """(kDate, kRegion, kService, kSigning): the HMAC chain from ``"AWS4" + secret``."""
    k_date = _hmac(("AWS4" + secret_access_key).encode("utf-8"), date)
    k_region = _hmac(k_date, region)
    k_service = _hmac(k_region, service)
    return k_date, k_region, k_service, _hmac(k_service, "aws4_request")


def canonical_query(pairs: Iterable[tuple[str, str]]) -> str:
    """Name=value pairs RFC 3986-encoded (``A-Za-z0-9-_.~`` kept), sorted by name then value."""
    encoded = sorted((quote(name, safe="-_.~"), quote(value, safe="-_.~")) for name, value in pairs)
    return "&".join(f"{name}={value}" for name, value in encoded)


def _canonical_headers(headers: Mapping[str, str]) -> tuple[str, str]:
    lowered: dict[str, str] = {}
    for name, value in headers.items():
        key = name.strip().lower()
        if key in lowered:
            raise ValueError(f"header {key!r} given twice")
        lowered[key] = _SPACES.sub(" ", value.strip())
    names = sorted(lowered)
    return "".join(f"{name}:{lowered[name]}\n" for name in names), ";".join(names)


def sigv4_sign(
    *,
    access_key_id: str,
    secret_access_key: str,
    region: str,
    service: str,
    method: str,
    path: str,
    headers: Mapping[str, str],
    body: bytes,
    amz_date: str,
    query: Iterable[tuple[str, str]] = (),
) -> SigV4Signature:
    """Sign a request. ``headers`` are exactly the headers to sign (``host``, ``x-amz-date`` and, with
    temporary credentials, ``x-amz-security-token`` among them), with the values sent; ``path`` is the
    already URI-encoded request path; ``body`` the exact bytes sent (their SHA-256 is the payload hash)."""
    if not re.fullmatch(r"\d{8}T\d{6}Z", amz_date):
        raise ValueError("amz_date must be YYYYMMDDTHHMMSSZ")
    date = amz_date[:8]
    canonical, signed = _canonical_headers(headers)
    hashed_payload = hashlib.sha256(body).hexdigest()
    canonical_request = "\n".join(
        [method.upper(), path or "/", canonical_query(query), canonical, signed, hashed_payload]
    )
    scope = f"{date}/{region}/{service}/aws4_request"
    string_to_sign = "\n".join(
        [ALGORITHM, amz_date, scope, hashlib.sha256(canonical_request.encode("utf-8")).hexdigest()]
    )
    k_date, k_region, k_service, k_signing = signing_keys(secret_access_key, date, region, service)
    signature = hmac.new(k_signing, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    authorization = (
        f"{ALGORITHM} Credential={access_key_id}/{scope}, SignedHeaders={signed}, Signature={signature}"
    )
    return SigV4Signature(
        amz_date=amz_date,
        credential_scope=scope,
        signed_headers=signed,
        canonical_headers=canonical,
        hashed_payload=hashed_payload,
        canonical_request=canonical_request,
        string_to_sign=string_to_sign,
        k_date=k_date,
        k_region=k_region,
        k_service=k_service,
        k_signing=k_signing,
        signature=signature,
        authorization=authorization,
    )


@dataclass(frozen=True)
class ParsedAuthorization:
    access_key_id: str
    date: str
    region: str
    service: str
    signed_headers: list[str]
    signature: str


def parse_authorization(value: str) -> ParsedAuthorization:
    """The parts of an ``AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...`` header;
    ValueError when it is not one."""
    found = _AUTHORIZATION.match(value.strip())
    if found is None:
        raise ValueError("not an AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=... header")
    key, date, region, service, signed, signature = found.groups()
    return ParsedAuthorization(key, date, region, service, signed.split(";"), signature)
