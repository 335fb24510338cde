from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, Response, current_app, jsonify, request

from flask_otp_conversion import OTPConversion, otp_sent, otp_verified
from flask_otp_conversion.delivery import election as deliverer
from flask_otp_conversion.store import Store
from flask_otp_conversion.store.checks import check_verification
from flask_otp_conversion.store.quarantine import quarantined
from flask_otp_conversion.store.spool import APPLY_INTERVAL
from flask_otp_conversion.testing import EmulatorServer
from tests.conftest import AppFactory

PHONE = "+8613711112222"


def store_of(app: Flask) -> Store:
    """The app's store, with what its spool holds applied (the spool's thread would within ~50 ms)."""
    state = app.extensions["otp_conversion"]
    state.apply_spool()
    store: Store = state.store
    return store


def pending(app: Flask) -> int:
    return store_of(app).outbox_stats(now=time.time()).pending


def add_verify_route(app: Flask, conversion: OTPConversion, **kwargs: Any) -> None:
    @app.post("/verify")
    @conversion.verify_route(**kwargs)
    def verify() -> Any:
        if request.args.get("boom"):
            raise RuntimeError("view failed")
        status = int(request.args.get("status", "200"))
        return jsonify(verified=status == 200), status


def test_init_app_stores_state_under_extensions(make_app: AppFactory) -> None:
    app, _ = make_app()
    assert "otp_conversion" in app.extensions


def test_init_app_twice_is_refused(make_app: AppFactory) -> None:
    app, conversion = make_app()
    with pytest.raises(RuntimeError, match="already initialised"):
        conversion.init_app(app)


def test_app_factory_pattern_defers_to_init_app(tmp_path: Any) -> None:
    conversion = OTPConversion()
    app = Flask("factory", instance_path=str(tmp_path / "instance"))
    app.config.update(OTP_CONVERSION_ENABLED=False)
    conversion.init_app(app)
    with app.app_context():
        assert conversion.record_sent(PHONE, "m-1") is False


def test_the_spool_applies_to_postgresql_in_larger_batches_than_to_sqlite(
    make_app: AppFactory, postgresql_url: str
) -> None:
    # A pass is a transaction per segment; on PostgreSQL its cost is mostly per statement, so fewer passes.
    local, _ = make_app("local")
    shared, _ = make_app("shared", OTP_CONVERSION_STORE_URL=postgresql_url)
    assert local.extensions["otp_conversion"].spool.apply_interval == APPLY_INTERVAL
    assert shared.extensions["otp_conversion"].spool.apply_interval > APPLY_INTERVAL


def test_two_apps_keep_separate_stores(make_app: AppFactory) -> None:
    app_a, conversion = make_app("a")
    app_b, _ = make_app("b")
    with app_a.app_context():
        conversion.record_sent(PHONE, "m-1")
        conversion.record_verified(PHONE)
    assert pending(app_a) == 1
    assert pending(app_b) == 0


def test_one_instance_serves_two_apps_with_their_own_config(tmp_path: Any) -> None:
    conversion = OTPConversion()
    apps = []
    for name, window in (("short", 1), ("long", 900)):
        app = Flask(name, instance_path=str(tmp_path / name))
        app.config.update(OTP_CONVERSION_ENABLED=True, OTP_CONVERSION_MATCH_WINDOW=window, **_tencent())
        conversion.init_app(app)
        apps.append(app)
    for app in apps:
        with app.app_context():
            conversion.record_sent(PHONE, "m-1", sent_at=time.time() - 60)
            conversion.record_verified(PHONE)
    assert [pending(app) for app in apps] == [0, 1]
    for app in apps:
        app.extensions["otp_conversion"].shutdown()


def _tencent() -> dict[str, Any]:
    from tests.conftest import TENCENT_KEYS

    return {**TENCENT_KEYS, "OTP_CONVERSION_REPORTER_AUTOSTART": False}


def test_methods_record_send_and_enqueue_on_verify(make_app: AppFactory) -> None:
    app, conversion = make_app()
    with app.app_context():
        assert conversion.record_sent("+86 137 1111 2222", "m-1") is True
        outcome = conversion.record_verified(PHONE)
    assert outcome is not None and outcome.message_id == "m-1" and outcome.enqueued
    assert pending(app) == 1


