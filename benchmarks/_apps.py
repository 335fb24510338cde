"""The apps the benchmarks serve with gunicorn, and the setup that pre-issues what they will verify.

``ours()``: the example app with the extension. ``plain()``: the same app without it (``conversion=False``).
``inline()``: the same app without the extension, its verify view calling the provider's ``ReportConversion``
synchronously inside the request after a right code, as most hand-written integrations do. The serial number to
report is kept by the app at send time (here: an ``inline_sent`` table beside the codes). ``hand_append()``: the
same app without the extension, its verify view wrapped by the least a durable record in the request can be (see
``_hand_append``). Benchmark-only.

gunicorn loads them as ``_apps:ours()`` etc. (``benchmarks/`` on ``PYTHONPATH``); the config comes as JSON in
``BENCH_APP_CONFIG``.
"""

from __future__ import annotations

import functools
import json
import os
import re
import sqlite3
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from flask import Flask
from flask.typing import ResponseReturnValue

from example_app import create_app
from example_app.sms import provider_factory
from example_app.views import STATE_KEY
from example_app.views import verify as example_verify
from flask_otp_conversion.providers import Provider
from flask_otp_conversion.providers.base import ConversionReport

INLINE_TABLE = "CREATE TABLE IF NOT EXISTS inline_sent (phone TEXT PRIMARY KEY, serial TEXT NOT NULL)"


def _config() -> dict[str, Any]:
    config: dict[str, Any] = json.loads(os.environ["BENCH_APP_CONFIG"])
    return config


def ours() -> Flask:
    config = _config()
    if config.get("_switch_interval"):  # benchmark-only: a library must not change the app's switch interval
        import sys

        sys.setswitchinterval(float(config["_switch_interval"]))
    if config.get("_nice"):
        _nice_delivery(int(config["_nice"]), applier=bool(config.get("_nice_applier")))
    return create_app(config)


def _lower_this_thread(increment: int) -> None:
    """Nice the calling thread ``increment`` above the process (Linux schedules each thread on its own, and
    ``setpriority`` on a thread id nices that thread alone); a thread started by a niced one is not niced twice."""
    tid = threading.get_native_id()
    current, process = os.getpriority(os.PRIO_PROCESS, tid), os.getpriority(os.PRIO_PROCESS, os.getpid())
    os.setpriority(os.PRIO_PROCESS, tid, min(19, max(current, process + increment)))


def _nice_delivery(increment: int, *, applier: bool) -> None:
    """Benchmark-only lever: the delivery threads (the drain loop, the senders; with ``applier`` the spool's
    applier too) niced, so that the kernel prefers the request threads and the other worker."""
    from flask_otp_conversion.delivery.senders import Senders
    from flask_otp_conversion.delivery.worker import Reporter
    from flask_otp_conversion.store.spool import Spool

    targets: list[tuple[Any, str]] = [(Reporter, "_run"), (Senders, "_send_forever")]
    if applier:
        targets.append((Spool, "_run"))
    for owner, name in targets:
        original = getattr(owner, name)

        def niced(self: Any, *args: Any, _original: Any = original) -> Any:
            _lower_this_thread(increment)
            return _original(self, *args)

        setattr(owner, name, niced)


def plain() -> Flask:
    return create_app(_config(), conversion=False)


def build(kind: str, config: Mapping[str, Any]) -> Flask:
    if kind == "ours":
        return create_app(config)
    if kind == "plain":
        return create_app(config, conversion=False)
    if kind == "inline":
        return _inline(config)
    if kind == "hand_append":
        return _hand_append(config)
    raise ValueError(kind)


def inline() -> Flask:
    return _inline(_config())


class _InlineReporter:
    """The hand-written integration: a provider client per process, the serial looked up by phone."""

    def __init__(self, config: Mapping[str, Any], instance_path: str, db_path: str) -> None:
        self._factory = provider_factory(config, instance_path)
        self._db_path = db_path
        self._local = threading.local()
        self._client: tuple[int, Provider] | None = None
        self._lock = threading.Lock()

    def _provider(self) -> Provider:
        with self._lock:
            if self._client is None or self._client[0] != os.getpid():
                self._client = (os.getpid(), self._factory())
            return self._client[1]

    def _db(self) -> sqlite3.Connection:
        cached = getattr(self._local, "db", None)
        if cached is None or cached[0] != os.getpid():
            cached = (os.getpid(), sqlite3.connect(self._db_path, timeout=30))
            self._local.db = cached
        db: sqlite3.Connection = cached[1]
        return db

    def report(self, phone: str) -> None:
        row = self._db().execute("SELECT serial FROM inline_sent WHERE phone = ?", (phone,)).fetchone()
        if row is not None:
            self._provider().report_conversion(ConversionReport(row[0], phone, time.time()))


