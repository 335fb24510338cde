"""A Redis server for the test session: ``redis-server`` in a temporary folder on a free loopback port, AOF on
with ``appendfsync always``, a password, stopped (and the folder removed) at the end.

Tests share the one server and get a fresh store each through a key prefix of their own. ``stop()`` and
``start()`` (same folder, same port) emulate an outage or a restart that reloads the AOF; ``kill()`` is a crash.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import redis

#: Deliberately odd characters: a URL must percent-encode it, and no error may ever print it.
PASSWORD = "rd-s3cret/:@?x"


def _binary() -> str:
    """``redis-server``, or the server ``OTP_TEST_REDIS_SERVER`` names (a ``valkey-server``, say)."""
    found = os.environ.get("OTP_TEST_REDIS_SERVER") or shutil.which("redis-server")
    if found is None and os.path.exists("/usr/bin/redis-server"):
        found = "/usr/bin/redis-server"
    if found is None:
        raise RuntimeError("redis-server is not installed: run `make servers` (apt-get install redis-server)")
    return found


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """One ``redis-server`` process of our own."""

    def __init__(self, *, appendfsync: str = "always", appendonly: str = "yes", tls: bool = False) -> None:
        self.binary = _binary()
        self.root = Path(tempfile.mkdtemp(prefix="otp-redis-"))
        self.port = _free_port()
        self.appendfsync = appendfsync
        self.appendonly = appendonly
        self.log = self.root / "redis.log"
        self.process: subprocess.Popen[bytes] | None = None
        #: With ``tls``: TLS only, on ``port``, with a certificate for 127.0.0.1 signed by the CA in ``ca``.
        self.ca: Path | None = self._make_certificates() if tls else None

    def _make_certificates(self) -> Path:
        """A throw-away CA and a server certificate for 127.0.0.1, made with the ``openssl`` command."""
        run = [["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
                "-subj", "/CN=otp-test-ca"],
               ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
                "-subj", "/CN=127.0.0.1"],
               ["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", "server.pem", "-days", "2", "-extfile", "san.cnf"]]  # fmt: skip
        (self.root / "san.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
        for args in run:
            subprocess.run(["openssl", *args], cwd=self.root, check=True, capture_output=True)
        return self.root / "ca.pem"

    def url(self, prefix: str | None = None, **options: str) -> str:
        query = dict(options)
        if self.ca is not None:
            query.setdefault("ssl_ca_certs", str(self.ca))
        if prefix is not None:
            query["prefix"] = prefix
        tail = "&".join(f"{key}={quote(value, safe='')}" for key, value in query.items())
        scheme = "redis" if self.ca is None else "rediss"
        return f"{scheme}://:{quote(PASSWORD, safe='')}@127.0.0.1:{self.port}/0" + (f"?{tail}" if tail else "")

    def client(self) -> redis.Redis:
        tls = {} if self.ca is None else {"ssl": True, "ssl_ca_certs": str(self.ca)}
        return redis.Redis(host="127.0.0.1", port=self.port, password=PASSWORD, decode_responses=True, **tls)

    def start(self) -> None:
        listen = ["--port", str(self.port)]
        if self.ca is not None:
            listen = ["--port", "0", "--tls-port", str(self.port), "--tls-cert-file", str(self.root / "server.pem"),
                      "--tls-key-file", str(self.root / "server.key"), "--tls-ca-cert-file", str(self.ca),
                      "--tls-auth-clients", "no"]  # fmt: skip
        args = [
            self.binary,
            *listen,
            "--bind", "127.0.0.1",
            "--dir", str(self.root),
            "--appendonly", self.appendonly,
            "--appendfsync", self.appendfsync,
            "--save", "",
            "--requirepass", PASSWORD,
            "--protected-mode", "no",
            "--daemonize", "no",
            "--logfile", str(self.log),
        ]  # fmt: skip
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, start_new_session=True)
        self._wait_until_ready()

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + 20
        client = self.client()
        try:
            while True:
                assert self.process is not None
                if self.process.poll() is not None:
                    raise RuntimeError(f"redis-server exited at start:\n{self.log.read_text(errors='replace')[-2000:]}")
                try:
                    if client.ping():
                        return
                except (redis.ConnectionError, redis.BusyLoadingError):
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("redis-server did not answer within 20 s")
                time.sleep(0.02)
        finally:
            client.close()

    def stop(self) -> None:
        """A clean shutdown (the AOF is flushed)."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        """A crash: ``kill -9``, nothing flushed beyond what the AOF policy already wrote."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def running(**kwargs: Any) -> Iterator[RedisServer]:
    server = RedisServer(**kwargs)
    try:
        server.start()
        yield server
    finally:
        server.remove()


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """The session's Redis server, shared by every test (each uses a key prefix of its own)."""
    with running() as server:
        yield server


def fresh_prefix() -> str:
    """A key prefix no other test uses: a fresh, empty store on the shared server."""
    return f"test-{uuid.uuid4().hex[:12]}:"


@pytest.fixture
def private_redis_server() -> Iterator[RedisServer]:
    """A server of the test's own, for tests that stop, kill or reconfigure it."""
    with running() as server:
        yield server
