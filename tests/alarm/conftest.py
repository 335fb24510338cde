"""Fixtures of the alarm tests: a simulated week of normal traffic and a pumping burst, played once into a real
store against a fake clock, the alarm evaluated every simulated minute (as a scrape would); and the same with the
per-prefix alarm on, the burst into one number range of the biggest code."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import pytest

from flask_otp_conversion.alarm import Alarms, AlarmSettings, CodeAssessment, Episode, Evaluation
from flask_otp_conversion.store import MemoryStore
from tests.alarm.traffic import CODES, RANGED_CODES, Code, Traffic
from tests.conftest import FakeClock

DAY = 86400.0
#: A Monday 00:00 UTC: the week starts at midnight, so each day's swing is whole.
START = 1_780_272_000.0
PUMPED = next(code for code in CODES if code.calling_code == "234")
#: The burst: 30 sends a minute to +234 (normally ~0.1), 2 % of them verified, for 30 minutes, on day 8 at 11:00.
BURST_START = START + 7 * DAY + 11 * 3600
BURST_MINUTES = 30
BURST_PER_MINUTE = 30.0
#: The range burst: 12 sends a minute at 2 % to +86170 (a range the app never sends to) for 6 minutes on day 8 at
#: 12:00, +86's peak (~8 legitimate sends a minute): the whole code's window stays above its trigger, and four
#: minutes of it hold the prefix alarm's 30 sends on any likely draw (at 10 a minute one seed in six took six).
RANGE_PUMPED = Code("86", 0.0, 12.0, "+86170")
RANGE_DIGITS = 3
RANGE_BURST_START = START + 7 * DAY + 12 * 3600
RANGE_BURST_MINUTES = 6
RANGE_BURST_PER_MINUTE = 12.0


@dataclass
class Played:
    """What the alarm did while the traffic played: every episode opened (with when), and each evaluation's
    open codes by simulated minute."""

    opened: list[tuple[float, Episode]] = field(default_factory=list)
    #: The open episodes' keys (calling codes, and prefixes with their "+") of each minute.
    open_by_minute: dict[float, set[str]] = field(default_factory=dict)
    #: Each minute's verdict of every prefix the per-prefix alarm assessed, and of +86 (the ranged burst's code).
    prefixes_by_minute: dict[float, list[CodeAssessment]] = field(default_factory=dict)
    big_code_by_minute: dict[float, CodeAssessment] = field(default_factory=dict)
    sent: int = 0
    verified: int = 0
    evaluations: int = 0


def _ticker(store: MemoryStore, clock: FakeClock, alarms: Alarms, played: Played) -> Callable[[float], None]:
    def tick(now: float) -> None:
        clock.now = now
        if int(now) % (6 * 3600) == 0:  # the reporter prunes hourly; often enough here
            store.prune(before=now - 8 * DAY, minute_rows_before=now - 2 * DAY)
        evaluation = alarms.evaluate()
        played.evaluations += 1
        played.open_by_minute[now] = set(evaluation.episodes) | set(evaluation.prefix_episodes)
        if evaluation.prefixes:
            played.prefixes_by_minute[now] = evaluation.prefixes
        for code in evaluation.codes:
            if code.calling_code == RANGE_PUMPED.calling_code:
                played.big_code_by_minute[now] = code

    return tick


def _play(store: MemoryStore, clock: FakeClock, alarms: Alarms, played: Played, traffic: Traffic) -> None:
    tick = _ticker(store, clock, alarms, played)
    traffic.play(START, 7 * 1440, on_minute=tick)
    traffic.play(
        BURST_START - 11 * 3600, 11 * 60, on_minute=tick
    )  # day 8 up to the burst, then the burst, then an hour after it
    traffic.play(BURST_START, BURST_MINUTES, on_minute=tick, pump=PUMPED, pump_per_minute=BURST_PER_MINUTE)
    traffic.play(BURST_START + BURST_MINUTES * 60, 60, on_minute=tick)
    played.sent, played.verified = traffic.sent, traffic.verified


def _recording(settings: AlarmSettings) -> tuple[MemoryStore, FakeClock, Played, Alarms]:
    """A memory store, a clock at ``START``, and alarms with ``settings`` whose episodes are recorded."""
    store = MemoryStore()
    clock = FakeClock()
    clock.now = START
    played = Played()

    def on_episode(episode: Episode, evaluation: Evaluation) -> None:
        played.opened.append((evaluation.at, episode))

    return store, clock, played, Alarms(store, settings, on_episode=on_episode, clock=clock)


@pytest.fixture(scope="package")
def played_week() -> Iterator[Played]:
    """Eight simulated days (about 95 000 sends) with one burst; takes ~10 s, so played once for the package."""
    store, clock, played, alarms = _recording(AlarmSettings())
    _play(store, clock, alarms, played, Traffic(store, random.Random(20260101)))
    yield played
    store.close()


@pytest.fixture(scope="package")
def played_ranged_week() -> Iterator[Played]:
    """A simulated week of ``RANGED_CODES`` traffic (about 88 000 sends) with the per-prefix alarm on (three
    digits, the other thresholds at their defaults), then the range burst; played once for the package."""
    store, clock, played, alarms = _recording(AlarmSettings(prefix_alarm_digits=RANGE_DIGITS))
    tick = _ticker(store, clock, alarms, played)
    traffic = Traffic(store, random.Random(20260102), codes=RANGED_CODES)
    traffic.play(START, 7 * 1440 + 12 * 60, on_minute=tick)  # a week, then day 8 up to the burst
    traffic.play(
        RANGE_BURST_START,
        RANGE_BURST_MINUTES,
        on_minute=tick,
        pump=RANGE_PUMPED,
        pump_per_minute=RANGE_BURST_PER_MINUTE,
    )
    traffic.play(RANGE_BURST_START + RANGE_BURST_MINUTES * 60, 60, on_minute=tick)
    played.sent, played.verified = traffic.sent, traffic.verified
    yield played
    store.close()
