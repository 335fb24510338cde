"""StdlibTransport: the httpx transport under HTTPSender, over real sockets on 127.0.0.1.

Each server here is a thread of the test speaking HTTP/1.1 on a real socket, scripted per connection where
the behaviour under test is what the server does to a connection (closing it while idle, half-reading a
request, never answering).
"""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import threading
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from wire_server import Reply, recording_server

from flask_otp_conversion.providers._http import HTTPSender
from flask_otp_conversion.providers.transport import MAX_ANSWER_BYTES, AnswerTooLarge, StdlibTransport

TIMEOUT = httpx.Timeout(2.0)
OK_ANSWER = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


def post(
    transport: httpx.BaseTransport, url: str, body: bytes = b"{}", *, timeout: httpx.Timeout = TIMEOUT
) -> httpx.Response:
    request = httpx.Request("POST", url, content=body, extensions={"timeout": timeout.as_dict()})
    response = transport.handle_request(request)
    response.read()
    return response


# ---- a server scripted per connection --------------------------------------------------------------------

Script = Callable[[socket.socket], None]


def read_request(conn: socket.socket) -> bytes:
    """One whole request (head and Content-Length body) from ``conn``; b"" if the client closed first."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            return b""
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        body += conn.recv(65536)
    return data


@dataclass
class ScriptedServer:
    """Hands the n-th accepted connection to ``scripts[n]`` in a thread of its own; connections past the
    scripts are counted and closed at once."""

    scripts: list[Script]
    listener: socket.socket = field(default_factory=socket.socket)
    accepted: int = 0
    stopping: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.listener.getsockname()[1]}/report?PhoneNumber=%2B8613711112222"

    def serve(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            index, self.accepted = self.accepted, self.accepted + 1
            if index >= len(self.scripts):
                conn.close()
                continue
            threading.Thread(target=self._run, args=(self.scripts[index], conn), daemon=True).start()

    def _run(self, script: Script, conn: socket.socket) -> None:
        with conn, suppress(OSError):
            script(conn)

    def connections(self) -> int:
        """Connections accepted so far, and any still waiting in the backlog."""
        self.listener.setblocking(False)
        waiting = 0
        while True:
            try:
                self.listener.accept()[0].close()
            except BlockingIOError:
                return self.accepted + waiting
            waiting += 1


@contextmanager
def scripted_server(*scripts: Script) -> Iterator[ScriptedServer]:
    server = ScriptedServer(list(scripts))
    server.listener.bind(("127.0.0.1", 0))
    server.listener.listen(8)
    server.listener.settimeout(0.05)
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stopping.set()
        thread.join(timeout=5)
        server.listener.close()


def answer_then_close(closed: threading.Event) -> Script:
    def script(conn: socket.socket) -> None:
        read_request(conn)
        conn.sendall(OK_ANSWER)  # kept alive as far as the client knows ...
        conn.close()  # ... then closed while idle, as servers do after their keep-alive timeout
        closed.set()

    return script


def answer(count: int = 1) -> Script:
    def script(conn: socket.socket) -> None:
        for _ in range(count):
            if not read_request(conn):
                return
            conn.sendall(OK_ANSWER)

    return script


def answer_then_half_read() -> Script:
    def script(conn: socket.socket) -> None:
        read_request(conn)
        conn.sendall(OK_ANSWER)
        conn.recv(10)  # the next request arrives; the server takes a little of it and goes away

    return script


def never_answer(stop: threading.Event) -> Script:
    def script(conn: socket.socket) -> None:
        read_request(conn)
        stop.wait(10)

    return script


# ---- keep-alive ------------------------------------------------------------------------------------------


def test_sequential_requests_reuse_one_connection() -> None:
    with recording_server(Reply(), Reply(), Reply()) as server, StdlibTransport() as transport:
        for _ in range(3):
            assert post(transport, server.url).status_code == 200
        assert len({r.client_port for r in server.requests}) == 1


def test_an_answer_with_connection_close_is_not_reused() -> None:
    closing = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}"

    def script(conn: socket.socket) -> None:
        read_request(conn)
        conn.sendall(closing)

    with scripted_server(script, answer()) as server, StdlibTransport() as transport:
        post(transport, server.url)
        post(transport, server.url)
        assert server.connections() == 2


def test_an_idle_connection_the_server_closed_is_replaced_by_a_new_one() -> None:
    closed = threading.Event()
    with scripted_server(answer_then_close(closed), answer()) as server, StdlibTransport() as transport:
        assert post(transport, server.url).status_code == 200
        assert closed.wait(5)
        assert post(transport, server.url).status_code == 200
        assert server.connections() == 2


def test_a_request_the_server_half_read_is_not_sent_again() -> None:
    with scripted_server(answer_then_half_read(), answer()) as server, StdlibTransport() as transport:
        post(transport, server.url)
        with pytest.raises(httpx.TransportError):
            post(transport, server.url)
        assert server.connections() == 1


def test_many_threads_share_one_transport_and_each_gets_its_own_answer() -> None:
    class Echo(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/"
    wrong: list[tuple[bytes, bytes]] = []
    failed: list[BaseException] = []

    def client(number: int, transport: StdlibTransport) -> None:
        for i in range(25):
            body = f"{number}-{i}".encode()
            try:
                got = post(transport, url, body).content
            except httpx.HTTPError as exc:
                failed.append(exc)
                return
            if got != body:
                wrong.append((body, got))

    try:
        with StdlibTransport() as transport:
            threads = [threading.Thread(target=client, args=(n, transport)) for n in range(16)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=60)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert (failed, wrong) == ([], [])


def test_a_forked_child_opens_its_own_connection_and_leaves_the_parents() -> None:
    with recording_server() as server, StdlibTransport() as transport:
        post(transport, server.url)
        pid = os.fork()
        if pid == 0:  # the child: exit code 0 only if its request was answered
            try:
                code = 0 if post(transport, server.url).status_code == 200 else 1
            except BaseException:
                code = 2
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        post(transport, server.url)  # the parent's connection, untouched by the child's exit
        assert os.waitstatus_to_exitcode(status) == 0
        ports = [r.client_port for r in server.requests]
        assert ports[0] == ports[2] != ports[1]  # the parent kept its connection, the child had its own


# ---- what is not done for the caller --------------------------------------------------------------------


def test_a_redirect_is_returned_not_followed() -> None:
    moved = Reply(status=302, headers=(("Location", "http://127.0.0.1:9/elsewhere"),))
    with recording_server(moved) as server, StdlibTransport() as transport:
        response = post(transport, server.url)
    assert (response.status_code, response.headers["Location"]) == (302, "http://127.0.0.1:9/elsewhere")
    assert len(server.requests) == 1


def test_a_chunked_answer_is_read_whole() -> None:
    chunked = b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{"a\r\n5\r\n": 1}\r\n0\r\n\r\n'

    def script(conn: socket.socket) -> None:
        read_request(conn)
        conn.sendall(chunked)

    with scripted_server(script) as server, StdlibTransport() as transport:
        assert post(transport, server.url).json() == {"a": 1}


def test_headers_go_out_exactly_as_given() -> None:
    with recording_server() as server, StdlibTransport() as transport:
        headers = [("Host", "sms.tencentcloudapi.com"), ("X-TC-Action", "ReportConversion")]
        request = httpx.Request("POST", server.url, headers=headers, content=b"{}")
        transport.handle_request(request).read()
    assert server.last.headers == [
        ("Host", "sms.tencentcloudapi.com"),
        ("X-TC-Action", "ReportConversion"),
        ("Content-Length", "2"),
    ]


def test_a_header_value_with_a_line_break_is_refused_before_sending() -> None:
    with recording_server() as server, StdlibTransport() as transport:
        request = httpx.Request("POST", server.url, headers={"X-Test": "a\r\nInjected: 1"}, content=b"{}")
        with pytest.raises(httpx.LocalProtocolError):
            transport.handle_request(request)
    assert server.requests == []


# ---- timeouts and failures -------------------------------------------------------------------------------


@pytest.fixture
def black_hole() -> Iterator[int]:
    """A port whose listener never accepts and whose backlog is full: new connections get no SYN-ACK."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(16):
            filler = socket.socket()
            filler.settimeout(0.2)
            fillers.append(filler)
            try:
                filler.connect(("127.0.0.1", port))
            except TimeoutError:
                break  # the backlog is full
        else:
            pytest.fail("the listener's backlog never filled")
        yield port
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


