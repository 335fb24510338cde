"""HTTPSender: the transport-level sender both clients share (proxies from the environment, keep-alive)."""

from __future__ import annotations

import time

import pytest
from provider_factories import tencent
from wire_server import Reply, recording_server

from flask_otp_conversion.providers.base import ConversionReport

OK = Reply(body=b'{"Response": {"ReportConversionStatus": {"Code": "ok"}, "RequestId": "r"}}')
REPORT = ConversionReport("5000:1", "+8613711112222", verified_at=time.time())


def test_an_http_proxy_from_the_environment_carries_the_request(monkeypatch: pytest.MonkeyPatch) -> None:
    with recording_server(OK) as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        with tencent("http://sms.tencentcloudapi.invalid") as provider:
            provider.report_conversion(REPORT)
    assert proxy.last.target == "http://sms.tencentcloudapi.invalid/"  # absolute form: sent through the proxy
    assert proxy.last.header("Host") == "sms.tencentcloudapi.invalid"


def test_no_proxy_sends_directly(monkeypatch: pytest.MonkeyPatch) -> None:
    with recording_server(OK) as proxy, recording_server(OK) as server:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        with tencent(server.url) as provider:
            provider.report_conversion(REPORT)
        assert server.last.target == "/"
        assert proxy.requests == []


def test_requests_reuse_one_kept_alive_connection() -> None:
    with recording_server(OK, OK, OK) as server, tencent(server.url) as provider:
        for _ in range(3):
            provider.report_conversion(REPORT)
        assert len({r.client_port for r in server.requests}) == 1
