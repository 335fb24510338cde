"""Blinker signals, sent with the Flask app as sender.

Apps that send OTPs with their own code emit ``otp_sent``; the extension records it. The reporter emits the
delivery signals so an app can count, alert or audit without reaching into our internals.
"""

from __future__ import annotations

from blinker import Namespace

_signals = Namespace()

#: An OTP went out. kwargs: ``phone``, ``message_id``, ``provider`` (optional), ``sent_at`` (optional, epoch s).
otp_sent = _signals.signal("otp-sent")
#: The user typed the code back in. kwargs: ``phone``, ``message_id`` (optional), ``verified_at`` (optional).
otp_verified = _signals.signal("otp-verified")
#: A conversion report reached the provider. kwargs: ``report`` (an ``OutboxItem``).
conversion_reported = _signals.signal("conversion-reported")
#: A report attempt failed and will be retried. kwargs: ``report``, ``error``, ``next_attempt_at``.
conversion_failed = _signals.signal("conversion-failed")
#: A report will never be sent: permanent error or too old. kwargs: ``report``, ``reason``.
conversion_dead_lettered = _signals.signal("conversion-dead-lettered")
#: The circuit breaker opened: no provider calls until it probes. kwargs: ``reason``, ``retry_at``.
breaker_opened = _signals.signal("breaker-opened")
#: The circuit breaker closed after a successful probe.
breaker_closed = _signals.signal("breaker-closed")
#: An SMS-pumping alarm opened: a calling code's conversion rate fell (``alarm/``). kwargs: ``calling_code``,
#: ``rate``, ``baseline`` (None when unknown), ``sends``, ``window`` (seconds), ``since`` (epoch s); and ``prefix``
#: (the number prefix under alarm) for a per-prefix alarm only: take it as ``prefix=None``.
conversion_anomaly = _signals.signal("conversion-anomaly")

__all__ = [
    "breaker_closed",
    "breaker_opened",
    "conversion_anomaly",
    "conversion_dead_lettered",
    "conversion_failed",
    "conversion_reported",
    "otp_sent",
    "otp_verified",
]
