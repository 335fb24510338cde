"""The statistics endpoint, ``GET {OTP_CONVERSION_URL_PREFIX}/stats``: auth, the window, the figures as JSON.

The figures and their cache are ``stats_service.py``; the window is ``stats_window.py``. Their names stay
importable from here, where they lived before the split. Nothing here imports the extension or the CLI.
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from .stats_service import DEGRADED_ERROR, DeliveryStatus, StatsService
from .stats_window import DEFAULT_SPAN, EARLIEST, LATEST, MAX_SPAN, Window, WindowError, parse_window

__all__ = [
    "DEFAULT_SPAN",
    "DEGRADED_ERROR",
    "EARLIEST",
    "LATEST",
    "MAX_SPAN",
    "DeliveryStatus",
    "StatsService",
    "Window",
    "WindowError",
    "make_blueprint",
    "parse_window",
]


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> tuple[Response, int, dict[str, str]]:
    return jsonify(error=message), status, headers or {}


def _answer(service: StatsService) -> tuple[Response, int, dict[str, str]]:
    """``GET {prefix}/stats``: see the module docstring. 401 unless the token or the app's callable allows."""
    service.warn_if_unprotected()
    if not service.authorized(request.headers.get("Authorization")):
        return _error(401, "unauthorized", {"WWW-Authenticate": 'Bearer realm="otp-conversion-stats"'})
    try:
        window = parse_window(request.args, provider=service.provider_class)
    except WindowError as exc:
        return _error(400, str(exc))
    return jsonify(service.collect(window)), 200, {"Cache-Control": "no-store"}


def make_blueprint(url_prefix: str, service: StatsService) -> Blueprint:
    """A fresh blueprint per app serving ``service`` (blueprint names are per app; each app has its own state)."""

    def stats_view() -> tuple[Response, int, dict[str, str]]:
        return _answer(service)

    bp = Blueprint("otp_conversion_stats", __name__, url_prefix=url_prefix if url_prefix != "/" else None)
    bp.add_url_rule("/stats", view_func=stats_view, methods=["GET"])
    return bp
