"""A Redis outage under a Flask app: the verify request only appends to the local spool, nothing accepted is
lost, and everything is applied once the server answers again."""

from __future__ import annotations

import time
from typing import Any

import pytest
from flask import jsonify

from flask_otp_conversion.store import Store
from tests.conftest import AppFactory
from tests.servers.redis import RedisServer, fresh_prefix

PHONE = "+8613711112222"


@pytest.mark.timeout(60)
def test_verifications_made_while_redis_is_down_are_applied_once_it_answers(
    private_redis_server: RedisServer,
    make_app: AppFactory,  # in this order: the app stops before the server
) -> None:
    url = private_redis_server.url(fresh_prefix(), connect_timeout="0.3", socket_timeout="0.5")
    app, conversion = make_app(OTP_CONVERSION_STORE_URL=url)

    @app.post("/verify")
    @conversion.verify_route(phone="phone")
    def verify() -> Any:
        return jsonify(ok=True)

    with app.app_context():
        assert conversion.record_sent(PHONE, "m-1")
    private_redis_server.kill()
    response = app.test_client().post("/verify", json={"phone": PHONE})
    assert response.status_code == 200  # the request only appended to the spool

    private_redis_server.start()
    store: Store = app.extensions["otp_conversion"].store
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        app.extensions["otp_conversion"].apply_spool()  # what the applier thread does every 50 ms
        if store.outbox_stats(now=time.time()).pending:
            break
        time.sleep(0.2)
    assert store.outbox_stats(now=time.time()).pending == 1
    (row,) = store.claim(provider="tencent", limit=5, lease_seconds=30, now=time.time() + 60)
    assert (row.message_id, row.phone) == ("m-1", PHONE)