def test_a_connect_that_gets_no_answer_times_out(black_hole: int) -> None:
    with StdlibTransport() as transport, pytest.raises(httpx.ConnectTimeout):
        post(transport, f"http://127.0.0.1:{black_hole}/", timeout=httpx.Timeout(5.0, connect=0.2))


def test_a_server_that_never_answers_is_a_read_timeout() -> None:
    stop = threading.Event()
    with scripted_server(never_answer(stop)) as server, StdlibTransport() as transport:
        try:
            with pytest.raises(httpx.ReadTimeout):
                post(transport, server.url, timeout=httpx.Timeout(5.0, read=0.2))
        finally:
            stop.set()


def drip(answer: bytes, every: float, stop: threading.Event) -> Script:
    """Reads the request, then sends ``answer`` one byte every ``every`` seconds."""

    def script(conn: socket.socket) -> None:
        read_request(conn)
        for index in range(len(answer)):
            if stop.wait(every):
                return
            conn.sendall(answer[index : index + 1])

    return script


def test_an_answer_that_trickles_in_ends_at_the_total_deadline() -> None:
    # A byte every 0.2 s never trips the 0.5 s read timeout; the deadline (connect + read = 1 s) ends it.
    stop = threading.Event()
    with scripted_server(drip(OK_ANSWER, 0.2, stop)) as server, StdlibTransport() as transport:
        try:
            with pytest.raises(httpx.ReadTimeout):
                post(transport, server.url, timeout=httpx.Timeout(5.0, connect=0.5, read=0.5))
        finally:
            stop.set()


