"""The store's decisions, as pure functions of the state an engine read and the time it was given.

Every engine (SQLite, memory, and the shared ones to come) runs these inside its own transaction: it reads
the candidate sends (``Wanted`` says which), lets ``match`` decide, and writes the ``Effects`` back. So the
matching rule, hour bucketing and the token bucket are written once and cannot drift apart between engines.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ..phone import calling_code
from .base import HOUR, MINUTE, Verification, VerifyOutcome

#: A counter row's key: (span start, span, provider, calling code); every increment is made in both spans.
CounterKey = tuple[int, int, str, str]
#: The spans every counter increment is made in.
SPANS = (HOUR, MINUTE)


def hour_of(ts: float) -> int:
    """Start of the UTC hour holding ``ts``, in epoch seconds: the one hour bucketing of every counter."""
    return int(ts // HOUR) * HOUR


def first_kept_hour(before: float) -> int:
    """Pruning at ``before`` keeps the counter rows of this hour and later: an hour goes only once all of it
    lies before ``before``."""
    return hour_of(before)


#: How long minute counter rows are kept: the alarm's baseline comes from hour rows, its window from these.
MINUTE_ROWS_KEPT = 2 * 86400


def sendable(row_provider: str, row_account: str, *, provider: str, account: str) -> bool:
    """Whether a row may be reported through ``provider``'s ``account``: its own, or a row of unknown account
    ("", written before rows knew theirs). The one rule of ``claim``, ``expire_foreign`` and the stats."""
    return row_provider == provider and row_account in ("", account)


@dataclass(slots=True)
class Tally:
    """Increments of one counter row."""

    requested: int = 0
    verified: int = 0
    unmatched: int = 0


@dataclass(slots=True)
class Sent:
    """A recorded send as an engine read it. ``key`` is the engine's id of the row and orders sends recorded
    at the same ``sent_at`` (the later recorded wins a tie)."""

    key: int
    provider: str
    message_id: str
    phone: str
    sent_at: float
    verified_at: float | None
    account: str = ""
    #: A negative report was enqueued for it (``enqueue_unverified``).
    settled: bool = False


@dataclass(slots=True)
class Report:
    """An outbox row to insert: due at once, created when the verification happened (``verified_at``; for a
    negative report, when it was enqueued)."""

    message_id: str
    phone: str
    provider: str
    sent_at: float
    verified_at: float
    account: str = ""
    converted: bool = True


@dataclass(frozen=True, slots=True)
class Wanted:
    """The sends a batch can match, for an engine to read in one go.

    ``ids``: message ids of ``provider`` (verifications that name one). ``phones``: for each phone verified
    without an id, the ``(earliest, latest)`` range of ``sent_at`` its verifications' windows span. An engine
    may return more sends than asked for; it must not return fewer.
    """

    provider: str
    ids: frozenset[str]
    phones: dict[str, tuple[float, float]]


@dataclass(slots=True)
class Effects:
    """What a batch changes, for an engine to write in the same transaction it read in."""

    outcomes: list[VerifyOutcome] = field(default_factory=list)
    #: (``Sent.key``, verified_at) of each send verified now.
    verified: list[tuple[int, float]] = field(default_factory=list)
    reports: list[Report] = field(default_factory=list)
    counters: dict[CounterKey, Tally] = field(default_factory=dict)


def wanted(items: Sequence[Verification], *, provider: str, window: float) -> Wanted:
    ids: set[str] = set()
    phones: dict[str, tuple[float, float]] = {}
    for item in items:
        if item.message_id is not None:
            ids.add(item.message_id)
            continue
        earliest, latest = item.verified_at - window, item.verified_at
        known = phones.get(item.phone)
        if known is not None:
            earliest, latest = min(earliest, known[0]), max(latest, known[1])
        phones[item.phone] = (earliest, latest)
    return Wanted(provider, frozenset(ids), phones)


#: Shared by every unmatched verification: the outcome is immutable, and one is built per item otherwise.
_UNMATCHED = VerifyOutcome(message_id=None, enqueued=False)


def match(items: Sequence[Verification], sends: Iterable[Sent], *, provider: str, window: float) -> Effects:
    """The matching rule, for each verification in order.

    With a message id: that message of ``provider``, sent to that phone. Without: the most recent send to the
    phone (of any provider) within ``window`` seconds before ``verified_at``; if that one is verified already,
    this is a repeat, and an older unverified send is not taken instead (its code was superseded). A message
    verified before, or earlier in the same batch, is a repeat and enqueues nothing. No match counts an
    unmatched verification under ``provider`` in the hour it happened. ``verified`` is counted in the hour the
    message was *sent*, so an hour's rate is a true conversion rate.
    """
    by_id: dict[str, Sent] = {}
    by_phone: dict[str, list[Sent]] = {}
    for sent in sends:
        if sent.provider == provider:
            by_id[sent.message_id] = sent
        by_phone.setdefault(sent.phone, []).append(sent)
    effects = Effects()
    outcomes, counters = effects.outcomes, effects.counters
    verified_now: set[int] = set()
    for item in items:
        found: Sent | None
        if item.message_id is not None:
            found = by_id.get(item.message_id)
            if found is not None and found.phone != item.phone:
                found = None
        else:
            found = _latest(by_phone.get(item.phone, ()), item.verified_at - window, item.verified_at)
        if found is None:
            for tally in _tallies(counters, item.verified_at, provider, calling_code(item.phone)):
                tally.unmatched += 1
            outcomes.append(_UNMATCHED)
        elif found.verified_at is not None or found.key in verified_now:
            outcomes.append(VerifyOutcome(message_id=found.message_id, enqueued=False, already_verified=True))
        else:
            verified_now.add(found.key)
            effects.verified.append((found.key, item.verified_at))
            if not found.settled:  # a send already reported as not converted is reported once
                effects.reports.append(
                    Report(
                        found.message_id, item.phone, found.provider, found.sent_at, item.verified_at, found.account
                    )
                )
            for tally in _tallies(counters, found.sent_at, found.provider, calling_code(item.phone)):
                tally.verified += 1
            outcomes.append(VerifyOutcome(message_id=found.message_id, enqueued=not found.settled))
    return effects


def sent_counter(phone: str, provider: str, sent_at: float) -> dict[CounterKey, Tally]:
    """The counters a new send bumps: one request in the hour and the minute it was sent."""
    counters: dict[CounterKey, Tally] = {}
    for tally in _tallies(counters, sent_at, provider, calling_code(phone)):
        tally.requested += 1
    return counters


def unverified_reports(sends: Iterable[Sent], now: float) -> list[Report]:
    """The negative reports of sends whose match window ended without a verification (``enqueue_unverified``)."""
    return [
        Report(sent.message_id, sent.phone, sent.provider, sent.sent_at, now, sent.account, converted=False)
        for sent in sends
        if sent.verified_at is None and not sent.settled
    ]


def _latest(sends: Iterable[Sent], earliest: float, latest: float) -> Sent | None:
    best: Sent | None = None
    for sent in sends:
        if earliest <= sent.sent_at <= latest and (
            best is None or (sent.sent_at, sent.key) > (best.sent_at, best.key)
        ):
            best = sent
    return best


def _tallies(counters: dict[CounterKey, Tally], ts: float, provider: str, code: str) -> list[Tally]:
    """The tallies of the hour and the minute holding ``ts``, created where missing."""
    found = []
    for span in SPANS:
        key = (int(ts // span) * span, span, provider, code)
        tally = counters.get(key)
        if tally is None:
            tally = counters[key] = Tally()
        found.append(tally)
    return found


def latency_bucket(seconds: float, bounds: Sequence[float]) -> int:
    """The index of the histogram bucket holding ``seconds`` (``len(bounds)`` for the overflow bucket)."""
    for index, bound in enumerate(bounds):
        if seconds <= bound:
            return index
    return len(bounds)


def draw_slots(
    state: float | None, *, want: int, interval: float, horizon: float, now: float
) -> tuple[float, int, float]:
    """One step of a shared schedule of request starts (GCRA), run by an engine inside its atomic section.

    ``state`` is the time of the next free slot (None: a new schedule). Slots are ``interval`` apart for every
    process that draws on the schedule; up to ``want`` consecutive ones are reserved, the first at or after
    ``now``, none later than ``now + horizon``. Returns ``(first, count, new state)``; with ``count`` 0, ``first``
    is the next free slot, which may be reserved from ``first - horizon`` on. Idle time earns nothing (no
    burst), and a clock that steps back takes no slot back.
    """
    first = now if state is None else max(state, now)
    room = now + horizon - first
    count = 0 if room < 0 else min(want, int(room // interval) + 1)
    return first, count, first + count * interval
