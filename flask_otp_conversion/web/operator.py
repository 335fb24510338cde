"""Wires the operator's views (metrics, dashboard) and the alarm's figures onto one app, beside the stats endpoint
and behind its auth."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import Flask

from ..alarm import figures
from ..redaction import describe_error
from .dashboard import Dashboard, make_dashboard_blueprint
from .metrics import StoreCollector, make_metrics_blueprint

if TYPE_CHECKING:
    from ..state import ConversionState

__all__ = ["register_operator_views"]


def register_operator_views(app: Flask, state: ConversionState) -> None:
    """``GET {prefix}/metrics``, the dashboard at ``{prefix}/``, and ``alarms`` in the stats figures."""
    service, store, alarms, reporter, settings = state.stats, state.store, state.alarms, state.reporter, state.settings
    assert service is not None and store is not None and alarms is not None and reporter is not None

    def alarm_figures() -> dict[str, object]:
        try:
            return figures(alarms.evaluate())
        except Exception as exc:  # the stats still answer what they can
            return {"error": describe_error(exc)}

    service.alarm_figures = alarm_figures
    collector = StoreCollector(
        store=store,
        provider=service.provider_name,
        reporter=service.reporter_status,
        alarms=alarms,
        retention_days=settings.retention,
    )
    app.register_blueprint(make_metrics_blueprint(settings.url_prefix, service, collector))
    dashboard = Dashboard(
        service=service,
        store=store,
        token=settings.stats_token,
        set_degraded=reporter.set_degraded,
        controls=settings.dashboard_controls,
    )
    app.register_blueprint(make_dashboard_blueprint(settings.url_prefix, dashboard))
