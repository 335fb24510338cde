"""Request signing for Tencent Cloud API 3.0 (TC3-HMAC-SHA256) and Alibaba Cloud RPC APIs (ACS3, v1).

Pure functions, no I/O and no clock: the caller passes the timestamp and nonce, so the clients (which sign)
and the test emulator (which recomputes signatures from what it received, as the clouds do) share one
implementation, and both can be checked byte for byte against ``tests/data/signing-vectors.json``.
Every intermediate string is returned, because a signature mismatch is only debuggable by comparing them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from urllib.parse import quote

TC3_ALGORITHM = "TC3-HMAC-SHA256"
ACS3_ALGORITHM = "ACS3-HMAC-SHA256"
#: SHA-256 of the empty body, the ``x-acs-content-sha256`` of every query-style Alibaba call.
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()

__all__ = [
    "ACS3_ALGORITHM",
    "EMPTY_SHA256",
    "TC3_ALGORITHM",
    "Acs3Signature",
    "Tc3Signature",
    "V1Signature",
    "acs3_parse_authorization",
    "acs3_sign",
    "acs_timestamp",
    "canonical_query",
    "percent_encode",
    "sha256_hex",
    "tc3_parse_authorization",
    "tc3_sign",
    "tc3_signing_key",
    "v1_sign",
]


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _hmac_sha256(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


# --------------------------------------------------------------------------------------------------------
# Alibaba percent-encoding and canonical query (shared by ACS3 and v1)


def percent_encode(value: str) -> str:
    """RFC 3986 encoding as Alibaba signs it: UTF-8, ``A-Za-z0-9-_.~`` kept, all else ``%XX`` uppercase.

    So space is ``%20`` (never ``+``), ``*`` is ``%2A``, ``/`` is ``%2F`` and ``^`` is ``%5E``.
    """
    return quote(value, safe="~")


def canonical_query(params: Mapping[str, str]) -> str:
    """``enc(name)=enc(value)`` for each parameter sorted by name (code-point order), joined with ``&``.

    The clients also send exactly this string as the URL query, so what is signed is what travels.
    """
    return "&".join(f"{percent_encode(k)}={percent_encode(v)}" for k, v in sorted(params.items()))


def acs_timestamp(moment: datetime) -> str:
    """``YYYY-MM-DDThh:mm:ssZ`` in UTC, the form of ``x-acs-date`` and the v1 ``Timestamp`` parameter."""
    if moment.tzinfo is None:
        raise ValueError("acs_timestamp needs an aware datetime")
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# --------------------------------------------------------------------------------------------------------
# Tencent TC3-HMAC-SHA256


@dataclass(frozen=True)
class Tc3Signature:
    date: str
    credential_scope: str
    canonical_request: str
    string_to_sign: str
    signature: str
    authorization: str


def tc3_signing_key(secret_key: str, date: str, service: str = "sms") -> tuple[bytes, bytes, bytes]:
    """``(k_date, k_service, k_signing)``: the TC3 key derivation chain, exposed for vector checks."""
    k_date = _hmac_sha256(("TC3" + secret_key).encode("utf-8"), date)
    k_service = _hmac_sha256(k_date, service)
    k_signing = _hmac_sha256(k_service, "tc3_request")
    return k_date, k_service, k_signing


def tc3_sign(
    *,
    secret_id: str,
    secret_key: str,
    host: str,
    content_type: str,
    body: bytes,
    timestamp: int,
    service: str = "sms",
    extra_headers: Mapping[str, str] | None = None,
) -> Tc3Signature:
    """Sign a ``POST /`` with ``content-type;host`` as the signed headers, exactly as the Tencent SDK does.

    ``extra_headers`` signs more headers, as Tencent's own docs show (``x-tc-action``): names and values are
    lowercased and trimmed, per those docs, and the signed headers are sorted by name.

    ``host`` and ``content_type`` are used as they will be sent (the SDK neither lowercases nor trims them);
    ``host`` must carry ``:port`` when the port is not the scheme's default. The scope date is the UTC date of
    ``timestamp`` — a UTC+8 server at 07:59 local time is still signing "yesterday".
    """
    date = datetime.fromtimestamp(timestamp, tz=timezone.utc).strftime("%Y-%m-%d")
    credential_scope = f"{date}/{service}/tc3_request"
    headers = {"content-type": content_type, "host": host}
    for name, value in (extra_headers or {}).items():
        headers[name.strip().lower()] = value.strip().lower()
    names = sorted(headers)
    canonical_headers = "".join(f"{name}:{headers[name]}\n" for name in names)
    signed_headers = ";".join(names)
    canonical_request = "\n".join(["POST", "/", "", canonical_headers, signed_headers, sha256_hex(body)])
    string_to_sign = "\n".join(
        [TC3_ALGORITHM, str(timestamp), credential_scope, sha256_hex(canonical_request.encode("utf-8"))]
    )
    _, _, k_signing = tc3_signing_key(secret_key, date, service)
    signature = hmac.new(k_signing, string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    authorization = (
        f"{TC3_ALGORITHM} Credential={secret_id}/{credential_scope}, "
        f"SignedHeaders={signed_headers}, Signature={signature}"
    )
    return Tc3Signature(
        date=date,
        credential_scope=credential_scope,
        canonical_request=canonical_request,
        string_to_sign=string_to_sign,
        signature=signature,
        authorization=authorization,
    )


def _split_auth_fields(value: str, algorithm: str, separator: str) -> dict[str, str]:
    prefix = algorithm + " "
    if not value.startswith(prefix):
        raise ValueError(f"authorization does not start with {algorithm!r}")
    fields: dict[str, str] = {}
    for part in value[len(prefix) :].split(separator):
        name, eq, field_value = part.partition("=")
        if not eq or not field_value or name in fields:
            raise ValueError("malformed authorization field")
        fields[name] = field_value
    if set(fields) != {"Credential", "SignedHeaders", "Signature"}:
        raise ValueError("authorization needs exactly Credential, SignedHeaders and Signature")
    return fields


def tc3_parse_authorization(value: str) -> tuple[str, str, list[str], str]:
    """``(secret_id, credential_scope, signed_headers, signature)`` from a TC3 ``Authorization`` header.

    Fields are separated by ``", "`` as the SDK writes them. Raises ``ValueError`` when malformed.
    """
    fields = _split_auth_fields(value, TC3_ALGORITHM, ", ")
    secret_id, slash, scope = fields["Credential"].partition("/")
    if not slash or not secret_id or scope.count("/") != 2:
        raise ValueError("TC3 credential must be <secret id>/<date>/<service>/tc3_request")
    signed_headers = fields["SignedHeaders"].split(";")
    if any(not h for h in signed_headers):
        raise ValueError("empty name in SignedHeaders")
    return secret_id, scope, signed_headers, fields["Signature"]


# --------------------------------------------------------------------------------------------------------
# Alibaba ACS3-HMAC-SHA256


@dataclass(frozen=True)
class Acs3Signature:
    canonical_query_string: str
    canonical_headers: str
    signed_headers: str
    canonical_request: str
    string_to_sign: str
    signature: str
    authorization: str


def acs3_sign(
    *,
    access_key_id: str,
    access_key_secret: str,
    method: str,
    query: Mapping[str, str],
    headers: Mapping[str, str],
    body: bytes = b"",
) -> Acs3Signature:
    """Sign every header in ``headers`` (names lower-cased and sorted, values stripped) plus ``query``.

    Path is always ``/``. The caller decides the header set (the SDK signs all it sends, including
    ``accept`` and ``user-agent``); whatever is signed must then be sent unchanged.
    """
    lowered: dict[str, str] = {}
    for name, header_value in headers.items():
        key = name.lower()
        if key in lowered:
            raise ValueError(f"header {key!r} given twice")
        lowered[key] = header_value.strip()
    names = sorted(lowered)
    canonical_headers = "".join(f"{n}:{lowered[n]}\n" for n in names)
    signed_headers = ";".join(names)
    canonical_query_string = canonical_query(query)
    canonical_request = "\n".join(
        [method.upper(), "/", canonical_query_string, canonical_headers, signed_headers, sha256_hex(body)]
    )
    string_to_sign = f"{ACS3_ALGORITHM}\n{sha256_hex(canonical_request.encode('utf-8'))}"
    signature = hmac.new(access_key_secret.encode("utf-8"), string_to_sign.encode("utf-8"), hashlib.sha256).hexdigest()
    authorization = f"{ACS3_ALGORITHM} Credential={access_key_id},SignedHeaders={signed_headers},Signature={signature}"
    return Acs3Signature(
        canonical_query_string=canonical_query_string,
        canonical_headers=canonical_headers,
        signed_headers=signed_headers,
        canonical_request=canonical_request,
        string_to_sign=string_to_sign,
        signature=signature,
        authorization=authorization,
    )


def acs3_parse_authorization(value: str) -> tuple[str, list[str], str]:
    """``(access_key_id, signed_headers, signature)`` from an ACS3 ``Authorization`` header.

    Fields are separated by a bare ``,`` (no space), as the SDK writes them. Raises ``ValueError`` when
    malformed.
    """
    fields = _split_auth_fields(value, ACS3_ALGORITHM, ",")
    signed_headers = fields["SignedHeaders"].split(";")
    if any(not h for h in signed_headers):
        raise ValueError("empty name in SignedHeaders")
    return fields["Credential"], signed_headers, fields["Signature"]


# --------------------------------------------------------------------------------------------------------
# Alibaba v1 (HMAC-SHA1 RPC signature)


@dataclass(frozen=True)
class V1Signature:
    canonicalized_query_string: str
    string_to_sign: str
    signature: str


def v1_sign(*, access_key_secret: str, method: str, params: Mapping[str, str]) -> V1Signature:
    """Legacy RPC signature: base64 HMAC-SHA1, key ``secret + "&"``, over ``METHOD&%2F&enc(query)``.

    ``params`` are all request parameters (operation fields plus Action, Version, Format, Timestamp,
    SignatureMethod, SignatureVersion, SignatureNonce, AccessKeyId) without ``Signature`` itself.
    """
    if "Signature" in params:
        raise ValueError("params must not include Signature")
    canonicalized = canonical_query(params)
    string_to_sign = f"{method.upper()}&{percent_encode('/')}&{percent_encode(canonicalized)}"
    digest = hmac.new((access_key_secret + "&").encode("utf-8"), string_to_sign.encode("utf-8"), hashlib.sha1).digest()
    return V1Signature(
        canonicalized_query_string=canonicalized,
        string_to_sign=string_to_sign,
        signature=base64.b64encode(digest).decode("ascii"),
    )