def test_method_rejects_bad_phone_with_value_error(make_app: AppFactory) -> None:
    app, conversion = make_app()
    with app.app_context(), pytest.raises(ValueError, match=r"E\.164"):
        conversion.record_sent("13711112222", "m-1")


@pytest.mark.parametrize("message_id", ["", "   ", None, 42, "x" * 500])
def test_method_rejects_bad_message_id(make_app: AppFactory, message_id: Any) -> None:
    app, conversion = make_app()
    with app.app_context(), pytest.raises(ValueError, match="message_id"):
        conversion.record_sent(PHONE, message_id)
    assert store_of(app).counts(since=0, until=time.time() + 3600) == []


@pytest.mark.parametrize("sent_at", [float("nan"), float("inf"), True, "yesterday"])
def test_method_rejects_bad_timestamps(make_app: AppFactory, sent_at: Any) -> None:
    app, conversion = make_app()
    with app.app_context(), pytest.raises(ValueError, match="UNIX seconds"):
        conversion.record_sent(PHONE, "m-1", sent_at=sent_at)


@pytest.mark.parametrize(
    ("phone", "message_id", "verified_at"),
    [
        ("+8613711112222", None, None),
        (" +86 137-1111.2222 ", "  serial-1 ", 1_700_000_000),
        ("0086(137)11112222", "x" * 10, 1.7e9),
    ],
)
def test_verifications_the_extension_spools_unchecked_pass_the_store_check(
    make_app: AppFactory, phone: str, message_id: str | None, verified_at: float | None
) -> None:
    """The extension appends to the spool with ``checked=True``: what it builds must pass the store's rules."""
    app, _ = make_app()
    item = app.extensions["otp_conversion"]._verification(phone, message_id, verified_at)
    assert check_verification(item) == item


def test_signal_records_a_send_from_app_code(make_app: AppFactory) -> None:
    app, conversion = make_app()
    otp_sent.send(app, phone=PHONE, message_id="serial-1", provider="tencent")
    with app.app_context():
        outcome = conversion.record_verified(PHONE)
    assert outcome is not None and outcome.message_id == "serial-1"


def test_signal_for_another_app_is_ignored(make_app: AppFactory) -> None:
    app_a, conversion = make_app("a")
    app_b, _ = make_app("b")
    otp_sent.send(app_b, phone=PHONE, message_id="serial-1")
    with app_a.app_context():
        outcome = conversion.record_verified(PHONE)
    assert outcome is not None and outcome.message_id is None


def test_otp_sent_with_current_app_as_sender_is_recorded_for_that_app_only(make_app: AppFactory) -> None:
    app_a, conversion = make_app("a")
    app_b, _ = make_app("b")
    with app_a.app_context():
        otp_sent.send(current_app, phone=PHONE, message_id="serial-1")
    with app_b.app_context():
        assert store_of(app_b).record_verified(
            phone=PHONE, message_id=None, provider="tencent", verified_at=time.time(), match_window=900
        ).message_id is None
    with app_a.app_context():
        outcome = conversion.record_verified(PHONE)
    assert outcome is not None and outcome.message_id == "serial-1"


def test_otp_sent_with_current_app_outside_a_context_is_ignored(make_app: AppFactory) -> None:
    app, conversion = make_app()
    otp_sent.send(current_app, phone=PHONE, message_id="serial-1")  # an unbound proxy: nobody's app
    with app.app_context():
        outcome = conversion.record_verified(PHONE)
    assert outcome is not None and outcome.message_id is None


