"""Pydantic models of the AWS End User Messaging SMS wire (``pinpoint-sms-voice-v2``, JSON 1.0 protocol).

Requests serialise as botocore does: the structure as a JSON object with ``json.dumps``' default separators,
booleans as JSON ``true`` (never ``"true"``), absent members left out. The body is what the signature's
payload hash covers, so it is built once and sent as those exact bytes. Answers ignore unknown members.
"""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_pascal

__all__ = [
    "AwsErrorBody",
    "FeedbackStatus",
    "PutMessageFeedbackRequest",
    "PutMessageFeedbackResponse",
    "SendTextMessageRequest",
    "SendTextMessageResponse",
]

FeedbackStatus = Literal["RECEIVED", "FAILED"]


class _Wire(BaseModel):
    model_config = ConfigDict(alias_generator=to_pascal, populate_by_name=True, extra="ignore", frozen=True)


class _Request(_Wire):
    def body(self) -> bytes:
        return json.dumps(self.model_dump(by_alias=True, exclude_none=True)).encode("ascii")


class SendTextMessageRequest(_Request):
    """``SendTextMessage`` with ``MessageFeedbackEnabled`` (members in the vectors' order)."""

    destination_phone_number: str
    origination_identity: str | None = None
    message_body: str
    message_type: Literal["TRANSACTIONAL", "PROMOTIONAL"] = "TRANSACTIONAL"
    configuration_set_name: str | None = None
    time_to_live: int | None = None
    message_feedback_enabled: bool = True


class PutMessageFeedbackRequest(_Request):
    message_id: str
    message_feedback_status: FeedbackStatus


class SendTextMessageResponse(_Wire):
    message_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_:/-]+$")


class PutMessageFeedbackResponse(_Wire):
    message_id: str | None = None
    #: The record's status now: what we sent, or ``FAILED`` when AWS had already failed it (one hour on).
    message_feedback_status: str


class AwsErrorBody(BaseModel):
    """``{"__type": "[namespace#]Code", "Message"|"message": ..., "Reason": ...}``."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    type: str = Field(alias="__type", min_length=1)
    message_upper: str = Field(default="", alias="Message")
    message_lower: str = Field(default="", alias="message")
    reason: str = Field(default="", alias="Reason")

    @property
    def code(self) -> str:
        """The error code as botocore reads it: ``__type`` after ``#`` (and before any ``:``)."""
        return self.type.rsplit("#", 1)[-1].split(":", 1)[0]

    @property
    def text(self) -> str:
        return self.message_upper or self.message_lower
