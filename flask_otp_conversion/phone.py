"""E.164 phone numbers: normalise, split off the country calling code, mask for logs."""

from __future__ import annotations

import re

# Country calling codes are prefix-free: 1 and 7 are one digit, these are two, every other is three.
_TWO_DIGIT_CODES = frozenset(
    [
        "20",
        "27",
        "30",
        "31",
        "32",
        "33",
        "34",
        "36",
        "39",
        "40",
        "41",
        "43",
        "44",
        "45",
        "46",
        "47",
        "48",
        "49",
        "51",
        "52",
        "53",
        "54",
        "55",
        "56",
        "57",
        "58",
        "60",
        "61",
        "62",
        "63",
        "64",
        "65",
        "66",
        "81",
        "82",
        "84",
        "86",
        "90",
        "91",
        "92",
        "93",
        "94",
        "95",
        "98",
    ]
)
_SEPARATORS = re.compile(r"[\s\-().]")
#: ``+44 (0)7700 900123``: the national trunk prefix written in brackets after the country code, which is not
#: dialled from abroad. Only a bracketed 0 right after ``+``/``00`` and the code counts; a bare 0 is a digit.
_TRUNK_PREFIX = re.compile(r"^(\+|00)\s*([0-9]{1,3})\s*\(\s*0\s*\)")
#: ASCII digits only: ``\d`` also matches fullwidth, Arabic-Indic or Devanagari digits, which no provider
#: accepts (the send would fail at the provider) and which would file one person under two spellings.
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
MAX_INPUT_LENGTH = 32


def normalize_phone(raw: object) -> str:
    """Return ``raw`` as E.164 (``+8613711112222``) or raise ``ValueError`` saying why.

    Spaces, dashes, dots and brackets are dropped, so is a bracketed trunk prefix right after the country code
    (``+44 (0)7700 900123``), and a leading ``00`` becomes ``+``; a number without an international prefix is
    refused, since guessing its country would misattribute the report. Digits must be ASCII ``0``-``9``
    (fullwidth, Arabic-Indic or Devanagari digits are refused, not converted).
    """
    if not isinstance(raw, str):
        raise ValueError(f"phone must be a string, not {type(raw).__name__}")
    if _E164.fullmatch(raw):  # already normalised: the common case, and the store checks every record
        return raw
    if len(raw) > MAX_INPUT_LENGTH:
        raise ValueError(f"phone is too long ({len(raw)} characters, at most {MAX_INPUT_LENGTH})")
    text = raw.strip()
    trunk = _TRUNK_PREFIX.match(text)
    if trunk is not None and calling_code("+" + trunk.group(2) + "0" * 6) == trunk.group(2):
        text = trunk.group(1) + trunk.group(2) + text[trunk.end() :]
    phone = _SEPARATORS.sub("", text)
    if phone.startswith("00"):
        phone = "+" + phone[2:]
    if not phone.startswith("+"):
        raise ValueError("phone must be in international E.164 form, starting with '+' and the country code")
    if any(ch.isdigit() and not "0" <= ch <= "9" for ch in phone):
        raise ValueError("phone must be written with the ASCII digits 0-9")
    if not _E164.fullmatch(phone):
        raise ValueError("phone is not a plausible E.164 number ('+', country code, 7 to 15 digits in all)")
    return phone


def calling_code(phone: str) -> str:
    """The country calling code of an E.164 number, without '+': ``"86"`` for ``+8613711112222``."""
    digits = phone.lstrip("+")
    if digits[0] in "17":
        return digits[0]
    if digits[:2] in _TWO_DIGIT_CODES:
        return digits[:2]
    return digits[:3]


def national_number(phone: str) -> str:
    """The digits after the calling code."""
    return phone.lstrip("+")[len(calling_code(phone)) :]


def mask_phone(phone: object) -> str:
    """A log-safe form that keeps the country code and the last two digits: ``+86*********22``."""
    text = str(phone)
    digits = "".join(ch for ch in text if ch.isdigit())
    if len(digits) < 6:
        return "*" * len(text) if text else ""
    if text.startswith("+"):
        code = calling_code("+" + digits)
        return "+" + code + "*" * (len(digits) - len(code) - 2) + digits[-2:]
    return "*" * (len(digits) - 2) + digits[-2:]