def test_bad_signal_payload_is_logged_masked_and_never_raises(
    make_app: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    app, _ = make_app()
    with caplog.at_level(logging.WARNING, logger="flask_otp_conversion"):
        otp_sent.send(app, phone="+86 137 1111 2222 9999 9999", message_id="m-1")
        otp_verified.send(app, phone=PHONE, message_id=["not", "a", "string"])
    assert "not recorded" in caplog.text
    assert "1111" not in caplog.text


def test_otp_verified_with_a_time_the_store_cannot_keep_is_refused_not_spooled(
    make_app: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    app, _ = make_app()
    with caplog.at_level(logging.WARNING, logger="flask_otp_conversion"):
        otp_verified.send(app, phone=PHONE, verified_at=1e13)
    assert "verified_at is out of range" in caplog.text
    assert verifications(app) == 0  # applies what the spool holds: nothing
    assert quarantined(app.extensions["otp_conversion"].spool.directory) == 0


def test_verify_route_marks_verified_on_2xx(make_app: AppFactory) -> None:
    app, conversion = make_app()
    add_verify_route(app, conversion)
    with app.app_context():
        conversion.record_sent(PHONE, "m-1")
    response = app.test_client().post("/verify", json={"phone": PHONE, "code": "123456"})
    assert response.status_code == 200 and response.get_json() == {"verified": True}
    assert pending(app) == 1


def verifications(app: Flask) -> int:
    """Verifications recorded (none of these tests sends, so every one is unmatched)."""
    rows = store_of(app).counts(since=0, until=time.time() + 3600)
    return sum(row.verified + row.unmatched for row in rows)


def test_verify_route_sends_otp_verified_to_other_receivers_and_records_once(make_app: AppFactory) -> None:
    app, conversion = make_app()
    add_verify_route(app, conversion)
    client = app.test_client()
    assert client.post("/verify", json={"phone": PHONE}).status_code == 200  # the extension alone listens
    heard: list[dict[str, Any]] = []

    def listener(sender: Flask, **kwargs: Any) -> None:
        heard.append(kwargs)

    otp_verified.connect(listener, sender=app)
    try:
        assert client.post("/verify", json={"phone": PHONE}).status_code == 200
    finally:
        otp_verified.disconnect(listener, sender=app)
    assert client.post("/verify", json={"phone": PHONE}).status_code == 200
    assert [h["phone"] for h in heard] == [PHONE]
    assert verifications(app) == 3


def test_verify_route_reaches_receivers_connected_for_any_sender(make_app: AppFactory) -> None:
    app, conversion = make_app()
    add_verify_route(app, conversion)
    heard: list[object] = []

    def listener(sender: Flask, **kwargs: Any) -> None:
        heard.append(sender)

    with otp_verified.connected_to(listener):
        assert app.test_client().post("/verify", json={"phone": PHONE}).status_code == 200
    assert heard == [app]
    assert verifications(app) == 1


def test_verify_route_records_nothing_while_otp_verified_is_muted(make_app: AppFactory) -> None:
    app, conversion = make_app()
    add_verify_route(app, conversion)
    with otp_verified.muted():
        assert app.test_client().post("/verify", json={"phone": PHONE}).status_code == 200
    assert verifications(app) == 0


@pytest.mark.parametrize("status", [400, 401, 429, 302])
def test_verify_route_ignores_non_2xx(make_app: AppFactory, status: int) -> None:
    app, conversion = make_app()
    add_verify_route(app, conversion)
    with app.app_context():
        conversion.record_sent(PHONE, "m-1")
    response = app.test_client().post(f"/verify?status={status}", json={"phone": PHONE})
    assert response.status_code == status
    assert pending(app) == 0


def test_verify_route_leaves_exceptions_alone_and_records_nothing(make_app: AppFactory) -> None:
    app, conversion = make_app()
    add_verify_route(app, conversion)
    with app.app_context():
        conversion.record_sent(PHONE, "m-1")
    assert app.test_client().post("/verify?boom=1", json={"phone": PHONE}).status_code == 500
    assert pending(app) == 0


def test_verify_route_reads_form_fields(make_app: AppFactory) -> None:
    app, conversion = make_app()
    add_verify_route(app, conversion, phone="mobile")
    with app.app_context():
        conversion.record_sent(PHONE, "m-1")
    assert app.test_client().post("/verify", data={"mobile": PHONE}).status_code == 200
    assert pending(app) == 1


def test_verify_route_takes_phone_and_message_id_from_callables(make_app: AppFactory) -> None:
    app, conversion = make_app()
    add_verify_route(app, conversion, phone=lambda: request.headers["X-Phone"], message_id=lambda: "m-1")
    with app.app_context():
        conversion.record_sent(PHONE, "m-1")
        conversion.record_sent(PHONE, "m-2")
    assert app.test_client().post("/verify", headers={"X-Phone": PHONE}).status_code == 200
    assert store_of(app).claim(provider="tencent", limit=5, lease_seconds=5, now=time.time())[0].message_id == "m-1"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"data": "not json", "content_type": "application/json"},
        {"json": {"phone": 13711112222}},
        {"json": {"phone": "+86" + "1" * 200}},
        {"json": {}},
        {"json": ["+8613711112222"]},
    ],
)
def test_verify_route_bad_input_keeps_app_response_and_records_nothing(
    make_app: AppFactory, kwargs: dict[str, Any]
) -> None:
    app, conversion = make_app()
    add_verify_route(app, conversion)
    with app.app_context():
        conversion.record_sent(PHONE, "m-1")
    response = app.test_client().post("/verify", **kwargs)
    assert response.status_code == 200
    assert pending(app) == 0


