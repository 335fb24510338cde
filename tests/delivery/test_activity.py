"""Requests in flight, as the background threads see them."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from flask import Flask

from flask_otp_conversion.delivery.activity import QUIET_AFTER, CountingMiddleware, RequestActivity


def watched(app: Flask, on_request: Callable[[], None] = lambda: None) -> RequestActivity:
    """Wrapped the way the extension does it."""
    activity = RequestActivity()
    app.wsgi_app = CountingMiddleware(app.wsgi_app, activity, on_request)  # type: ignore[method-assign]
    return activity


def app_with_activity() -> tuple[Flask, RequestActivity, threading.Event, threading.Event]:
    app = Flask(__name__)
    activity = watched(app)
    entered, release = threading.Event(), threading.Event()

    @app.get("/slow")
    def slow() -> Any:
        entered.set()
        release.wait(10)
        return "done"

    @app.get("/boom")
    def boom() -> Any:
        raise RuntimeError("boom")

    return app, activity, entered, release


def test_a_request_is_in_flight_until_it_ends() -> None:
    app, activity, entered, release = app_with_activity()
    thread = threading.Thread(target=lambda: app.test_client().get("/slow"))
    thread.start()
    assert entered.wait(10)
    assert activity.busy()
    release.set()
    thread.join(10)
    time.sleep(QUIET_AFTER * 2)
    assert not activity.busy()


def test_the_worker_is_busy_for_a_moment_after_a_request_ends() -> None:
    app, activity, _, release = app_with_activity()
    release.set()
    app.test_client().get("/slow")
    ended = time.monotonic()
    busy = activity.busy()
    if time.monotonic() - ended < QUIET_AFTER:  # a descheduled test thread could miss the moment
        assert busy


def test_a_request_that_raises_is_no_longer_in_flight() -> None:
    app, activity, _, _ = app_with_activity()
    assert app.test_client().get("/boom").status_code == 500
    time.sleep(QUIET_AFTER * 2)
    assert not activity.busy()


def test_a_request_answered_by_a_before_request_function_is_no_longer_in_flight() -> None:
    app = Flask(__name__)
    app.before_request(lambda: ("stopped early", 403))
    activity = watched(app)
    client = app.test_client()
    assert client.get("/").status_code == 403
    assert client.get("/").status_code == 403
    assert repr(activity) == "<RequestActivity in_flight=0>"


def test_on_request_runs_before_each_request_reaches_the_app() -> None:
    app = Flask(__name__)
    events: list[str] = []
    watched(app, on_request=lambda: events.append("on_request"))
    app.get("/")(lambda: events.append("view") or "ok")
    app.test_client().get("/")
    app.test_client().get("/")
    assert events == ["on_request", "view", "on_request", "view"]
