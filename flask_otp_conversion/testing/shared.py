"""One emulator shared by every process of a sandbox (web servers, CLI commands, a second server on another port).

The first process to attach starts ``python -m flask_otp_conversion.testing --share RECORD --detach`` (in a
session of its own, so it outlives that process and a Ctrl-C there does not reach it), and the emulator writes
its URL to ``RECORD`` (JSON). Later processes find it there, check that it answers, and use it; a dead one is
started again, on its old port when that is free, so endpoints already configured stay right. Attaching and
the emulator's exit check both hold ``RECORD.lock``.

Every attached process holds a shared ``flock`` on ``RECORD.users`` until :meth:`SharedEmulator.close` or its
exit (the kernel drops the lock of a killed process; forked children share it). The emulator exits once no
process holds it, so nothing outlives the sandbox's last process. What the emulator logs goes to ``RECORD.log``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import IO, Any

from .remote import RemoteEmulator

__all__ = ["SharedEmulator", "SharedEmulatorError"]

#: How long attaching waits for a started emulator to write its record and answer.
START_TIMEOUT = 15.0


class SharedEmulatorError(RuntimeError):
    """The shared emulator could not be started (its log, ``RECORD.log``, says why)."""


@contextlib.contextmanager
def _locked(path: str, mode: int) -> Iterator[IO[str]]:
    with open(path, "a+", encoding="utf-8") as handle:
        fcntl.flock(handle, mode)
        try:
            yield handle
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def read_record(path: str) -> dict[str, Any] | None:
    """The record an emulator wrote (``url``, ``port``, ``pid``), or None if there is none or it is torn."""
    try:
        with open(path, encoding="utf-8") as handle:
            record = json.load(handle)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and isinstance(record.get("url"), str) else None


def write_record(path: str, record: dict[str, Any]) -> None:
    """Write atomically: a reader sees the old record or the new one, never half of one."""
    temporary = f"{path}.{os.getpid()}.tmp"
    with open(temporary, "w", encoding="utf-8") as handle:
        json.dump(record, handle)
    os.replace(temporary, path)


class SharedEmulator:
    """An attachment to the sandbox emulator recorded at ``record``: :attr:`url`, :attr:`emulator` (a
    :class:`RemoteEmulator`), and :meth:`close` (also ``stop``) to let it go. Use :meth:`attach`."""

    def __init__(self, record: str, url: str, users: IO[str]) -> None:
        self.record = record
        self.url = url
        self.emulator = RemoteEmulator(url)
        self._users: IO[str] | None = users

    def __repr__(self) -> str:
        return f"<SharedEmulator {self.url} record={self.record!r}>"

    @classmethod
    def attach(cls, record: str) -> SharedEmulator:
        """Use the emulator recorded at ``record``, starting it first if none answers there."""
        os.makedirs(os.path.dirname(os.path.abspath(record)), exist_ok=True)
        with _locked(f"{record}.lock", fcntl.LOCK_EX):
            found = read_record(record)
            if found is None or not RemoteEmulator(found["url"]).answers():
                old_port = found.get("port") if found is not None else None
                found = _start(record, old_port if isinstance(old_port, int) else 0)
            users = open(f"{record}.users", "a+", encoding="utf-8")  # noqa: SIM115 (held until close)
            # Never blocks long: the emulator takes this exclusively only while it holds the start lock, held here.
            fcntl.flock(users, fcntl.LOCK_SH)
        return cls(record, found["url"], users)

    def close(self) -> None:
        """Let the emulator go; it exits once no process of the sandbox holds it. Idempotent."""
        users, self._users = self._users, None
        if users is not None:
            users.close()

    stop = close

    def __enter__(self) -> SharedEmulator:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _start(record: str, port: int) -> dict[str, Any]:
    """Start the emulator detached and return its record; on its old port if it can have it, else any."""
    for attempt in [port, 0] if port else [0]:
        with open(f"{record}.log", "ab") as log:
            # --detach: the emulator forks into a session of its own; this child exits once it serves (0) or
            # could not (1, most likely its old port is taken), so it is reaped here and nothing lingers.
            started = subprocess.run(  # noqa: S603 (our own module, no shell)
                [
                    sys.executable, "-m", "flask_otp_conversion.testing",
                    "--port", str(attempt), "--share", record, "--detach",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                timeout=START_TIMEOUT,
                check=False,
            )
        found = read_record(record)
        if started.returncode == 0 and found is not None and RemoteEmulator(found["url"]).answers():
            return found
    raise SharedEmulatorError(f"the sandbox emulator did not start; see {record}.log")