def test_verify_route_supports_async_views(make_app: AppFactory) -> None:
    app, conversion = make_app()

    @app.post("/averify")
    @conversion.verify_route()
    async def averify() -> Any:
        return {"verified": True}

    with app.app_context():
        conversion.record_sent(PHONE, "m-1")
    assert app.test_client().post("/averify", json={"phone": PHONE}).status_code == 200
    assert pending(app) == 1


@pytest.mark.parametrize(
    ("answer", "recorded"),
    [
        (lambda: Response("ok", status=201), True),
        (lambda: (jsonify(verified=True), 202), True),
        (lambda: (jsonify(verified=False), 403), False),
        (lambda: (Response("ok", status=400), 200), True),  # the tuple's status is the one Flask answers with
        (lambda: (Response("ok"), 401), False),
        (lambda: (Response("ok"), "201 CREATED"), True),  # the rest: Flask's own conversion, as before
        (lambda: ("ok", 200, {"X-Test": "1"}), True),
        (lambda: ({"verified": True}, {"X-Test": "1"}), True),
        (lambda: "ok", True),
        (lambda: ("no", 409), False),
        (lambda: None, False),  # Flask cannot answer it: a 500
    ],
)
def test_verify_route_records_by_the_status_flask_answers_with(
    make_app: AppFactory, answer: Any, recorded: bool
) -> None:
    app, conversion = make_app()

    @app.post("/custom")
    @conversion.verify_route()
    def custom() -> Any:
        return answer()

    response = app.test_client().post("/custom", json={"phone": PHONE})
    assert (200 <= response.status_code < 300) is recorded
    assert verifications(app) == (1 if recorded else 0)


def test_disabled_extension_records_nothing_and_passes_views_through(make_app: AppFactory) -> None:
    app, conversion = make_app(OTP_CONVERSION_ENABLED=False)
    add_verify_route(app, conversion)
    assert app.test_client().post("/verify", json={"phone": PHONE}).status_code == 200
    assert app.extensions["otp_conversion"].store is None


def emulator_app(make_app: AppFactory, server: EmulatorServer, **config: Any) -> tuple[Flask, OTPConversion]:
    """An app whose provider is the emulator, able to send (template and sign name set)."""
    return make_app(
        OTP_CONVERSION_TENCENT_ENDPOINT=server.url,
        OTP_CONVERSION_TENCENT_TEMPLATE_ID="1110",
        OTP_CONVERSION_TENCENT_SIGN_NAME="Example",
        **config,
    )


def send_through_emulator(app: Flask) -> str:
    """Send an OTP to PHONE through the emulator (which only takes reports of messages it sent) and record it."""
    with app.app_context():
        provider = app.extensions["otp_conversion"].make_provider()
        sent = provider.send_otp(PHONE, "123456")
        provider.close()
        otp_sent.send(app, phone=PHONE, message_id=sent.message_id)
    return sent.message_id


