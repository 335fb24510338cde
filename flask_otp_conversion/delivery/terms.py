"""What a delivering process learns from its provider once, before its first report: the report action's rate cap,
the account whose rows it may send, whether it makes negative reports, and how late a report may still go.

A provider's answers do not change while the app runs, so one short-lived client is asked and closed, and the rate
schedule every process shares is built from the cap.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..config import Settings
from ..providers.base import Provider
from ..store.base import Store
from .ratelimit import SharedSchedule

#: Rate used when neither the provider nor ``OTP_CONVERSION_RATE_LIMITS`` names a cap for the report action.
FALLBACK_RATE = 50.0


@dataclass(frozen=True)
class ProviderTerms:
    #: The provider's own name, and the one its rows carry (``OTP_CONVERSION_PROVIDER`` when set).
    name: str
    rows_provider: str
    #: The API action a conversion report calls, and its cap in requests per second.
    action: str
    cap: float
    #: Only this account's rows are claimed: another account's wait for an app holding its credentials.
    account: str
    #: Negative reports are made: the app asked for them and the provider has a form for them.
    negative: bool
    #: ``Provider.report_deadline``: seconds after the send past which a report is useless (None: no limit).
    deadline: float | None

    @property
    def rate_key(self) -> str:
        """The shared schedule's name in the store: one per provider and action, whichever app or host sends."""
        return f"rate:{self.name}:{self.action}"


def read_terms(provider_factory: Callable[[], Provider], settings: Settings, logger: logging.Logger) -> ProviderTerms:
    """Ask one client of the provider, then close it. A cap missing from both the provider and the config is
    warned about, and ``FALLBACK_RATE`` used."""
    provider = provider_factory()
    try:
        action, name = provider.report_action, provider.name
        cap = settings.rate_limits.get(action) or provider.rate_limits.get(action)
        terms = ProviderTerms(
            name=name,
            rows_provider=settings.provider or name,
            action=action,
            cap=FALLBACK_RATE if cap is None else cap,
            account=provider.account,
            negative=settings.report_unverified and provider.reports_unverified,
            deadline=provider.report_deadline,
        )
    finally:
        provider.close()
    if cap is None:
        logger.warning(
            "no rate limit known for %s %s; using %g/s (set OTP_CONVERSION_RATE_LIMITS)", name, action, FALLBACK_RATE
        )
    return terms


def shared_schedule(store: Store, terms: ProviderTerms) -> SharedSchedule:
    """This process's view of the rate schedule that every process sending to the provider shares in ``store``."""
    key = terms.rate_key

    def take(want: int, interval: float, horizon: float) -> tuple[float, int]:
        return store.take_slots(key, want=want, interval=interval, horizon=horizon, now=time.time())

    return SharedSchedule.for_cap(take, terms.cap)
