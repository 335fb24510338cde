"""The lines a web worker and its delivery process (``process.py``, ``child.py``) exchange: one JSON object per
line on the child's stdin (its start-up and which signals have receivers) and stdout (ready, log records,
signals), so the app's own logging handlers and signal receivers see what the child does."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from blinker import NamedSignal

from ..signals import (
    breaker_closed,
    breaker_opened,
    conversion_anomaly,
    conversion_dead_lettered,
    conversion_failed,
    conversion_reported,
)
from ..store.base import OutboxItem

#: The signals the child sends, by name: it passes each on only while the app has receivers for it.
FORWARDED: dict[str, NamedSignal] = {
    signal.name: signal
    for signal in (
        conversion_reported,
        conversion_failed,
        conversion_dead_lettered,
        breaker_opened,
        breaker_closed,
        conversion_anomaly,
    )
}


def listened() -> list[str]:
    """The forwarded signals that have a receiver in this process now (a receiver connected later is picked up
    at the next check: ``process.FORWARD_CHECK_EVERY``)."""
    return sorted(name for name, signal in FORWARDED.items() if signal.receivers)


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":"), allow_nan=False).encode() + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    """One line as a JSON object; ``ValueError`` for anything else."""
    message = json.loads(line)
    if not isinstance(message, dict):
        raise ValueError("not a JSON object")
    return message


def signal_message(name: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """A signal's kwargs as JSON: an ``OutboxItem`` travels as its fields."""
    args = {k: dataclasses.asdict(v) if isinstance(v, OutboxItem) else v for k, v in kwargs.items()}
    return {"signal": name, "kwargs": args}


def signal_kwargs(args: dict[str, Any]) -> dict[str, Any]:
    """The inverse of ``signal_message``'s kwargs: ``report`` becomes an ``OutboxItem`` again."""
    if isinstance(report := args.get("report"), dict):
        args = {**args, "report": OutboxItem(**report)}
    return args
