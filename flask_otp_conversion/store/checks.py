"""Argument checks at the store's boundary, once for every engine.

The store is a public class, so every public method checks what it is given (``store/engine.py`` does, before
an engine sees anything). It *validates* and never normalises: turning user input into E.164 is the
extension's job (``phone.normalize_phone``), so a number reaches the store in one spelling or not at all.
The checks are cheap (a regex and type tests): the spool's applier runs them on every line it reads back.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from .base import MAX_ACCOUNT_LENGTH, MAX_ERROR_LENGTH, MAX_MESSAGE_ID_LENGTH, MAX_PROVIDER_LENGTH, Verification

#: Longest flag name, flag value, lease name and lease owner we accept.
MAX_NAME_LENGTH = 200
MAX_FLAG_VALUE_LENGTH = 4000
#: E.164 in ASCII digits only: ``\d`` would also take fullwidth or Arabic-Indic digits no provider accepts.
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")


def check_phone(phone: object) -> str:
    """Already in E.164 (the store never guesses a spelling: one person must not end up under two)."""
    if not isinstance(phone, str) or _E164.fullmatch(phone) is None:
        # never echo the number: it is personal data and this message may be logged
        raise ValueError("phone must already be normalised to E.164 (use phone.normalize_phone)")
    return phone


#: A number prefix: "+" and 1 to 15 ASCII digits, the first not 0 (a whole E.164 number is one too).
_PREFIX = re.compile(r"\+[1-9][0-9]{0,14}")


def check_prefix(prefix: object) -> str:
    """A number prefix as ``unverified_sends`` takes it: digits only, so it can bound a range and never be read
    as a pattern (no ``%``, ``_`` or collation-dependent character reaches a query)."""
    if not isinstance(prefix, str) or _PREFIX.fullmatch(prefix) is None:
        raise ValueError("prefix must be '+' and 1 to 15 ASCII digits (the start of an E.164 number)")
    return prefix


def check_message_id(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"message_id must be a string, not {type(value).__name__}")
    if not value:
        raise ValueError("message_id must not be empty")
    if len(value) > MAX_MESSAGE_ID_LENGTH:
        raise ValueError(f"message_id is too long ({len(value)} characters, at most {MAX_MESSAGE_ID_LENGTH})")
    return value


#: Largest magnitude of a time in seconds we take (~31,700 years): a store must be able to keep it, and SQLite's
#: integers end near 9.2e18, where hour bucketing of a larger float would overflow.
MAX_TIME = 1e12


def check_verification(item: Verification) -> Verification:
    """A verification's phone (E.164), optional message id and time, checked as one; ``item`` itself when
    it needs no conversion (the common case: nothing is copied per spooled line)."""
    phone = check_phone(item.phone)
    message_id = None if item.message_id is None else check_message_id(item.message_id)
    verified_at = item.verified_at
    if type(verified_at) is not float or not -MAX_TIME <= verified_at <= MAX_TIME:  # NaN is neither
        verified_at = check_time(verified_at, "verified_at")
    elif phone is item.phone and message_id is item.message_id:
        return item
    return Verification(phone, message_id, verified_at)


def check_verifications(items: Sequence[Verification]) -> list[Verification]:
    return [check_verification(item) for item in items]


def check_checkpoint(checkpoint: object) -> tuple[str, int, int]:
    """A spool checkpoint: (spool name, position before the items, position after them)."""
    if not isinstance(checkpoint, tuple) or len(checkpoint) != 3:
        raise ValueError("checkpoint must be a tuple (spool name, start, end)")
    name, start, end = checkpoint
    return check_name(name, "spool name"), check_count(start, "spool position"), check_count(end, "spool position")


def check_provider(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"provider must be a string, not {type(value).__name__}")
    if not value:
        raise ValueError("provider must not be empty")
    if len(value) > MAX_PROVIDER_LENGTH:
        raise ValueError(f"provider is too long ({len(value)} characters, at most {MAX_PROVIDER_LENGTH})")
    return value


def check_account(value: object) -> str:
    """A provider account id ("" for unknown): printable, as it is shown in stats and dead-letter reasons."""
    if not isinstance(value, str):
        raise ValueError(f"account must be a string, not {type(value).__name__}")
    if len(value) > MAX_ACCOUNT_LENGTH:
        raise ValueError(f"account is too long ({len(value)} characters, at most {MAX_ACCOUNT_LENGTH})")
    if not value.isprintable():
        raise ValueError("account must hold printable characters only")
    return value


def check_time(value: object, name: str) -> float:
    """UNIX seconds: an int or float that is finite (a NaN would silently match nothing) and storable."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be UNIX seconds (int or float), not {type(value).__name__}")
    result = float(value)
    if not math.isfinite(result):
        raise ValueError(f"{name} must be finite")
    if abs(result) > MAX_TIME:
        raise ValueError(f"{name} is out of range (at most {MAX_TIME:g} seconds either side of 1970)")
    return result


def check_positive(value: object, name: str) -> float:
    result = check_time(value, name)
    if result <= 0:
        raise ValueError(f"{name} must be > 0")
    return result


def check_count(value: object, name: str = "limit", minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an int, not {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}")
    return value


def check_ids(ids: Sequence[object] | None) -> list[int] | None:
    """Outbox row ids (dead letters to list or replay), each once, in the order given; None stays None."""
    if ids is None:
        return None
    result: dict[int, None] = {}
    for row_id in ids:
        if isinstance(row_id, bool) or not isinstance(row_id, int):
            raise ValueError(f"dead letter ids must be ints, not {type(row_id).__name__}")
        result[row_id] = None
    return list(result)


def check_schedule(interval: object, horizon: object) -> tuple[float, float]:
    interval_value = check_positive(interval, "interval")
    horizon_value = check_time(horizon, "horizon")
    if horizon_value < 0:
        raise ValueError("horizon must be >= 0")
    return interval_value, horizon_value


def check_name(value: object, name: str) -> str:
    """Flag, lease, bucket and spool names and lease owners: non-empty, bounded strings."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} must be a non-empty string")
    if len(value) > MAX_NAME_LENGTH:
        raise ValueError(f"{name} is too long (at most {MAX_NAME_LENGTH} characters)")
    return value


def check_flag_value(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"flag value must be a string or None, not {type(value).__name__}")
    if len(value) > MAX_FLAG_VALUE_LENGTH:
        raise ValueError(f"flag value is too long (at most {MAX_FLAG_VALUE_LENGTH} characters)")
    return value


def check_text(value: object, name: str) -> str:
    """An error or dead-letter reason, clipped so one runaway provider answer cannot bloat the outbox."""
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string, not {type(value).__name__}")
    return value[:MAX_ERROR_LENGTH]
