"""Requests in flight, as the background threads see them."""

from __future__ import annotations

import threading
import time
from typing import Any

from flask import Flask

from flask_otp_conversion.activity import QUIET_AFTER, RequestActivity


def watched(app: Flask) -> RequestActivity:
    """Hooked up the way the extension does it."""
    activity = RequestActivity()
    app.before_request(activity.enter)
    app.teardown_request(lambda exc: activity.leave())
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


def test_a_request_answered_by_an_earlier_before_request_is_not_miscounted() -> None:
    app = Flask(__name__)
    app.before_request(lambda: ("stopped early", 403))
    activity = watched(app)
    client = app.test_client()
    assert client.get("/").status_code == 403
    assert client.get("/").status_code == 403
    assert repr(activity) == "<RequestActivity in_flight=0>"
