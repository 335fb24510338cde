"""``RecentSends``: the per-number counts behind ``send_allowed``'s limits."""

from __future__ import annotations

from flask_otp_conversion.alarm import RecentSends


def test_the_oldest_number_is_forgotten_past_the_bound() -> None:
    recent = RecentSends(900, 4, max_numbers=2)
    for i, phone in enumerate(("+447700900001", "+447700900002", "+447700900003")):
        recent.note_sent(phone, 100.0 + i)
    assert [recent.unverified(p, 110.0)[0] for p in ("+447700900001", "+447700900003")] == [0, 1]


def test_a_prefix_counts_the_sends_of_its_numbers() -> None:
    recent = RecentSends(900, 4)
    for phone in ("+447700900001", "+447700900002", "+447700800003"):
        recent.note_sent(phone, 100.0)
    assert recent.unverified("+447700900009", 110.0) == (0, 3)  # +44 7700: all three


def test_a_verification_forgets_the_numbers_sends() -> None:
    recent = RecentSends(900, 4)
    recent.note_sent("+447700900001", 100.0)
    recent.note_sent("+447700900001", 101.0)
    recent.note_verified("+447700900001")
    assert recent.unverified("+447700900001", 110.0) == (0, 0)