def _inline(config: Mapping[str, Any]) -> Flask:
    app = create_app(config, conversion=False)
    codes_path = app.extensions[STATE_KEY].codes.path
    with sqlite3.connect(codes_path) as db:
        db.execute(INLINE_TABLE)
    reporter = _InlineReporter(app.config, app.instance_path, codes_path)

    def verify_and_report() -> ResponseReturnValue:
        from flask import request

        response = app.make_response(example_verify())
        if response.status_code == 200:
            # What "report the conversion" usually looks like: in the view, waiting for the provider.
            # A provider error is logged and swallowed, so only the wait shows in the figures.
            try:
                reporter.report(str(request.get_json()["phone"]))
            except Exception as exc:
                app.logger.warning("conversion report failed: %s", exc)
        return response

    app.view_functions["verify"] = verify_and_report
    return app


def hand_append() -> Flask:
    return _hand_append(_config())


_E164 = re.compile(r"\+[1-9]\d{6,14}")


def _hand_append(config: Mapping[str, Any]) -> Flask:
    """The floor of the overhead measurement: after a 200, the phone from the request's JSON (if E.164) and the
    time, one JSON line appended to a file of this process with one ``os.write``. Written as a careful engineer
    would by hand for this one view: no signal, no other checks, no lock, no message id, nothing ever reads the
    file. A durable record of the verification made inside the request does at least this much (find the phone,
    check it, write a line); the extension's request path (``append-only``) does it with the checks, locking and
    recovery the product needs."""
    app = create_app(config, conversion=False)
    folder = os.path.dirname(app.extensions[STATE_KEY].codes.path)
    files: dict[int, int] = {}  # pid -> descriptor: gunicorn forks the workers after loading the app

    def append(line: bytes) -> None:
        pid = os.getpid()
        fd = files.get(pid)
        if fd is None:
            path = os.path.join(folder, f"hand-append-{pid}.jsonl")
            fd = files[pid] = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        os.write(fd, line)

    @functools.wraps(example_verify)
    def verify_and_append() -> ResponseReturnValue:
        from flask import request

        rv = example_verify()
        if isinstance(rv, tuple) and rv[1] == 200:
            phone = (request.get_json(silent=True) or {}).get("phone")
            if isinstance(phone, str) and _E164.fullmatch(phone):
                append(f'["{phone}",null,{time.time()!r}]\n'.encode())
        return rv

    app.view_functions["verify"] = verify_and_append
    return app


def preissue(kind: str, config: Mapping[str, Any], sent: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """Make each (phone, serial) of ``sent`` look sent by ``kind``'s app: a pending code in the app's code store,
    and the serial where that app keeps it (the extension's outbox store, or the inline table). Returns
    (phone, code) pairs for the load generator."""
    app = build(kind, config)
    state = app.extensions[STATE_KEY]
    try:
        codes = state.codes.issue_many(phone for phone, _ in sent)
        if kind == "ours":
            with app.app_context():
                for phone, serial in sent:
                    state.conversion.record_sent(phone, serial)
        elif kind == "inline":
            with sqlite3.connect(state.codes.path) as db:
                db.executemany("INSERT OR REPLACE INTO inline_sent VALUES (?, ?)", sent)
    finally:
        from example_app import shutdown

        shutdown(app)
    return [(phone, codes[phone]) for phone, _ in sent]


def preissue_in(
    root: str, kind: str, config: Mapping[str, Any], sent: Sequence[tuple[str, str]]
) -> list[tuple[str, str]]:
    """``preissue`` run by ``root``'s code (another commit's worktree) in a process of its own."""
    import subprocess
    import sys
    import tempfile

    with tempfile.TemporaryDirectory(prefix="otp-bench-preissue-") as tmp:
        sent_file, pairs_file = os.path.join(tmp, "sent.csv"), os.path.join(tmp, "pairs.csv")
        with open(sent_file, "w") as f:
            f.writelines(f"{phone},{serial}\n" for phone, serial in sent)
        subprocess.run(
            [sys.executable, __file__, kind, json.dumps(dict(config)), sent_file, pairs_file],
            env=dict(os.environ, PYTHONPATH=root), cwd=root, check=True,
        )  # fmt: skip
        with open(pairs_file) as f:
            return [(phone, code) for phone, code in (line.strip().split(",") for line in f if line.strip())]


if __name__ == "__main__":  # python benchmarks/_apps.py KIND CONFIG_JSON SENT_CSV PAIRS_CSV
    import sys

    _kind, _config_json, _sent, _out = sys.argv[1:5]
    with open(_sent) as _f:
        _pairs = preissue(_kind, json.loads(_config_json), [tuple(line.strip().split(",")) for line in _f])  # type: ignore[misc]
    with open(_out, "w") as _f:
        _f.writelines(f"{phone},{code}\n" for phone, code in _pairs)
