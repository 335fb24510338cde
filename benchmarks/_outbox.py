"""Pre-filled outboxes and the processes that drain them, through the extension's public API only.

Each step runs in a process of its own, ``python benchmarks/_outbox.py fill|drain JOB``, with ``PYTHONPATH`` set
to the checkout under test: the working tree, or another commit's worktree (``--base`` in the benchmarks that
take it), so that the same harness measures today's delivery and another's.

    fill   an app (``OTPConversion(app)``, autostart off) records a send and a verification per row, then exits
    drain  an app (autostart off) waits for "go" on stdin, calls ``conversion.flush()`` and prints its CPU
           (``getrusage``: every thread of the process) and wall time as one JSON line

The outbox is filled once per checkout and copied (the whole instance folder: store and spool) for each run.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
#: Credentials for nginx, which checks nothing.
FAKE_KEYS = {"secret_id": "AKIDbenchmark0000000000000000000000", "secret_key": "b" * 32, "sdk_app_id": "1400000000"}
#: "Lifted" rate cap, far above anything one machine sends: the limiter's pauses are not what is measured.
NO_CAP = 1_000_000.0


def app_config(url: str, instance: Path, *, cap: float | None = NO_CAP, **extra: Any) -> dict[str, Any]:
    """The extension's keys for a Tencent account at ``url``; ``cap=None`` keeps the documented rate limits."""
    config: dict[str, Any] = {
        "OTP_CONVERSION_PROVIDER": "tencent",
        "OTP_CONVERSION_TENCENT_ENDPOINT": url,
        "OTP_CONVERSION_TENCENT_SECRET_ID": FAKE_KEYS["secret_id"],
        "OTP_CONVERSION_TENCENT_SECRET_KEY": FAKE_KEYS["secret_key"],
        "OTP_CONVERSION_TENCENT_SDK_APP_ID": FAKE_KEYS["sdk_app_id"],
        "OTP_CONVERSION_STORE_URL": f"sqlite:///{instance / 'outbox.db'}",
        "OTP_CONVERSION_REPORTER_AUTOSTART": False,
        **extra,
    }
    if cap is not None:
        config["OTP_CONVERSION_RATE_LIMITS"] = {"ReportConversion": cap}
    return config


def _env(root: Path) -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(root))


def _job(config: dict[str, Any], instance: Path, **more: Any) -> str:
    return json.dumps({"config": config, "instance": str(instance), **more})


def fill(root: Path, config: dict[str, Any], instance: Path, rows: int) -> float:
    """An outbox of ``rows`` verified sends in ``instance``, recorded by ``root``'s extension; seconds taken."""
    instance.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [sys.executable, str(Path(__file__)), "fill", _job(config, instance, rows=rows)],
        env=_env(root), cwd=root, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"filling the outbox failed:\n{done.stderr[-3000:]}")
    return float(json.loads(done.stdout.strip().splitlines()[-1])["seconds"])


def copy(template: Path, target: Path) -> Path:
    shutil.copytree(template, target)
    return target


def drain(root: Path, config: dict[str, Any], instance: Path, *, timeout: float = 600.0) -> dict[str, Any]:
    """One process flushing ``instance``'s outbox: {"left", "cpu_s", "seconds"} (flush only, start-up excluded)."""
    proc = subprocess.Popen(
        [sys.executable, str(Path(__file__)), "drain", _job(config, instance, timeout=timeout)],
        env=_env(root), cwd=root, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None
    try:
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the drain process did not start:\n{proc.communicate()[1][-3000:]}")
        proc.stdin.write("go\n")
        proc.stdin.flush()
        out, err = proc.communicate(timeout=timeout + 60)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    if proc.returncode != 0:
        raise RuntimeError(f"the drain process exited {proc.returncode}:\n{err[-3000:]}")
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


# ---- the child processes ------------------------------------------------------------------------------------


def _app(job: dict[str, Any]) -> tuple[Any, Any]:
    from flask import Flask

    from flask_otp_conversion import OTPConversion

    app = Flask("otp-bench", instance_path=job["instance"])
    app.config.update(job["config"])
    return app, OTPConversion(app)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _fill(job: dict[str, Any]) -> None:
    app, conversion = _app(job)
    started = time.perf_counter()
    with app.app_context():
        for n in range(job["rows"]):
            phone, serial = f"+86137{n:08d}", f"5000:{n:032d}"
            conversion.record_sent(phone, serial)
            conversion.record_verified(phone, serial)
    print(json.dumps({"seconds": round(time.perf_counter() - started, 2)}), flush=True)


def _drain(job: dict[str, Any]) -> None:
    app, conversion = _app(job)
    with app.app_context():
        print("ready", flush=True)
        sys.stdin.readline()
        cpu0, started = _cpu(), time.perf_counter()
        left = conversion.flush(timeout=job["timeout"])
        seconds, cpu = time.perf_counter() - started, _cpu() - cpu0
    print(json.dumps({"left": left, "cpu_s": cpu, "seconds": seconds}), flush=True)


if __name__ == "__main__":
    {"fill": _fill, "drain": _drain}[sys.argv[1]](json.loads(sys.argv[2]))
