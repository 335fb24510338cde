"""The emulator's own small HTTP API under ``/_emulator/``: what a test or an app in another process needs to see
and set up (the clouds' APIs are all ``POST /``, so nothing they send lands here).

A sandbox emulator shared by several processes (:mod:`flask_otp_conversion.testing.shared`) lives in a process
of its own; :class:`~flask_otp_conversion.testing.remote.RemoteEmulator` reads it through these routes.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._common import Answer, Incoming

if TYPE_CHECKING:
    from .emulator import EmulatorCall, ProviderEmulator

#: Every route of the control API starts with this.
CONTROL_PREFIX = "/_emulator/"
#: What ``GET /_emulator/health`` answers in ``emulator``, so a probe knows it found one and not another server.
IDENTITY = "flask-otp-conversion"


def _json(status: int, payload: Any) -> Answer:
    body = json.dumps(payload, separators=(",", ":")).encode()
    return Answer(status, [("Content-Type", "application/json")], body, status < 400, None)


def call_as_json(call: EmulatorCall) -> dict[str, Any]:
    data = dataclasses.asdict(call)
    data["body"] = base64.b64encode(call.body).decode("ascii")
    return data


def _flag(value: str | None) -> bool | None:
    return None if value is None else value.lower() in ("1", "true", "yes")


def _calls(emulator: ProviderEmulator, query: dict[str, str], body: bytes) -> Answer:
    found = emulator.calls(query.get("action"), provider=query.get("provider"), ok=_flag(query.get("ok")))
    return _json(200, {"calls": [call_as_json(c) for c in found]})


def _messages(emulator: ProviderEmulator, query: dict[str, str], body: bytes) -> Answer:
    return _json(200, {"messages": [dataclasses.asdict(m) for m in emulator.messages(query.get("provider"))]})


def _conversions(emulator: ProviderEmulator, query: dict[str, str], body: bytes) -> Answer:
    found = emulator.conversions(query.get("provider"))
    return _json(200, {"conversions": [dataclasses.asdict(c) for c in found]})


def _code(emulator: ProviderEmulator, query: dict[str, str], body: bytes) -> Answer:
    phone = query.get("phone", "")
    code = emulator.code_for(phone) if phone else None
    if code is None:
        return _json(404, {"error": "no code was sent to that phone"})
    return _json(200, {"phone": phone, "code": code})


def _health(emulator: ProviderEmulator, query: dict[str, str], body: bytes) -> Answer:
    return _json(200, {"emulator": IDENTITY, "pid": os.getpid()})


def _reset(emulator: ProviderEmulator, query: dict[str, str], body: bytes) -> Answer:
    emulator.reset()
    return _json(200, {"reset": True})


def _refuse_phone(emulator: ProviderEmulator, query: dict[str, str], body: bytes) -> Answer:
    try:
        data = json.loads(body or b"{}")
        emulator.refuse_phone(str(data["phone"]), data.get("code"), data.get("message"))
    except (ValueError, KeyError, TypeError) as exc:
        return _json(400, {"error": f"expected {{'phone': ..., 'code': ..., 'message': ...}}: {exc}"})
    return _json(200, {"refused": data["phone"]})


_Route = Callable[["ProviderEmulator", dict[str, str], bytes], Answer]
_ROUTES: dict[tuple[str, str], _Route] = {
    ("GET", "health"): _health,
    ("GET", "calls"): _calls,
    ("GET", "messages"): _messages,
    ("GET", "conversions"): _conversions,
    ("GET", "code"): _code,
    ("POST", "reset"): _reset,
    ("POST", "refuse-phone"): _refuse_phone,
}


def control_answer(emulator: ProviderEmulator, inc: Incoming) -> Answer:
    """The answer of a ``/_emulator/...`` request; these are not recorded as calls."""
    name = inc.path[len(CONTROL_PREFIX) :].strip("/")
    route = _ROUTES.get((inc.method, name))
    if route is None:
        known = ", ".join(f"{method} {CONTROL_PREFIX}{path}" for method, path in _ROUTES)
        return _json(404, {"error": f"no such emulator route; known: {known}"})
    return route(emulator, dict(inc.query_pairs()), inc.body)
