"""A pumped number range inside a healthy calling code, sent through an app's extension (a plain module)."""

from __future__ import annotations

import time

from flask import Flask

from flask_otp_conversion import OTPConversion

#: The per-prefix alarm on, three digits after the calling code: +447911123456 is in prefix +44791.
PREFIX_CONFIG = {"OTP_CONVERSION_ALARM_PREFIX_DIGITS": 3}
PUMPED_RANGE = "+447911123456"
PREFIX = "+44791"


def pump_a_range(app: Flask, conversion: OTPConversion) -> None:
    """Five minutes ago: 200 sends to +44770 of which 180 verified, and 40 to +44791 none verified, so +44 as a
    whole converts at 75 % and only the range is under the alarm."""
    at = time.time() - 300
    with app.app_context():
        for i in range(200):
            conversion.record_sent("+447700900123", f"good-{i}", sent_at=at)
            if i < 180:
                conversion.record_verified("+447700900123", f"good-{i}", verified_at=at + 10)
        for i in range(40):
            conversion.record_sent(PUMPED_RANGE, f"pumped-{i}", sent_at=at)
        app.extensions["otp_conversion"].apply_spool()  # the verifications in the store now, not in a second
