"""The alarm of one app: its settings from the app's config, and the ``conversion-anomaly`` signal it sends."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from ..config import Settings
from ..signals import conversion_anomaly
from ..store import Store
from .detection import AlarmSettings
from .episodes import Alarms, Episode, Evaluation
from .send_allowed import SendLimits


def for_app(
    store: Store, settings: Settings, sender: Callable[[], object], logger: logging.Logger
) -> tuple[Alarms, SendLimits]:
    """The alarm of one app, sending ``conversion-anomaly`` with ``sender()`` (the app) as sender, and its
    ``send_allowed``."""
    alarm_settings = AlarmSettings.from_settings(settings)

    def on_episode(episode: Episode, evaluation: Evaluation) -> None:
        seen = episode.assessment
        # ``prefix`` only for a prefix's alarm: a receiver written before it (no ``prefix`` parameter, no
        # ``**kwargs``) keeps receiving every whole-code alarm.
        where: dict[str, Any] = {} if episode.prefix is None else {"prefix": episode.prefix}
        conversion_anomaly.send(
            sender(),
            calling_code=episode.calling_code,
            rate=None if seen is None else seen.rate,
            baseline=None if seen is None else seen.baseline,
            sends=0 if seen is None else seen.sends,
            window=evaluation.window_end - evaluation.window_start,
            since=episode.since,
            **where,
        )

    alarms = Alarms(store, alarm_settings, on_episode=on_episode, logger=logger)
    return alarms, SendLimits(alarms, store, logger)
