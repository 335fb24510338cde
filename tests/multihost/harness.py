"""Several "hosts" on one store server: each an app process (gunicorn, ``host_app.py``) with an instance folder
of its own, so nothing is shared on disk, all reporting to one provider emulator. Generic over the store URL,
so the PostgreSQL and the Redis tests drive hosts the same way."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

from flask_otp_conversion.testing import EmulatorCall, EmulatorServer, ProviderEmulator

ROOT = Path(__file__).resolve().parents[2]
GUNICORN = Path(sys.executable).parent / "gunicorn"
ACTION = "ReportConversion"
#: Short provider timeouts, so that a row's lease (send window + connect + read + ack margin) is a few seconds.
FAST = {"HTTP_CONNECT_TIMEOUT": 1.0, "HTTP_READ_TIMEOUT": 1.0}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Host:
    name: str
    base: str
    instance: Path
    log: Path
    proc: subprocess.Popen[bytes]

    def post(self, path: str, body: dict[str, object], *, timeout: float = 10) -> httpx.Response:
        with httpx.Client(base_url=self.base, timeout=timeout) as client:
            return client.post(path, json=body)

    def get(self, path: str) -> httpx.Response:
        with httpx.Client(base_url=self.base, timeout=10) as client:
            return client.get(path)

    def send(self, phone: str, message_id: str, *, until: float = 30.0) -> None:
        """Record a send, trying again while the store is unreachable (503), as an app would."""
        deadline = time.monotonic() + until
        while True:
            response = self.post("/send", {"phone": phone, "message_id": message_id})
            if response.status_code != 503 or time.monotonic() > deadline:
                assert response.status_code == 200, response.text
                return
            time.sleep(0.2)

    def verify(self, phone: str) -> None:
        response = self.post("/verify", {"phone": phone})
        assert response.status_code == 200, response.text

    def kill(self) -> None:
        """``kill -9`` of the master and every worker: nothing runs an exit handler."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


def tencent_env(server: EmulatorServer, store_url: str, **settings: object) -> dict[str, str]:
    """This process's environment plus ``FLASK_OTP_CONVERSION_*`` keys for an app configured by
    ``from_prefixed_env``: Tencent on ``server``'s emulator, the store at ``store_url``, ``settings`` beside."""
    emulator = server.emulator
    config: dict[str, object] = {
        "PROVIDER": "tencent",
        "TENCENT_ENDPOINT": server.url,
        "TENCENT_SECRET_ID": emulator.TENCENT_SECRET_ID,
        "TENCENT_SECRET_KEY": emulator.TENCENT_SECRET_KEY,
        "TENCENT_SDK_APP_ID": emulator.TENCENT_SDK_APP_ID,
        "STORE_URL": store_url,
        **settings,
    }
    env = dict(os.environ)
    # from_prefixed_env JSON-decodes values: strings are encoded as JSON strings so none is read as a number.
    env.update({f"FLASK_OTP_CONVERSION_{key}": json.dumps(value) for key, value in config.items()})
    return env


def gunicorn(
    app: str, port: int, workers: int, env: dict[str, str], log: Path, *, own_group: bool = False
) -> subprocess.Popen[bytes]:
    """``app`` (``module:factory()``) under gunicorn with ``workers`` sync workers on 127.0.0.1:``port``, its
    output in ``log``; ``own_group``: a process group of its own, so a kill reaches every worker."""
    with log.open("wb") as out:
        return subprocess.Popen(
            [
                str(GUNICORN),
                "-w",
                str(workers),
                "-b",
                f"127.0.0.1:{port}",
                "--graceful-timeout",
                "10",
                "--no-control-socket",  # its default path is per user: gunicorns running side by side would share it
                app,
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=own_group,
        )


def start_host(
    tmp_path: Path, name: str, server: EmulatorServer, store_url: str, *, workers: int = 1, **settings: object
) -> Host:
    """A host serving ``host_app.py`` under gunicorn with ``workers`` sync workers, delivering to ``server``."""
    instance = tmp_path / name / "instance"
    instance.mkdir(parents=True)
    port = free_port()
    log = tmp_path / f"{name}.log"
    env = dict(tencent_env(server, store_url, **settings), OTP_TEST_INSTANCE=str(instance))
    proc = gunicorn("tests.multihost.host_app:create_app()", port, workers, env, log, own_group=True)
    host = Host(name, f"http://127.0.0.1:{port}", instance, log, proc)
    deadline = time.monotonic() + 20
    while True:
        assert proc.poll() is None, f"{name} exited early:\n{log.read_text()}"
        try:
            host.get("/status")
            return host
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise AssertionError(f"{name} did not start listening:\n{log.read_text()}") from None
            time.sleep(0.1)


def stop_host(host: Host) -> str:
    """SIGTERM (a graceful stop) and its log; asserts it stopped cleanly unless it was killed."""
    if host.proc.poll() is None:
        host.proc.send_signal(signal.SIGTERM)
        try:
            host.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            host.kill()
            raise AssertionError(f"{host.name} did not stop:\n{host.log.read_text()}") from None
        assert host.proc.returncode == 0, host.log.read_text()
    output = host.log.read_text()
    assert "Traceback" not in output, output
    return output


@contextlib.contextmanager
def running_hosts(
    tmp_path: Path, server: EmulatorServer, store_url: str, count: int, *, workers: int = 1, **settings: object
) -> Iterator[list[Host]]:
    """``count`` hosts on one store, stopped (and checked) at the end."""
    hosts: list[Host] = []
    try:
        for n in range(count):
            hosts.append(start_host(tmp_path, f"host{n}", server, store_url, workers=workers, **settings))
        yield hosts
    finally:
        for host in hosts:
            if host.proc.returncode is None:
                stop_host(host)


def messages(emulator: ProviderEmulator, prefix: str, count: int) -> tuple[list[str], list[str]]:
    """``count`` phones (``prefix`` + 4 digits) and the serial numbers the emulator issued for them: it takes
    reports of those only."""
    phones = [f"{prefix}{n:04d}" for n in range(count)]
    return phones, [emulator.issue_message_id("tencent", phone) for phone in phones]


def reports(emulator: ProviderEmulator, *, ok: bool | None = True) -> list[EmulatorCall]:
    return emulator.calls(action=ACTION, ok=ok)


def reported_serials(emulator: ProviderEmulator) -> list[str]:
    return [str(call.params["SerialNo"]) for call in reports(emulator)]


def wait_reported(emulator: ProviderEmulator, serials: Sequence[str], timeout: float = 30) -> None:
    """Until every serial was reported (or ``timeout``: the caller's assertion then says what is missing)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not set(reported_serials(emulator)) >= set(serials):
        time.sleep(0.1)


def assert_reported_once(emulator: ProviderEmulator, serials: Sequence[str]) -> None:
    """Every serial reported, none twice."""
    time.sleep(1.5)  # room for a duplicate to show up
    assert Counter(reported_serials(emulator)) == Counter(serials)


def settle(emulator: ProviderEmulator, quiet: float = 0.5) -> None:
    """Until no new call has reached the emulator for ``quiet`` seconds."""
    seen = -1
    while (count := len(emulator.calls())) != seen:
        seen = count
        time.sleep(quiet)


def max_in_window(times: Sequence[float], window: float = 1.0) -> int:
    """The most times in any closed interval of length ``window``."""
    ordered = sorted(times)
    best, lo = 0, 0
    for hi, at in enumerate(ordered):
        while ordered[lo] < at - window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best
