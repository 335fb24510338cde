"""A PostgreSQL server for the test session: ``initdb`` into a temporary folder, a free loopback port, its unix
socket in that folder, fsync on, password authentication, stopped (and the folder removed) at the end.

initdb and postgres refuse to run as root, and CI runs as root: there they run as ``nobody`` (``runuser``),
which owns the folder. Tests get a fresh schema each (``?schema=``), far cheaper than a database each.
"""

from __future__ import annotations

import contextlib
import glob
import grp
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

USER = "otp"
#: Deliberately odd characters: a URL must percent-encode it, and no error may ever print it.
PASSWORD = "pw-s3cret/:@?x"
DATABASE = "otp"
#: A user that is not root, to run initdb and postgres as when the suite runs as root.
UNPRIVILEGED = "nobody"


def _bin_dir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if not found:
        raise RuntimeError("PostgreSQL is not installed: run `make servers` (apt-get install postgresql)")
    return Path(found[-1]).parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PostgreSQLServer:
    """One ``postgres`` process of our own; ``stop()`` / ``start()`` emulate an outage on the same port."""

    def __init__(self) -> None:
        self.bin = _bin_dir()
        self.root = Path(tempfile.mkdtemp(prefix="otp-pg-"))
        self.data = self.root / "data"
        self.socket_dir = self.root / "sock"
        self.log = self.root / "postgres.log"
        self.port = _free_port()
        #: Popen's ``user``/``group`` (a setuid before exec, so signals reach postgres itself, not a wrapper).
        self._as_user: dict[str, object] = {}
        if os.geteuid() == 0:
            self._as_user = {
                "user": UNPRIVILEGED,
                "group": grp.getgrgid(pwd.getpwnam(UNPRIVILEGED).pw_gid).gr_name,
                "extra_groups": [],
            }
        self.process: subprocess.Popen[bytes] | None = None

    # Lifecycle ----------------------------------------------------------------------------------------

    def init(self) -> None:
        self.socket_dir.mkdir()
        pwfile = self.root / "pwfile"
        pwfile.write_text(PASSWORD + "\n")
        if self._as_user:
            for path in (self.root, self.socket_dir, pwfile):
                shutil.chown(path, UNPRIVILEGED)
        subprocess.run(
            [
                str(self.bin / "initdb"),
                "-D",
                str(self.data),
                "-U",
                USER,
                f"--pwfile={pwfile}",
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--locale=C",
                "--no-instructions",
            ],
            check=True,
            capture_output=True,
            cwd=self.root,
            **self._as_user,  # type: ignore[call-overload]
        )
        pwfile.unlink()

    def start(self, timeout: float = 30.0) -> None:
        """Start postgres on ``self.port`` and wait until it accepts connections."""
        assert self.process is None or self.process.poll() is not None
        log = open(self.log, "ab")  # noqa: SIM115 (the child keeps it)
        if self._as_user:
            shutil.chown(self.log, UNPRIVILEGED)
        self.process = subprocess.Popen(
            [
                str(self.bin / "postgres"),
                "-D",
                str(self.data),
                "-p",
                str(self.port),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                f"unix_socket_directories={self.socket_dir}",
                "-c",
                "fsync=on",
                "-c",
                "max_connections=300",
                "-c",
                "shared_buffers=64MB",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=self.root,
            **self._as_user,  # type: ignore[call-overload]
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"postgres exited at start:\n{self.log.read_text()[-3000:]}")
            ready = subprocess.run(
                [str(self.bin / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)], check=False
            )
            if ready.returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError(f"postgres did not accept connections in {timeout} s:\n{self.log.read_text()[-3000:]}")

    def stop(self, mode: str = "fast", timeout: float = 30.0) -> None:
        """Stop postgres: ``fast`` (roll back open transactions, a clean shutdown) or ``immediate`` (no
        checkpoint: recovery from the WAL at the next start, as after a crash)."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal({"fast": signal.SIGINT, "immediate": signal.SIGQUIT, "smart": signal.SIGTERM}[mode])
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    # Addresses ----------------------------------------------------------------------------------------

    def url(self, schema: str | None = None, *, scheme: str = "postgresql", **options: str) -> str:
        from urllib.parse import quote, urlencode

        query = dict(options)
        if schema is not None:
            query["schema"] = schema
        tail = f"?{urlencode(query)}" if query else ""
        return f"{scheme}://{USER}:{quote(PASSWORD, safe='')}@127.0.0.1:{self.port}/{DATABASE}{tail}"

    def fresh_url(self, **options: str) -> str:
        """The URL of a schema no test has used yet (created by the store on first use)."""
        return self.url(f"t_{uuid.uuid4().hex[:16]}", **options)

    def create_database(self) -> None:
        """The database the URLs name (initdb creates only ``postgres``)."""
        self.psql(f"CREATE DATABASE {DATABASE}", database="postgres")

    def psql(self, sql: str, *, database: str = DATABASE) -> str:
        """Run SQL as the superuser over the unix socket (for set-up and inspection, never by the store)."""
        env = {**os.environ, "PGPASSWORD": PASSWORD}
        done = subprocess.run(
            [
                str(self.bin / "psql"),
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                str(self.socket_dir),
                "-p",
                str(self.port),
                "-U",
                USER,
                "-d",
                database,
                "-c",
                sql,
            ],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"psql failed: {done.stderr}")
        return done.stdout.strip()


@contextlib.contextmanager
def running_server() -> Iterator[PostgreSQLServer]:
    server = PostgreSQLServer()
    try:
        server.init()
        for attempt in range(3):  # the free port may be taken between the probe and the bind
            try:
                server.start()
                break
            except RuntimeError:
                if attempt == 2:
                    raise
                server.port = _free_port()
        server.create_database()
        yield server
    finally:
        server.destroy()


@pytest.fixture(scope="session")
def postgresql_server() -> Iterator[PostgreSQLServer]:
    """The session's PostgreSQL server (started on first use)."""
    with running_server() as server:
        yield server


@pytest.fixture
def postgresql_url(postgresql_server: PostgreSQLServer) -> str:
    """A fresh, empty schema on the session's server, as a store URL."""
    return postgresql_server.fresh_url()


@pytest.fixture(scope="module")
def private_postgresql_server() -> Iterator[PostgreSQLServer]:
    """A server of the module's own, for tests that stop or restart it (an outage must not reach other tests)."""
    with running_server() as server:
        yield server
