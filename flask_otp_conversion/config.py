"""``OTP_CONVERSION_*`` keys, read once from ``app.config`` into one validated, immutable object."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator

from .providers import Provider, available_providers, provider_class
from .store.postgresql_url import SCHEMES as POSTGRESQL_SCHEMES
from .store.postgresql_url import driver_missing as postgresql_driver_missing
from .store.postgresql_url import parse_url as parse_postgresql_url
from .store.redis_url import SCHEMES as REDIS_SCHEMES
from .store.redis_url import driver_missing as redis_driver_missing
from .store.redis_url import parse_url as parse_redis_url

PREFIX = "OTP_CONVERSION_"
class ConfigurationError(ValueError):
    """A bad ``OTP_CONVERSION_*`` value; raised by ``init_app`` and naming the key."""


class Settings(BaseModel):
    """The extension's own keys. Field ``x`` is read from ``OTP_CONVERSION_X``."""

    model_config = ConfigDict(extra="ignore", frozen=True, coerce_numbers_to_str=True)

    enabled: bool = True
    provider: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9_]*$")
    store_url: str | None = None
    degraded: bool = False
    match_window: float = Field(default=900.0, gt=0)
    #: Verifications from the verify route and signal go to a local spool file first.
    spool: bool = True
    #: Seconds delivery may hold a report back while its web worker is serving requests.
    yield_to_requests: float = Field(default=30.0, ge=0)
    retention: float = Field(default=7.0, gt=0, description="days")
    url_prefix: str = Field(default="/otp-conversion", pattern=r"^/[A-Za-z0-9_\-./]*$")
    stats_token: SecretStr | None = None
    stats_cache_ttl: float = Field(default=60.0, ge=0)
    #: Start the background reporter on the first request (False: only the CLI and ``flush()`` deliver).
    reporter_autostart: bool = True
    #: With a SQLite store, only the process holding a lock beside it applies the spools and delivers.
    single_deliverer: bool = True
    #: The deliverer delivers from a child process (None: unless the app is testing or the store is memory://).
    delivery_process: bool | None = None
    #: The delivery process runs under Linux's SCHED_IDLE: a request that wakes takes the core from it at once.
    delivery_idle: bool = True
    #: The niceness the delivery process adds to itself where SCHED_IDLE is off or missing.
    delivery_nice: int = Field(default=10, ge=0, le=19)
    report_concurrency: int = Field(default=64, ge=1, le=512)
    #: Per-action rate caps in requests/s overriding the provider's documented ones.
    rate_limits: dict[str, float] = Field(default_factory=dict)
    max_report_age: float = Field(default=86400.0, gt=0)
    #: Report an OTP never verified within ``match_window`` as not converted, where the provider takes that.
    report_unverified: bool = False
    breaker_threshold: int = Field(default=5, ge=1)
    breaker_reset_timeout: float = Field(default=30.0, gt=0)
    breaker_max_reset_timeout: float = Field(default=600.0, gt=0)
    shutdown_timeout: float = Field(default=2.0, ge=0)
    http_connect_timeout: float = Field(default=3.0, gt=0)
    http_read_timeout: float = Field(default=5.0, gt=0)
    #: The SMS-pumping alarm (``alarm/``) and ``send_allowed``: every threshold.
    alarm_window: float = Field(default=900.0, ge=60, le=86400)
    alarm_settle: float = Field(default=60.0, ge=0, le=3600)
    alarm_baseline_days: float = Field(default=7.0, gt=0, le=31)
    alarm_min_sends: int = Field(default=20, ge=1)
    alarm_ratio: float = Field(default=0.5, gt=0, lt=1)
    alarm_floor: float = Field(default=0.2, ge=0, lt=1)
    alarm_clear_ratio: float = Field(default=0.7, gt=0, le=1)
    alarm_baseline_min_sends: int = Field(default=200, ge=1)
    #: The per-prefix alarm: digits after the calling code that make a prefix (0: off), and its window's minimum.
    alarm_prefix_digits: int = Field(default=0, ge=0, le=12)
    alarm_prefix_min_sends: int = Field(default=30, ge=1)
    send_limit_number: int = Field(default=5, ge=0)
    send_limit_prefix: int = Field(default=30, ge=0)
    send_limit_prefix_digits: int = Field(default=4, ge=0, le=12)
    #: The dashboard's degrade switch (off: the page is read-only).
    dashboard_controls: bool = False

    #: The selected provider's validated settings (a ``Provider.settings_model`` instance).
    provider_settings: Any = None

    @field_validator("provider", mode="before")
    @classmethod
    def _lower_provider(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("stats_token", mode="before")
    @classmethod
    def _empty_token_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("stats_token")
    @classmethod
    def _token_fits_a_header(cls, value: SecretStr | None) -> SecretStr | None:
        """A client sends the token in ``Authorization: Bearer ...``: one it cannot put there (non-ASCII,
        control characters) or that the header's parsing trims (edge whitespace) could never authenticate.
        The message never shows the token."""
        if value is None:
            return None
        token = value.get_secret_value()
        if not all(" " <= ch <= "~" for ch in token):
            raise ValueError(
                "must be printable ASCII (no control or non-ASCII characters): clients send it as a header"
            )
        if token != token.strip():
            raise ValueError("must not start or end with whitespace: it is sent as a header")
        return value

    @field_validator("url_prefix")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/") or "/"

    @field_validator("rate_limits")
    @classmethod
    def _positive_rates(cls, value: dict[str, float]) -> dict[str, float]:
        for action, rate in value.items():
            if rate <= 0:
                raise ValueError(f"rate for {action!r} must be > 0")
        return value


def _format_errors(exc: ValidationError, key_of: Mapping[str, str], secret_keys: set[str]) -> str:
    lines = []
    for err in exc.errors():
        field = str(err["loc"][0]) if err["loc"] else ""
        # An error of the whole model (a cross-field check) has no field, and its input is every key, secrets
        # included: name the provider's keys and never echo the input.
        key = key_of.get(field, PREFIX + field.upper()) if field else f"{PREFIX}*"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif field and key not in secret_keys and "input" in err and err["type"] != "missing":
            msg += f" (got {err['input']!r})"
        lines.append(f"{key}: {msg}")
    return "invalid flask-otp-conversion configuration:\n  " + "\n  ".join(lines)


def load_settings(config: Mapping[str, Any], *, instance_path: str) -> Settings:
    """Validate the app's ``OTP_CONVERSION_*`` keys; ``ConfigurationError`` names every bad one."""
    core_fields = set(Settings.model_fields) - {"provider_settings"}
    raw = {
        key[len(PREFIX) :].lower(): value
        for key, value in config.items()
        if key.startswith(PREFIX) and key[len(PREFIX) :].lower() in core_fields
    }
    provider_prefixes = tuple(f"{PREFIX}{name.upper()}_" for name in available_providers())
    unknown = sorted(
        key
        for key in config
        if key.startswith(PREFIX)
        and key[len(PREFIX) :].lower() not in core_fields
        and not key.startswith(provider_prefixes)
    )
    if unknown:
        raise ConfigurationError(f"{unknown[0]}: unknown key (check the spelling)")
    try:
        settings = Settings.model_validate(raw)
    except ValidationError as exc:
        raise ConfigurationError(_format_errors(exc, {}, {PREFIX + "STATS_TOKEN", PREFIX + "STORE_URL"})) from None

    if settings.breaker_max_reset_timeout < settings.breaker_reset_timeout:
        raise ConfigurationError(f"{PREFIX}BREAKER_MAX_RESET_TIMEOUT must be >= {PREFIX}BREAKER_RESET_TIMEOUT")
    if settings.alarm_clear_ratio <= settings.alarm_ratio:  # no hysteresis: an alarm would flap on and off
        raise ConfigurationError(f"{PREFIX}ALARM_CLEAR_RATIO must be > {PREFIX}ALARM_RATIO")

    updates: dict[str, Any] = {"store_url": _store_url(settings.store_url, instance_path)}
    if settings.enabled:
        if settings.provider is None:
            raise ConfigurationError(f"{PREFIX}PROVIDER is required (e.g. 'tencent' or 'alibaba')")
        updates["provider_settings"] = _provider_settings(settings.provider, config)
    return settings.model_copy(update=updates)


def _provider_settings(name: str, config: Mapping[str, Any]) -> BaseModel:
    try:
        cls = provider_class(name)
    except LookupError as exc:
        raise ConfigurationError(f"{PREFIX}PROVIDER: {exc}") from None
    prefix = f"{PREFIX}{name.upper()}_"
    key_of = {}
    raw = {}
    for key, value in config.items():
        if key.startswith(prefix):
            field = key[len(prefix) :].lower()
            key_of[field] = key
            raw[field] = value
    model = cls.settings_model
    for field in model.model_fields:
        key_of.setdefault(field, prefix + field.upper())
    secret_keys = {
        key_of[f] for f, info in model.model_fields.items() if info.annotation in (SecretStr, SecretStr | None)
    }
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise ConfigurationError(_format_errors(exc, key_of, secret_keys)) from None


def _store_url(url: str | None, instance_path: str) -> str:
    """Default to a SQLite file in the instance folder; relative SQLite paths are relative to it too."""
    if url is None:
        return "sqlite:///" + os.path.join(instance_path, "otp_conversion.db")
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///") :]
        if path and not os.path.isabs(path.split("?", 1)[0]) and path != ":memory:":
            return "sqlite:///" + os.path.join(instance_path, path)
        return url
    if url == "memory://":
        return url
    scheme = url.split("://", 1)[0] if "://" in url else "(none)"
    if scheme.lower() in POSTGRESQL_SCHEMES:
        try:
            parse_postgresql_url(url)
        except ValueError as exc:
            raise ConfigurationError(f"{PREFIX}STORE_URL: {exc}") from None
        if (missing := postgresql_driver_missing()) is not None:
            raise ConfigurationError(f"{PREFIX}STORE_URL: {missing}")
        return url
    if scheme.lower() in REDIS_SCHEMES:
        try:
            parse_redis_url(url)
        except ValueError as exc:
            raise ConfigurationError(f"{PREFIX}STORE_URL: {exc}") from None
        if (missing := redis_driver_missing()) is not None:
            raise ConfigurationError(f"{PREFIX}STORE_URL: {missing}")
        return url
    raise ConfigurationError(
        f"{PREFIX}STORE_URL: unsupported store URL scheme {scheme!r}; use 'sqlite:///path' or 'memory://'"
    )


def make_provider(settings: Settings) -> Provider:
    """A fresh client of the configured provider with the configured timeouts. One per process (and per
    reporter worker thread): an HTTP connection pool must not cross a fork."""
    if settings.provider is None:
        raise ConfigurationError(f"{PREFIX}PROVIDER is not set")
    timeout = httpx.Timeout(settings.http_read_timeout, connect=settings.http_connect_timeout)
    return provider_class(settings.provider).from_settings(settings.provider_settings, timeout=timeout)
