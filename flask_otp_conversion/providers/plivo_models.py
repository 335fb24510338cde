"""Pydantic models of the Plivo wire: the Message API (``POST /v1/Account/{auth_id}/Message/``) and the
conversion feedback (``POST .../message/{message_uuid}/conversion/``), both JSON only.

Request fields keep Plivo's names and the SDK's order, so a body is the SDK's JSON text (``json.dumps``
defaults: ``", "`` and ``": "`` separators, ASCII); ``trackable`` is a JSON boolean and ``log`` the string
``"true"`` as the SDK sends them. Answers ignore unknown fields.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "ConversionRequest",
    "ConversionResponse",
    "ConversionStatus",
    "MessageRequest",
    "MessageResponse",
    "PlivoError",
    "iso_timestamp",
]

ConversionStatus = Literal["CONVERTED", "NOT_CONVERTED", "CONVERTED_WITH_OTHERS"]


def iso_timestamp(unix_seconds: float) -> str:
    """ISO 8601 in UTC, whole seconds, with ``Z``: ``2020-08-01T11:32:26Z`` as in Plivo's docs."""
    return datetime.fromtimestamp(int(unix_seconds), tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class _Json(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid", frozen=True)

    def body(self) -> bytes:
        """The JSON text sent: absent fields left out, the SDK's separators."""
        return json.dumps(self.model_dump(by_alias=True, exclude_none=True)).encode("ascii")


class MessageRequest(_Json):
    """``messages.create``: ``dst`` is the number with its country code, no ``+`` (the SDK examples' form).
    ``trackable`` true tells Plivo a conversion will be reported for the message."""

    dst: str = Field(pattern=r"^\d{7,15}$")
    text: str
    src: str | None = None
    powerpack_uuid: str | None = None
    type: Literal["sms"] = "sms"
    method: Literal["POST", "GET"] = "POST"
    log: Literal["true", "false", "number_only", "content_only"] = "true"
    trackable: bool = True


class ConversionRequest(_Json):
    """The conversion feedback: the message's new status and when it changed (:func:`iso_timestamp`)."""

    status: ConversionStatus
    timestamp: str


class _Answer(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, coerce_numbers_to_str=True)


class MessageResponse(_Answer):
    """HTTP 202: one ``message_uuid`` per destination, in ``dst`` order."""

    api_id: str = ""
    message: str = ""
    message_uuid: list[str] = Field(min_length=1)


class ConversionResponse(_Answer):
    """The success answer's shape is not documented (reference 4.3); ``api_id`` is what Plivo answers
    elsewhere."""

    api_id: str = ""
    message: str = ""


class PlivoError(_Answer):
    """Plivo's error body: ``{"api_id": ..., "error": "<text>"}``."""

    api_id: str = ""
    error: str | dict[str, object]
