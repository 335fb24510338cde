"""EmulatorServer: real sockets, keep-alive, concurrency, clean stop; the standalone entry point."""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest
from emulator_wire import CN_PHONE, Wire

from flask_otp_conversion.providers.signing import tc3_sign
from flask_otp_conversion.testing import EmulatorServer, ProviderEmulator

DESCRIBE = json.dumps({"PhoneNumberSet": [CN_PHONE]}).encode()


def raw_request(host: str, emu: ProviderEmulator, body: bytes = DESCRIBE) -> bytes:
    """A signed Tencent request as raw HTTP/1.1 bytes (keep-alive is HTTP/1.1's default)."""
    ts = int(time.time())
    signature = tc3_sign(
        secret_id=emu.TENCENT_SECRET_ID,
        secret_key=emu.TENCENT_SECRET_KEY,
        host=host,
        content_type="application/json",
        body=body,
        timestamp=ts,
    )
    head = (
        f"POST / HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nX-TC-Action: DescribePhoneNumberInfo\r\n"
        "X-TC-Version: 2021-01-11\r\n"
        f"X-TC-Timestamp: {ts}\r\nX-TC-Region: ap-guangzhou\r\n"
        f"Authorization: {signature.authorization}\r\n\r\n"
    )
    return head.encode() + body


class Answers:
    """Reads HTTP/1.1 answers off one socket, keeping bytes that belong to the next answer."""

    def __init__(self, stream: socket.socket) -> None:
        self.stream = stream
        self.buffer = b""

    def _fill(self) -> None:
        chunk = self.stream.recv(65536)
        assert chunk, "connection closed before a full answer"
        self.buffer += chunk

    def next(self) -> tuple[bytes, dict[str, str], bytes]:
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        status, *lines = head.decode().split("\r\n")
        headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
        length = int(headers["content-length"])
        while len(self.buffer) < length:
            self._fill()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return status.encode(), headers, body


@pytest.mark.timeout(20)
def test_one_keep_alive_connection_serves_several_requests(wire: Wire) -> None:
    with socket.create_connection(("127.0.0.1", wire.port)) as stream:
        answers = Answers(stream)
        for _ in range(3):
            stream.sendall(raw_request(wire.host, wire.emu))
            status, headers, body = answers.next()
            assert status.startswith(b"HTTP/1.1 200")
            assert headers.get("connection", "").lower() != "close"
            assert json.loads(body)["Response"]["PhoneNumberInfoSet"][0]["Code"] == "Ok"
    assert len(wire.emu.calls(ok=True)) == 3


@pytest.mark.timeout(20)
def test_pipelined_requests_on_one_connection_are_all_answered(wire: Wire) -> None:
    with socket.create_connection(("127.0.0.1", wire.port)) as stream:
        stream.sendall(raw_request(wire.host, wire.emu) + raw_request(wire.host, wire.emu))
        reader = Answers(stream)
        answers = [reader.next() for _ in range(2)]
    assert [status.split()[1] for status, _, _ in answers] == [b"200", b"200"]


@pytest.mark.timeout(20)
def test_connection_close_from_the_client_is_honoured(wire: Wire) -> None:
    request = raw_request(wire.host, wire.emu).replace(b"\r\n\r\n", b"\r\nConnection: close\r\n\r\n", 1)
    with socket.create_connection(("127.0.0.1", wire.port)) as stream:
        stream.sendall(request)
        _, headers, _ = Answers(stream).next()
        assert headers["connection"] == "close"
        assert stream.recv(1) == b""


def test_chunked_request_body_is_read_whole_and_verified(wire: Wire) -> None:
    def chunks() -> Iterator[bytes]:
        yield DESCRIBE[:10]
        yield DESCRIBE[10:]

    headers = {
        "X-TC-Action": "DescribePhoneNumberInfo",
        "X-TC-Version": "2021-01-11",
        "X-TC-Region": "ap-guangzhou",
    }
    ts = int(time.time())
    signature = tc3_sign(
        secret_id=wire.emu.TENCENT_SECRET_ID,
        secret_key=wire.emu.TENCENT_SECRET_KEY,
        host=wire.host,
        content_type="application/json",
        body=DESCRIBE,
        timestamp=ts,
    )
    headers |= {
        "Content-Type": "application/json",
        "X-TC-Timestamp": str(ts),
        "Authorization": signature.authorization,
    }
    response = wire.client.post(wire.url, content=chunks(), headers=headers)
    assert "Error" not in response.json()["Response"], response.text