FIVE_MB = 5 << 20
PIECE = b"x" * (64 << 10)
CHUNK = b"%x\r\n%s\r\n" % (len(PIECE), PIECE)


def send_big(head: bytes, *, chunked: bool) -> Script:
    """Reads the request, then answers ``head`` and a 5 MB body (chunked or not) until the client leaves."""

    def script(conn: socket.socket) -> None:
        read_request(conn)
        conn.sendall(head)
        for _ in range(FIVE_MB // len(PIECE)):
            conn.sendall(CHUNK if chunked else PIECE)
        if chunked:
            conn.sendall(b"0\r\n\r\n")

    return script


def test_an_answer_declaring_more_than_the_bound_is_refused() -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % FIVE_MB
    with (
        scripted_server(send_big(head, chunked=False)) as server,
        StdlibTransport() as transport,
        pytest.raises(AnswerTooLarge),
    ):
        post(transport, server.url)


UNDECLARED = {
    "chunked": (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", True),
    "until-close": (b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", False),
}


@pytest.mark.parametrize("framing", sorted(UNDECLARED))
def test_an_undeclared_answer_over_the_bound_is_refused_holding_at_most_the_bound(framing: str) -> None:
    head, chunked = UNDECLARED[framing]
    with scripted_server(send_big(head, chunked=chunked)) as server, StdlibTransport() as transport:
        tracemalloc.start()
        try:
            with pytest.raises(AnswerTooLarge):
                post(transport, server.url)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert peak < 2 * MAX_ANSWER_BYTES


def test_an_answer_within_the_bound_is_read_whole() -> None:
    body = b"x" * MAX_ANSWER_BYTES
    answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)

    def script(conn: socket.socket) -> None:
        read_request(conn)
        conn.sendall(answer)

    with scripted_server(script) as server, StdlibTransport() as transport:
        assert post(transport, server.url).content == body


def test_a_refused_connection_is_a_connect_error() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]  # bound, not listening: the kernel refuses
        with StdlibTransport() as transport, pytest.raises(httpx.ConnectError):
            post(transport, f"http://127.0.0.1:{port}/")


def test_a_server_that_closes_without_answering_is_a_protocol_error() -> None:
    with (
        recording_server(Reply(drop=True)) as server,
        StdlibTransport() as transport,
        pytest.raises(httpx.RemoteProtocolError),
    ):
        post(transport, server.url)


def _failing_urls(black_hole: int, stop: threading.Event) -> Iterator[tuple[str, httpx.Timeout]]:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{unused.getsockname()[1]}", TIMEOUT
    yield f"http://127.0.0.1:{black_hole}", httpx.Timeout(5.0, connect=0.2)
    with recording_server(Reply(drop=True)) as server:
        yield server.url, TIMEOUT
    with scripted_server(never_answer(stop)) as scripted:
        yield scripted.url.split("/report")[0], httpx.Timeout(5.0, read=0.2)


def test_no_error_text_holds_the_url_or_its_query(black_hole: int) -> None:
    stop = threading.Event()
    texts = []
    try:
        with StdlibTransport() as transport:
            for base, timeout in _failing_urls(black_hole, stop):
                with pytest.raises(httpx.TransportError) as caught:
                    post(
                        transport, f"{base}/report?PhoneNumber=%2B8613711112222&AccessKeyId=LTAIsecret", timeout=timeout
                    )
                texts.append(f"{caught.value!s} {caught.value!r}")
    finally:
        stop.set()
    assert len(texts) == 4
    assert [t for t in texts if "8613711112222" in t or "LTAIsecret" in t or "/report" in t] == []


# ---- TLS and proxies -------------------------------------------------------------------------------------


def make_certificate(directory: Path, subject_alt_name: str) -> tuple[Path, Path]:
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=test",
         "-addext", f"subjectAltName={subject_alt_name}", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


@contextmanager
def tls_server(cert: Path, key: Path, client_ports: list[int] | None = None) -> Iterator[int]:
    """An HTTPS server on 127.0.0.1 answering every POST with ``{}``; yields its port. Each request's client
    port is appended to ``client_ports``."""

    class Ok(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            if client_ports is not None:
                client_ports.append(self.client_address[1])
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    httpd.daemon_threads = True
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True).start()
    try:
        yield httpd.server_address[1]
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    return make_certificate(tmp_path, "IP:127.0.0.1")


def trusting(cert: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(cert))
    return context


def test_https_to_a_server_whose_certificate_the_context_trusts(certificate: tuple[Path, Path]) -> None:
    with tls_server(*certificate) as port, StdlibTransport(ssl_context=trusting(certificate[0])) as transport:
        assert post(transport, f"https://127.0.0.1:{port}/").status_code == 200


def test_a_trusted_certificate_for_another_host_is_refused(tmp_path: Path) -> None:
    cert, key = make_certificate(tmp_path, "DNS:sms.tencentcloudapi.com")
    with (
        tls_server(cert, key) as port,
        StdlibTransport(ssl_context=trusting(cert)) as transport,
        pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"),
    ):
        post(transport, f"https://127.0.0.1:{port}/")


@dataclass
class Proxy:
    port: int
    heads: list[bytes] = field(default_factory=list)  # each request head the proxy received

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextmanager
def connect_proxy(refuse: bool = False) -> Iterator[Proxy]:
    """A tunnelling proxy: answers CONNECT host:port with 200 and relays bytes both ways (or 407)."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.05)
    proxy = Proxy(listener.getsockname()[1])
    stopping = threading.Event()

    def relay(source: socket.socket, target: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                target.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def tunnel(client: socket.socket) -> None:
        head = read_request(client)
        proxy.heads.append(head)
        if refuse:
            client.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")
            client.close()
            return
        host, _, port = head.split(b" ")[1].decode().rpartition(":")
        upstream = socket.create_connection((host, int(port)))
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        threading.Thread(target=relay, args=(upstream, client), daemon=True).start()
        relay(client, upstream)

    def serve() -> None:
        while not stopping.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=tunnel, args=(client,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        stopping.set()
        thread.join(timeout=5)
        listener.close()


def test_https_through_a_proxy_is_tunnelled_with_connect(certificate: tuple[Path, Path]) -> None:
    with (
        tls_server(*certificate) as port,
        connect_proxy() as proxy,
        StdlibTransport(ssl_context=trusting(certificate[0]), proxy=proxy.url) as transport,
    ):
        assert post(transport, f"https://127.0.0.1:{port}/").status_code == 200
    assert [head.split(b"\r\n")[0] for head in proxy.heads] == [f"CONNECT 127.0.0.1:{port} HTTP/1.1".encode()]


def test_the_proxy_credentials_go_in_the_connect_request(certificate: tuple[Path, Path]) -> None:
    with tls_server(*certificate) as port, connect_proxy() as proxy:
        url = proxy.url.replace("http://", "http://user:pa%20ss@")
        with StdlibTransport(ssl_context=trusting(certificate[0]), proxy=url) as transport:
            post(transport, f"https://127.0.0.1:{port}/")
    assert b"\r\nProxy-Authorization: Basic dXNlcjpwYSBzcw==\r\n" in proxy.heads[0]  # user:pa ss


def test_a_tunnel_the_proxy_refuses_is_a_proxy_error(certificate: tuple[Path, Path]) -> None:
    with (
        tls_server(*certificate) as port,
        connect_proxy(refuse=True) as proxy,
        StdlibTransport(ssl_context=trusting(certificate[0]), proxy=proxy.url) as transport,
        pytest.raises(httpx.ProxyError, match="407"),
    ):
        post(transport, f"https://127.0.0.1:{port}/")


# ---- as HTTPSender builds it in production ---------------------------------------------------------------


def test_the_environment_proxy_tunnels_https_for_the_sender(
    certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    with tls_server(*certificate) as port, connect_proxy() as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        sender = HTTPSender(timeout=TIMEOUT)
        try:  # the default context does not trust the test's certificate: the tunnel is what is looked at
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                sender.send(httpx.URL(f"https://127.0.0.1:{port}/"), [("Host", f"127.0.0.1:{port}")], b"{}")
        finally:
            sender.close()
    assert [head.split(b"\r\n")[0] for head in proxy.heads] == [f"CONNECT 127.0.0.1:{port} HTTP/1.1".encode()]


SEND_ONCE = """
import sys, httpx
from flask_otp_conversion.providers._http import HTTPSender
sender = HTTPSender(timeout=httpx.Timeout(5.0))
print(sender.send(httpx.URL(sys.argv[1]), [("Host", "127.0.0.1")], b"{}").status_code)
"""


def test_the_sender_trusts_the_certificates_ssl_cert_file_names(certificate: tuple[Path, Path]) -> None:
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env["SSL_CERT_FILE"] = str(certificate[0])
    with tls_server(*certificate) as port:  # a process of its own: the context is built once per process
        done = subprocess.run(
            [sys.executable, "-c", SEND_ONCE, f"https://127.0.0.1:{port}/"],
            env=env, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    assert (done.returncode, done.stdout.strip()) == (0, "200"), done.stderr[-2000:]


def test_https_requests_reuse_one_connection(certificate: tuple[Path, Path]) -> None:
    ports: list[int] = []
    with (
        tls_server(*certificate, client_ports=ports) as port,
        StdlibTransport(ssl_context=trusting(certificate[0])) as transport,
    ):
        for _ in range(3):
            post(transport, f"https://127.0.0.1:{port}/")
    assert len(set(ports)) == 1


def test_an_idle_tls_connection_the_server_closed_is_replaced(certificate: tuple[Path, Path]) -> None:
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(*certificate)
    closed = threading.Event()

    def over_tls(script: Script) -> Script:
        def run(conn: socket.socket) -> None:
            with server_context.wrap_socket(conn, server_side=True) as tls:
                script(tls)

        return run

    with (
        scripted_server(over_tls(answer_then_close(closed)), over_tls(answer())) as server,
        StdlibTransport(ssl_context=trusting(certificate[0])) as transport,
    ):
        url = server.url.replace("http://", "https://")
        post(transport, url)
        assert closed.wait(5)
        assert post(transport, url).status_code == 200
        assert server.connections() == 2


def test_a_streamed_request_body_goes_out_chunked() -> None:
    received: list[bytes] = []

    def script(conn: socket.socket) -> None:
        data = b""
        while not data.endswith(b"0\r\n\r\n"):
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
        received.append(data)
        conn.sendall(OK_ANSWER)

    with scripted_server(script) as server, StdlibTransport() as transport:
        request = httpx.Request("POST", server.url, content=iter([b"ab", b"cd"]))
        transport.handle_request(request).read()
    head, _, body = received[0].partition(b"\r\n\r\n")
    assert b"\r\nTransfer-Encoding: chunked" in head
    assert body == b"4\r\nabcd\r\n0\r\n\r\n"
