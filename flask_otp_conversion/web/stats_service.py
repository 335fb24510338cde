"""The figures the statistics endpoint, the dashboard, the metrics and the CLI show: ``StatsService``.

Local counts come from the store (cheap, always fresh). The provider's own figures cost a rate-limited API call
(Tencent: 10 requests/s), so they go through a TTL cache keyed by the hour-rounded window, with one lock per
key (single flight): however many requests miss at once, one provider call is made. When the provider fails,
the last good value for that window is served marked ``stale`` (with the redacted ``provider_error``), or the
local figures with ``provider`` null and ``provider_error``. ``OTP_CONVERSION_STATS_CACHE_TTL = 0`` disables the
cache (a failure is still shared for 1 s, to spare the provider's rate limit).

``Provider.statistics_time_zone`` (Tencent's hours are UTC+8, the zone its console shows) is said as
``provider_time_zone``; everything else here (the window, the hourly series) is UTC. The service is given what it
reads (store, delivery status, provider class and factory, token, TTL), not the extension's state, so nothing
here imports the extension.
"""

from __future__ import annotations

import hmac
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from cachetools import TTLCache
from pydantic import SecretStr

from .._forks import ForkLocal
from ..providers import Provider
from ..redaction import describe_error
from ..store import Store
from ..store.rules import hour_of, sendable
from .stats_window import Window, iso

__all__ = ["DEGRADED_ERROR", "DeliveryStatus", "StatsService"]

#: The ``provider_error`` while degraded: the provider is not asked, for its figures either.
DEGRADED_ERROR = "degraded: provider calls are switched off (flask otp-conversion degrade off)"


class _FetchFailed(Exception):
    """The provider's figures could not be had; the message is already redacted."""


def _rate(requested: int, verified: int) -> float | None:
    return None if requested == 0 else verified / requested


def _bucket() -> dict[str, int]:
    return {"requested": 0, "verified": 0, "unmatched": 0}


def _with_rate(bucket: dict[str, int]) -> dict[str, Any]:
    return {**bucket, "conversion_rate": _rate(bucket["requested"], bucket["verified"])}


@dataclass(frozen=True)
class DeliveryStatus:
    """What the stats show of the delivering side, read fresh for every answer."""

    #: Whether this process runs delivery now (another process may be the one that delivers).
    delivering: bool
    breaker_state: str
    #: The operator's switch: no provider call is made, the statistics calls included.
    degraded: bool
    #: The most recent delivery failure, already redacted.
    last_error: str | None
    #: When the deliverer last said so (UNIX seconds; None: no deliverer has yet).
    reported_at: float | None = None
    #: The configured provider account: rows of others wait (see ``accounts``) and are never sent to this one.
    account: str | None = None