@pytest.mark.timeout(60)
def test_a_hundred_concurrent_keep_alive_clients_are_all_served(wire: Wire) -> None:
    barrier = threading.Barrier(100)
    failures: list[str] = []

    def client() -> None:
        with httpx.Client(timeout=20, verify=False) as own:
            peer = Wire(wire.url, wire.emu, own)
            barrier.wait()
            for _ in range(3):
                response = peer.tencent("DescribePhoneNumberInfo", {"PhoneNumberSet": [CN_PHONE]})
                if response.status_code != 200 or "Error" in response.json()["Response"]:
                    failures.append(response.text)

    threads = [threading.Thread(target=client) for _ in range(100)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert len(wire.emu.calls(ok=True)) == 300


def test_url_is_loopback_with_the_bound_port(provider_emulator_server: EmulatorServer) -> None:
    parts = urlsplit(provider_emulator_server.url)
    assert (parts.scheme, parts.hostname, parts.port) == ("http", "127.0.0.1", provider_emulator_server.port)
    assert parts.port and parts.port > 0


def test_after_stop_the_port_refuses_connections_and_stop_is_idempotent() -> None:
    server = EmulatorServer().start()
    port = server.port
    server.stop()
    server.stop()
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass


def test_server_creates_an_emulator_when_given_none() -> None:
    with EmulatorServer() as server:
        assert isinstance(server.emulator, ProviderEmulator)
        assert httpx.post(server.url, content=b"{}").status_code == 400


def test_url_of_a_stopped_server_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="not running"):
        _ = EmulatorServer().url


@pytest.fixture
def standalone() -> Iterator[tuple[subprocess.Popen[str], list[str]]]:
    """``python -m flask_otp_conversion.testing`` running, and the 10 lines it printed first."""
    process = subprocess.Popen(
        [sys.executable, "-m", "flask_otp_conversion.testing", "--port", "0", "--rate-limit", "SendSms=5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    try:
        yield process, [process.stdout.readline() for _ in range(10)]
    finally:
        process.terminate()
        process.communicate(timeout=10)


def url_of(lines: list[str]) -> str:
    [line] = [line for line in lines if line.startswith("export FLASK_OTP_CONVERSION_TENCENT_ENDPOINT=")]
    return line.strip().split("=", 1)[1]


@pytest.mark.timeout(30)
def test_module_entry_point_prints_export_lines_that_configure_an_app_from_the_environment(
    standalone: tuple[subprocess.Popen[str], list[str]],
) -> None:
    _, lines = standalone
    app_settings = (
        "from flask import Flask; from flask_otp_conversion.config import load_settings\n"
        "app = Flask('pasted'); app.config.from_prefixed_env(); app.config['OTP_CONVERSION_PROVIDER'] = '{0}'\n"
        "s = load_settings(app.config, instance_path='/i').provider_settings\n"
        "print(s.endpoint, s.{1})\n"
    )
    pasted = "".join(lines)
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLASK_")}
    for provider, field, expected in [
        ("tencent", "sdk_app_id", ProviderEmulator.TENCENT_SDK_APP_ID),
        ("alibaba", "cust_space_id", ProviderEmulator.ALIBABA_CUST_SPACE_ID),
    ]:
        script = f"{pasted}\nexec {shlex.quote(sys.executable)} -c {shlex.quote(app_settings.format(provider, field))}"
        result = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=env, check=True)
        assert result.stdout.split() == [url_of(lines), expected]


@pytest.mark.timeout(30)
def test_module_entry_point_serves_the_printed_url(standalone: tuple[subprocess.Popen[str], list[str]]) -> None:
    _, lines = standalone
    with httpx.Client(verify=False) as client:
        wire = Wire(url_of(lines), ProviderEmulator(), client)  # same default credentials as the process
        payload = wire.tencent_response("DescribePhoneNumberInfo", {"PhoneNumberSet": [CN_PHONE]})
    assert payload["PhoneNumberInfoSet"][0]["Code"] == "Ok"


@pytest.mark.timeout(30)
def test_module_entry_point_logs_one_line_per_request_with_the_phone_masked(
    standalone: tuple[subprocess.Popen[str], list[str]],
) -> None:
    process, lines = standalone
    with httpx.Client(verify=False) as client:
        Wire(url_of(lines), ProviderEmulator(), client).tencent_response(
            "DescribePhoneNumberInfo", {"PhoneNumberSet": [CN_PHONE]}
        )
    assert process.stderr is not None
    line = process.stderr.readline()  # written before the answer went out
    assert line.rstrip().endswith("emulator: tencent DescribePhoneNumberInfo 200 ok phone=+86*********22")
    assert CN_PHONE not in line
