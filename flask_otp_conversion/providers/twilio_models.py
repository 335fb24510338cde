"""Pydantic models of the Twilio REST wire (API ``2010-04-01``): the form a request sends, the JSON it answers.

Answers ignore unknown fields (Twilio adds them over time) and need only what we use. Requests become form
pairs in the SDK's order, booleans as ``true``/``false`` (the SDK lower-cases them), absent fields left out.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "CreateMessageRequest",
    "FeedbackRequest",
    "FeedbackResource",
    "MessageResource",
    "Outcome",
    "TwilioErrorBody",
]

Outcome = Literal["confirmed", "unconfirmed"]


class _Answer(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class CreateMessageRequest(BaseModel):
    """``POST /2010-04-01/Accounts/{AccountSid}/Messages.json``; ``from_`` or ``messaging_service_sid``."""

    model_config = ConfigDict(frozen=True)

    to: str
    body: str
    from_: str | None = None
    messaging_service_sid: str | None = None
    provide_feedback: bool = True
    validity_period: int | None = None

    def form(self) -> list[tuple[str, str]]:
        """The form pairs in the SDK's order (To, ProvideFeedback, ValidityPeriod, From/MessagingServiceSid,
        Body); any order is valid."""
        pairs = [("To", self.to), ("ProvideFeedback", "true" if self.provide_feedback else "false")]
        if self.validity_period is not None:
            pairs.append(("ValidityPeriod", str(self.validity_period)))
        if self.from_ is not None:
            pairs.append(("From", self.from_))
        if self.messaging_service_sid is not None:
            pairs.append(("MessagingServiceSid", self.messaging_service_sid))
        pairs.append(("Body", self.body))
        return pairs


class FeedbackRequest(BaseModel):
    """``POST .../Messages/{MessageSid}/Feedback.json``. ``Outcome`` is always sent: the docs give no default."""

    model_config = ConfigDict(frozen=True)

    outcome: Outcome

    def form(self) -> list[tuple[str, str]]:
        return [("Outcome", self.outcome)]


class MessageResource(_Answer):
    """The Message resource a create answers (HTTP 201); ``sid`` (``SM`` + 32 hex) is the id we keep."""

    sid: str = Field(pattern=r"^(?:SM|MM)[0-9a-fA-F]{32}$")
    status: str | None = None
    to: str | None = None
    account_sid: str | None = None
    error_code: int | None = None
    error_message: str | None = None


class FeedbackResource(_Answer):
    """What a feedback create answers (HTTP 201)."""

    message_sid: str | None = None
    outcome: str | None = None
    account_sid: str | None = None


class TwilioErrorBody(_Answer):
    """Twilio's error body, ``{code, message, more_info, status}``; newer endpoints' RFC 9457 form has
    ``title`` for the text and the same integer ``code``."""

    code: int
    message: str = ""
    title: str = ""
    more_info: str = ""
    status: int | None = None
