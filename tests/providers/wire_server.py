"""A tiny recording HTTP server for the provider tests, and a transport that routes a client to it.

The server records each request exactly as it arrived (request target, headers, body) and answers with
canned replies, so the tests see the real wire of our clients. ``Retarget`` keeps the URL's ``Host`` header
(the cloud host that was signed) while opening the connection to the local server: how the reference
vectors were captured, and how a client's request can be compared with them byte for byte.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl

import httpx


@dataclass(frozen=True)
class Reply:
    status: int = 200
    headers: tuple[tuple[str, str], ...] = (("Content-Type", "application/json"),)
    body: bytes = b"{}"
    delay: float = 0.0  # seconds to wait before answering
    drop: bool = False  # close the connection without answering
    drip: float = 0.0  # seconds between the bytes of the answer (status line and headers included)
    length: int | None = None  # the Content-Length to declare, when not the body's (a truncated answer)

    @classmethod
    def canned(cls, response: dict[str, Any]) -> Reply:
        """A reply from a vector's ``response`` object (status, header pairs, body text)."""
        return cls(
            status=response["status"],
            headers=tuple((k, v) for k, v in response["headers"]),
            body=response["body"].encode("utf-8"),
        )


@dataclass(frozen=True)
class Recorded:
    method: str
    target: str  # the raw request target: path and query exactly as sent
    headers: list[tuple[str, str]]
    body: bytes
    client_port: int = 0  # the connection it came on: equal ports mean a kept-alive connection

    def header(self, name: str) -> str:
        values = [v for k, v in self.headers if k.lower() == name.lower()]
        assert len(values) == 1, f"expected one {name!r} header, got {values!r}"
        return values[0]

    def has_header(self, name: str) -> bool:
        return any(k.lower() == name.lower() for k, _ in self.headers)

    @property
    def query(self) -> str:
        return self.target.partition("?")[2]


@dataclass
class RecordingServer:
    replies: list[Reply] = field(default_factory=list)
    default: Reply = field(default_factory=Reply)
    requests: list[Recorded] = field(default_factory=list)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def last(self) -> Recorded:
        return self.requests[-1]

    def reply_with(self, *replies: Reply) -> None:
        self.replies.extend(replies)

    def _next_reply(self) -> Reply:
        return self.replies.pop(0) if self.replies else self.default


def _handler(server: RecordingServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            server.requests.append(
                Recorded("POST", self.path, list(self.headers.items()), body, self.client_address[1])
            )
            reply = server._next_reply()
            if reply.delay:
                time.sleep(reply.delay)
            if reply.drop:
                self.close_connection = True
                return
            length = len(reply.body) if reply.length is None else reply.length
            if reply.drip:
                self.close_connection = True
                head = f"HTTP/1.1 {reply.status} Whatever\r\n" + "".join(f"{k}: {v}\r\n" for k, v in reply.headers)
                answer = f"{head}Content-Length: {length}\r\n\r\n".encode("latin-1") + reply.body
                for index in range(len(answer)):
                    time.sleep(reply.drip)
                    self.wfile.write(answer[index : index + 1])  # unbuffered: one byte per send
                return
            if reply.length is not None:
                self.close_connection = True
            self.send_response(reply.status)
            for name, value in reply.headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(length))
            self.end_headers()
            self.wfile.write(reply.body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that timed out and left makes the late reply fail; that is the point of the test


@contextmanager
def recording_server(*replies: Reply) -> Iterator[RecordingServer]:
    state = RecordingServer(replies=list(replies))
    httpd = _QuietServer(("127.0.0.1", 0), _handler(state))
    state.port = httpd.server_address[1]
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


class Retarget(httpx.BaseTransport):
    """Opens every connection to ``127.0.0.1:port`` over plain HTTP, leaving the request's headers (and so
    its signed ``Host``) exactly as the client built them."""

    def __init__(self, port: int) -> None:
        self._port = port
        self._inner = httpx.HTTPTransport(retries=0)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        request.url = request.url.copy_with(scheme="http", host="127.0.0.1", port=self._port)
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()


def form_params(body: bytes | str) -> dict[str, str]:
    """A form-encoded body's parameters; asserts none is sent twice (a dict would hide it)."""
    text = body.decode("utf-8") if isinstance(body, bytes) else body
    pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=True)
    assert len({name for name, _ in pairs}) == len(pairs), "a parameter sent twice"
    return dict(pairs)
