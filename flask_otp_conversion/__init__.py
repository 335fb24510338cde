"""Report SMS OTP conversions to Tencent Cloud and Alibaba Cloud from Flask, durably and off the request path.

    conversion = OTPConversion(app)

    @app.post("/otp/verify")
    @conversion.verify_route(phone="phone")
    def verify(): ...

and ``otp_sent.send(app, phone=..., message_id=...)`` (or ``conversion.record_sent``) where the app sends.
"""

from __future__ import annotations

from .config import ConfigurationError
from .extension import OTPConversion
from .signals import (
    breaker_closed,
    breaker_opened,
    conversion_anomaly,
    conversion_dead_lettered,
    conversion_failed,
    conversion_reported,
    otp_sent,
    otp_verified,
)
from .store.base import VerifyOutcome

__version__ = "0.1.0"

__all__ = [
    "ConfigurationError",
    "OTPConversion",
    "VerifyOutcome",
    "__version__",
    "breaker_closed",
    "breaker_opened",
    "conversion_anomaly",
    "conversion_dead_lettered",
    "conversion_failed",
    "conversion_reported",
    "otp_sent",
    "otp_verified",
]