def test_verification_reaches_the_provider_through_the_reporter(
    make_app: AppFactory, provider_emulator_server: EmulatorServer
) -> None:
    emulator = provider_emulator_server.emulator
    app, conversion = emulator_app(make_app, provider_emulator_server)
    add_verify_route(app, conversion)
    serial = send_through_emulator(app)
    assert app.test_client().post("/verify", json={"phone": PHONE}).status_code == 200
    with app.app_context():
        assert conversion.flush(timeout=10) == 0
    calls = emulator.calls(action="ReportConversion")
    assert [(c.params["SerialNo"], c.ok) for c in calls] == [(serial, True)]


def test_shutdown_of_a_worker_that_only_appends_applies_its_spool(
    make_app: AppFactory, provider_emulator_server: EmulatorServer
) -> None:
    app, conversion = emulator_app(make_app, provider_emulator_server, OTP_CONVERSION_REPORTER_AUTOSTART=True)
    add_verify_route(app, conversion)
    send_through_emulator(app)
    state = app.extensions["otp_conversion"]
    other = deliverer.DeliveryLock(state.delivery_lock.path)  # another worker delivers: this one only appends
    assert other.acquire()
    try:
        assert app.test_client().post("/verify", json={"phone": PHONE}).status_code == 200
        assert state.store.outbox_stats(now=time.time()).pending == 0
        state.shutdown()
        assert state.store.outbox_stats(now=time.time()).pending == 1
    finally:
        other.release()


def test_reporter_starts_lazily_on_first_request(
    make_app: AppFactory, provider_emulator_server: EmulatorServer
) -> None:
    app, conversion = make_app(
        OTP_CONVERSION_TENCENT_ENDPOINT=provider_emulator_server.url, OTP_CONVERSION_REPORTER_AUTOSTART=True
    )
    reporter = app.extensions["otp_conversion"].reporter
    assert not reporter.running
    add_verify_route(app, conversion)
    app.test_client().post("/verify", json={"phone": PHONE})
    assert reporter.running


def test_degrade_switch_is_shared_through_the_store(make_app: AppFactory) -> None:
    app, conversion = make_app()
    with app.app_context():
        conversion.degrade(True)
    assert store_of(app).get_flag("degraded") == "1"
    assert app.extensions["otp_conversion"].reporter.degraded
    with app.app_context():
        conversion.degrade(False)
    assert not app.extensions["otp_conversion"].reporter.degraded


def test_running_reporter_prunes_records_past_the_retention(
    make_app: AppFactory, provider_emulator_server: EmulatorServer
) -> None:
    app, conversion = make_app(
        OTP_CONVERSION_TENCENT_ENDPOINT=provider_emulator_server.url, OTP_CONVERSION_RETENTION=1
    )
    with app.app_context():
        conversion.record_sent(PHONE, "old", sent_at=time.time() - 3 * 86400)
        conversion.record_sent(PHONE, "new")
    app.extensions["otp_conversion"].reporter.ensure_running()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(store_of(app).counts(since=0, until=time.time() + 3600)) > 1:
        time.sleep(0.05)
    rows = store_of(app).counts(since=0, until=time.time() + 3600)
    assert [row.requested for row in rows] == [1]
    assert rows[0].hour > time.time() - 86400


# One deliverer per store --------------------------------------------------------------------------------


def shared_store_apps(
    make_app: AppFactory, server: EmulatorServer, tmp_path: Path, **config: Any
) -> list[tuple[Flask, OTPConversion]]:
    """Two apps on one SQLite store, as two web workers of one host would be (a lock file each opens anew)."""
    apps = []
    for name in ("first", "second"):
        app, conversion = emulator_app(
            make_app,
            server,
            name=name,
            OTP_CONVERSION_STORE_URL=f"sqlite:///{tmp_path / 'shared.db'}",
            OTP_CONVERSION_REPORTER_AUTOSTART=True,
            **config,
        )
        add_verify_route(app, conversion)
        apps.append((app, conversion))
    return apps


