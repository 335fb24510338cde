"""The provider interface. Providers know nothing of Flask, the store or the reporter."""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar, TypeVar

import httpx
from pydantic import BaseModel

P = TypeVar("P", bound="Provider")
DEFAULT_TIMEOUT = httpx.Timeout(connect=3.0, read=5.0, write=5.0, pool=5.0)


@dataclass(frozen=True)
class SentMessage:
    """What a send returned: the id the provider wants back in the conversion report."""

    message_id: str
    phone: str
    provider: str


@dataclass(frozen=True)
class ConversionReport:
    """One verified OTP to report. Times are UNIX seconds (float); each provider converts to its unit."""

    message_id: str
    phone: str
    #: When the OTP was verified; for a negative report (``converted`` False), when its match window ended.
    verified_at: float
    #: False for the negative outcome: the OTP's match window ended without a verification.
    converted: bool = True
    #: When the OTP was sent (None where unknown); providers that take a send time use it.
    sent_at: float | None = None


class ErrorKind(enum.Enum):
    RETRYABLE = "retryable"  # throttling, 5xx, timeouts, InternalError: try again later
    AUTH = "auth"  # bad credentials, not allow-listed: stop and alert
    PERMANENT = "permanent"  # bad parameters: dead-letter


class ProviderError(Exception):
    """A failed provider call, classified so the reporter knows whether to retry, stop, or give up."""

    kind: ClassVar[ErrorKind] = ErrorKind.PERMANENT

    def __init__(
        self,
        message: str,
        *,
        code: str = "",
        request_id: str = "",
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.request_id = request_id
        self.status = status
        self.retry_after = retry_after

    def __str__(self) -> str:
        parts = [self.code or self.kind.value, self.message]
        if self.request_id:
            parts.append(f"(request id {self.request_id})")
        return " ".join(p for p in parts if p)


class RetryableError(ProviderError):
    kind = ErrorKind.RETRYABLE


class ThrottledError(RetryableError):
    """The provider asked us to slow down; ``retry_after`` (seconds) is set when it said how long."""


class AuthError(ProviderError):
    kind = ErrorKind.AUTH


class PermanentError(ProviderError):
    kind = ErrorKind.PERMANENT


class Provider(ABC):
    """One cloud SMS provider. Implementations hold one keep-alive ``httpx.Client`` and never retry."""

    #: The name used in ``OTP_CONVERSION_PROVIDER`` and stored with each message.
    name: ClassVar[str]
    #: Validates the provider's own config keys, ``OTP_CONVERSION_<NAME>_<FIELD>`` -> field ``<field>``.
    settings_model: ClassVar[type[BaseModel]]
    #: The longest window ``statistics`` accepts (None: no limit); the stats endpoint refuses longer ones with a
    #: 400 rather than passing on the provider's error.
    statistics_max_span: ClassVar[timedelta | None] = None
    #: The zone of the provider's own hour figures when it is not UTC (e.g. ``"UTC+08:00"``), said in the stats
    #: JSON so nobody has to guess.
    statistics_time_zone: ClassVar[str | None] = None
    #: Whether ``statistics`` can return the provider's own figures: the stats endpoint says so
    #: (``provider_statistics``) and asks only a provider that has some (Tencent, Alibaba; most have none).
    has_statistics: ClassVar[bool] = False
    #: How long after the send a report is still useful, in seconds (None: no limit). A report that cannot reach
    #: the provider within it is dead-lettered as expired, never sent late (AWS marks a message FAILED by itself
    #: an hour after the send). A class default a client may set from its settings (an instance attribute).
    report_deadline: float | None = None
    #: True where the provider takes the negative outcome (``ConversionReport.converted`` False); the reporter
    #: sends one only then, and only when the app opts in with ``OTP_CONVERSION_REPORT_UNVERIFIED``.
    reports_unverified: ClassVar[bool] = False

    @classmethod
    def from_settings(cls: type[P], settings: Any, *, timeout: httpx.Timeout = DEFAULT_TIMEOUT) -> P:
        """Build a client from ``settings`` (validated with ``settings_model`` if it is not an instance yet).

        The default calls ``cls(settings, timeout=timeout)``; a provider built differently overrides it.
        """
        if not isinstance(settings, cls.settings_model):
            settings = cls.settings_model.model_validate(settings)
        return cls(settings, timeout=timeout)  # type: ignore[call-arg]

    @property
    @abstractmethod
    def rate_limits(self) -> Mapping[str, float]:
        """Documented request caps per action, requests per second."""

    @property
    @abstractmethod
    def account(self) -> str:
        """The account this client reports to (Tencent SdkAppId, Alibaba AccessKeyId, Twilio account SID, ...).

        Stored with every send and outbox row, so a row is only ever reported to the account that sent it. Not a
        secret: an id that is safe in stats and logs."""

    @property
    @abstractmethod
    def report_action(self) -> str:
        """The action ``report_conversion`` calls (the key into ``rate_limits``)."""

    @abstractmethod
    def send_otp(self, phone: str, code: str) -> SentMessage:
        """Send ``code`` to ``phone`` (E.164) with the configured template."""

    @abstractmethod
    def report_conversion(self, report: ConversionReport) -> None:
        """Tell the provider the OTP was used. Raises a ``ProviderError`` subclass on failure."""

    @abstractmethod
    def statistics(self, begin: datetime, end: datetime) -> BaseModel | None:
        """The provider's own figures for the window, or None where it has none to offer."""

    @abstractmethod
    def close(self) -> None:
        """Close the HTTP client."""

    def __enter__(self: P) -> P:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
