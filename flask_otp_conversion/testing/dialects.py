"""How the emulator learns a provider: a *dialect*, registered by provider name.

A dialect recognises the requests of one provider, checks them as that provider's API does, and answers in its
shapes. Every provider the emulator serves, the built-in ones included, plugs in the same way, so a third party
adding a provider (an entry point in ``flask_otp_conversion.providers``) can teach the emulator its API too:

1. write a class implementing :class:`Dialect` (it gets the emulator's shared :class:`State` and its own
   credentials; :class:`ApiError` raised inside ``handle`` becomes the dialect's error answer);
2. describe it with a :class:`DialectSpec`: the provider name, how a request is recognised, the fake
   credentials of the emulated account and the app settings that point a client at the emulator;
3. register it: an entry point in the ``flask_otp_conversion.emulator_dialects`` group whose object is the
   spec (found by every emulator, the standalone and sandbox ones included), or :func:`register_dialect` in
   the process (emulators built afterwards serve it), or ``ProviderEmulator(dialects=[spec])`` for one.

Requests go to the first dialect that recognises them: the built-in ones in their order, then entry points
by name, then those registered in the process. The emulator itself does the rest (faults, latency, hangs,
recording calls): a dialect only says what the provider would answer.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Protocol

from ._common import (
    Answer,
    ApiError,
    EmulatorConversion,
    EmulatorMessage,
    Exchange,
    Incoming,
    State,
    json_body,
    new_request_id,
    to_e164,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "Answer",
    "ApiError",
    "Dialect",
    "DialectSpec",
    "EmulatorConversion",
    "EmulatorMessage",
    "Exchange",
    "Incoming",
    "State",
    "dialect_spec",
    "json_body",
    "new_request_id",
    "register_dialect",
    "registered_dialects",
    "to_e164",
    "unregister_dialect",
]

ENTRY_POINT_GROUP = "flask_otp_conversion.emulator_dialects"


class Dialect(Protocol):
    """One provider's API as the emulator serves it. ``handle`` runs with ``state.lock`` held; the answer
    builders (``error``, ``throttle``, ``server_error``, ``malformed``) are also used for injected faults."""

    #: The provider name, as in ``OTP_CONVERSION_PROVIDER`` and ``EmulatorCall.provider``.
    name: str

    def route(self, inc: Incoming, ex: Exchange) -> None:
        """Fill ``ex`` (``provider``, ``action``, ``params``, ``request_id``...) from the request, checking
        nothing: faults are matched on ``ex.action`` before the call is handled."""

    def handle(self, inc: Incoming, ex: Exchange, now: float) -> Answer:
        """Authenticate, validate and carry out the call (record sends/conversions in the state)."""

    def error(self, ex: Exchange, code: str, message: str, status: int | None = None) -> Answer:
        """The provider's API error answer; ``status`` None means the provider's usual one for ``code``."""

    def throttle(self, ex: Exchange, retry_after: float | None, count: int = 0, limit: float = 0) -> Answer:
        """The provider's throttling answer, with its retry-after hint where it sends one."""

    def server_error(self, ex: Exchange) -> Answer:
        """What the provider's front end answers when it fails (an HTTP 5xx)."""

    def malformed(self, ex: Exchange) -> Answer:
        """A success status with a truncated body."""

    def issue_message_id(self, action: str | None, now: float) -> tuple[str, str]:
        """(send action, a new message id in the provider's format) for a message registered without a send
        call (``ProviderEmulator.issue_message_id``); ``action`` None means the usual send action."""

    def phone_of(self, params: Mapping[str, object]) -> str | None:
        """The E.164 number a call's parameters concern (recipient, or the one of the message a report
        names), for logs; None when there is none."""


