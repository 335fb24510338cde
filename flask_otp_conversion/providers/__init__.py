"""Provider clients and the registry that maps ``OTP_CONVERSION_PROVIDER`` names to them.

Third parties add a provider by name with an entry point in the ``flask_otp_conversion.providers`` group whose
object is a ``Provider`` subclass.
"""

from __future__ import annotations

from importlib.metadata import entry_points

from .base import (
    AuthError,
    ConversionReport,
    ErrorKind,
    PermanentError,
    Provider,
    ProviderError,
    RetryableError,
    SentMessage,
    ThrottledError,
)

ENTRY_POINT_GROUP = "flask_otp_conversion.providers"


def _builtin() -> dict[str, type[Provider]]:
    from .alibaba import AlibabaProvider
    from .aws import AwsProvider
    from .plivo import PlivoProvider
    from .tencent import TencentProvider
    from .twilio import TwilioProvider
    from .vonage import VonageProvider

    return {
        "tencent": TencentProvider,
        "alibaba": AlibabaProvider,
        "twilio": TwilioProvider,
        "aws": AwsProvider,
        "vonage": VonageProvider,
        "plivo": PlivoProvider,
    }


def available_providers() -> list[str]:
    names = set(_builtin())
    names.update(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))
    return sorted(names)


def provider_class(name: str) -> type[Provider]:
    """The provider class registered under ``name``; ``LookupError`` naming the choices if there is none."""
    builtin = _builtin()
    if name in builtin:
        return builtin[name]
    for ep in entry_points(group=ENTRY_POINT_GROUP, name=name):
        cls = ep.load()
        if not (isinstance(cls, type) and issubclass(cls, Provider)):
            raise LookupError(f"entry point {ep.value!r} for provider {name!r} is not a Provider subclass")
        return cls
    raise LookupError(f"unknown provider {name!r}; available: {', '.join(available_providers())}")


__all__ = [
    "ENTRY_POINT_GROUP",
    "AuthError",
    "ConversionReport",
    "ErrorKind",
    "PermanentError",
    "Provider",
    "ProviderError",
    "RetryableError",
    "SentMessage",
    "ThrottledError",
    "available_providers",
    "provider_class",
]
