"""Where the reporter used to live; it is now ``worker.py`` (the thread work) and ``policy.py`` (the decisions).

Kept so that ``from flask_otp_conversion.delivery.reporter import Reporter`` goes on working.
"""

from __future__ import annotations

from .policy import backoff_delay
from .worker import Reporter

__all__ = ["Reporter", "backoff_delay"]
