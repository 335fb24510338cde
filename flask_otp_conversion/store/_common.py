"""Moved to ``checks.py`` (argument checks) and ``rules.py`` (hour buckets, the token bucket); this name stays
only until ``spool.py`` imports ``check_verification`` from ``checks``."""

from __future__ import annotations

from .checks import check_verification

__all__ = ["check_verification"]
