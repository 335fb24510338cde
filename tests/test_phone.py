from __future__ import annotations

import pytest

from flask_otp_conversion.phone import calling_code, mask_phone, national_number, normalize_phone


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+8613711112222", "+8613711112222"),
        ("+86 137-1111-2222", "+8613711112222"),
        ("0065 8123 4567", "+6581234567"),
        ("+1 (415) 555-0100", "+14155550100"),
    ],
)
def test_normalize_accepts_international_forms(raw: str, expected: str) -> None:
    assert normalize_phone(raw) == expected


@pytest.mark.parametrize(
    "raw", ["13711112222", "+0123456789", "+12", "+86abc11112222", "+" + "1" * 16, "x" * 100, "", "+"]
)
def test_normalize_rejects_implausible_numbers(raw: str) -> None:
    with pytest.raises(ValueError):
        normalize_phone(raw)


@pytest.mark.parametrize(
    "raw",
    [
        "+86\uff11\uff13\uff17\uff11\uff11\uff11\uff11\uff12\uff12\uff12\uff12",  # fullwidth
        "+\uff18\uff16 \uff11\uff13\uff17 1111 2222",  # fullwidth country code, spaced
        "+20\u0661\u0660\u0660\u0661\u0662\u0663\u0664\u0665\u0666\u0667",  # Arabic-Indic
        "+91\u0969\u096e\u096d\u096a\u096b\u096c\u096d\u096e\u096f\u0966",  # Devanagari
        "00\u0669\u0661 98765 43210",  # Arabic-Indic country code after 00
    ],
)
def test_normalize_rejects_non_ascii_digits(raw: str) -> None:
    with pytest.raises(ValueError, match="ASCII digits"):
        normalize_phone(raw)


@pytest.mark.parametrize("raw", [None, 8613711112222, ["+8613711112222"]])
def test_normalize_rejects_non_strings(raw: object) -> None:
    with pytest.raises(ValueError, match="must be a string"):
        normalize_phone(raw)


@pytest.mark.parametrize(
    ("phone", "code"),
    [
        ("+14155550100", "1"),
        ("+79161234567", "7"),
        ("+8613711112222", "86"),
        ("+85291234567", "852"),
        ("+6581234567", "65"),
        ("+971501234567", "971"),
    ],
)
def test_calling_code_splits_prefix_free_codes(phone: str, code: str) -> None:
    assert calling_code(phone) == code
    assert code + national_number(phone) == phone[1:]


def test_mask_keeps_country_code_and_last_two_digits() -> None:
    assert mask_phone("+8613711112222") == "+86*********22"
    assert "1111" not in mask_phone("+8613711112222")


def test_mask_hides_short_or_odd_values() -> None:
    assert mask_phone("12345") == "*****"
    assert "4567" not in mask_phone("81234567")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+44 (0)7700 900123", "+447700900123"),
        ("+44(0)7700900123", "+447700900123"),
        ("0044 (0) 7700 900123", "+447700900123"),
    ],
)
def test_normalize_drops_the_bracketed_trunk_prefix_after_the_country_code(raw: str, expected: str) -> None:
    assert normalize_phone(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+44 07700 900123", "+4407700900123"),  # a bare 0 is a digit
        ("+39 06 1234 5678", "+390612345678"),  # Italy keeps its leading 0
        ("+44 7700 (0)90012", "+447700090012"),  # a bracketed 0 elsewhere is a digit
    ],
)
def test_normalize_keeps_a_zero_that_is_not_a_bracketed_trunk_prefix(raw: str, expected: str) -> None:
    assert normalize_phone(raw) == expected
