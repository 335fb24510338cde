"""A request's start deadline (``starting_by``, the ``start_by`` extension), over real sockets on 127.0.0.1: past it,
not a byte is written, the provider client passes ``NotStarted`` on unclassified, and the connection stays usable."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field

import httpx
import pytest
from provider_factories import tencent
from wire_server import Reply, recording_server

from flask_otp_conversion.providers import ProviderError
from flask_otp_conversion.providers._http import HTTPSender
from flask_otp_conversion.providers.base import ConversionReport
from flask_otp_conversion.providers.transport import StdlibTransport
from flask_otp_conversion.providers.transport_bounds import START_BY, NotStarted, start_by, starting_by

TIMEOUT = httpx.Timeout(2.0)
OK = Reply(body=b'{"Response": {"ReportConversionStatus": {"Code": "ok"}, "RequestId": "r"}}')
REPORT = ConversionReport("5000:1", "+8613711112222", verified_at=time.time())


def post(transport: httpx.BaseTransport, url: str, *, start: float | None = None) -> httpx.Response:
    extensions: dict[str, object] = {"timeout": TIMEOUT.as_dict()}
    if start is not None:
        extensions[START_BY] = start
    response = transport.handle_request(httpx.Request("POST", url, content=b"{}", extensions=extensions))
    response.read()
    return response


@dataclass
class ByteCounter:
    """Accepts connections and keeps every byte each one carried until its client closed it; never answers."""

    listener: socket.socket = field(default_factory=socket.socket)
    received: list[bytes] = field(default_factory=list)
    done: threading.Condition = field(default_factory=threading.Condition)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}/"

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._read, args=(conn,), daemon=True).start()

    def _read(self, conn: socket.socket) -> None:
        data = b""
        with conn:
            conn.settimeout(5.0)
            while chunk := conn.recv(65536):
                data += chunk
        with self.done:
            self.received.append(data)
            self.done.notify_all()

    def closed(self, count: int) -> bool:
        """Whether ``count`` connections have been closed by their client, waiting up to 5 s."""
        with self.done:
            return self.done.wait_for(lambda: len(self.received) >= count, timeout=5.0)


@contextmanager
def byte_counter() -> Iterator[ByteCounter]:
    server = ByteCounter()
    server.listener.bind(("127.0.0.1", 0))
    server.listener.listen(8)
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        with suppress(OSError):
            server.listener.shutdown(socket.SHUT_RDWR)  # wakes the accept (closing alone does not)
        server.listener.close()
        thread.join(timeout=5)


def test_a_request_past_its_start_deadline_writes_not_a_byte() -> None:
    with byte_counter() as server:
        transport = StdlibTransport()
        with pytest.raises(NotStarted):
            post(transport, server.url, start=time.time() - 0.001)
        transport.close()  # the connection it opened ends here, having carried nothing
        assert server.closed(1)
    assert server.received == [b""]


def test_a_request_past_its_start_deadline_leaves_its_connection_to_the_next() -> None:
    with recording_server(OK, OK) as server:
        transport = StdlibTransport()
        try:
            assert post(transport, server.url).status_code == 200
            with pytest.raises(NotStarted):
                post(transport, server.url, start=time.time() - 0.001)
            assert post(transport, server.url).status_code == 200
        finally:
            transport.close()
    assert len(server.requests) == 2
    assert server.requests[0].client_port == server.requests[1].client_port  # one kept-alive connection


def test_a_request_within_its_start_deadline_is_sent() -> None:
    with recording_server(OK) as server:
        transport = StdlibTransport()
        try:
            assert post(transport, server.url, start=time.time() + 5.0).status_code == 200
        finally:
            transport.close()
    assert len(server.requests) == 1


def test_http_sender_gives_its_requests_the_deadline_of_starting_by() -> None:
    with recording_server(OK) as server:
        sender = HTTPSender(timeout=TIMEOUT)
        url, headers = httpx.URL(server.url), [("Host", f"127.0.0.1:{server.port}")]
        try:
            with starting_by(time.time() - 0.001), pytest.raises(NotStarted):
                sender.send(url, headers, b"{}")
            assert server.requests == []
            assert sender.send(url, headers, b"{}").status_code == 200  # outside the block: no deadline
        finally:
            sender.close()
    assert len(server.requests) == 1


def test_http_sender_checks_the_deadline_itself_before_another_transport() -> None:
    with recording_server(OK) as server:
        sender = HTTPSender(timeout=TIMEOUT, transport=httpx.HTTPTransport(retries=0))
        try:
            with starting_by(time.time() - 0.001), pytest.raises(NotStarted):
                sender.send(httpx.URL(server.url), [("Host", f"127.0.0.1:{server.port}")], b"{}")
        finally:
            sender.close()
    assert server.requests == []


def test_a_provider_client_passes_not_started_on_rather_than_report_a_failed_call() -> None:
    with (
        recording_server(OK) as server,
        tencent(server.url) as provider,
        starting_by(time.time() - 0.001),
        pytest.raises(NotStarted) as raised,
    ):
        provider.report_conversion(REPORT)
    assert not isinstance(raised.value, ProviderError)
    assert server.requests == []


def test_starting_by_bounds_its_own_block_in_its_own_thread_only() -> None:
    seen: list[float | None] = []
    with starting_by(123.0):
        inside = start_by()
        other = threading.Thread(target=lambda: seen.append(start_by()))
        other.start()
        other.join()
    assert (inside, seen, start_by()) == (123.0, [None], None)