class StatsService(ForkLocal):
    """One per app: the provider figures cache, its single-flight locks, and a lazily made provider client
    (one per process: a forked child starts over with its own, the parent's is closed at shutdown).

    It is given what it reads, nothing more: the store (local counts, the outbox); ``delivery``, ``spooled`` and
    ``quarantined`` (spool lines moved aside as unappliable: ``store.quarantine.quarantined``), each called per answer;
    the provider's class (its statistics facts) and a factory of clients; the token and the cache TTL.
    """

    def __init__(
        self,
        *,
        store: Store,
        provider_class: type[Provider],
        provider_factory: Callable[[], Provider],
        delivery: Callable[[], DeliveryStatus],
        auth: Callable[[], Callable[[], bool] | None] = lambda: None,
        spooled: Callable[[], int | None] = lambda: 0,
        quarantined: Callable[[], int | None] = lambda: 0,
        held: Callable[[], tuple[int, int]] = lambda: (0, 0),
        token: SecretStr | None = None,
        cache_ttl: float = 60.0,
        url_prefix: str = "/otp-conversion",
        logger: logging.Logger | None = None,
    ) -> None:
        self._store = store
        self._provider_class = provider_class
        self._provider_factory = provider_factory
        self._delivery = delivery
        self._spooled = spooled
        self._quarantined = quarantined
        self._held = held
        self._token = token
        self._auth = auth
        self._url_prefix = url_prefix
        self._logger = logger or logging.getLogger("flask_otp_conversion")
        self._cache: TTLCache[tuple[int, int], Any] | None = (
            TTLCache(maxsize=256, ttl=cache_ttl) if cache_ttl > 0 else None
        )
        self._last_good: dict[tuple[int, int], Any] = {}
        self._fetched_at: dict[tuple[int, int], float] = {}  # when each last good value came from the provider
        #: The SMS-pumping alarm's figures (``alarm/``), set where the alarm is wired; shown as ``alarms``.
        self.alarm_figures: Callable[[], dict[str, Any]] | None = None
        self._failures: dict[tuple[int, int], tuple[float, str]] = {}
        #: How long a failed fetch answers for its window (at least 1 s, to spare the provider's rate limit).
        self._failure_ttl = min(max(cache_ttl, 1.0), 10.0)
        self._warned = threading.Event()
        self._after_fork_in_child()  # builds this process's state; the name is ForkLocal's
        self._watch_forks()

    def _after_fork_in_child(self) -> None:
        # Locks held by another thread at fork time would stay held forever in the child, and the parent's
        # client (and its sockets) belong to the parent: new ones, the client made again on first use.
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._key_locks: dict[tuple[int, int], threading.Lock] = {}
        self._provider: Provider | None = None

    @property
    def provider_name(self) -> str:
        return self._provider_class.name

    @property
    def provider_class(self) -> type[Provider]:
        return self._provider_class

    def warn_if_unprotected(self) -> None:
        """Say once per app, where it matters (the endpoint is being served, not a CLI command starting), that
        nothing can pass its auth."""
        if self._token is None and self._auth() is None and not self._warned.is_set():
            self._warned.set()
            self._logger.warning(
                "flask-otp-conversion: %s/stats refuses every request until OTP_CONVERSION_STATS_TOKEN is set "
                "or a @conversion.stats_auth callable is registered",
                self._url_prefix.rstrip("/"),
            )

    # Auth --------------------------------------------------------------------------------------------

    def authorized(self, authorization: str | None) -> bool:
        token = self._token
        if token is not None and authorization is not None:
            scheme, _, given = authorization.partition(" ")
            if scheme.lower() == "bearer" and hmac.compare_digest(
                given.strip().encode(), token.get_secret_value().encode()
            ):
                return True
        func = self._auth()
        if func is None:
            return False
        try:
            return func() is True
        except Exception:  # the app's check failing must refuse, not 500 or allow
            self._logger.exception("stats: the @stats_auth callable raised; request refused")
            return False

    # Figures -----------------------------------------------------------------------------------------

    def collect(self, window: Window) -> dict[str, Any]:
        """Everything the endpoint and the CLI show for ``window``."""
        result: dict[str, Any] = {"window": window.as_json()}
        result.update(self._local(window))
        result["reporter"] = self._reporter()
        result["delivery"] = self._delivered(window)
        if self.alarm_figures is not None:
            result["alarms"] = self.alarm_figures()
        result.update(self._provider_figures(window))
        return result

    def reporter_status(self) -> dict[str, Any]:
        """The ``reporter`` part of the figures alone (the metrics and the dashboard read it)."""
        return self._reporter()

    def _delivered(self, window: Window) -> dict[str, int]:
        """Reports delivered, retried and dead-lettered in the window's hours (the store counts whole hours)."""
        out = {"delivered": 0, "retried": 0, "dead_lettered": 0}
        for row in self._store.delivery_counts(since=hour_of(window.begin.timestamp()), until=window.end.timestamp()):
            out["delivered"] += row.delivered
            out["retried"] += row.retried
            out["dead_lettered"] += row.dead_lettered
        return out

    def _local(self, window: Window) -> dict[str, Any]:
        store = self._store
        # The store counts whole UTC hours: start at the hour containing ``from``.
        since = hour_of(window.begin.timestamp())
        rows = store.counts(since=since, until=window.end.timestamp())
        total = _bucket()
        by_provider: dict[str, dict[str, int]] = {}
        by_code: dict[str, dict[str, int]] = {}
        hourly: dict[int, dict[str, int]] = {}
        for row in rows:
            for bucket in (
                total,
                by_provider.setdefault(row.provider, _bucket()),
                by_code.setdefault(row.calling_code, _bucket()),
                hourly.setdefault(row.hour, _bucket()),
            ):
                bucket["requested"] += row.requested
                bucket["verified"] += row.verified
                bucket["unmatched"] += row.unmatched
        return {
            "requested": total["requested"],
            "verified": total["verified"],
            "conversion_rate": _rate(total["requested"], total["verified"]),
            "unmatched": total["unmatched"],
            "by_provider": {name: _with_rate(b) for name, b in sorted(by_provider.items())},
            "by_calling_code": {code: _with_rate(b) for code, b in sorted(by_code.items())},
            "hourly": [
                {"hour": iso(datetime.fromtimestamp(hour, timezone.utc)), **_with_rate(b)}
                for hour, b in sorted(hourly.items())
            ],
        }

    def _reporter(self) -> dict[str, Any]:
        now = time.time()
        outbox = self._store.outbox_stats(now=now)
        delivery = self._delivery()
        held, lost = self._held()
        return {
            "spooled": self._spooled(),
            # this process's records held in memory while the spool and store refused them, and those lost
            "held_in_memory": held,
            "lost": lost,
            "quarantined": self._quarantined(),
            "pending": outbox.pending,
            "in_flight": outbox.in_flight,
            "dead": outbox.dead,
            "oldest_pending_age_seconds": outbox.oldest_pending_age(now),
            "delivering": delivery.delivering,
            "breaker_state": delivery.breaker_state,
            "degraded": delivery.degraded,
            "last_error": delivery.last_error,
            "status_age_seconds": None if delivery.reported_at is None else max(0.0, now - delivery.reported_at),
            "accounts": [
                {
                    "provider": row.provider,
                    "account": row.account,
                    "configured": sendable(
                        row.provider, row.account, provider=self._provider_class.name, account=delivery.account or ""
                    ),
                    "pending": row.pending,
                    "oldest_pending_age_seconds": max(0.0, now - row.oldest_pending_at),
                }
                for row in self._store.backlog()
            ],
        }

    def _provider_figures(self, window: Window) -> dict[str, Any]:
        out: dict[str, Any] = {
            "provider": None,
            "provider_name": self._provider_class.name,
            "provider_statistics": self._provider_class.has_statistics,
            "provider_time_zone": self._provider_class.statistics_time_zone,
            "stale": False,
            "provider_error": None,
            "provider_fetched_at": None,
            "provider_age_seconds": None,
        }
        if not self._provider_class.has_statistics:  # nothing to ask for: no call, no error
            return out
        # Hour-rounded key: repeated default requests within an hour share one cached provider answer.
        key = (hour_of(window.begin.timestamp()), hour_of(window.end.timestamp()))
        if self._delivery().degraded:  # the operator stopped every provider call, these too
            out["provider_error"] = DEGRADED_ERROR
            with self._lock:
                last = self._last_good.get(key)
            if last is not None:
                out["provider"], out["stale"] = last, True
            return self._with_age(out, key)
        try:
            out["provider"] = self._cached(key)
        except _FetchFailed as exc:
            out["provider_error"] = str(exc)
            if key in self._last_good:
                out["provider"] = self._last_good[key]
                out["stale"] = True
            else:
                self._logger.warning("stats: provider statistics failed: %s", out["provider_error"])
        return self._with_age(out, key)

    def _with_age(self, out: dict[str, Any], key: tuple[int, int]) -> dict[str, Any]:
        """When the figures shown came from the provider, and how old they are (cached or stale ones age)."""
        with self._lock:
            fetched = self._fetched_at.get(key) if out["provider"] is not None else None
        if fetched is not None:
            out["provider_fetched_at"] = iso(datetime.fromtimestamp(fetched, timezone.utc))
            out["provider_age_seconds"] = max(0.0, time.time() - fetched)
        return out

    def _cached(self, key: tuple[int, int]) -> Any:
        self._check_fork()
        cache = self._cache
        with self._lock:
            if cache is not None and key in cache:
                return cache[key]
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:  # single flight: the first miss fetches, the others wait and read its outcome
            with self._lock:
                if cache is not None and key in cache:
                    return cache[key]
                failed = self._failures.get(key)
            # A failure just seen is shared too, so a failing provider is not hit once per waiting request.
            if failed is not None and time.monotonic() - failed[0] < self._failure_ttl:
                raise _FetchFailed(failed[1])
            try:
                value = self._fetch(key)
            except Exception as exc:
                message = describe_error(exc)
                now = time.monotonic()
                with self._lock:
                    self._failures = {k: f for k, f in self._failures.items() if now - f[0] < self._failure_ttl}
                    self._failures[key] = (now, message)
                    self._forget_lock(key, key_lock)
                raise _FetchFailed(message) from exc
            with self._lock:
                if cache is not None:
                    cache[key] = value
                self._failures.pop(key, None)
                self._forget_lock(key, key_lock)
                self._last_good[key] = value
                self._fetched_at[key] = time.time()
                if len(self._last_good) > 256:
                    oldest = next(iter(self._last_good))
                    self._last_good.pop(oldest)
                    self._fetched_at.pop(oldest, None)
            return value

    def _forget_lock(self, key: tuple[int, int], lock: threading.Lock) -> None:
        """Keep only in-flight keys' locks; later arrivals find the cache (or the failure) instead."""
        if self._key_locks.get(key) is lock:
            del self._key_locks[key]

    def _fetch(self, key: tuple[int, int]) -> Any:
        with self._lock:
            if self._provider is None:
                self._provider = self._provider_factory()
            provider = self._provider
        begin = datetime.fromtimestamp(key[0], timezone.utc)
        end = datetime.fromtimestamp(key[1], timezone.utc)
        model = provider.statistics(begin, end)
        return None if model is None else model.model_dump(mode="json")

    def close(self) -> None:
        self._check_fork()  # in a child, the client is the parent's: forget it, never close it
        with self._lock:
            provider, self._provider = self._provider, None
        if provider is not None:
            provider.close()
