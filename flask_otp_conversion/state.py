"""``ConversionState``: everything one app's extension owns (in ``app.extensions["otp_conversion"]``): its
parts, the recording of sends and verifications, and the background work's start and exit."""

from __future__ import annotations

import logging
import math
import os
import time
import weakref
from collections.abc import Callable
from typing import Any

from flask import Flask
from werkzeug.local import LocalProxy

from .alarm import Alarms, SendLimits
from .alarm import for_app as alarm_for_app
from .config import ConfigurationError, Settings, make_provider
from .delivery import process as delivery_process
from .delivery.activity import RequestActivity
from .delivery.election import DeliveryLock, lock_path
from .delivery.status import DeliveryRecord, status_flag
from .delivery.worker import Reporter
from .phone import mask_phone, normalize_phone
from .providers import Provider, provider_class
from .store import MemoryStore, SQLiteStore, Store, open_store
from .store.base import Verification, VerifyOutcome
from .store.checks import MAX_TIME, check_message_id
from .store.holding import HeldSend, Holding
from .store.quarantine import quarantined
from .store.spool import Spool, folder_for, unapplied
from .web.stats import DeliveryStatus, StatsService

EXTENSION_KEY = "otp_conversion"
def _message_id(value: object) -> str:
    """The store's check, after trimming the whitespace a form field or a copied id may carry."""
    return check_message_id(value.strip() if isinstance(value, str) else value)


def _timestamp(value: object, name: str) -> float:
    """UNIX seconds as the store takes them (``checks.check_time``): a spooled time it would refuse would only be
    quarantined by the applier, long after the request."""
    if value is None:
        return time.time()
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be UNIX seconds (a finite int or float)")
    if not -MAX_TIME <= value <= MAX_TIME:
        raise ValueError(f"{name} is out of range (at most {MAX_TIME:g} seconds either side of 1970)")
    return float(value)


