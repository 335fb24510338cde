"""Detection: the window-against-baseline arithmetic per calling code, as pure functions of counter rows.

Per calling code, from the store's counters: the **window** (sends of the last ``window`` seconds, minute rows,
ending ``settle`` seconds ago, because a send's verification is counted in the minute of the send and comes a
little later); the **baseline** (the code's rate over the last ``baseline_days``, hour rows, or the rate of all
codes for a code with too few sends of its own); an alarm **triggers** when the window holds ``min_sends`` sends
and its rate is below ``max(floor, ratio * baseline)``, and **clears** (hysteresis) once the rate is back at that
level times ``clear_ratio / ratio`` (at most the baseline), or the window holds fewer than half of ``min_sends``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..config import Settings
from ..store.base import CountRow


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
        )


@dataclass(frozen=True)
class CodeAssessment:
    """One calling code's window, baseline and verdict."""

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


def _totals(rows: Iterable[CountRow]) -> dict[str, list[int]]:
    """Requested and verified per calling code, summed over providers."""
    out: dict[str, list[int]] = {}
    for row in rows:
        acc = out.setdefault(row.calling_code, [0, 0])
        acc[0] += row.requested
        acc[1] += row.verified
    return out


def assess(
    window_rows: Iterable[CountRow], baseline_rows: Iterable[CountRow], settings: AlarmSettings
) -> list[CodeAssessment]:
    """The verdict of every calling code with sends in the window, ordered by code. Pure: rows in, verdicts out."""
    window = _totals(window_rows)
    baseline = _totals(baseline_rows)
    all_sent = sum(v[0] for v in baseline.values())
    all_rate = sum(v[1] for v in baseline.values()) / all_sent if all_sent else None
    out = []
    for code in sorted(window):
        sends, verified = window[code]
        own = baseline.get(code)
        if own is not None and own[0] >= settings.baseline_min_sends:
            base, source = min(1.0, own[1] / own[0]), "own"
        elif all_rate is not None and all_sent >= settings.baseline_min_sends:
            base, source = min(1.0, all_rate), "all"
        else:
            base, source = None, "none"
        trigger = settings.floor if base is None else max(settings.floor, settings.ratio * base)
        clear = trigger * settings.clear_ratio / settings.ratio
        if base is not None:
            clear = max(trigger, min(clear, base))
        rate = verified / sends if sends else None
        out.append(
            CodeAssessment(
                calling_code=code,
                sends=sends,
                verified=verified,
                rate=rate,
                baseline=base,
                baseline_source=source,
                trigger_below=trigger,
                clear_at=clear,
                triggered=sends >= settings.min_sends and rate is not None and rate < trigger,
                clears=sends * 2 < settings.min_sends or (rate is not None and rate >= clear),
            )
        )
    return out


def pct(rate: float | None) -> str:
    """A rate as the log lines and the CLI show it."""
    return "-" if rate is None else f"{rate:.1%}"
