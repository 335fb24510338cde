"""Report SMS OTP conversions to Tencent Cloud and Alibaba Cloud from Flask, durably and off the request path."""

from __future__ import annotations

__version__ = "0.1.0"
