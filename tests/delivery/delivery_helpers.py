"""Helpers for the worker's end-to-end tests: real SQLite files under tmp_path, the real provider clients talking
HTTP on 127.0.0.1 to the provider emulator, real threads and real subprocesses."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask_otp_conversion.config import Settings, load_settings, make_provider
from flask_otp_conversion.delivery.worker import Reporter
from flask_otp_conversion.providers import Provider
from flask_otp_conversion.store import Store, open_store
from flask_otp_conversion.testing import ProviderEmulator

REPO = Path(__file__).resolve().parents[2]
LOGGER = logging.getLogger("flask_otp_conversion.tests.worker")

# Tencent, Alibaba international site (dysmsapi 2018-05-01 SmsConversion), Alibaba China site (2017-05-25
# SmsConversionIntl).
VARIANTS = {
    "tencent": ("tencent", "ReportConversion", {}),
    "alibaba-intl": ("alibaba", "SmsConversion", {"SITE": "intl"}),
    "alibaba-china": ("alibaba", "SmsConversionIntl", {"SITE": "china"}),
}


def provider_config(emu: ProviderEmulator, url: str, variant: str = "tencent") -> dict[str, Any]:
    name, _, extra = VARIANTS[variant]
    if name == "tencent":
        keys = {
            "SECRET_ID": emu.TENCENT_SECRET_ID,
            "SECRET_KEY": emu.TENCENT_SECRET_KEY,
            "SDK_APP_ID": emu.TENCENT_SDK_APP_ID,
            "ENDPOINT": url,
            "SIGN_NAME": "TestSign",
            "TEMPLATE_ID": "1110",
        }
    else:
        keys = {
            "ACCESS_KEY_ID": emu.ALIBABA_ACCESS_KEY_ID,
            "ACCESS_KEY_SECRET": emu.ALIBABA_ACCESS_KEY_SECRET,
            "ENDPOINT": url,
            "SIGN_NAME": "TestSign",
            "TEMPLATE_CODE": "SMS_123456",
            **extra,
        }
    config: dict[str, Any] = {"OTP_CONVERSION_PROVIDER": name}
    config.update({f"OTP_CONVERSION_{name.upper()}_{k}": v for k, v in keys.items()})
    return config


def base_config(
    emu: ProviderEmulator, url: str, db: Path, variant: str = "tencent", **overrides: Any
) -> dict[str, Any]:
    """Short timeouts so that leases (connect + read + 3 s) and breaker probes fit a fast suite."""
    config = provider_config(emu, url, variant)
    config.update(
        {
            "OTP_CONVERSION_STORE_URL": f"sqlite:///{db}",
            "OTP_CONVERSION_HTTP_CONNECT_TIMEOUT": 0.5,
            "OTP_CONVERSION_HTTP_READ_TIMEOUT": 1.0,
            "OTP_CONVERSION_BREAKER_RESET_TIMEOUT": 0.3,
            "OTP_CONVERSION_REPORT_CONCURRENCY": 8,
        }
    )
    config.update({f"OTP_CONVERSION_{k.upper()}": v for k, v in overrides.items()})
    return config


def make_provider_factory(settings: Settings) -> Callable[[], Provider]:
    return lambda: make_provider(settings)


class Env:
    """One app's worth of parts: settings, store, reporter, and the emulator they talk to."""

    def __init__(self, tmp_path: Path, emu: ProviderEmulator, url: str) -> None:
        self.tmp_path = tmp_path
        self.emu = emu
        self.url = url
        self.db = tmp_path / "otp.db"
        self.variant = "tencent"
        self.reporters: list[Reporter] = []
        self.stores: list[Store] = []
        self._sender: Provider | None = None
        self._seq = 0

    def config(self, variant: str | None = None, **overrides: Any) -> dict[str, Any]:
        return base_config(self.emu, self.url, self.db, variant or self.variant, **overrides)

    def store(self) -> Store:
        store = open_store(f"sqlite:///{self.db}")
        self.stores.append(store)
        return store

    def reporter(
        self,
        variant: str | None = None,
        *,
        store: Store | None = None,
        factory: Callable[[Settings], Callable[[], Provider]] | None = None,
        busy: Callable[[], bool] | None = None,
        **overrides: Any,
    ) -> tuple[Reporter, Store]:
        if variant is not None:
            self.variant = variant
        settings = load_settings(self.config(**overrides), instance_path=str(self.tmp_path))
        store = store or self.store()
        reporter = Reporter(
            store=store,
            provider_factory=(factory or make_provider_factory)(settings),
            settings=settings,
            sender=self,
            logger=LOGGER,
            busy=busy,
        )
        self.reporters.append(reporter)
        return reporter, store

    def seed(self, store: Store, count: int, *, age: float = 0.0, verified: bool = True) -> list[str]:
        """Send ``count`` OTPs through the provider (the emulator only takes reports of messages it sent),
        record each send and its verification ``age`` seconds ago as the extension does (the send a second
        earlier); not ``verified``: the send ``age`` seconds ago and no verification. Returns the ids."""
        if self._sender is None:
            settings = load_settings(self.config(), instance_path=str(self.tmp_path))
            self._sender = make_provider_factory(settings)()
        provider = VARIANTS[self.variant][0]
        ids = []
        for _ in range(count):
            self._seq += 1
            phone = f"+65{81000000 + self._seq}"
            message_id = self._sender.send_otp(phone, "123456").message_id
            now = time.time()
            assert store.record_sent(
                phone=phone,
                message_id=message_id,
                provider=provider,
                sent_at=now - age - 1 if verified else now - age,
                account=self._sender.account,
            )
            if verified:
                outcome = store.record_verified(
                    phone=phone, message_id=message_id, provider=provider, verified_at=now - age, match_window=900
                )
                assert outcome.enqueued
            ids.append(message_id)
        return ids

    def send_only(self, store: Store, count: int, *, age: float = 0.0) -> list[str]:
        """Send ``count`` OTPs ``age`` seconds ago and record the sends, as the extension does; verify none."""
        return self.seed(store, count, age=age, verified=False)

    @property
    def action(self) -> str:
        return VARIANTS[self.variant][1]

    def calls(self) -> list[Any]:
        return self.emu.calls(action=self.action)

    def delivered(self) -> Counter[str]:
        """Message id -> number of successful report calls the provider received for it."""
        return Counter(reported_id(call) for call in self.calls() if call.ok)

    def close(self) -> None:
        for reporter in self.reporters:
            reporter.stop(0)
        for store in self.stores:
            store.close()
        if self._sender is not None:
            self._sender.close()