@dataclass(frozen=True)
class DialectSpec:
    """What the emulator needs to know to serve one provider."""

    #: The provider name (``OTP_CONVERSION_PROVIDER``), the key of the registry.
    name: str
    #: Whether a request is this provider's (headers, path, parameters); must not consume anything.
    recognises: Callable[[Incoming], bool]
    #: Builds the dialect for one emulator, from the shared state and this provider's credentials.
    build: Callable[[State, Mapping[str, str]], Dialect]
    #: Credential field -> the emulated account's default (fake) value. An emulator may override them;
    #: they are also in ``State.credentials`` as ``<name>_<field>``.
    credentials: Mapping[str, str] = field(default_factory=dict)
    #: (emulator url, credentials) -> the settings that point this provider's client at the emulator, keyed
    #: by config suffix (``ENDPOINT``, ``SECRET_ID``...: ``OTP_CONVERSION_<NAME>_<suffix>``).
    app_config: Callable[[str, Mapping[str, str]], Mapping[str, str]] = lambda url, credentials: {}
    #: Settings the emulator accepts (templates, sender ids...), applied by the sandbox where the app set none.
    app_defaults: Callable[[Mapping[str, str]], Mapping[str, str]] = lambda credentials: {}
    #: Settings suffixes whose presence in an app's config means "real credentials are configured".
    credential_keys: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.name or not self.name.isidentifier() or self.name != self.name.lower():
            raise ValueError(f"a dialect name is a lower-case identifier, got {self.name!r}")


_LOCK = threading.Lock()
_REGISTERED: dict[str, DialectSpec] = {}


def register_dialect(spec: DialectSpec) -> None:
    """Make ``spec`` known to every emulator built from now on in this process (replacing one of that
    name registered before; the built-in dialects cannot be replaced)."""
    if not isinstance(spec, DialectSpec):
        raise TypeError("register_dialect() takes a DialectSpec")
    if spec.name in _builtin():
        raise ValueError(f"{spec.name!r} is a built-in dialect")
    with _LOCK:
        _REGISTERED[spec.name] = spec


def unregister_dialect(name: str) -> None:
    """Forget a dialect registered with :func:`register_dialect` (tests)."""
    with _LOCK:
        _REGISTERED.pop(name, None)


def _builtin() -> dict[str, DialectSpec]:
    from ._alibaba import SPEC as ALIBABA
    from ._aws import SPEC as AWS
    from ._plivo import SPEC as PLIVO
    from ._tencent import SPEC as TENCENT
    from ._twilio import SPEC as TWILIO
    from ._vonage import SPEC as VONAGE

    return {spec.name: spec for spec in (TENCENT, ALIBABA, TWILIO, AWS, VONAGE, PLIVO)}


def _from_entry_points() -> dict[str, DialectSpec]:
    found: dict[str, DialectSpec] = {}
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        spec = ep.load()
        if not isinstance(spec, DialectSpec):
            raise LookupError(f"entry point {ep.value!r} for emulator dialect {ep.name!r} is not a DialectSpec")
        if spec.name != ep.name:
            raise LookupError(f"entry point {ep.name!r} names a dialect called {spec.name!r}")
        found[spec.name] = spec
    return found


def registered_dialects(extra: Iterable[DialectSpec] = ()) -> dict[str, DialectSpec]:
    """Every dialect an emulator built now serves, in routing order, keyed by provider name: the built-in
    ones, then entry points, then those of :func:`register_dialect`, then ``extra``."""
    builtin = _builtin()
    specs = dict(builtin)
    for name, spec in _from_entry_points().items():
        specs.setdefault(name, spec)
    with _LOCK:
        registered = list(_REGISTERED.values())
    for spec in [*registered, *extra]:
        if spec.name in builtin and spec is not builtin[spec.name]:
            raise ValueError(f"{spec.name!r} is a built-in dialect")
        specs[spec.name] = spec
    return specs


def dialect_spec(name: str) -> DialectSpec:
    """The registered dialect of provider ``name``; ``LookupError`` naming the choices if there is none."""
    specs = registered_dialects()
    if name not in specs:
        raise LookupError(f"the emulator has no dialect {name!r}; known: {', '.join(specs)}")
    return specs[name]
