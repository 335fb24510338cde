"""The Redis store's server-side Lua scripts by name, and the conventions and keys they all share.

Every step that must be atomic runs as one script. The scripts live by concern (``redis_scripts_records.py``,
``redis_scripts_outbox.py``, ``redis_scripts_coordination.py``), on the functions of ``redis_scripts_prelude.py``.

Conventions, so that no value is ever rounded on the way: ``ARGV[1]`` is the key prefix; every time travels and
is stored as the decimal string Python's ``repr`` wrote (Redis parses scores from it exactly, and Lua only ever
compares ``tonumber`` of it); a time Lua computes (``take_slots``) is written back with ``%.17g``, which round-trips
a double. Lua numbers are never returned for times: a Redis integer reply would truncate them.

Keys (``P`` is the prefix; ``{seq}`` a number from a counter, so no user text is ever parsed out of a key):

``P send:{seq}`` hash
    a send: ``pr`` provider, ``m`` message id, ``ph`` phone, ``t`` sent_at, ``a`` account, ``v`` verified_at,
    ``s`` "1" once settled. Found by ``P msgid:{provider}`` (hash, message id -> seq), ``P phone:{phone}`` (zset by
    sent_at), and ``P unsettled:{provider}`` (zset by sent_at: neither verified nor settled). ``P sends`` (zset
    by sent_at) is for prune.
``P unverified:{minute}`` zset, all scores 0
    the unverified sends (``send_allowed``'s limits) of the minute starting at ``{minute}``, as members
    ``{phone}|{seq}``: lexicographic ranges of it are number prefixes, so ``unverified_sends`` is a ``ZLEXCOUNT``
    per minute of its range. A send leaves it when it, or a later send to its number, is verified, and when
    pruned; ``P unverified-minutes`` (zset by start) indexes the minutes.
``P row:{id}`` hash
    an outbox row (``id`` zero-padded to 16 digits, so members order by id): fields in ``_ROW``; ``state`` p, r or
    d; ``q`` its queue.
``P queues:{provider}`` hash, account -> queue number; ``P queue-names`` hash, queue -> JSON [provider, account]
    each (provider, account) is a queue with ``P ready:{q}`` (zset by next_attempt_at: pending, not leased) and
    ``P pending:{q}`` (zset by created_at: every pending row, leased or not).
``P leased`` zset by lease_until
    rows under a lease; the next claim moves an expired one back to its ready set (its token stays on the row,
    so a late ack still counts). ``P reported`` and ``P dead`` are zsets by done_at.
``P count:{span}:{start}`` hash, ``{r|v|u}|{calling code}|{provider}`` -> count, indexed by ``P count-starts:{span}``;
``P fig:{hour}`` hash, ``{name}|{provider}`` -> count, indexed by ``P fig-hours``; ``P spools``, ``P flags``,
``P lease-owner``, ``P lease-until``, ``P schedules`` hashes; ``P format`` the data format version.
"""

from __future__ import annotations

from .redis_scripts_coordination import LEASE, TAKE_SLOTS
from .redis_scripts_outbox import (
    CLAIM,
    DEAD_LETTER,
    DEAD_LETTERS,
    EXPIRE,
    PRUNE,
    REPLAY,
    RETRY,
    SETTLE_HELD,
    STATS,
)
from .redis_scripts_records import COMMIT, PREFIX_COUNTS, READ, SPANS, UNVERIFIED


def time_arg(value: float) -> str:
    """A time as the scripts take it and Redis keeps it: the shortest decimal that reads back as the same double."""
    return repr(float(value))


SCRIPTS = {
    "read": READ,
    "commit": COMMIT,
    "claim": CLAIM,
    "settle_held": SETTLE_HELD,
    "retry": RETRY,
    "dead_letter": DEAD_LETTER,
    "expire": EXPIRE,
    "dead_letters": DEAD_LETTERS,
    "replay": REPLAY,
    "stats": STATS,
    "spans": SPANS,
    "prune": PRUNE,
    "lease": LEASE,
    "take_slots": TAKE_SLOTS,
    "unverified": UNVERIFIED,
    "prefix_counts": PREFIX_COUNTS,
}