def reported_id(call: Any) -> str:
    params = call.params
    return str(params.get("SerialNo") or params.get("MessageId"))


def wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def pending(store: Store) -> int:
    return store.outbox_stats(now=time.time()).pending


def max_per_second(times: list[float]) -> int:
    """The most calls received within any window shorter than one second."""
    times = sorted(times)
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while t - times[lo] >= 1.0:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


# Subprocesses run this with a JSON job: build the same parts from the same config and do one thing.
CHILD = textwrap.dedent(
    """
    import atexit, json, logging, sys, time
    from flask_otp_conversion.config import load_settings, make_provider
    from flask_otp_conversion.delivery.worker import Reporter
    from flask_otp_conversion.store import open_store

    job = json.loads(sys.argv[1])
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    settings = load_settings(job["config"], instance_path=job["instance_path"])
    store = open_store(job["config"]["OTP_CONVERSION_STORE_URL"])

    def factory():
        return make_provider(settings)

    reporter = Reporter(store=store, provider_factory=factory, settings=settings, sender=None,
                        logger=logging.getLogger("child"))
    action = job["action"]
    if action == "degrade":
        reporter.set_degraded(job["on"])
    elif action == "drain":
        reporter.ensure_running()
        print("running", flush=True)
        while True:
            time.sleep(1)
    elif action == "exit-with-rows":
        atexit.register(reporter.stop)
        reporter.ensure_running()
        sender = factory()
        for n in range(job["count"]):
            phone = "+6582%06d" % n
            message_id = sender.send_otp(phone, "123456").message_id
            now = time.time()
            store.record_sent(phone=phone, message_id=message_id, provider="tencent", sent_at=now - 1)
            store.record_verified(phone=phone, message_id=message_id, provider="tencent", verified_at=now,
                                  match_window=900)
        print("exiting", flush=True)
        sys.exit(0)
    """
)


def spawn(env: Env, action: str, **job: Any) -> subprocess.Popen[str]:
    job = {
        "config": env.config(**job.pop("overrides", {})),
        "instance_path": str(env.tmp_path),
        "action": action,
        **job,
    }
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, json.dumps(job)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_child(env: Env, action: str, **job: Any) -> subprocess.CompletedProcess[str]:
    proc = spawn(env, action, **job)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
