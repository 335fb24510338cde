"""Sends, verifications and deliveries recorded for real, for the tests that read figures back (stats,
metrics)."""

from __future__ import annotations

import time

from flask import Flask

from flask_otp_conversion import OTPConversion

CN = "+8613711112222"
US = "+14155550123"


def record_four_sends(app: Flask, conversion: OTPConversion | None = None) -> None:
    """Four sends a minute ago (three to China, one to the US), two of the Chinese ones verified."""
    conv = conversion or OTPConversion()  # the public API reads the app's own state
    now = time.time()
    with app.app_context():
        for i in range(3):
            conv.record_sent(CN[:-1] + str(i), f"cn-{i}", sent_at=now - 60)
        conv.record_sent(US, "us-0", sent_at=now - 60)
        conv.record_verified(CN[:-1] + "0", "cn-0", verified_at=now - 30)
        conv.record_verified(CN[:-1] + "1", "cn-1", verified_at=now - 30)


def deliver_one_report(app: Flask, conversion: OTPConversion, phone: str) -> None:
    """Send through the app's provider client, record and verify it, flush, and wait for the delivery figures
    (the sender thread writes them just after the row is acked)."""
    with app.app_context():
        client = app.extensions["otp_conversion"].make_provider()
        sent = client.send_otp(phone, "123456")
        client.close()
        conversion.record_sent(phone, sent.message_id)
        conversion.record_verified(phone, sent.message_id)
        assert conversion.flush(timeout=10) == 0
    store = app.extensions["otp_conversion"].store
    deadline = time.monotonic() + 10
    while not store.delivery_counts(since=0, until=time.time() + 3600) and time.monotonic() < deadline:
        time.sleep(0.01)
