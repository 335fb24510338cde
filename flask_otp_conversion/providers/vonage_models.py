"""Pydantic models of the Vonage wire: the SMS API (``POST /sms/json``) and the Conversion API
(``POST /conversions/sms``), and the request signature (``sig``) both accept.

Requests are form parameters with Vonage's hyphenated names (``message-id``, ``client-ref``); booleans go as
``true``/``false`` (the docs' form; the Python SDK's ``str(True)`` would send ``True``); absent fields are
left out, so what is signed is exactly what is sent. Answers ignore unknown fields: every value of an SMS
answer is a string, and a failed message has ``error-text`` instead of a ``message-id``.

The signature (reference 3.3): ``&name=value`` for every parameter but ``sig``, sorted by name, with ``&``
and ``=`` in values replaced by ``_`` and nothing URL-encoded; then hex ``HMAC-<method>(secret, string)``, or
for ``md5hash`` hex ``MD5(string + secret)``. Pure functions, shared by the client and the emulator.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "CONVERSION_TIME_FORMAT",
    "ConversionRequest",
    "SignatureMethod",
    "SmsMessage",
    "SmsRequest",
    "SmsResponse",
    "VonageProblem",
    "VonageSignature",
    "conversion_time",
    "sign_params",
]

SignatureMethod = Literal["md5hash", "md5", "sha1", "sha256", "sha512"]
#: The Conversion API's ``timestamp``: UTC, a space between date and time, no zone (reference 0.2).
CONVERSION_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
_HMAC_DIGESTS = {"md5": hashlib.md5, "sha1": hashlib.sha1, "sha256": hashlib.sha256, "sha512": hashlib.sha512}


def conversion_time(unix_seconds: float) -> str:
    """``yyyy-MM-dd HH:mm:ss`` in UTC, whole seconds."""
    return datetime.fromtimestamp(int(unix_seconds), tz=timezone.utc).strftime(CONVERSION_TIME_FORMAT)


@dataclass(frozen=True)
class VonageSignature:
    string_to_sign: str
    sig: str


def sign_params(params: Mapping[str, str], *, secret: str, method: SignatureMethod) -> VonageSignature:
    """The ``sig`` of ``params`` (every parameter to send, ``api_key`` and ``timestamp`` included; a ``sig``
    among them is ignored). Lower-case hex, as the Python SDK emits; Vonage compares case-insensitively."""
    string = "".join(
        f"&{name}={params[name].replace('&', '_').replace('=', '_')}" for name in sorted(params) if name != "sig"
    )
    if method == "md5hash":
        digest = hashlib.md5((string + secret).encode("utf-8"), usedforsecurity=False).hexdigest()
    else:
        digest = hmac.new(secret.encode("utf-8"), string.encode("utf-8"), _HMAC_DIGESTS[method]).hexdigest()
    return VonageSignature(string_to_sign=string, sig=digest)


# ---- requests ------------------------------------------------------------------------------------------


class _Form(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid", frozen=True)

    def form_params(self) -> dict[str, str]:
        """The parameters in declaration order, as strings, absent ones left out."""
        params: dict[str, str] = {}
        for name, value in self.model_dump(by_alias=True, exclude_none=True).items():
            params[name] = ("true" if value else "false") if isinstance(value, bool) else str(value)
        return params


class SmsRequest(_Form):
    """``POST /sms/json``. ``to``: digits only, no ``+`` or ``00`` (``\\d{7,15}``). No feedback flag exists:
    the Conversion API is switched on per account by Vonage."""

    to: str = Field(pattern=r"^\d{7,15}$")
    from_: str = Field(alias="from")
    text: str
    type: Literal["text", "unicode"] | None = None
    client_ref: str | None = Field(default=None, alias="client-ref", max_length=40)


class ConversionRequest(_Form):
    """``POST /conversions/sms``: ``message-id`` of the SMS, ``delivered`` true (verified) or false, and when
    the user completed the action (``timestamp``, :data:`CONVERSION_TIME_FORMAT`)."""

    message_id: str = Field(alias="message-id", min_length=1)
    delivered: bool
    timestamp: str | None = None


# ---- answers -------------------------------------------------------------------------------------------


class _Answer(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore", frozen=True, coerce_numbers_to_str=True)


class SmsMessage(_Answer):
    """One part of an SMS answer; ``status`` ``"0"`` is success, anything else an error code (reference 3.4)."""

    status: str
    message_id: str | None = Field(default=None, alias="message-id")
    to: str | None = None
    error_text: str | None = Field(default=None, alias="error-text")
    remaining_balance: str | None = Field(default=None, alias="remaining-balance")
    message_price: str | None = Field(default=None, alias="message-price")
    network: str | None = None
    client_ref: str | None = Field(default=None, alias="client-ref")


class SmsResponse(_Answer):
    """The HTTP 200 answer of ``/sms/json``: errors (throttling and bad credentials included) are in it."""

    message_count: str = Field(alias="message-count")
    messages: list[SmsMessage] = Field(min_length=1)


class VonageProblem(_Answer):
    """An RFC 7807 error body of ``api.nexmo.com`` (``type`` is a ``.../api-errors#...`` URL)."""

    type: str
    title: str = ""
    detail: str | None = None
    instance: str | None = None
    resolution: str | None = None
