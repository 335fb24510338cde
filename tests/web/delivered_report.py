"""One report delivered for real, for the tests that read delivery figures back (stats, metrics)."""

from __future__ import annotations

import time

from flask import Flask

from flask_otp_conversion import OTPConversion


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
