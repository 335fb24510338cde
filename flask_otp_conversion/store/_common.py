"""Rules both stores share: input checks at the boundary, hour buckets, text clipping, outbox states.

The stores differ only in how they keep rows; what counts as valid input, which hour a counter lands in
and how long an error may be must not differ, so they live here once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from ..phone import normalize_phone
from .base import MAX_ERROR_LENGTH, MAX_MESSAGE_ID_LENGTH, MAX_PROVIDER_LENGTH, Verification

#: Outbox row states.
PENDING = "pending"
REPORTED = "reported"
DEAD = "dead"

HOUR = 3600
#: Longest flag name, flag value, lease name and lease owner we accept.
MAX_NAME_LENGTH = 200
MAX_FLAG_VALUE_LENGTH = 4000


def check_phone(phone: object) -> str:
    """The store only takes numbers already in E.164, so one person never ends up under two spellings."""
    normalized = normalize_phone(phone)  # its errors name the field and never echo the number
    if normalized != phone:
        raise ValueError("phone must already be normalised to E.164 (use phone.normalize_phone)")
    return normalized


def check_message_id(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"message_id must be a string, not {type(value).__name__}")
    if not value:
        raise ValueError("message_id must not be empty")
    if len(value) > MAX_MESSAGE_ID_LENGTH:
        raise ValueError(f"message_id is too long ({len(value)} characters, at most {MAX_MESSAGE_ID_LENGTH})")
    return value


def check_verification(item: Verification) -> Verification:
    """A verification's phone (E.164), optional message id and time, checked as one."""
    message_id = None if item.message_id is None else check_message_id(item.message_id)
    return Verification(check_phone(item.phone), message_id, check_time(item.verified_at, "verified_at"))


def check_batch(
    items: Sequence[Verification], provider: object, match_window: object, checkpoint: tuple[str, int, int]
) -> tuple[list[Verification], str, float, tuple[str, int, int]]:
    """The arguments of ``Store.apply_verifications``, checked."""
    name, start, end = checkpoint
    checked_point = (
        check_name(name, "spool name"),
        check_count(start, "spool position"),
        check_count(end, "spool position"),
    )
    return (
        [check_verification(item) for item in items],
        check_provider(provider),
        check_positive(match_window, "match_window"),
        checked_point,
    )


def check_provider(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"provider must be a string, not {type(value).__name__}")
    if not value:
        raise ValueError("provider must not be empty")
    if len(value) > MAX_PROVIDER_LENGTH:
        raise ValueError(f"provider is too long ({len(value)} characters, at most {MAX_PROVIDER_LENGTH})")
    return value


def check_time(value: object, name: str) -> float:
    """UNIX seconds: an int or float that is finite (a NaN would silently match nothing)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be UNIX seconds (int or float), not {type(value).__name__}")
    result = float(value)
    if not math.isfinite(result):
        raise ValueError(f"{name} must be finite")
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


def check_rate(rate: object, burst: object) -> tuple[float, float]:
    rate_value = check_positive(rate, "rate")
    burst_value = check_time(burst, "burst")
    if burst_value < 1:
        raise ValueError("burst must be >= 1")
    return rate_value, burst_value


def draw_tokens(
    state: tuple[float, float] | None, *, want: int, rate: float, burst: float, now: float
) -> tuple[int, float, tuple[float, float]]:
    """The token bucket step both stores run inside their atomic section.

    ``state`` is ``(tokens, updated)`` or None for a new (full) bucket. Returns ``(granted, wait, new
    state)``. A clock that steps back refills nothing rather than taking tokens away.
    """
    tokens, updated = (burst, now) if state is None else state
    if now > updated:
        tokens = min(burst, tokens + (now - updated) * rate)
        updated = now
    tokens = min(tokens, burst)  # a smaller burst than last time applies at once
    granted = min(want, int(tokens))
    tokens -= granted
    wait = 0.0 if granted else max(0.0, 1.0 - tokens) / rate
    return granted, wait, (tokens, updated)


def check_name(value: object, name: str) -> str:
    """Flag and lease names and lease owners: non-empty, bounded strings."""
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


def hour_of(ts: float) -> int:
    """Start of the UTC hour holding ``ts``, in epoch seconds."""
    return int(ts // HOUR) * HOUR


def counter_expired(hour: int, before: float) -> bool:
    """A counter row is prunable only once its whole hour lies before ``before``."""
    return hour + HOUR <= before
