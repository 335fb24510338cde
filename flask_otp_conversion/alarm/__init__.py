"""The SMS-pumping alarm: per calling code, the conversion rate of a sliding window against the code's own baseline.

SMS pumping (traffic inflated to premium numbers) shows as sends that are never verified: a code's conversion
*rate* falls while its volume rises. One module per job:

- ``detection``: the arithmetic (``assess``, ``assess_prefixes``): window rows and baseline rows in, a verdict per
  calling code (or number prefix) out;
- ``episodes``: ``Alarms`` reads the store's counters, keeps the open episodes in one store flag and opens and
  closes them under a named lease, so each is logged and signalled once;
- ``send_allowed``: the advisory check before a send (``SendLimits``), from the episodes and the store's counts;
- ``app``: the alarm of one app (``for_app``: its settings, the ``conversion-anomaly`` signal);
- ``report``: the figures for the stats endpoint, the dashboard and the CLI.
"""

from __future__ import annotations

from .app import for_app
from .detection import AlarmSettings, CodeAssessment, assess, assess_prefixes
from .episodes import (
    BASELINE_CACHE_SECONDS,
    CACHE_SECONDS,
    EPISODES_FLAG,
    EPISODES_LEASE,
    LEASE_RETRY,
    LEASE_TTL,
    Alarms,
    Episode,
    Evaluation,
    OnEpisode,
    parse_episodes,
)
from .report import figures, report_lines
from .send_allowed import SendDecision, SendLimits, number_prefix

__all__ = [
    "BASELINE_CACHE_SECONDS",
    "CACHE_SECONDS",
    "EPISODES_FLAG",
    "EPISODES_LEASE",
    "LEASE_RETRY",
    "LEASE_TTL",
    "AlarmSettings",
    "Alarms",
    "CodeAssessment",
    "Episode",
    "Evaluation",
    "OnEpisode",
    "SendDecision",
    "SendLimits",
    "assess",
    "assess_prefixes",
    "figures",
    "for_app",
    "number_prefix",
    "parse_episodes",
    "report_lines",
]