class ConversionState:
    """Everything one app's extension owns; lives in ``app.extensions["otp_conversion"]``."""

    def __init__(self, app: Flask, settings: Settings, logger: logging.Logger) -> None:
        self.settings = settings
        self.logger = logger
        self._app = weakref.ref(app)
        self.store: Store | None = None
        self.spool: Spool | None = None
        self.reporter: Reporter | None = None
        #: With one deliverer per host (``OTP_CONVERSION_SINGLE_DELIVERER``): the lock that makes this process it
        self.delivery_lock: DeliveryLock | None = None
        #: The deliverer's child process that applies and delivers (``delivery/process.py``), if it uses one
        self.delivery_process: delivery_process.DeliveryProcess | None = None
        self.stats: StatsService | None = None
        self.activity: RequestActivity | None = None
        self.alarms: Alarms | None = None
        self.send_limits: SendLimits | None = None
        self._account: str | None = None
        #: Records held in memory while the spool and the store both refuse writes.
        self.holding: Holding | None = None
        self._spool_refusing = False  # the spool refused the last append (logged once)
        if not settings.enabled:
            return
        self.store = open_store(settings.store_url or "")
        self.activity = RequestActivity()
        # A memory store lives in this process only: a spool or a lock between processes would guard nothing.
        local = not isinstance(self.store, MemoryStore)
        if settings.single_deliverer and settings.reporter_autostart and local:
            self.delivery_lock = DeliveryLock(lock_path(self._host_base(app)))
        if settings.spool and local:
            assert settings.provider is not None
            self.spool = Spool(
                self.store,
                folder_for(self._host_base(app)),
                provider=settings.provider,
                match_window=settings.match_window,
                logger=logger,
                on_outcome=lambda item, outcome: self._note_outcome(item.phone, outcome),
                # Without autostart the web workers only append: `flask otp-conversion deliver` applies. With
                # one deliverer, it applies everyone's (start_background starts its applier).
                autostart=settings.reporter_autostart and self.delivery_lock is None,
            )
        assert settings.provider is not None
        spool = self.spool
        self.holding = Holding(
            self.store,
            provider=settings.provider,
            match_window=settings.match_window,
            logger=logger,
            spool=None if spool is None else (lambda item: spool.append(item, checked=True)),
        )
        self.alarms, self.send_limits = alarm_for_app(self.store, settings, self._app, logger)
        alarms = self.alarms
        self.reporter = Reporter(
            store=self.store,
            provider_factory=self.make_provider,
            settings=settings,
            sender=app,
            logger=logger,
            busy=self.activity.busy,
            # The deliverer evaluates the alarm on a period: episodes open with no one reading the stats.
            alarm_check=lambda: alarms.evaluate(fresh=True),
        )
        if self.delivery_lock is not None:
            try:
                self.delivery_process = delivery_process.for_app(
                    app, settings, shutdown_timeout=settings.shutdown_timeout, sender=self._app, logger=logger
                )
            except ValueError as exc:
                raise ConfigurationError(f"OTP_CONVERSION_DELIVERY_PROCESS: {exc}") from None

    @property
    def delivering(self) -> bool:
        """Whether this process delivers now: on its own threads, or through its delivery process."""
        process = self.delivery_process
        return (self.reporter is not None and self.reporter.running) or (process is not None and process.running)

    def _host_base(self, app: Flask) -> str:
        """The path this host's spool folder and deliverer lock are named after: a SQLite file (they sit beside
        it, as its ``-wal`` does), else ``otp_conversion`` in the instance folder, which is per host, as the spool
        and the one deliverer per host are."""
        if isinstance(self.store, SQLiteStore):
            return self.store.path
        return os.path.join(app.instance_path, "otp_conversion")

    def make_stats(self, auth: Callable[[], Callable[[], bool] | None]) -> StatsService:
        """The statistics service, given what it reads (the stats know nothing of this state)."""
        store, reporter, spool, settings = self.store, self.reporter, self.spool, self.settings
        assert store is not None and reporter is not None and settings.provider is not None

        def delivery() -> DeliveryStatus:
            if reporter.running:  # this process delivers: its own state is the freshest
                return DeliveryStatus(
                    True, reporter.breaker_state, reporter.degraded, reporter.last_error, time.time(), self.account()
                )
            # another process delivers (this one's delivery process, or another's), or none does: what the last
            # deliverer wrote to the store
            record = DeliveryRecord.load(store.get_flag(status_flag(settings.provider or "")))
            delivering = self.delivering
            if record is None:  # never opened
                return DeliveryStatus(delivering, "closed", reporter.degraded, None, None, self.account())
            return DeliveryStatus(
                delivering, record.breaker, reporter.degraded, record.last_error, record.at, self.account()
            )

        def spooled() -> int | None:  # None: the folder cannot be read (the stats still answer)
            try:
                return 0 if spool is None else unapplied(store, spool.directory)
            except OSError:
                return None

        def set_aside() -> int | None:
            try:
                return 0 if spool is None else quarantined(spool.directory)
            except OSError:
                return None

        def held() -> tuple[int, int]:
            counts = None if self.holding is None else self.holding.counts()
            return (0, 0) if counts is None else (counts.held, counts.lost)

        return StatsService(
            store=store,
            provider_class=provider_class(settings.provider),
            provider_factory=self.make_provider,
            delivery=delivery,
            spooled=spooled,
            quarantined=set_aside,
            held=held,
            auth=auth,
            token=settings.stats_token,
            cache_ttl=settings.stats_cache_ttl,
            url_prefix=settings.url_prefix,
            logger=self.logger,
        )

    def make_provider(self) -> Provider:
        """A fresh client (one per process: the reporter calls this again after a fork)."""
        return make_provider(self.settings)

    def account(self) -> str:
        """The configured provider account, recorded with every send (built once: it comes from the config)."""
        if self._account is None:
            client = self.make_provider()
            try:
                self._account = client.account
            finally:
                client.close()
        return self._account

    # Recording ---------------------------------------------------------------------------------------

    def record_sent(
        self, phone: object, message_id: object, provider: object = None, sent_at: object = None
    ) -> bool:
        if self.store is None:
            return False
        e164 = normalize_phone(phone)
        mid = _message_id(message_id)
        name = self._provider_name(provider)
        # A send through another provider than the configured one is of an account this app does not know.
        account = self.account() if name == self.settings.provider else ""
        held = HeldSend(e164, mid, name, _timestamp(sent_at, "sent_at"), account)
        holding = self.holding
        if holding is not None and holding.active:  # behind what is held, in order
            return holding.hold(held, RuntimeError("records are held"))
        try:
            return self.store.record_sent(
                phone=e164, message_id=mid, provider=name, sent_at=held.sent_at, account=account
            )
        except ValueError:
            raise
        except Exception as exc:  # the SMS went out: the record waits for the store, it does not fail the send
            if holding is None:
                raise
            return holding.hold(held, exc)

    def record_verified(
        self, phone: object, message_id: object = None, verified_at: object = None
    ) -> VerifyOutcome | None:
        if self.store is None:
            return None
        item = self._verification(phone, message_id, verified_at)
        outcome = self.store.record_verified(
            phone=item.phone,
            message_id=item.message_id,
            provider=self._provider_name(None),
            verified_at=item.verified_at,
            match_window=self.settings.match_window,
        )
        self._note_outcome(item.phone, outcome)
        return outcome

    def _verification(self, phone: object, message_id: object, verified_at: object) -> Verification:
        """Normalised and checked: what this returns passes the store's ``check_verification``."""
        return Verification(
            normalize_phone(phone),
            None if message_id is None else _message_id(message_id),
            _timestamp(verified_at, "verified_at"),
        )

    def _note_outcome(self, phone: str, outcome: VerifyOutcome) -> None:
        if outcome.message_id is None:
            self.logger.info("verification for %s matched no sent OTP; counted, nothing to report", mask_phone(phone))

    def apply_spool(self) -> int:
        """Apply every verification spooled so far, by any process of the app; returns how many."""
        return 0 if self.spool is None else self.spool.apply_pending(everyone=True)

    def _provider_name(self, provider: object) -> str:
        if provider is None:
            assert self.settings.provider is not None
            return self.settings.provider
        if not isinstance(provider, str) or not provider:
            raise ValueError("provider must be a non-empty string")
        return provider

    # Signal receivers: a failure here must never break the app's send or verify ------------------------

    def on_otp_sent(self, sender: object, **kwargs: Any) -> None:
        if not self.is_our_app(sender):
            return
        try:
            self.record_sent(
                kwargs.get("phone"), kwargs.get("message_id"), kwargs.get("provider"), kwargs.get("sent_at")
            )
        except Exception as exc:
            self._log_dropped("otp-sent", kwargs.get("phone"), exc)

    def on_otp_verified(self, sender: object, **kwargs: Any) -> None:
        if not self.is_our_app(sender):
            return
        self.on_verified(kwargs.get("phone"), kwargs.get("message_id"), kwargs.get("verified_at"))

    def on_verified(self, phone: object, message_id: object, verified_at: object) -> None:
        """``record_verified`` for the request path: one append to the spool, applied to the store by a background
        thread. Falls back to the store at once if there is no spool or the file refuses."""
        try:
            self._spool_or_store(self._verification(phone, message_id, verified_at))
        except Exception as exc:
            self._log_dropped("otp-verified", phone, exc)

    def _spool_or_store(self, item: Verification) -> None:
        """The spool; the store if it refuses; memory if both do. A send held in memory meanwhile is not
        overtaken: the spool's applier waits for it after an outage (``spool.RECOVERY``)."""
        holding = self.holding
        if self.spool is not None:
            try:
                self.spool.append(item, checked=True)
            except OSError as exc:
                if not self._spool_refusing:  # once per episode, not once per verification
                    self._spool_refusing = True
                    self.logger.error("otp-conversion spool refuses verifications (%s); writing them to the store", exc)
            else:
                if self._spool_refusing:
                    self._spool_refusing = False
                    self.logger.warning("otp-conversion spool takes verifications again")
                return
        if holding is not None and holding.active:  # the store refuses: behind what is held, in order
            holding.hold(item, RuntimeError("records are held"))
            return
        try:
            self.record_verified(item.phone, item.message_id, item.verified_at)
        except ValueError:
            raise
        except Exception as exc:
            if holding is None:
                raise
            holding.hold(item, exc)

    def is_our_app(self, sender: object) -> bool:
        """Whether a signal's sender is this state's app, also when it was sent as ``current_app`` (a proxy,
        which blinker would otherwise take for another sender and record nothing)."""
        if isinstance(sender, LocalProxy):
            try:
                sender = sender._get_current_object()
            except RuntimeError:  # no app context: not ours to record
                return False
        return sender is self._app()

    def _log_dropped(self, signal: str, phone: object, exc: Exception) -> None:
        who = mask_phone(phone) if isinstance(phone, str) else type(phone).__name__
        if isinstance(exc, ValueError):
            self.logger.warning("%s for %s not recorded: %s", signal, who, exc)
        else:
            self.logger.error("%s for %s not recorded: %s: %s", signal, who, type(exc).__name__, exc)

    # Per request (with the reporter autostarted) -------------------------------------------------------

    def start_background(self) -> None:
        """Start this process's background threads on its first request (a forked worker starts its own), or,
        with one deliverer per host, once this process becomes it; restart one that died. Cheap enough for every
        request (a thread's liveness, and the lock's own once-a-second retry). Never fails the request: what the
        spool holds waits for the next start."""
        lock = self.delivery_lock
        if lock is not None:
            try:
                if not lock.acquire():  # another process applies and delivers; this one only appends
                    return
            except OSError as exc:  # deliver anyway: several deliverers are safe, none would stall the outbox
                self.logger.error("otp-conversion deliverer lock %s: %s; delivering from this process", lock.path, exc)
        if self.delivery_process is not None and self.delivery_process.ensure_running():
            return  # the child applies and delivers
        if self.reporter is not None:
            self.reporter.ensure_running()
        if self.spool is not None:
            try:
                self.spool.start(everyone=lock is not None)
            except Exception as exc:
                self.logger.error("otp-conversion spool applier could not start: %s: %s", type(exc).__name__, exc)

    def shutdown(self) -> None:
        if self.stats is not None:
            self.stats.close()
        deadline = time.monotonic() + self.settings.shutdown_timeout  # one budget for the whole exit
        if self.spool is not None:  # first, so that the reporter's last flush can deliver what it applies
            try:
                self.spool.close(self.settings.shutdown_timeout)
            except Exception as exc:  # what is left is applied by the next process that sweeps the folder
                self.logger.error("otp-conversion spool not emptied at shutdown: %s: %s", type(exc).__name__, exc)
        if self.holding is not None:  # before the reporter's last flush, which may then deliver them
            self.holding.close(max(0.0, deadline - time.monotonic()))
        if self.reporter is not None:
            self.reporter.stop(max(0.0, deadline - time.monotonic()))
        if self.delivery_process is not None:  # it applies what is left and hands its claims back
            self.delivery_process.stop(max(0.0, deadline - time.monotonic()))
        if self.delivery_lock is not None:  # after the last flush: another process may take over now
            self.delivery_lock.release()
        if self.store is not None:
            self.store.close()


