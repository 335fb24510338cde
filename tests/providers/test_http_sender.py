"""HTTPSender: the transport-level sender both clients share (proxies from the environment, keep-alive)."""

from __future__ import annotations

import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import httpx
import pytest
from provider_factories import tencent
from wire_server import Reply, recording_server

from flask_otp_conversion.providers import RetryableError
from flask_otp_conversion.providers._http import HTTPSender
from flask_otp_conversion.providers.base import ConversionReport
from flask_otp_conversion.providers.transport import AnswerTooLarge, request_deadline

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


@pytest.fixture
def self_signed_server(tmp_path: Path) -> Iterator[str]:
    """An HTTPS server on 127.0.0.1 with a certificate no CA signed: what a man in the middle would offer."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )

    class Ok(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(200)
            self.send_header("Content-Length", str(len(OK.body)))
            self.end_headers()
            self.wfile.write(OK.body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = HTTPServer(("127.0.0.1", 0), Ok)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_a_certificate_no_ca_signed_is_refused(self_signed_server: str) -> None:
    with tencent(self_signed_server) as provider, pytest.raises(RetryableError, match="CERTIFICATE_VERIFY_FAILED"):
        provider.report_conversion(REPORT)


def test_an_answer_over_the_bound_is_refused_over_an_httpx_transport_too() -> None:
    # The transport a socks:// or https:// proxy gets: the sender reads it in pieces and stops at the bound.
    with recording_server(Reply(body=b" " * (5 << 20))) as server:
        sender = HTTPSender(timeout=httpx.Timeout(2.0), transport=httpx.HTTPTransport(retries=0))
        try:
            with pytest.raises(AnswerTooLarge):
                sender.send(httpx.URL(server.url), [("Host", f"127.0.0.1:{server.port}")], b"{}")
        finally:
            sender.close()


def test_the_total_deadline_is_the_connect_plus_the_read_timeout() -> None:
    assert request_deadline(httpx.Timeout(5.0, connect=1.5, read=4.0).as_dict()) == 5.5
