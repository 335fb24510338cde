"""The wire under every provider client: ``StdlibTransport``, an httpx transport on the standard library's
sockets and ``http.client`` (keep-alive per origin, TLS, an ``http://`` proxy from the environment), with a total
deadline per request and answers read up to a bounded size (both bounds are ``transport_bounds.py``; their
names stay importable from here).

Why not httpx's own transport: it costs several times the CPU per request (``benchmarks/report_cpu.py``), and a
report's cost is mostly its HTTP client's.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import http.client
import os
import re
import select
import socket
import ssl
import threading
import urllib.request

import httpx

from .._forks import ForkLocal
from .transport_bounds import (
    DEFAULT_TIMEOUT,
    HEAD_ALLOWANCE,
    MAX_ANSWER_BYTES,
    START_BY,
    AnswerTooLarge,
    BoundedSocket,
    Deadline,
    NotStarted,
    check_start,
    read_bounded,
    request_deadline,
)

# ---- connecting ----------------------------------------------------------------------------------------


def environment_proxy(url: httpx.URL) -> str | None:
    """The proxy the environment names for ``url`` (``HTTPS_PROXY``, ``ALL_PROXY``... minus ``NO_PROXY``),
    as ``httpx.Client(trust_env=True)`` would pick it."""
    proxies = urllib.request.getproxies()
    if not proxies or urllib.request.proxy_bypass(url.host):
        return None
    return proxies.get(url.scheme) or proxies.get("all")


_ssl_lock = threading.Lock()


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    return httpx.create_ssl_context()


def default_ssl_context() -> ssl.SSLContext:
    """One verifying TLS context (CA bundle, ``SSL_CERT_FILE`` honoured) for every transport in the process:
    building one costs ~60 ms of CPU, and each reporter worker thread has transports of its own. The lock
    keeps 32 workers starting together from each building one (``functools.cache`` alone does not)."""
    with _ssl_lock:
        return _ssl_context()


# ---- the transport ------------------------------------------------------------------------------------

_Origin = tuple[bytes, bytes, int]  # (scheme, host, port): what one kept-alive connection can serve
_UNSENT_ERRORS = (BrokenPipeError, ConnectionResetError, ConnectionAbortedError)
_BAD_HEADER_BYTES = re.compile(rb"[\r\n\x00]")


def _default_port(scheme: bytes) -> int:
    return 443 if scheme == b"https" else 80


def _dropped(sock: socket.socket) -> bool:
    """Whether an idle kept-alive socket has been closed (or spoken on) by the server: anything readable on a
    connection with no request outstanding means it cannot carry the next one, except TLS records meant for
    the TLS layer alone (a session ticket sent late), which a non-blocking read consumes."""
    if isinstance(sock, ssl.SSLSocket) and sock.pending():
        return True
    try:
        if hasattr(select, "poll"):
            poller = select.poll()
            poller.register(sock, select.POLLIN)
            readable = bool(poller.poll(0))
        else:
            readable = bool(select.select([sock], [], [], 0)[0])
        if not readable or not isinstance(sock, ssl.SSLSocket):
            return readable
        sock.setblocking(False)  # the caller sets the request's timeouts again before using it
        try:
            sock.recv(1)
        except ssl.SSLWantReadError:
            return False
        return True  # closed (b"") or bytes no request asked for
    except (OSError, ValueError):
        return True


def _open(target: tuple[str, int], timeout: float | None, deadline: Deadline) -> socket.socket:
    """``socket.create_connection`` with each address's attempt given what is left of the deadline (it
    gives each the whole timeout, so a host with a silent first address could outlast the deadline)."""
    error: OSError = OSError("getaddrinfo found no address")
    for family, kind, proto, _, address in socket.getaddrinfo(*target, type=socket.SOCK_STREAM):
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(deadline.timeout(timeout))
            sock.connect(address)
        except OSError as exc:  # TimeoutError (the attempt's, or the deadline's) included
            sock.close()
            error = exc
            continue
        return sock
    raise error


def _close_quietly(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.close()


class StdlibTransport(httpx.BaseTransport, ForkLocal):
    """An ``httpx`` transport on the standard library's sockets and ``http.client``'s response parser: the
    part of httpcore these clients use (HTTP/1.1, keep-alive, TLS, an HTTP proxy) at well under its CPU cost
    per request.

    - Connections are kept alive per origin in a small pool shared by threads; each request holds one
      connection to itself, so any number of threads may send at once (each opens a connection when none
      is idle).
    - TLS verifies certificates and host names with ``ssl_context`` (``default_ssl_context()`` by default).
    - ``proxy`` (an ``http://`` URL, credentials allowed) forwards plain-HTTP requests in absolute form and
      tunnels HTTPS with ``CONNECT``.
    - The request's ``timeout`` extension (``httpx.Timeout.as_dict()``) bounds connecting (TLS handshake and
      tunnel included), each write and each read; there is no pool wait, as no request waits for a connection.
      On top of these, the whole request (connect, send, whole answer) has a total deadline,
      ``request_deadline``: each socket operation waits at most for what is left of it, so an answer that
      trickles in ends at the deadline (``httpx.ReadTimeout``) rather than holding the connection for ever.
    - The answer body is read up to the ``max_answer_bytes`` extension (``MAX_ANSWER_BYTES`` by default); a
      larger one (declared or not) is ``AnswerTooLarge`` and the connection is closed, having held at most
      the bound in memory.
    - The ``start_by`` extension (``START_BY``: a ``time.time()`` moment) is checked right before the first
      byte is written, after connecting: past it, nothing is written and ``NotStarted`` is raised (the
      connection stays pooled).
    - No redirects, no retries, with one exception: an idle connection found closed by the server before a
      byte of the request was written is replaced by a new one. Once the request was written, a failure is
      an error, even on a reused connection: a resent report could be counted twice.
    - The whole response body is read before ``handle_request`` returns; errors are httpx's exception classes,
      and their text never holds the URL (Alibaba's query carries phone numbers).
    """

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext | None = None,
        proxy: str | httpx.URL | None = None,
        max_idle_per_origin: int = 64,
    ) -> None:
        self._ssl_context = ssl_context
        self._proxy: httpx.URL | None = None
        self._proxy_auth: bytes | None = None
        if proxy is not None:
            proxy_url = httpx.URL(proxy)
            if proxy_url.scheme != "http":
                raise ValueError("StdlibTransport supports http:// proxies only")
            self._proxy = proxy_url
            if proxy_url.username or proxy_url.password:
                credentials = f"{proxy_url.username}:{proxy_url.password}".encode()
                self._proxy_auth = b"Basic " + base64.b64encode(credentials)
        self._max_idle = max_idle_per_origin
        self._after_fork_in_child()
        self._watch_forks()

    def _after_fork_in_child(self) -> None:
        # The parent's sockets stay the parent's: forget them (no close, no lock taken) and start empty.
        self._pid = os.getpid()
        self._idle: dict[_Origin, list[socket.socket]] = {}
        self._lock = threading.Lock()

    # -- connections

    def _context(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            self._ssl_context = default_ssl_context()
        return self._ssl_context

    def _connect(self, origin: _Origin, timeout: float | None, deadline: Deadline) -> socket.socket:
        scheme, host, port = origin
        target = (
            (self._proxy.raw_host.decode("ascii"), self._proxy.port or 80)
            if self._proxy
            else (host.decode("ascii"), port)
        )
        try:
            sock = _open(target, timeout, deadline)
        except TimeoutError as exc:
            raise httpx.ConnectTimeout(describe_os_error(exc)) from exc
        except OSError as exc:
            raise httpx.ConnectError(describe_os_error(exc)) from exc
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if scheme == b"https":
                if self._proxy is not None:
                    self._tunnel(sock, host, port, timeout, deadline)
                # The handshake is bounded as a whole by the socket's timeout (CPython's ssl module).
                sock.settimeout(deadline.timeout(timeout))
                sock = self._context().wrap_socket(sock, server_hostname=host.decode("ascii"))
        except httpx.TransportError:
            _close_quietly(sock)
            raise
        except TimeoutError as exc:
            _close_quietly(sock)
            raise httpx.ConnectTimeout(describe_os_error(exc)) from exc
        except OSError as exc:  # ssl.SSLError included: a refused certificate says so in its text
            _close_quietly(sock)
            raise httpx.ConnectError(describe_os_error(exc)) from exc
        return sock

    def _tunnel(self, sock: socket.socket, host: bytes, port: int, timeout: float | None, deadline: Deadline) -> None:
        authority = host + b":" + str(port).encode()
        head = b"CONNECT " + authority + b" HTTP/1.1\r\nHost: " + authority + b"\r\n"
        if self._proxy_auth is not None:
            head += b"Proxy-Authorization: " + self._proxy_auth + b"\r\n"
        sock.settimeout(deadline.timeout(timeout))
        sock.sendall(head + b"\r\n")
        reply = http.client.HTTPResponse(
            BoundedSocket(sock, deadline, timeout, HEAD_ALLOWANCE),  # type: ignore[arg-type]
            method="CONNECT",
        )
        try:
            reply.begin()
        except http.client.HTTPException as exc:
            reason = describe_os_error(exc)
            raise httpx.ProxyError(f"the proxy answered CONNECT with no valid HTTP response: {reason}") from exc
        finally:
            reply.close()  # the file over the socket, not the socket
        if reply.status != 200:
            raise httpx.ProxyError(f"the proxy refused the tunnel: HTTP {reply.status}")

    def _checkout(self, origin: _Origin) -> socket.socket | None:
        """An idle connection to ``origin`` the server has not closed, or None."""
        with self._lock:
            idle = self._idle.get(origin)
            while idle:
                sock = idle.pop()
                if not _dropped(sock):
                    return sock
                _close_quietly(sock)
        return None

    def _checkin(self, origin: _Origin, sock: socket.socket) -> None:
        with self._lock:
            idle = self._idle.setdefault(origin, [])
            if len(idle) < self._max_idle:
                idle.append(sock)
                return
        _close_quietly(sock)

    # -- requests

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self._check_fork()
        url = request.url
        scheme = url.raw_scheme
        if scheme not in (b"http", b"https"):
            raise httpx.UnsupportedProtocol("only http:// and https:// URLs can be sent")
        origin: _Origin = (scheme, url.raw_host, url.port or _default_port(scheme))
        timeouts = request.extensions.get("timeout", {})
        deadline = Deadline(request_deadline(timeouts))
        connect_timeout = timeouts.get("connect", DEFAULT_TIMEOUT)
        write_timeout = timeouts.get("write", DEFAULT_TIMEOUT)
        start_by = request.extensions.get(START_BY)
        data = self._request_bytes(request)

        sock = self._checkout(origin)
        while True:
            fresh = sock is None
            if sock is None:
                sock = self._connect(origin, connect_timeout, deadline)
            try:
                check_start(start_by)  # the last moment before the first byte
            except NotStarted:
                self._checkin(origin, sock)
                raise
            try:
                sock.settimeout(deadline.timeout(write_timeout))
                sent = sock.send(data)
            except _UNSENT_ERRORS:
                # Refused before a byte of this request was accepted: the server had already closed the
                # connection. Safe to open another, once; on a fresh connection it is the server's answer.
                _close_quietly(sock)
                if fresh:
                    raise httpx.WriteError("the server closed the connection before the request was sent") from None
                sock = None
                continue
            except TimeoutError as exc:
                _close_quietly(sock)
                raise httpx.WriteTimeout(describe_os_error(exc)) from exc
            except OSError as exc:
                _close_quietly(sock)
                raise httpx.WriteError(describe_os_error(exc)) from exc
            break
        try:
            if sent < len(data):
                sock.settimeout(deadline.timeout(write_timeout))  # sendall's timeout bounds it as a whole
                sock.sendall(data[sent:])
        except TimeoutError as exc:
            _close_quietly(sock)
            raise httpx.WriteTimeout(describe_os_error(exc)) from exc
        except OSError as exc:
            _close_quietly(sock)
            raise httpx.WriteError(describe_os_error(exc)) from exc
        limit = request.extensions.get("max_answer_bytes", MAX_ANSWER_BYTES)
        return self._read_response(request, origin, sock, timeouts.get("read", DEFAULT_TIMEOUT), deadline, limit)

    def _request_bytes(self, request: httpx.Request) -> bytes:
        url = request.url
        if self._proxy is not None and url.raw_scheme == b"http":
            target = url.raw_scheme + b"://" + url.netloc + url.raw_path  # absolute form, for the proxy
        else:
            target = url.raw_path
        lines = [request.method.encode("ascii") + b" " + target + b" HTTP/1.1"]
        chunked = False
        for name, value in request.headers.raw:
            if _BAD_HEADER_BYTES.search(name) or _BAD_HEADER_BYTES.search(value):
                raise httpx.LocalProtocolError("a header name or value holds CR, LF or NUL")
            lines.append(name + b": " + value)
            chunked = chunked or (name.lower() == b"transfer-encoding" and value.lower() == b"chunked")
        if self._proxy_auth is not None and url.raw_scheme == b"http":
            lines.append(b"Proxy-Authorization: " + self._proxy_auth)
        body = request.read()
        if chunked:
            body = (b"%x\r\n%s\r\n" % (len(body), body) if body else b"") + b"0\r\n\r\n"
        if _BAD_HEADER_BYTES.search(target):
            raise httpx.LocalProtocolError("the request target holds CR, LF or NUL")
        return b"\r\n".join(lines) + b"\r\n\r\n" + body

    def _read_response(
        self,
        request: httpx.Request,
        origin: _Origin,
        sock: socket.socket,
        timeout: float | None,
        deadline: Deadline,
        limit: int,
    ) -> httpx.Response:
        keep = False
        try:
            bounded = BoundedSocket(sock, deadline, timeout, limit + HEAD_ALLOWANCE)
            reply = http.client.HTTPResponse(bounded, method=request.method)  # type: ignore[arg-type]
            try:
                reply.begin()
                if reply.length is not None and reply.length > limit:
                    raise AnswerTooLarge(f"the answer declares {reply.length} bytes, more than {limit}")
                body = reply.read() if reply.length is not None else read_bounded(reply, limit)
                keep = not reply.will_close
            finally:
                reply.close()
        except TimeoutError as exc:
            raise httpx.ReadTimeout(describe_os_error(exc)) from exc
        except http.client.RemoteDisconnected:
            raise httpx.RemoteProtocolError("the server closed the connection without answering") from None
        except http.client.IncompleteRead as exc:
            raise httpx.RemoteProtocolError(
                f"the server closed the connection mid-answer ({len(exc.partial)} bytes read)"
            ) from None
        except http.client.HTTPException as exc:
            raise httpx.RemoteProtocolError(f"not a valid HTTP response: {type(exc).__name__}") from None
        except OSError as exc:  # ssl.SSLError included
            raise httpx.ReadError(describe_os_error(exc)) from exc
        finally:
            if not keep:
                _close_quietly(sock)
        if keep:
            self._checkin(origin, sock)
        return httpx.Response(
            reply.status,
            headers=reply.getheaders(),
            stream=httpx.ByteStream(body),
            request=request,
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": reply.reason.encode("latin-1", "replace")},
        )

    def close(self) -> None:
        with self._lock:
            sockets = [sock for idle in self._idle.values() for sock in idle]
            self._idle.clear()
        for sock in sockets:
            _close_quietly(sock)


def describe_os_error(exc: BaseException) -> str:
    """An OS-level error as text without any address: ``ConnectionRefusedError: [Errno 111] ...``."""
    text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


__all__ = [
    "DEFAULT_TIMEOUT",
    "MAX_ANSWER_BYTES",
    "START_BY",
    "AnswerTooLarge",
    "Deadline",
    "NotStarted",
    "StdlibTransport",
    "default_ssl_context",
    "describe_os_error",
    "environment_proxy",
    "request_deadline",
]
