"""The SMS-pumping alarm: per calling code, the conversion rate of a sliding window against the code's own baseline.

SMS pumping (traffic inflated to premium numbers) shows as sends that are never verified: a code's conversion
*rate* falls while its volume rises. So, per calling code, from the store's counters (every worker and host reads
the same rows, so they all agree):

- the **window**: sends of the last ``window`` seconds, minute rows, ending ``settle`` seconds ago, because a
  send's verification is counted in the minute of the send and comes a little later (the newest minute would
  always look unconverted);
- the **baseline**: the code's rate over the last ``baseline_days`` (hour rows, the window's hours left out), or,
  for a code with too few sends of its own (pumpers pick countries an app rarely sends to), the rate of all codes;
- an alarm **triggers** when the window holds ``min_sends`` sends and its rate is below
  ``max(floor, ratio * baseline)``; it **clears** (hysteresis) once the rate is back at that level times
  ``clear_ratio / ratio`` (at most the baseline), or the window holds fewer than half of ``min_sends``.

``assess`` is that arithmetic alone, over counter rows. ``Alarms`` reads the rows at the time it is asked (a scrape,
the dashboard, ``send_allowed``, the CLI), keeps episodes in one store flag so that hosts agree, and makes the
transitions under a short named lease, so an episode is logged and signalled once. ``RecentSends`` is the
per-number part of ``send_allowed``: unverified sends to one number or number prefix, counted in this process.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ._forks import ForkLocal
from .config import Settings
from .phone import calling_code, mask_phone, normalize_phone
from .redaction import describe_error
from .signals import conversion_anomaly
from .store import Store
from .store.base import HOUR, MINUTE, CountRow

__all__ = [
    "EPISODES_FLAG",
    "AlarmSettings",
    "Alarms",
    "CodeAssessment",
    "Episode",
    "Evaluation",
    "RecentSends",
    "SendDecision",
    "assess",
    "decide",
    "figures",
    "for_app",
    "parse_episodes",
    "report_lines",
]

#: The store flag holding the open episodes, ``code=since;code=since``: every process reads the same.
EPISODES_FLAG = "alarm:episodes"
#: The named lease under which one process at a time opens and closes episodes (logs them, signals them).
EPISODES_LEASE = "alarm:episodes"
#: Seconds the lease holds: another process takes over this long after the holder stops evaluating.
LEASE_TTL = 30.0
#: Seconds a process that found the lease held by another waits before it asks again (each ask is a write).
LEASE_RETRY = 10.0
#: Seconds one evaluation is reused (a scrape, the dashboard and ``send_allowed`` share it).
CACHE_SECONDS = 1.0
#: Seconds the baseline (a week of hour rows, which barely moves) is reused.
BASELINE_CACHE_SECONDS = 300.0


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


@dataclass(frozen=True)
class Episode:
    """An open alarm: since when, and what the latest evaluation saw (None when its code had no sends)."""

    calling_code: str
    since: float
    assessment: CodeAssessment | None


def parse_episodes(value: str | None) -> dict[str, float]:
    """The episodes flag as ``{code: since}``; a malformed entry is dropped, not fatal."""
    out: dict[str, float] = {}
    for part in (value or "").split(";"):
        code, _, since = part.partition("=")
        if code.isdigit():
            try:
                out[code] = float(since)
            except ValueError:
                continue
    return out


def _format_episodes(episodes: dict[str, float]) -> str | None:
    return ";".join(f"{code}={since:.0f}" for code, since in sorted(episodes.items())) or None


@dataclass(frozen=True)
class Evaluation:
    """What ``Alarms.evaluate`` saw at ``at``."""

    at: float
    window_start: float
    window_end: float
    codes: list[CodeAssessment]
    episodes: dict[str, Episode] = field(default_factory=dict)


#: ``on_episode(episode)``: called once when an episode opens (the extension sends ``conversion-anomaly``).
OnEpisode = Callable[[Episode, "Evaluation"], None]


class Alarms(ForkLocal):
    """Evaluates the alarm from the store when asked, cached for ``CACHE_SECONDS``; opens and closes episodes.
    A forked child starts with its own lock and cache (and is another owner of the episodes' lease)."""

    def __init__(
        self,
        store: Store,
        settings: AlarmSettings,
        *,
        on_episode: OnEpisode | None = None,
        logger: logging.Logger | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self._store = store
        self._on_episode = on_episode
        self.logger = logger or logging.getLogger("flask_otp_conversion")
        self._clock = clock
        self._after_fork_in_child()
        self._watch_forks()

    def _after_fork_in_child(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._last: Evaluation | None = None
        self._baseline: tuple[float, int, list[CountRow]] | None = None  # (read at, period end, rows)
        self._ask_lease_at = -math.inf

    @property
    def _owner(self) -> str:
        # Per process (a forked worker is another owner): the lease says which process makes the transitions.
        return f"{os.getpid()}:{id(self)}:{_PROCESS_TOKEN}"

    def evaluate(self, *, fresh: bool = False) -> Evaluation:
        """The alarm now: every code's verdict and the open episodes (reused for ``CACHE_SECONDS``)."""
        self._check_fork()
        now = self._clock()
        with self._lock:
            last = self._last
            if not fresh and last is not None and 0 <= now - last.at < CACHE_SECONDS:
                return last
            evaluation = self._evaluate(now)
            self._last = evaluation
            return evaluation

    def _evaluate(self, now: float) -> Evaluation:
        s = self.settings
        end = int((now - s.settle) // MINUTE) * MINUTE
        start = end - int(s.window // MINUTE) * MINUTE
        codes = assess(self._store.counts(since=start, until=end, span=MINUTE), self._baseline_rows(now, start), s)
        evaluation = Evaluation(now, float(start), float(end), codes)
        return Evaluation(now, float(start), float(end), codes, self._episodes(evaluation))

    def _baseline_rows(self, now: float, window_start: int) -> list[CountRow]:
        until = int(window_start // HOUR) * HOUR  # whole hours before the window's
        cached = self._baseline
        if cached is not None and cached[1] == until and now - cached[0] < BASELINE_CACHE_SECONDS:
            return cached[2]
        rows = self._store.counts(since=until - self.settings.baseline_days * 86400, until=until)
        self._baseline = (now, until, rows)
        return rows

    def _episodes(self, evaluation: Evaluation) -> dict[str, Episode]:
        """Open and close episodes by the verdicts, under the lease; without it, read what the holder wrote."""
        now = evaluation.at
        by_code = {a.calling_code: a for a in evaluation.codes}
        stored = parse_episodes(self._store.get_flag(EPISODES_FLAG))
        as_stored = {code: Episode(code, since, by_code.get(code)) for code, since in stored.items()}
        if now < self._ask_lease_at:
            return as_stored
        try:
            if not self._store.acquire_lease(EPISODES_LEASE, owner=self._owner, ttl=LEASE_TTL, now=now):
                self._ask_lease_at = now + LEASE_RETRY
                return as_stored
        except Exception as exc:  # a store that reads but refuses writes (locked, full): show, change nothing
            self.logger.debug("alarm episodes not updated: %s", describe_error(exc))
            return as_stored
        opened, closed = [], []
        episodes = dict(stored)
        for code, since in stored.items():
            seen = by_code.get(code)
            if seen is None or seen.clears:  # no sends at all in the window clears it too
                closed.append((code, since, seen))
                del episodes[code]
        for a in evaluation.codes:
            if a.triggered and a.calling_code not in episodes:
                episodes[a.calling_code] = now
                opened.append(a.calling_code)
        if opened or closed:
            try:
                self._store.set_flag(EPISODES_FLAG, _format_episodes(episodes))
            except Exception as exc:  # as above: the next evaluation that can write makes the transitions
                self.logger.debug("alarm episodes not updated: %s", describe_error(exc))
                return as_stored
        result = {code: Episode(code, since, by_code.get(code)) for code, since in episodes.items()}
        for code, since, seen in closed:
            self.logger.info(
                "otp-conversion alarm cleared for +%s after %.0f s (window rate %s, %d sends)",
                code,
                now - since,
                _pct(seen.rate if seen else None),
                seen.sends if seen else 0,
            )
        for code in opened:
            a = by_code[code]
            self.logger.warning(
                "otp-conversion alarm: conversion to +%s fell to %s over %d sends in the last %.0f min "
                "(baseline %s, %s): possible SMS pumping",
                code,
                _pct(a.rate),
                a.sends,
                self.settings.window / 60,
                _pct(a.baseline),
                a.baseline_source,
            )
            if self._on_episode is not None:
                try:
                    self._on_episode(result[code], evaluation)
                except Exception:  # an app's receiver failing must not stop the alarm
                    self.logger.exception("otp-conversion: a conversion-anomaly receiver raised")
        return result


_PROCESS_TOKEN = uuid.uuid4().hex[:8]


def _pct(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:.1%}"


@dataclass(frozen=True)
class SendDecision:
    """``send_allowed``'s answer: advisory, the app decides. Truthy when allowed."""

    allowed: bool
    #: Why not (None when allowed): ``"calling-code-alarm"``, ``"number-limit"`` or ``"prefix-limit"``.
    reason: str | None = None
    detail: str | None = None
    calling_code: str | None = None

    def __bool__(self) -> bool:
        return self.allowed


class RecentSends(ForkLocal):
    """Unverified sends per number and per number prefix over the last ``window`` seconds, in this process.

    Bounded: at most ``max_numbers`` numbers are remembered (the oldest forgotten first). A verification of a
    number forgets its sends. Per process: with several workers, each counts the sends it recorded (a forked
    child starts empty).
    """

    def __init__(self, window: float, prefix_digits: int, *, max_numbers: int = 100_000) -> None:
        self._window = window
        self._digits = prefix_digits
        self._max = max_numbers
        self._after_fork_in_child()
        self._watch_forks()

    def _after_fork_in_child(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._by_number: OrderedDict[str, deque[float]] = OrderedDict()
        self._by_prefix: dict[str, set[str]] = {}

    def prefix(self, phone: str) -> str:
        code = calling_code(phone)
        return "+" + code + phone[1 + len(code) :][: self._digits]

    def note_sent(self, phone: str, at: float) -> None:
        with self._lock:
            sends = self._by_number.pop(phone, None) or deque()
            sends.append(at)
            self._by_number[phone] = sends
            self._by_prefix.setdefault(self.prefix(phone), set()).add(phone)
            while len(self._by_number) > self._max:
                self._forget(next(iter(self._by_number)))

    def note_verified(self, phone: str) -> None:
        with self._lock:
            self._forget(phone)

    def unverified(self, phone: str, now: float, *, enough: int = 0) -> tuple[int, int]:
        """(unverified sends to ``phone``, to its prefix) in the window ending ``now``; the prefix's count stops
        at ``enough`` when that is given (all a limit needs to know)."""
        cutoff = now - self._window
        with self._lock:
            number = self._live(phone, cutoff)
            total = 0
            for other in list(self._by_prefix.get(self.prefix(phone), ())):
                total += self._live(other, cutoff)
                if enough and total >= enough:
                    break
            return number, total

    def _live(self, phone: str, cutoff: float) -> int:
        sends = self._by_number.get(phone)
        if sends is None:
            return 0
        while sends and sends[0] <= cutoff:
            sends.popleft()
        if not sends:
            self._forget(phone)
        return len(sends)

    def _forget(self, phone: str) -> None:
        if self._by_number.pop(phone, None) is None:
            return
        key = self.prefix(phone)
        numbers = self._by_prefix.get(key)
        if numbers is not None:
            numbers.discard(phone)
            if not numbers:
                del self._by_prefix[key]


def decide(alarms: Alarms, recent: RecentSends, phone: object, now: float) -> SendDecision:
    """``send_allowed``: no while the number's calling code is under an alarm episode, or while the number or its
    prefix has as many unverified sends in the window as its limit. Raises ``ValueError`` for a bad phone."""
    e164 = normalize_phone(phone)
    code = calling_code(e164)
    try:
        episode = alarms.evaluate().episodes.get(code)
    except Exception as exc:  # advisory: a store that cannot answer must not stop the app's sends
        alarms.logger.warning("send_allowed: the alarm could not be read (%s); not checked", describe_error(exc))
        episode = None
    if episode is not None:
        seen = episode.assessment
        detail = f"+{code} is under an SMS-pumping alarm since {time.strftime('%H:%M:%SZ', time.gmtime(episode.since))}"
        if seen is not None:
            detail += f" (conversion {_pct(seen.rate)} over {seen.sends} sends, baseline {_pct(seen.baseline)})"
        return SendDecision(False, "calling-code-alarm", detail, code)
    s = alarms.settings
    number, prefix = recent.unverified(e164, now, enough=s.prefix_limit)
    if s.number_limit and number >= s.number_limit:
        detail = f"{number} unverified sends to {mask_phone(e164)} in the last {s.window / 60:.0f} min"
        return SendDecision(False, "number-limit", detail, code)
    if s.prefix_limit and prefix >= s.prefix_limit:
        detail = f"{prefix} unverified sends to {recent.prefix(e164)}... in the last {s.window / 60:.0f} min"
        return SendDecision(False, "prefix-limit", detail, code)
    return SendDecision(True, None, None, code)


def for_app(
    store: Store, settings: Settings, sender: Callable[[], object], logger: logging.Logger
) -> tuple[Alarms, RecentSends]:
    """The alarm of one app, sending ``conversion-anomaly`` with ``sender()`` (the app) as sender, and its
    per-number counts."""
    alarm_settings = AlarmSettings.from_settings(settings)

    def on_episode(episode: Episode, evaluation: Evaluation) -> None:
        seen = episode.assessment
        conversion_anomaly.send(
            sender(),
            calling_code=episode.calling_code,
            rate=None if seen is None else seen.rate,
            baseline=None if seen is None else seen.baseline,
            sends=0 if seen is None else seen.sends,
            window=evaluation.window_end - evaluation.window_start,
            since=episode.since,
        )

    alarms = Alarms(store, alarm_settings, on_episode=on_episode, logger=logger)
    return alarms, RecentSends(alarm_settings.window, alarm_settings.prefix_digits)


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def figures(evaluation: Evaluation) -> dict[str, object]:
    """The alarm as JSON (the stats endpoint's ``alarms``, the dashboard, ``flask otp-conversion alarms --json``)."""
    return {
        "window": {
            "from": _iso(evaluation.window_start),
            "to": _iso(evaluation.window_end),
            "seconds": evaluation.window_end - evaluation.window_start,
        },
        "open": [
            {
                "calling_code": e.calling_code,
                "since": _iso(e.since),
                "seconds": max(0.0, evaluation.at - e.since),
                "rate": None if e.assessment is None else e.assessment.rate,
                "baseline": None if e.assessment is None else e.assessment.baseline,
                "sends": 0 if e.assessment is None else e.assessment.sends,
            }
            for e in sorted(evaluation.episodes.values(), key=lambda e: e.calling_code)
        ],
        "codes": [
            {
                "calling_code": a.calling_code,
                "sends": a.sends,
                "verified": a.verified,
                "rate": a.rate,
                "baseline": a.baseline,
                "baseline_source": a.baseline_source,
                "trigger_below": a.trigger_below,
                "alarm": a.calling_code in evaluation.episodes,
            }
            for a in evaluation.codes
        ],
    }


def report_lines(shown: dict[str, object]) -> list[str]:
    """``flask otp-conversion alarms``: the open episodes, then every code of the window."""
    window = shown["window"]
    opened = shown["open"]
    codes = shown["codes"]
    assert isinstance(window, dict) and isinstance(opened, list) and isinstance(codes, list)
    lines = [f"window           {window['from']} .. {window['to']}"]
    if opened:
        for e in opened:
            lines.append(
                f"ALARM +{e['calling_code']:<5} since {e['since']}: rate {_pct(e['rate'])} over {e['sends']} sends, "
                f"baseline {_pct(e['baseline'])}"
            )
    else:
        lines.append("no alarm")
    lines += ["", f"{'calling code':<14} {'sends':>7} {'verified':>9} {'rate':>7} {'baseline':>9} {'alarm below':>12}"]
    for a in codes:
        code = "+" + str(a["calling_code"])
        lines.append(
            f"{code:<14} {a['sends']:>7} {a['verified']:>9} {_pct(a['rate']):>7} {_pct(a['baseline']):>9} "
            f"{_pct(a['trigger_below']):>12}{'  ALARM' if a['alarm'] else ''}"
        )
    return lines
