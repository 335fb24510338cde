"""Serve a :class:`ProviderEmulator` over real HTTP on 127.0.0.1, in a background thread.

werkzeug's threaded server (one thread per connection) with one change: werkzeug's own handler closes every
connection after one answer, and our provider clients keep connections alive, so the handler here speaks
HTTP/1.1 keep-alive (the request body is read in full first, every answer carries Content-Length). It also
honours :class:`DropConnection` (close without answering) and lets :meth:`EmulatorServer.stop` end hangs and
idle connections at once, so tests never wait on a server going away.
"""

from __future__ import annotations

import contextlib
import io
import logging
import socket
import threading
from types import TracebackType
from typing import TYPE_CHECKING, Any

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from .emulator import MAX_BODY, STOPPING_ENVIRON_KEY, DropConnection, ProviderEmulator

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

__all__ = ["EmulatorServer"]

logger = logging.getLogger(__name__)


class _Registry:
    """Open connections and the stopping flag, shared by the handlers of one server."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.connections: set[socket.socket] = set()
        self.stopping = threading.Event()


class _KeepAliveHandler(WSGIRequestHandler):
    #: Seconds an idle keep-alive connection is kept before the server closes it.
    timeout = 30

    @property
    def _registry(self) -> _Registry:
        registry = getattr(self.server, "otp_registry", None)
        assert isinstance(registry, _Registry)
        return registry

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes; without this, Nagle's algorithm meets the client's
        # delayed ACK and every answer waits ~40 ms.
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._registry.lock:
            self._registry.connections.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            with self._registry.lock:
                self._registry.connections.discard(self.connection)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """Quiet: the emulator records every call itself."""

    def log_error(self, format: str, *args: Any) -> None:
        logger.debug("emulator server: " + format, *args)

    def run_wsgi(self) -> None:
        if self.headers.get("Expect", "").lower().strip(" \t") == "100-continue":
            self.wfile.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        environ = self.make_environ()
        self.environ = environ
        if not self._buffer_body(environ):
            return
        environ[STOPPING_ENVIRON_KEY] = self._registry.stopping

        status_headers: list[Any] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            status_headers[:] = [status, headers]
            return None

        try:
            chunks = self.server.app(environ, start_response)
        except DropConnection:
            self._drop()
            return
        except Exception:
            logger.exception("emulator failed on a request")
            self._send(500, [("Content-Type", "text/plain")], b"emulator error", close=True)
            return
        try:
            status, headers = status_headers
            code = int(str(status).split(None, 1)[0])
            has_length = any(name.lower() == "content-length" for name, _ in headers)
            self._send(code, headers, None, close=not has_length)
            for chunk in chunks:
                if chunk:
                    self.wfile.write(chunk)
                    self.wfile.flush()
        except (TimeoutError, ConnectionError):
            self.close_connection = True
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()

    def _buffer_body(self, environ: WSGIEnvironment) -> bool:
        """Read the whole request body now, so nothing of it is left to corrupt the next request."""
        stream = environ["wsgi.input"]
        try:
            if environ.get("wsgi.input_terminated"):
                body = stream.read(MAX_BODY + 1)
            else:
                length = int(environ.get("CONTENT_LENGTH") or 0)
                if length > MAX_BODY:
                    self._send(413, [("Content-Type", "text/plain")], b"request body too large", close=True)
                    return False
                body = stream.read(length) if length > 0 else b""
        except (ValueError, OSError):
            self._send(400, [("Content-Type", "text/plain")], b"unreadable request body", close=True)
            return False
        environ["wsgi.input"] = io.BytesIO(body)
        environ["wsgi.input_terminated"] = False
        environ["CONTENT_LENGTH"] = str(len(body))
        environ.pop("HTTP_TRANSFER_ENCODING", None)
        return True

    def _send(self, code: int, headers: list[tuple[str, str]], body: bytes | None, *, close: bool) -> None:
        if body is not None:
            headers = [*headers, ("Content-Length", str(len(body)))]
        self.send_response(code)
        for name, value in headers:
            self.send_header(name, value)
        if close or self.close_connection:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if body is not None:
            self.wfile.write(body)
        self.wfile.flush()

    def _drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)


class EmulatorServer:
    """A running emulator at ``url`` (``http://127.0.0.1:<free port>``). Use as a context manager::

        with EmulatorServer(ProviderEmulator()) as server:
            client = TencentProvider(settings_with(endpoint=server.url))

    One URL serves all three endpoints (Tencent, Alibaba dysmsapi, cams). Threaded: each connection has its
    own thread, so ~100 concurrent keep-alive clients are fine.
    """

    def __init__(
        self, emulator: ProviderEmulator | None = None, *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.emulator = emulator if emulator is not None else ProviderEmulator()
        self._host = host
        self._port = port
        self._registry = _Registry()
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        state = self.url if self._server is not None else "stopped"
        return f"<EmulatorServer {state}>"

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the emulator server is not running")
        return self._server.port

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` — the endpoint for the Tencent, Alibaba and cams clients alike."""
        return f"http://{self._host}:{self.port}"

    def start(self) -> EmulatorServer:
        if self._server is not None:
            raise RuntimeError("the emulator server is already running")
        self._registry = _Registry()
        server = make_server(
            self._host, self._port, self.emulator, threaded=True, request_handler=_KeepAliveHandler
        )
        server.otp_registry = self._registry  # type: ignore[attr-defined]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.01},
            name="otp-provider-emulator",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop accepting, end hangs and slow answers, close every open connection. Idempotent."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._registry.stopping.set()
        self.emulator.release_hangs()
        server.shutdown()
        with self._registry.lock:
            connections = list(self._registry.connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        if thread is not None:
            thread.join(timeout)
        server.server_close()
        self._server = None
        self._thread = None

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
