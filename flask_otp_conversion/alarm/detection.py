"""Detection: the window-against-baseline arithmetic per calling code, as pure functions of counter rows.

Per calling code, from the store's counters: the **window** (sends of the last ``window`` seconds, minute rows,
ending ``settle`` seconds ago, because a send's verification is counted in the minute of the send and comes a
little later); the **baseline** (the code's rate over the last ``baseline_days``, hour rows, or the rate of all
codes for a code with too few sends of its own); an alarm **triggers** when the window holds ``min_sends`` sends
and its rate is below ``max(floor, ratio * baseline)``, and **clears** (hysteresis) once the rate is back at that
level times ``clear_ratio / ratio`` (at most the baseline), or the window holds fewer than half of ``min_sends``.

Per number **prefix** (optional, ``prefix_alarm_digits`` > 0): the calling code and that many more digits, from
the store's sends of the same window (``Store.prefix_counts``), against the baseline of the prefix's calling
code, with ``prefix_alarm_min_sends`` for ``min_sends``: pumping into one range of a big country barely moves
the whole country's rate.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..config import Settings
from ..store.base import CountRow, PrefixCount


@dataclass(frozen=True)
class AlarmSettings:
    """Every threshold (``OTP_CONVERSION_ALARM_*`` and ``OTP_CONVERSION_SEND_LIMIT_*``); the module docstring says
    how they combine."""

    window: float = 900.0
    settle: float = 60.0
    baseline_days: float = 7.0
    min_sends: int = 20
    ratio: float = 0.5
    floor: float = 0.2
    clear_ratio: float = 0.7
    #: Sends a code needs in its baseline period for its own rate to be its baseline (else all codes' rate).
    baseline_min_sends: int = 200
    #: ``send_allowed``: unverified sends to one number in the window before it says no (0: no limit).
    number_limit: int = 5
    #: ``send_allowed``: unverified sends to one prefix (calling code and ``prefix_digits`` more) (0: no limit).
    prefix_limit: int = 30
    prefix_digits: int = 4
    #: The per-prefix alarm: digits after the calling code that make a prefix (0: off) ...
    prefix_alarm_digits: int = 0
    #: ... and the sends a prefix's window needs (``min_sends`` of the prefix alarm).
    prefix_alarm_min_sends: int = 30

    @classmethod
    def from_settings(cls, settings: Settings) -> AlarmSettings:
        return cls(
            window=settings.alarm_window,
            settle=settings.alarm_settle,
            baseline_days=settings.alarm_baseline_days,
            min_sends=settings.alarm_min_sends,
            ratio=settings.alarm_ratio,
            floor=settings.alarm_floor,
            clear_ratio=settings.alarm_clear_ratio,
            baseline_min_sends=settings.alarm_baseline_min_sends,
            number_limit=settings.send_limit_number,
            prefix_limit=settings.send_limit_prefix,
            prefix_digits=settings.send_limit_prefix_digits,
            prefix_alarm_digits=settings.alarm_prefix_digits,
            prefix_alarm_min_sends=settings.alarm_prefix_min_sends,
        )


@dataclass(frozen=True)
class CodeAssessment:
    """One calling code's (or one number prefix's) window, baseline and verdict."""

    calling_code: str
    sends: int
    verified: int
    rate: float | None
    baseline: float | None
    #: ``"own"`` (the code's rate), ``"all"`` (every code's: too few sends of its own) or ``"none"``.
    baseline_source: str
    #: The window's rate below this (with enough sends) triggers the alarm.
    trigger_below: float
    #: An open alarm clears once the rate is at least this.
    clear_at: float
    triggered: bool
    clears: bool
    #: The number prefix ("+", the code and more digits) of a prefix's assessment; None for a whole code's.
    prefix: str | None = None


def _totals(rows: Iterable[CountRow]) -> dict[str, list[int]]:
    """Requested and verified per calling code, summed over providers."""
    out: dict[str, list[int]] = {}
    for row in rows:
        acc = out.setdefault(row.calling_code, [0, 0])
        acc[0] += row.requested
        acc[1] += row.verified
    return out


class _Baselines:
    """The baseline of each calling code from the baseline rows: its own rate, else every code's, else none."""

    def __init__(self, rows: Iterable[CountRow], settings: AlarmSettings) -> None:
        self._by_code = _totals(rows)
        self._all_sent = sum(v[0] for v in self._by_code.values())
        all_verified = sum(v[1] for v in self._by_code.values())
        self._all_rate = all_verified / self._all_sent if self._all_sent else None
        self._min_sends = settings.baseline_min_sends

    def of(self, code: str) -> tuple[float | None, str]:
        own = self._by_code.get(code)
        if own is not None and own[0] >= self._min_sends:
            return min(1.0, own[1] / own[0]), "own"
        if self._all_rate is not None and self._all_sent >= self._min_sends:
            return min(1.0, self._all_rate), "all"
        return None, "none"


def _verdict(
    code: str,
    sends: int,
    verified: int,
    baseline: tuple[float | None, str],
    settings: AlarmSettings,
    *,
    min_sends: int,
    prefix: str | None = None,
) -> CodeAssessment:
    base, source = baseline
    trigger = settings.floor if base is None else max(settings.floor, settings.ratio * base)
    clear = trigger * settings.clear_ratio / settings.ratio
    if base is not None:
        clear = max(trigger, min(clear, base))
    rate = verified / sends if sends else None
    return CodeAssessment(
        calling_code=code,
        sends=sends,
        verified=verified,
        rate=rate,
        baseline=base,
        baseline_source=source,
        trigger_below=trigger,
        clear_at=clear,
        triggered=sends >= min_sends and rate is not None and rate < trigger,
        clears=sends * 2 < min_sends or (rate is not None and rate >= clear),
        prefix=prefix,
    )


def assess(
    window_rows: Iterable[CountRow], baseline_rows: Iterable[CountRow], settings: AlarmSettings
) -> list[CodeAssessment]:
    """The verdict of every calling code with sends in the window, ordered by code. Pure: rows in, verdicts out."""
    window = _totals(window_rows)
    baselines = _Baselines(baseline_rows, settings)
    return [
        _verdict(code, sends, verified, baselines.of(code), settings, min_sends=settings.min_sends)
        for code, (sends, verified) in sorted(window.items())
    ]


def assess_prefixes(
    prefix_rows: Iterable[PrefixCount], baseline_rows: Iterable[CountRow], settings: AlarmSettings
) -> list[CodeAssessment]:
    """The verdict of every prefix with at least half of ``prefix_alarm_min_sends`` sends in the window (one
    with fewer can neither open an alarm nor keep one open), each against its calling code's baseline, ordered
    by prefix. Pure, as ``assess``."""
    baselines = _Baselines(baseline_rows, settings)
    least = settings.prefix_alarm_min_sends
    return [
        _verdict(
            row.calling_code,
            row.sends,
            row.verified,
            baselines.of(row.calling_code),
            settings,
            min_sends=least,
            prefix=row.prefix,
        )
        for row in sorted(prefix_rows, key=lambda row: row.prefix)
        if row.sends * 2 >= least
    ]


def pct(rate: float | None) -> str:
    """A rate as the log lines and the CLI show it."""
    return "-" if rate is None else f"{rate:.1%}"