def test_only_the_first_process_to_serve_a_request_delivers(
    make_app: AppFactory, provider_emulator_server: EmulatorServer, tmp_path: Path
) -> None:
    (first, _), (second, _) = shared_store_apps(make_app, provider_emulator_server, tmp_path)
    for app in (first, second):
        assert app.test_client().post("/verify", json={"phone": PHONE}).status_code == 200
    assert first.extensions["otp_conversion"].reporter.running
    assert not second.extensions["otp_conversion"].reporter.running
    assert second.extensions["otp_conversion"].spool._thread is None


def test_deliverer_delivers_what_another_process_spooled(
    make_app: AppFactory, provider_emulator_server: EmulatorServer, tmp_path: Path
) -> None:
    emulator = provider_emulator_server.emulator
    (first, _), (second, _) = shared_store_apps(make_app, provider_emulator_server, tmp_path)
    assert first.test_client().get("/nowhere").status_code == 404  # any request: the first app delivers
    serial = send_through_emulator(second)
    assert second.test_client().post("/verify", json={"phone": PHONE}).status_code == 200
    deadline = time.monotonic() + 10
    while not emulator.calls(action="ReportConversion") and time.monotonic() < deadline:
        time.sleep(0.05)
    calls = emulator.calls(action="ReportConversion")
    assert [(c.params["SerialNo"], c.ok) for c in calls] == [(serial, True)]


@pytest.mark.parametrize(
    ("retry_every", "takes_over"),
    [(0.0, True), (3600.0, False)],
    ids=["once-the-lock-retry-interval-passed", "not-within-the-lock-retry-interval"],
)
def test_another_process_delivers_once_the_deliverer_shuts_down(
    make_app: AppFactory,
    provider_emulator_server: EmulatorServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    retry_every: float,
    takes_over: bool,
) -> None:
    monkeypatch.setattr(deliverer, "RETRY_EVERY", retry_every)
    (first, _), (second, _) = shared_store_apps(make_app, provider_emulator_server, tmp_path)
    first.test_client().get("/")
    second.test_client().get("/")
    assert not second.extensions["otp_conversion"].reporter.running
    first.extensions["otp_conversion"].shutdown()
    second.test_client().get("/")
    assert second.extensions["otp_conversion"].reporter.running is takes_over


def stop_spool_thread(app: Flask) -> None:
    """End the spool applier's thread as if it had died."""
    spool = app.extensions["otp_conversion"].spool
    thread = spool._thread
    spool._stop.set()
    thread.join(5)
    assert not thread.is_alive()


def test_the_next_request_restarts_a_background_thread_that_died(
    make_app: AppFactory, provider_emulator_server: EmulatorServer
) -> None:
    app, _ = emulator_app(make_app, provider_emulator_server, OTP_CONVERSION_REPORTER_AUTOSTART=True)
    app.test_client().get("/")
    stop_spool_thread(app)
    app.test_client().get("/")
    assert app.extensions["otp_conversion"].spool._thread.is_alive()


def test_every_process_delivers_without_single_deliverer(
    make_app: AppFactory, provider_emulator_server: EmulatorServer, tmp_path: Path
) -> None:
    apps = shared_store_apps(make_app, provider_emulator_server, tmp_path, OTP_CONVERSION_SINGLE_DELIVERER=False)
    for app, _ in apps:
        app.test_client().get("/")
        assert app.extensions["otp_conversion"].reporter.running
        assert app.extensions["otp_conversion"].delivery_lock is None


def test_memory_store_has_no_deliverer_lock(make_app: AppFactory) -> None:
    app, _ = make_app(OTP_CONVERSION_STORE_URL="memory://", OTP_CONVERSION_REPORTER_AUTOSTART=True)
    assert app.extensions["otp_conversion"].delivery_lock is None


def test_process_whose_deliverer_lock_cannot_be_opened_logs_it_and_delivers(
    make_app: AppFactory, provider_emulator_server: EmulatorServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (app, _), _ = shared_store_apps(make_app, provider_emulator_server, tmp_path)
    lock = app.extensions["otp_conversion"].delivery_lock
    os.mkdir(lock.path)  # a folder where the lock file should be: open() fails
    assert app.test_client().post("/verify", json={"phone": PHONE}).status_code == 200
    assert "deliverer lock" in caplog.text
    assert app.extensions["otp_conversion"].reporter.running
