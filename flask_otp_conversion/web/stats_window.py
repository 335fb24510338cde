"""The statistics window: what ``since`` / ``from`` / ``to`` ask for, checked against the provider's limits.

Windows are UTC. What depends on the provider is said by its class: ``Provider.statistics_max_span`` (Tencent:
32 days; a longer window is a ``WindowError``, a 400 at the endpoint, not a provider error). The endpoint, the
dashboard and the CLI parse windows here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from ..providers import Provider
from ..providers import provider_class as _registered

__all__ = [
    "DEFAULT_SPAN",
    "EARLIEST",
    "LATEST",
    "MAX_SPAN",
    "Window",
    "WindowError",
    "iso",
    "parse_window",
]

DEFAULT_SPAN = timedelta(hours=24)
#: The longest window asked without a provider limit: ten years. Anything longer asks about times nothing
#: was recorded in, and ``since=999999d`` would overflow the date arithmetic.
MAX_SPAN = timedelta(days=3660)
#: Windows lie between the UNIX epoch (the store's times are UNIX seconds) and the start of year 9999, a
#: year short of ``datetime.max`` so that a provider's time zone (Tencent: UTC+8) can still be applied.
EARLIEST = datetime(1970, 1, 1, tzinfo=timezone.utc)
LATEST = datetime(9999, 1, 1, tzinfo=timezone.utc)
_SINCE = re.compile(r"^\s*(\d{1,6})\s*([mhd])\s*$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}


class WindowError(ValueError):
    """A bad ``since`` / ``from`` / ``to``; the message is shown to the caller as is."""


@dataclass(frozen=True)
class Window:
    """The span the figures are asked for."""

    begin: datetime  # aware, UTC
    end: datetime

    def as_json(self) -> dict[str, str]:
        return {"from": iso(self.begin), "to": iso(self.end)}


def iso(moment: datetime) -> str:
    """A moment as the stats show it: ISO-8601 in UTC, with ``Z``."""
    return moment.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _parse_since(value: str) -> timedelta:
    match = _SINCE.match(value)
    if match is None:
        raise WindowError(f"since must be a number followed by m, h or d (e.g. 24h, 7d, 90m); got {value!r}")
    span = timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    if span <= timedelta(0):
        raise WindowError("since must be greater than zero")
    if span > MAX_SPAN:
        raise WindowError(f"since must be at most {MAX_SPAN.days} days; got {value.strip()!r}")
    return span


def _parse_moment(name: str, value: str) -> datetime:
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise WindowError(f"{name} must be an ISO-8601 date-time (e.g. 2026-01-31T08:00:00Z); got {value!r}") from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        moment = moment.replace(tzinfo=timezone.utc)  # naive means UTC
    try:
        moment = moment.astimezone(timezone.utc)
    except OverflowError:  # 0001-01-01T00:00+01:00 is before year 1 in UTC
        moment = EARLIEST - timedelta(days=1) if moment.year < 5000 else LATEST + timedelta(days=1)
    if not EARLIEST <= moment <= LATEST:
        raise WindowError(f"{name} must be between {iso(EARLIEST)} and {iso(LATEST)}; got {value!r}")
    return moment


def _provider_class(provider: type[Provider] | str | None) -> type[Provider] | None:
    if provider is None or isinstance(provider, type):
        return provider
    try:
        return _registered(provider)
    except LookupError:  # an unknown name has no facts to apply; the config check reports it elsewhere
        return None


def parse_window(
    args: Mapping[str, str], *, provider: type[Provider] | str | None, now: datetime | None = None
) -> Window:
    """The window from ``since`` or ``from``/``to`` (default: the last 24 h). ``WindowError`` on bad input,
    ``from`` after ``to``, or a span longer than the provider's ``statistics_max_span`` (``provider``: its class
    or its registered name)."""
    now = now or datetime.now(timezone.utc)
    since, begin_text, end_text = args.get("since"), args.get("from"), args.get("to")
    if since is not None and (begin_text is not None or end_text is not None):
        raise WindowError("give either since or from/to, not both")
    if since is not None:
        window = Window(max(now - _parse_since(since), EARLIEST), now)
    else:
        end = _parse_moment("to", end_text) if end_text is not None else now
        begin = _parse_moment("from", begin_text) if begin_text is not None else max(end - DEFAULT_SPAN, EARLIEST)
        if begin > end:
            raise WindowError("from must not be after to")
        window = Window(begin, end)
    span = window.end - window.begin
    cls = _provider_class(provider)
    limit = None if cls is None else cls.statistics_max_span
    if cls is not None and limit is not None and span > limit:
        raise WindowError(f"the window spans {span}; {cls.name} allows at most {limit.days} days")
    if span > MAX_SPAN:
        raise WindowError(f"the window spans {span.days} days; at most {MAX_SPAN.days} days")
    return window
