"""``GET {OTP_CONVERSION_URL_PREFIX}/``: the operator's dashboard, a page a person reads.

It shows what the stats endpoint serves, arranged: conversion over the last two hours (a chart drawn by a small
script shipped in the package: no CDN, no network fetch), a per-country table with the SMS-pumping alarm, the
delivery pipeline, and the provider's own figures with their age. The page refreshes itself from
``{prefix}/dashboard.json``.

Auth is the stats endpoint's: a bearer token or the app's ``@conversion.stats_auth`` callable pass, and the login
form trades the token for a signed, HttpOnly, SameSite=Strict cookie (12 h; signed with the token itself, so a new
token signs everyone out). Read-only unless ``OTP_CONVERSION_DASHBOARD_CONTROLS``: then a degrade switch, a POST
guarded by a CSRF token bound to the session and by the Origin header.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from flask import Blueprint, Response, current_app, jsonify, redirect, render_template, request, url_for
from itsdangerous import BadSignature, URLSafeTimedSerializer
from pydantic import SecretStr
from werkzeug.wrappers import Response as BaseResponse

from ..redaction import describe_error
from ..store import Store
from ..store.base import HOUR, LATENCY_BUCKETS, MINUTE
from .stats import StatsService, parse_window

__all__ = ["COOKIE", "SESSION_SECONDS", "Dashboard", "make_dashboard_blueprint"]

COOKIE = "otp_conversion_dashboard"
SESSION_SECONDS = 12 * 3600
#: Minutes the chart shows (minute rows: the store keeps two days of them).
CHART_MINUTES = 120
#: Seconds between the page's refreshes.
REFRESH_SECONDS = 5
_SALT = "flask-otp-conversion-dashboard"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


@dataclass
class Dashboard:
    """What the page reads and the one thing it may change."""

    service: StatsService
    store: Store
    token: SecretStr | None
    set_degraded: Callable[[bool], None]
    controls: bool
    clock: Callable[[], float] = time.time

    # Auth --------------------------------------------------------------------------------------------

    def _serializer(self) -> URLSafeTimedSerializer | None:
        if self.token is None:
            return None
        return URLSafeTimedSerializer(self.token.get_secret_value(), salt=_SALT)

    def _csrf_key(self) -> bytes | None:
        """The token, else the app's secret key; neither (only a ``stats_auth`` callable): no controls."""
        if self.token is not None:
            return self.token.get_secret_value().encode()
        key = current_app.secret_key
        if not key:
            return None
        return key if isinstance(key, bytes) else str(key).encode()

    def signed_in(self) -> bool:
        if self.service.authorized(request.headers.get("Authorization")):
            return True
        serializer, cookie = self._serializer(), request.cookies.get(COOKIE)
        if serializer is None or not cookie:
            return False
        try:
            serializer.loads(cookie, max_age=SESSION_SECONDS)
        except BadSignature:
            return False
        return True

    def token_matches(self, given: str) -> bool:
        token = self.token
        return token is not None and hmac.compare_digest(given.strip().encode(), token.get_secret_value().encode())

    def session_cookie(self) -> str:
        serializer = self._serializer()
        assert serializer is not None
        return serializer.dumps({"at": int(self.clock())})

    def csrf_token(self) -> str | None:
        key = self._csrf_key()
        if key is None or not self.controls:
            return None
        session = request.cookies.get(COOKIE, "")
        return hmac.new(key, b"degrade:" + session.encode(), hashlib.sha256).hexdigest()

    def same_origin(self) -> bool:
        origin = request.headers.get("Origin")
        return origin is None or origin.rstrip("/") == request.host_url.rstrip("/")

    # Figures -----------------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Everything the page shows, as JSON."""
        now = self.clock()
        figures = self.service.collect(parse_window({"since": "24h"}, provider=self.service.provider_class))
        alarms = figures.get("alarms") or {"open": [], "codes": [], "open_prefixes": [], "prefixes": [], "window": None}
        window_by_code = {row["calling_code"]: row for row in alarms["codes"]}
        open_by_code = {row["calling_code"]: row for row in alarms["open"]}
        prefixes_by_code: dict[str, list[dict[str, Any]]] = {}
        for row in alarms["open_prefixes"]:
            prefixes_by_code.setdefault(row["calling_code"], []).append(row)
        countries = []
        codes = set(figures["by_calling_code"]) | set(window_by_code) | set(open_by_code) | set(prefixes_by_code)
        for code in sorted(codes):
            day = figures["by_calling_code"].get(code, {})
            seen = window_by_code.get(code, {})
            countries.append(
                {
                    "calling_code": code,
                    "requested": day.get("requested", 0),
                    "verified": day.get("verified", 0),
                    "conversion_rate": day.get("conversion_rate"),
                    "window_sends": seen.get("sends", 0),
                    "window_rate": seen.get("rate"),
                    "baseline": seen.get("baseline"),
                    "alarm": code in open_by_code,
                    "alarm_since": open_by_code.get(code, {}).get("since"),
                    "prefix_alarms": prefixes_by_code.get(code, []),
                }
            )
        return {
            "generated_at": now,
            "refresh_seconds": REFRESH_SECONDS,
            "window": figures["window"],
            "totals": {k: figures[k] for k in ("requested", "verified", "conversion_rate", "unmatched")},
            "chart": self._chart(now),
            "countries": countries,
            "alarms": alarms,
            "pipeline": {**figures["reporter"], **figures["delivery"], **self._recent_delivery(now)},
            "provider": {
                "name": figures["provider_name"],
                "figures": figures["provider"],
                "error": figures["provider_error"],
                "stale": figures["stale"],
                "fetched_at": figures.get("provider_fetched_at"),
                "age_seconds": figures.get("provider_age_seconds"),
                "time_zone": figures["provider_time_zone"],
            },
            "controls": self.csrf_token() is not None,
        }

    def _chart(self, now: float) -> list[dict[str, Any]]:
        """Requested and verified per minute over the last ``CHART_MINUTES``, zeros included."""
        last = int(now // MINUTE) * MINUTE
        first = last - (CHART_MINUTES - 1) * MINUTE
        series = {first + i * MINUTE: [0, 0] for i in range(CHART_MINUTES)}
        for row in self.store.counts(since=first, until=last + MINUTE, span=MINUTE):
            point = series.get(row.hour)
            if point is not None:
                point[0] += row.requested
                point[1] += row.verified
        return [{"t": t, "requested": r, "verified": v} for t, (r, v) in sorted(series.items())]

    def _recent_delivery(self, now: float) -> dict[str, Any]:
        """Reports per minute over about the last hour (hour rows: the current one and a share of the one before),
        and the 24 h latency's median and 95th percentile as bucket bounds."""
        hour = int(now // HOUR) * HOUR
        current = previous = 0
        buckets = [0] * (len(LATENCY_BUCKETS) + 1)
        for row in self.store.delivery_counts(since=hour - 23 * HOUR, until=now + 1):
            if row.hour == hour:
                current += row.delivered
            elif row.hour == hour - HOUR:
                previous += row.delivered
            for i, n in enumerate(row.latency[: len(buckets)]):
                buckets[i] += n
        share = max(0.0, 1 - (now - hour) / HOUR)  # of the hour before, the part within the last 60 minutes
        per_minute = (current + previous * share) / 60
        return {
            "reports_per_minute": per_minute,
            "latency_p50_at_most": _quantile_bound(buckets, 0.5),
            "latency_p95_at_most": _quantile_bound(buckets, 0.95),
        }


def _quantile_bound(buckets: list[int], q: float) -> float | None:
    """The upper bound of the bucket holding quantile ``q`` (None: no deliveries, or beyond the last bound)."""
    total = sum(buckets)
    if total == 0:
        return None
    running = 0
    for bound, n in zip(LATENCY_BUCKETS, buckets, strict=False):
        running += n
        if running >= q * total:
            return bound
    return None


R = TypeVar("R", bound=BaseResponse)


def _secure_headers(response: R) -> R:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    return response


def make_dashboard_blueprint(url_prefix: str, dashboard: Dashboard) -> Blueprint:
    """The page, its JSON, the login form and the degrade switch, on a fresh blueprint per app."""
    bp = Blueprint(
        "otp_conversion_dashboard",
        __name__,
        url_prefix=url_prefix if url_prefix != "/" else None,
        template_folder="templates",
        static_folder="static",
        static_url_path="/assets",
    )
    cookie_path = (url_prefix.rstrip("/") or "") + "/"

    def login_page(error: str | None = None, status: int = 200) -> Response:
        body = render_template(
            "otp_conversion/login.html", error=error, token_login=dashboard.token is not None
        )
        return _secure_headers(Response(body, status, mimetype="text/html"))

    def index() -> Response:
        dashboard.service.warn_if_unprotected()
        if not dashboard.signed_in():  # the form, as a page (a browser logs a 401 page as a failed load)
            return login_page()
        try:
            data = dashboard.snapshot()
        except Exception as exc:  # the store unreachable: say so, never a 500
            message = f"dashboard unavailable: {describe_error(exc)}"
            return _secure_headers(Response(message, 503, mimetype="text/plain"))
        body = render_template(
            "otp_conversion/dashboard.html",
            data_json=json.dumps(data),
            data=data,
            csrf=dashboard.csrf_token(),
            token_login=dashboard.token is not None and COOKIE in request.cookies,
        )
        return _secure_headers(Response(body, 200, mimetype="text/html"))

    def data_view() -> Response | tuple[Response, int]:
        if not dashboard.signed_in():
            return jsonify(error="unauthorized"), 401
        try:
            return _secure_headers(jsonify(dashboard.snapshot()))
        except Exception as exc:
            return jsonify(error=f"dashboard unavailable: {describe_error(exc)}"), 503

    def login() -> BaseResponse:
        if dashboard.token is None:
            return login_page("sign-in by token is off: OTP_CONVERSION_STATS_TOKEN is not set", 400)
        given = request.form.get("token", "")
        if not dashboard.token_matches(given):
            return login_page("that is not the stats token", 401)
        response = redirect(url_for(".index"), 303)
        response.set_cookie(
            COOKIE,
            dashboard.session_cookie(),
            max_age=SESSION_SECONDS,
            path=cookie_path,
            secure=request.is_secure,
            httponly=True,
            samesite="Strict",
        )
        return _secure_headers(response)

    def logout() -> BaseResponse:
        response = redirect(url_for(".index"), 303)
        response.delete_cookie(COOKIE, path=cookie_path, httponly=True, samesite="Strict")
        return _secure_headers(response)

    def degrade() -> BaseResponse | tuple[Response, int]:
        if not dashboard.signed_in():
            return jsonify(error="unauthorized"), 401
        expected = dashboard.csrf_token()
        if expected is None:
            return jsonify(error="the dashboard is read-only (OTP_CONVERSION_DASHBOARD_CONTROLS is off)"), 403
        if not dashboard.same_origin() or not hmac.compare_digest(request.form.get("csrf", ""), expected):
            return jsonify(error="CSRF check failed: reload the dashboard and try again"), 403
        mode = request.form.get("mode")
        if mode not in ("on", "off"):
            return jsonify(error="mode must be on or off"), 400
        dashboard.set_degraded(mode == "on")
        return _secure_headers(redirect(url_for(".index"), 303))

    bp.add_url_rule("/", "index", index, methods=["GET"])
    bp.add_url_rule("/dashboard.json", "data", data_view, methods=["GET"])
    bp.add_url_rule("/login", "login", login, methods=["POST"])
    bp.add_url_rule("/logout", "logout", logout, methods=["POST"])
    bp.add_url_rule("/degrade", "degrade", degrade, methods=["POST"])
    return bp
