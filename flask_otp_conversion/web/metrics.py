"""``GET {OTP_CONVERSION_URL_PREFIX}/metrics``: Prometheus text format, read from the store at scrape time.

A custom collector rather than counters kept in the process: every gunicorn worker and every host answers from
the same store rows, so any of them may be scraped and no multiprocess mode is needed. One scrape's families are
reused for ``CACHE_SECONDS`` (several Prometheus servers, or a dashboard, scraping at once cost one read).

The ``_total`` counters count since the start of the current UTC day (from the hour rows): the store keeps hours,
not an everlasting tally, and a day's rows outlive the day (``OTP_CONVERSION_RETENTION`` is at least a day, else
the counters count from the hour). At midnight they start again from zero, which Prometheus's ``rate`` and
``increase`` take as a counter reset, as after a restart; ``_created`` says when they started. Labels are bounded:
provider names, calling codes (a few hundred at most), outcomes, breaker states; never a number or an account.

``prometheus_client`` is the optional extra ``flask-otp-conversion[metrics]``; without it the endpoint answers 501.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Response, jsonify, request

from ..redaction import describe_error
from ..store import Store
from ..store.base import HOUR, LATENCY_BUCKETS

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from ..alarm import Alarms, Evaluation
    from .stats import StatsService

__all__ = ["BREAKER_STATES", "CACHE_SECONDS", "StoreCollector", "available", "make_metrics_blueprint"]

CACHE_SECONDS = 1.5
BREAKER_STATES = ("closed", "open", "half-open")
DAY = 86400
MISSING = "install flask-otp-conversion[metrics] (prometheus_client) to serve metrics"


def available() -> bool:
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        return False
    return True


def counting_since(now: float, retention_days: float) -> int:
    """Where the ``_total`` counters start: the UTC day, or the hour when the store keeps less than a day."""
    period = DAY if retention_days * DAY >= DAY + HOUR else HOUR
    return int(now // period) * period


class StoreCollector:
    """The ``prometheus_client`` collector: ``collect()`` reads the store, the reporter's status and the alarm."""

    def __init__(
        self,
        *,
        store: Store,
        provider: str,
        reporter: Callable[[], dict[str, Any]],
        alarms: Alarms | None = None,
        retention_days: float = 7.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._provider = provider
        self._reporter = reporter
        self._alarms = alarms
        self._retention_days = retention_days
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: tuple[float, list[Metric]] | None = None

    def collect(self) -> Iterator[Metric]:
        now = self._clock()
        with self._lock:
            cached = self._cached
            if cached is None or not 0 <= now - cached[0] < CACHE_SECONDS:
                cached = (now, list(self._families(now)))
                self._cached = cached
        return iter(cached[1])

    def _families(self, now: float) -> Iterable[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        since = counting_since(now, self._retention_days)
        requested = CounterMetricFamily(
            "otp_conversion_requested", "OTPs sent, by the hour of the send", labels=["provider", "calling_code"]
        )
        verified = CounterMetricFamily(
            "otp_conversion_verified",
            "OTPs verified, counted in the hour of their send",
            labels=["provider", "calling_code"],
        )
        unmatched = CounterMetricFamily(
            "otp_conversion_unmatched", "Verifications that matched no send", labels=["provider", "calling_code"]
        )
        sums: dict[tuple[str, str], list[int]] = {}
        for row in self._store.counts(since=since, until=now + HOUR):
            acc = sums.setdefault((row.provider, row.calling_code), [0, 0, 0])
            acc[0] += row.requested
            acc[1] += row.verified
            acc[2] += row.unmatched
        for labels, (req, ver, unm) in sorted(sums.items()):
            requested.add_metric(list(labels), req, created=since)
            verified.add_metric(list(labels), ver, created=since)
            unmatched.add_metric(list(labels), unm, created=since)
        yield from (requested, verified, unmatched)
        yield from self._delivery(since, now)
        yield from self._outbox()
        yield from self._alarm()
        up = GaugeMetricFamily("otp_conversion_metrics_read_timestamp_seconds", "When these values were read")
        up.add_metric([], now)
        yield up

    def _delivery(self, since: int, now: float) -> Iterable[Metric]:
        from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
        from prometheus_client.samples import Sample

        reports = CounterMetricFamily(
            "otp_conversion_reports",
            "Conversion report attempts by outcome: delivered (acknowledged), retried, dead_lettered",
            labels=["provider", "outcome"],
        )
        latency = HistogramMetricFamily(
            "otp_conversion_report_latency_seconds",
            "Time from verification to the provider's acknowledgement of its report",
            labels=["provider"],
        )
        waits = CounterMetricFamily(
            "otp_conversion_rate_limit_waits",
            "Report requests that waited for a slot of the shared rate cap",
            labels=["provider"],
        )
        waited = CounterMetricFamily(
            "otp_conversion_rate_limit_wait_seconds",
            "Time report requests spent waiting for a slot of the shared rate cap",
            labels=["provider"],
        )
        by_provider: dict[str, list[Any]] = {}
        wait_sums: dict[str, list[float]] = {}
        for row in self._store.delivery_counts(since=since, until=now + HOUR):
            acc = by_provider.setdefault(row.provider, [0, 0, 0, [0] * (len(LATENCY_BUCKETS) + 1)])
            acc[0] += row.delivered
            acc[1] += row.retried
            acc[2] += row.dead_lettered
            for i, n in enumerate(row.latency[: len(LATENCY_BUCKETS) + 1]):
                acc[3][i] += n
            sums = wait_sums.setdefault(row.provider, [0, 0.0])
            sums[0] += row.rate_limit_waits
            sums[1] += row.rate_limit_wait_seconds
        by_provider.setdefault(self._provider, [0, 0, 0, [0] * (len(LATENCY_BUCKETS) + 1)])
        for provider, (delivered, retried, dead, buckets) in sorted(by_provider.items()):
            for outcome, value in (("delivered", delivered), ("retried", retried), ("dead_lettered", dead)):
                reports.add_metric([provider, outcome], value, created=since)
            cumulative, running = [], 0
            for bound, n in zip((*LATENCY_BUCKETS, float("inf")), buckets, strict=False):
                running += n
                cumulative.append(("+Inf" if bound == float("inf") else _bound(bound), float(running)))
            latency.add_metric([provider], cumulative, sum_value=None)
            # No sum is kept (only the buckets), but the count is known: quantiles need only the buckets.
            latency.samples.append(Sample(latency.name + "_count", {"provider": provider}, float(running)))
        for provider in sorted(by_provider):
            count, seconds = wait_sums.get(provider, [0, 0.0])
            waits.add_metric([provider], count, created=since)
            waited.add_metric([provider], seconds, created=since)
        yield reports
        yield latency
        yield waits
        yield waited

    def _outbox(self) -> Iterable[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        status = self._reporter()
        gauges = (
            ("otp_conversion_outbox_pending", "Conversion reports not yet delivered (leased ones included)", "pending"),
            ("otp_conversion_outbox_in_flight", "Conversion reports under a delivery lease now", "in_flight"),
            ("otp_conversion_dead_letters", "Conversion reports that will not be retried (until replayed)", "dead"),
            ("otp_conversion_spooled", "Verifications in this host's spool, not yet in the store", "spooled"),
            ("otp_conversion_quarantined", "Spool lines set aside as unreadable", "quarantined"),
            (
                "otp_conversion_records_held",
                "Records this process holds in memory while the spool and the store refuse writes",
                "held_in_memory",
            ),
            (
                "otp_conversion_records_lost",
                "Records this process could not hold (past the bound) since it started",
                "lost",
            ),
        )
        for name, doc, key in gauges:
            gauge = GaugeMetricFamily(name, doc)
            gauge.add_metric([], float(status.get(key) or 0))
            yield gauge
        oldest = GaugeMetricFamily(
            "otp_conversion_outbox_oldest_pending_age_seconds", "Age of the oldest undelivered report (0: none)"
        )
        oldest.add_metric([], float(status.get("oldest_pending_age_seconds") or 0.0))
        yield oldest
        breaker = GaugeMetricFamily(
            "otp_conversion_breaker_state",
            "The circuit breaker's state (1 for the current one)",
            labels=["provider", "state"],
        )
        current = status.get("breaker_state")
        for state in BREAKER_STATES:
            breaker.add_metric([self._provider, state], 1.0 if current == state else 0.0)
        yield breaker
        degraded = GaugeMetricFamily("otp_conversion_degraded", "1 while the operator's degradation switch is on")
        degraded.add_metric([], 1.0 if status.get("degraded") else 0.0)
        yield degraded
        age = status.get("status_age_seconds")
        if isinstance(age, (int, float)):
            status_age = GaugeMetricFamily(
                "otp_conversion_delivery_status_age_seconds", "Seconds since a deliverer last wrote its status"
            )
            status_age.add_metric([], float(age))
            yield status_age

    def _alarm(self) -> Iterable[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        if self._alarms is None:
            return
        evaluation = self._alarms.evaluate()
        active = GaugeMetricFamily(
            "otp_conversion_alarm_active",
            "1 while an SMS-pumping alarm is open for the calling code",
            labels=["calling_code"],
        )
        rate = GaugeMetricFamily(
            "otp_conversion_window_conversion_ratio", "Conversion rate of the alarm window", labels=["calling_code"]
        )
        sends = GaugeMetricFamily("otp_conversion_window_sends", "Sends in the alarm window", labels=["calling_code"])
        baseline = GaugeMetricFamily(
            "otp_conversion_baseline_conversion_ratio", "The rate the alarm compares with", labels=["calling_code"]
        )
        codes = {a.calling_code: a for a in evaluation.codes}
        for code in sorted(set(codes) | set(evaluation.episodes)):
            active.add_metric([code], 1.0 if code in evaluation.episodes else 0.0)
            seen = codes.get(code)
            if seen is None:
                continue
            sends.add_metric([code], float(seen.sends))
            if seen.rate is not None:
                rate.add_metric([code], seen.rate)
            if seen.baseline is not None:
                baseline.add_metric([code], seen.baseline)
        yield from (active, rate, sends, baseline)
        yield from _prefix_alarms(evaluation)


def _prefix_alarms(evaluation: Evaluation) -> Iterable[Metric]:
    """The per-prefix alarm's open episodes only: a bounded label set (a code has many prefixes, few under alarm)."""
    from prometheus_client.core import GaugeMetricFamily

    labels = ["calling_code", "prefix"]
    active = GaugeMetricFamily(
        "otp_conversion_prefix_alarm_active",
        "1 while an SMS-pumping alarm is open for the number prefix",
        labels=labels,
    )
    rate = GaugeMetricFamily(
        "otp_conversion_prefix_window_conversion_ratio",
        "Conversion rate of the alarm window of a number prefix under alarm",
        labels=labels,
    )
    sends = GaugeMetricFamily(
        "otp_conversion_prefix_window_sends", "Sends in the alarm window of a number prefix under alarm", labels=labels
    )
    for prefix, episode in sorted(evaluation.prefix_episodes.items()):
        label = [episode.calling_code, prefix]
        active.add_metric(label, 1.0)
        seen = episode.assessment
        if seen is not None:
            sends.add_metric(label, float(seen.sends))
            if seen.rate is not None:
                rate.add_metric(label, seen.rate)
    yield from (active, rate, sends)


def _bound(value: float) -> str:
    return f"{value:g}" if value != int(value) else f"{value:.1f}"


def make_metrics_blueprint(url_prefix: str, service: StatsService, collector: StoreCollector) -> Blueprint:
    """``GET {prefix}/metrics`` behind the stats endpoint's auth (bearer token or ``@conversion.stats_auth``)."""
    registry: Any = None
    if available():
        from prometheus_client import CollectorRegistry

        registry = CollectorRegistry(auto_describe=False)
        registry.register(collector)

    def metrics_view() -> Response | tuple[Response, int, dict[str, str]]:
        service.warn_if_unprotected()
        if not service.authorized(request.headers.get("Authorization")):
            return jsonify(error="unauthorized"), 401, {"WWW-Authenticate": 'Bearer realm="otp-conversion-stats"'}
        if registry is None:
            return jsonify(error=MISSING), 501, {}
        from prometheus_client.exposition import choose_encoder

        # The format the scraper asks for: Prometheus 2 and 3 send Accept (text 0.0.4, or OpenMetrics).
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        try:
            body = encoder(registry)
        except Exception as exc:  # the store unreachable: a clear 503 the scraper records as down
            return jsonify(error=f"metrics could not be read: {describe_error(exc)}"), 503, {}
        return Response(body, 200, {"Content-Type": content_type, "Cache-Control": "no-store"})

    bp = Blueprint("otp_conversion_metrics", __name__, url_prefix=url_prefix if url_prefix != "/" else None)
    bp.add_url_rule("/metrics", view_func=metrics_view, methods=["GET"])
    return bp
