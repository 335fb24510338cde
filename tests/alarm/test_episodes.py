"""Episodes: opened once, logged once, kept in the store so that every process agrees, cleared with hysteresis."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest

from flask_otp_conversion.alarm import (
    EPISODES_FLAG,
    LEASE_RETRY,
    LEASE_TTL,
    Alarms,
    AlarmSettings,
    Episode,
    Evaluation,
    parse_episodes,
)
from flask_otp_conversion.store import MemoryStore, SQLiteStore, Store
from tests.conftest import FakeClock

PUMPED = "+2348031234567"


@pytest.fixture
def store(tmp_path: object) -> Store:
    return SQLiteStore(f"{tmp_path}/alarm.db")


def pump(store: Store, at: float, sends: int, verified: int, phone: str = PUMPED) -> None:
    """``sends`` sends to ``phone``'s code at ``at``, ``verified`` of them verified."""
    for i in range(sends):
        mid = f"{phone}-{at}-{i}"
        store.record_sent(phone=phone, message_id=mid, provider="tencent", sent_at=at)
        if i < verified:
            store.record_verified(
                phone=phone, message_id=mid, provider="tencent", verified_at=at + 10, match_window=900
            )


def alarms_on(
    store: Store, clock: FakeClock, opened: list[Episode], name: str = "a", settings: AlarmSettings | None = None
) -> Alarms:
    def on_episode(episode: Episode, evaluation: Evaluation) -> None:
        opened.append(episode)

    chosen = settings or AlarmSettings()
    return Alarms(store, chosen, on_episode=on_episode, clock=clock, logger=logging.getLogger(name))


def test_an_episode_opens_once_however_often_it_is_evaluated(store: Store, clock: FakeClock) -> None:
    opened: list[Episode] = []
    alarms = alarms_on(store, clock, opened)
    pump(store, clock.now - 300, 40, 0)
    for _ in range(5):
        clock.advance(2)
        alarms.evaluate()
    assert [e.calling_code for e in opened] == ["234"]


def test_an_open_episode_is_logged_once_as_a_warning(
    store: Store, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    alarms = alarms_on(store, clock, [])
    pump(store, clock.now - 300, 40, 0)
    with caplog.at_level(logging.INFO):
        alarms.evaluate()
        clock.advance(5)
        alarms.evaluate()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "+234" in r.getMessage()]
    assert len(warnings) == 1


def test_the_episode_is_kept_in_the_store(store: Store, clock: FakeClock) -> None:
    alarms = alarms_on(store, clock, [])
    pump(store, clock.now - 300, 40, 0)
    alarms.evaluate()
    assert parse_episodes(store.get_flag(EPISODES_FLAG)) == {"234": pytest.approx(clock.now, abs=1)}


def test_another_process_sees_the_episode_and_does_not_signal_it(store: Store, clock: FakeClock) -> None:
    first: list[Episode] = []
    second: list[Episode] = []
    pump(store, clock.now - 300, 40, 0)
    alarms_on(store, clock, first, "first").evaluate()
    seen = alarms_on(store, clock, second, "second").evaluate()
    assert (set(seen.episodes), len(first), second) == ({"234"}, 1, [])


def test_an_episode_clears_once_the_rate_recovers(store: Store, clock: FakeClock) -> None:
    alarms = alarms_on(store, clock, [])
    pump(store, clock.now - 300, 40, 0)
    assert alarms.evaluate().episodes
    clock.advance(20 * 60)  # the bad minutes leave the window; good traffic fills it
    pump(store, clock.now - 300, 40, 36)
    assert alarms.evaluate(fresh=True).episodes == {}
    assert store.get_flag(EPISODES_FLAG) is None


def test_the_newest_minute_is_left_out_of_the_window(store: Store, clock: FakeClock) -> None:
    """Sends of the last ``settle`` seconds have not had time to be verified: they must not look like pumping."""
    opened: list[Episode] = []
    pump(store, clock.now - 5, 40, 0)
    alarms_on(store, clock, opened).evaluate()
    assert opened == []


def test_a_memory_store_keeps_episodes_too(clock: FakeClock) -> None:
    store = MemoryStore()
    pump(store, clock.now - 300, 40, 0)
    assert set(alarms_on(store, clock, []).evaluate().episodes) == {"234"}


