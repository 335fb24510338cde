"""Episodes: ``Alarms`` evaluates the detection from the store when asked, keeps the open episodes in one store
flag (so that every process and host agrees) and makes the transitions under a short named lease, so an episode
is logged and signalled once. A number prefix's alarm (``AlarmSettings.prefix_alarm_digits``) is an episode of
its own, in the same flag."""

from __future__ import annotations

import logging
import math
import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from .._forks import ForkLocal
from ..phone import calling_code
from ..redaction import describe_error
from ..store import Store
from ..store.base import HOUR, MINUTE, CountRow
from .detection import AlarmSettings, CodeAssessment, assess, assess_prefixes, pct

#: The store flag holding the open episodes, ``code=since;+prefix=since``: every process reads the same. A
#: prefix's entry starts with "+", which a version without the prefix alarm drops as malformed.
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
class Episode:
    """An open alarm: since when, and what the latest evaluation saw (None when its code had no sends)."""

    calling_code: str
    since: float
    assessment: CodeAssessment | None
    #: The number prefix under alarm ("+", the code and more digits); None for the whole calling code.
    prefix: str | None = None

    @property
    def key(self) -> str:
        """Its name in the episodes flag: the calling code, or the prefix with its "+"."""
        return self.calling_code if self.prefix is None else self.prefix


def parse_episodes(value: str | None) -> dict[str, float]:
    """The episodes flag as ``{key: since}``: a calling code's key is its digits, a prefix's is "+" and digits.
    A malformed entry is dropped, not fatal."""
    out: dict[str, float] = {}
    for part in (value or "").split(";"):
        key, _, since = part.partition("=")
        digits = key[1:] if key.startswith("+") else key
        if digits.isascii() and digits.isdigit():
            try:
                out[key] = float(since)
            except ValueError:
                continue
    return out


def _episode(key: str, since: float, seen: CodeAssessment | None) -> Episode:
    if not key.startswith("+"):
        return Episode(key, since, seen)
    return Episode(calling_code(key), since, seen, prefix=key)


def _format_episodes(episodes: dict[str, float]) -> str | None:
    return ";".join(f"{code}={since:.0f}" for code, since in sorted(episodes.items())) or None


@dataclass(frozen=True)
class Evaluation:
    """What ``Alarms.evaluate`` saw at ``at``."""

    at: float
    window_start: float
    window_end: float
    codes: list[CodeAssessment]
    #: Open episodes of whole calling codes, by code.
    episodes: dict[str, Episode] = field(default_factory=dict)
    #: The prefixes the per-prefix alarm assessed (``assess_prefixes``), and their open episodes, by prefix.
    prefixes: list[CodeAssessment] = field(default_factory=list)
    prefix_episodes: dict[str, Episode] = field(default_factory=dict)

    def episode_for(self, phone: str) -> Episode | None:
        """The open episode covering an E.164 number: its calling code's, else its prefix's, else None."""
        code = calling_code(phone)
        found = self.episodes.get(code)
        if found is not None:
            return found
        for prefix, episode in self.prefix_episodes.items():
            if phone.startswith(prefix):
                return episode
        return None


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
        baseline = self._baseline_rows(now, start)
        codes = assess(self._store.counts(since=start, until=end, span=MINUTE), baseline, s)
        prefixes = []
        if s.prefix_alarm_digits:
            rows = self._store.prefix_counts(since=start, until=end, digits=s.prefix_alarm_digits)
            prefixes = assess_prefixes(rows, baseline, s)
        seen = Evaluation(now, float(start), float(end), codes, prefixes=prefixes)
        episodes = self._episodes(seen)
        return Evaluation(
            now,
            float(start),
            float(end),
            codes,
            {k: e for k, e in episodes.items() if e.prefix is None},
            prefixes,
            {k: e for k, e in episodes.items() if e.prefix is not None},
        )

    def _baseline_rows(self, now: float, window_start: int) -> list[CountRow]:
        until = int(window_start // HOUR) * HOUR  # whole hours before the window's
        cached = self._baseline
        if cached is not None and cached[1] == until and now - cached[0] < BASELINE_CACHE_SECONDS:
            return cached[2]
        rows = self._store.counts(since=until - self.settings.baseline_days * 86400, until=until)
        self._baseline = (now, until, rows)
        return rows

    def _episodes(self, evaluation: Evaluation) -> dict[str, Episode]:
        """Open and close episodes by the verdicts, under the lease; without it, read what the holder wrote. By
        key (``Episode.key``): calling codes and prefixes alike."""
        now = evaluation.at
        by_key = {a.calling_code: a for a in evaluation.codes}
        by_key.update((a.prefix, a) for a in evaluation.prefixes if a.prefix is not None)
        stored = parse_episodes(self._store.get_flag(EPISODES_FLAG))
        as_stored = {key: _episode(key, since, by_key.get(key)) for key, since in stored.items()}
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
        for key, since in stored.items():
            seen = by_key.get(key)
            if seen is None or seen.clears:  # no sends at all in the window clears it too
                closed.append((key, since, seen))
                del episodes[key]
        for a in evaluation.codes:
            if a.triggered and a.calling_code not in episodes:
                episodes[a.calling_code] = now
                opened.append(a.calling_code)
        for a in evaluation.prefixes:  # a range of a code under alarm is in that code's episode already
            if a.triggered and a.prefix is not None and a.prefix not in episodes and a.calling_code not in episodes:
                episodes[a.prefix] = now
                opened.append(a.prefix)
        if opened or closed:
            try:
                self._store.set_flag(EPISODES_FLAG, _format_episodes(episodes))
            except Exception as exc:  # as above: the next evaluation that can write makes the transitions
                self.logger.debug("alarm episodes not updated: %s", describe_error(exc))
                return as_stored
        result = {key: _episode(key, since, by_key.get(key)) for key, since in episodes.items()}
        for key, since, seen in closed:
            self.logger.info(
                "otp-conversion alarm cleared for %s after %.0f s (window rate %s, %d sends)",
                _shown(key),
                now - since,
                pct(seen.rate if seen else None),
                seen.sends if seen else 0,
            )
        for key in opened:
            a = by_key[key]
            self.logger.warning(
                "otp-conversion alarm: conversion to %s fell to %s over %d sends in the last %.0f min "
                "(baseline %s, %s): possible SMS pumping",
                _shown(key),
                pct(a.rate),
                a.sends,
                self.settings.window / 60,
                pct(a.baseline),
                a.baseline_source if a.prefix is None else f"{a.baseline_source}, of +{a.calling_code}",
            )
            if self._on_episode is not None:
                try:
                    self._on_episode(result[key], evaluation)
                except Exception:  # an app's receiver failing must not stop the alarm
                    self.logger.exception("otp-conversion: a conversion-anomaly receiver raised")
        return result


def _shown(key: str) -> str:
    """An episode as the log lines name it: ``+234`` for a calling code, ``+447911...`` for a prefix."""
    return key + "..." if key.startswith("+") else "+" + key


_PROCESS_TOKEN = uuid.uuid4().hex[:8]
