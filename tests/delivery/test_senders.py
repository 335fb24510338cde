"""The senders and the rate limit's start deadline: a real SQLite outbox, the real Tencent client over HTTP to the
provider emulator, real threads; only the transport under the client is held up, as a busy process would."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from delivery_helpers import Env, pending, wait_for

from flask_otp_conversion.config import Settings
from flask_otp_conversion.delivery.ratelimit import LATENESS
from flask_otp_conversion.providers import Provider
from flask_otp_conversion.providers.tencent import TencentProvider
from flask_otp_conversion.providers.transport import NotStarted, StdlibTransport


class StallsOnce(StdlibTransport):
    """Holds its first request back for three times the lateness before it reaches the socket (as signing on a
    loaded machine, or a thread waiting for the GIL, would), and notes whether that request was refused."""

    def __init__(self) -> None:
        super().__init__()
        self.stalled = threading.Event()
        self.stalled_refused = False

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self.stalled.is_set():
            return super().handle_request(request)
        self.stalled.set()
        time.sleep(3 * LATENESS)
        try:
            return super().handle_request(request)
        except NotStarted:
            self.stalled_refused = True
            raise


def tencent_on(transport: httpx.BaseTransport) -> Callable[[Settings], Callable[[], Provider]]:
    def factory(settings: Settings) -> Callable[[], Provider]:
        timeout = httpx.Timeout(settings.http_read_timeout, connect=settings.http_connect_timeout)
        return lambda: TencentProvider(settings.provider_settings, timeout=timeout, transport=transport)

    return factory


@pytest.mark.timeout(60)
def test_a_report_too_late_for_its_slot_at_the_first_byte_goes_on_a_fresh_slot_and_is_no_failure(
    env: Env, received: dict[str, list[dict[str, Any]]]
) -> None:
    transport = StallsOnce()
    reporter, store = env.reporter(factory=tencent_on(transport))
    ids = env.seed(store, 5)
    assert reporter.flush(20) == 0
    assert wait_for(lambda: pending(store) == 0)
    assert transport.stalled_refused  # the stalled request was never sent...
    assert env.delivered() == Counter({i: 1 for i in ids})  # ...and its report went once, on another slot
    assert len(env.calls()) == len(ids)
    assert "conversion-failed" not in received
    assert reporter.breaker_state == "closed"
