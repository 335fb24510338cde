"""The delivery status a deliverer keeps in the store (breaker state, last error), so that any process -- a web
worker that does not deliver, the CLI, another host -- reports what the deliverer sees, not its own idle state."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from ..redaction import safe_text

#: How often a deliverer rewrites an unchanged status (seconds): readers call one older than STALE_AFTER stale.
STATUS_EVERY = 5.0
STALE_AFTER = 60.0
#: Longest last error kept: the store's flag values are bounded.
MAX_ERROR = 300


def status_flag(provider: str) -> str:
    return f"delivery:{provider}"


@dataclass(frozen=True)
class DeliveryRecord:
    """What the last delivering process said, and when (UNIX seconds)."""

    breaker: str
    last_error: str | None
    at: float
    retry_at: float | None = None

    def dump(self) -> str:
        error = None if self.last_error is None else safe_text(self.last_error)[:MAX_ERROR]
        retry_at = self.retry_at if self.retry_at is not None and math.isfinite(self.retry_at) else None
        return json.dumps({"breaker": self.breaker, "last_error": error, "at": self.at, "retry_at": retry_at})

    @classmethod
    def load(cls, value: str | None) -> DeliveryRecord | None:
        """The record a flag holds, or None for no flag or one this version cannot read."""
        if value is None:
            return None
        try:
            data = json.loads(value)
            breaker, error, at = data["breaker"], data.get("last_error"), float(data["at"])
            retry_at = data.get("retry_at")
        except (ValueError, KeyError, TypeError):
            return None
        if not isinstance(breaker, str) or not (error is None or isinstance(error, str)) or not math.isfinite(at):
            return None
        return cls(breaker, error, at, float(retry_at) if isinstance(retry_at, (int, float)) else None)

    def stale(self, now: float) -> bool:
        return now - self.at > STALE_AFTER