def test_a_store_that_refuses_writes_shows_the_alarm_and_opens_it_later(tmp_path: Path, clock: FakeClock) -> None:
    """Another connection holds the write lock: the verdicts are still read; the episode opens once it is gone."""
    path = tmp_path / "locked.db"
    store = SQLiteStore(str(path), busy_timeout=0.05)
    opened: list[Episode] = []
    alarms = alarms_on(store, clock, opened)
    pump(store, clock.now - 300, 40, 0)
    lock = sqlite3.connect(path, isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")
    seen = alarms.evaluate()
    lock.execute("COMMIT")
    lock.close()
    assert ([a.triggered for a in seen.codes], seen.episodes, opened) == ([True], {}, [])
    assert set(alarms.evaluate(fresh=True).episodes) == {"234"}
    store.close()


def test_another_process_takes_the_transitions_over_once_the_first_stops(store: Store, clock: FakeClock) -> None:
    first: list[Episode] = []
    second: list[Episode] = []
    alarms_on(store, clock, first, "first").evaluate()  # holds the lease, then evaluates no more
    other = alarms_on(store, clock, second, "second")
    other.evaluate()
    clock.advance(LEASE_TTL + LEASE_RETRY)
    pump(store, clock.now - 300, 40, 0)
    other.evaluate()
    assert (first, [e.calling_code for e in second]) == ([], ["234"])


# The per-prefix alarm ------------------------------------------------------------------------------------

PREFIXES = AlarmSettings(prefix_alarm_digits=3)
RANGE = "+447911123456"


def pump_a_range(store: Store, at: float) -> None:
    """+44 converting at 75 % as a whole (200 good sends to +44770, 40 pumped to +44791 never verified)."""
    pump(store, at, 200, 180, phone="+447700900123")
    pump(store, at, 40, 0, phone=RANGE)


def test_a_pumped_range_opens_a_prefix_episode(store: Store, clock: FakeClock) -> None:
    opened: list[Episode] = []
    pump_a_range(store, clock.now - 300)
    seen = alarms_on(store, clock, opened, settings=PREFIXES).evaluate()
    assert ([(e.calling_code, e.prefix) for e in opened], seen.episodes) == ([("44", "+44791")], {})
    assert set(seen.prefix_episodes) == {"+44791"}


def test_a_prefix_episode_is_kept_in_the_flag_under_its_prefix(store: Store, clock: FakeClock) -> None:
    pump_a_range(store, clock.now - 300)
    alarms_on(store, clock, [], settings=PREFIXES).evaluate()
    assert parse_episodes(store.get_flag(EPISODES_FLAG)) == {"+44791": pytest.approx(clock.now, abs=1)}


def test_a_prefix_episode_is_logged_once_naming_its_range(
    store: Store, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    alarms = alarms_on(store, clock, [], settings=PREFIXES)
    pump_a_range(store, clock.now - 300)
    with caplog.at_level(logging.INFO):
        alarms.evaluate()
        clock.advance(5)
        alarms.evaluate()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "+44791..." in warnings[0] and "of +44" in warnings[0]


def test_a_range_of_a_code_under_alarm_opens_no_episode_of_its_own(store: Store, clock: FakeClock) -> None:
    opened: list[Episode] = []
    pump(store, clock.now - 300, 40, 0, phone=RANGE)  # the range is all of +44's traffic: the code's alarm
    seen = alarms_on(store, clock, opened, settings=PREFIXES).evaluate()
    assert ([e.key for e in opened], seen.prefix_episodes) == (["44"], {})


def test_a_prefix_episode_clears_once_the_range_recovers(store: Store, clock: FakeClock) -> None:
    alarms = alarms_on(store, clock, [], settings=PREFIXES)
    pump_a_range(store, clock.now - 300)
    assert alarms.evaluate().prefix_episodes
    clock.advance(20 * 60)
    pump(store, clock.now - 300, 40, 36, phone=RANGE)
    assert alarms.evaluate(fresh=True).prefix_episodes == {}
    assert store.get_flag(EPISODES_FLAG) is None


def test_turning_the_prefix_alarm_off_clears_its_open_episodes(store: Store, clock: FakeClock) -> None:
    pump_a_range(store, clock.now - 300)
    alarms_on(store, clock, [], "on", settings=PREFIXES).evaluate()
    clock.advance(LEASE_TTL + 1)
    assert alarms_on(store, clock, [], "off").evaluate().prefix_episodes == {}
    assert store.get_flag(EPISODES_FLAG) is None


def test_a_flag_written_before_prefix_episodes_still_parses(store: Store, clock: FakeClock) -> None:
    """The value an earlier version wrote: calling codes only."""
    since = float(round(clock.now - 600))
    store.set_flag(EPISODES_FLAG, f"234={since:.0f};86={since + 500:.0f}")
    assert parse_episodes(store.get_flag(EPISODES_FLAG)) == {"234": since, "86": since + 500}
    pump(store, clock.now - 300, 40, 0)
    seen = alarms_on(store, clock, [], settings=PREFIXES).evaluate()
    assert (seen.episodes["234"].since, seen.episodes["234"].prefix, seen.prefix_episodes) == (since, None, {})


@pytest.mark.parametrize("entry", ["+=1", "+44a=1", "+\uff14\uff14=1", "+44791=x", "44791", "=5"], ids=repr)
def test_a_malformed_prefix_entry_is_dropped(entry: str) -> None:
    assert parse_episodes(f"{entry};+44791=100;234=50") == {"+44791": 100.0, "234": 50.0}
