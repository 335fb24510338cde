"""A local stand-in for the SMS providers' APIs (Tencent Cloud SMS, Alibaba Cloud SMS/cams, and every other
registered dialect), as a plain WSGI application.

Tests and benchmarks point the real provider clients at it (through :class:`EmulatorServer`), so what is
exercised is our own signing, serialisation and error handling against the clouds' documented wire:
signatures are recomputed from the received bytes with ``providers/signing.py``, timestamps and nonces are
checked, parameters are validated the way the clouds do, and answers have the clouds' shapes, success and
failure alike. Faults (5xx, hangs, throttling, garbage, dropped connections, latency) can be injected per
action (the fault model is ``faults.py``; its names stay importable from here), and every call is recorded,
rejected ones included.

Routing: each provider is a dialect registered by name (:mod:`flask_otp_conversion.testing.dialects`); a
request goes to the first one that recognises it. A request with an ``X-TC-Action`` header is Tencent; one with
an ``ACS3-HMAC-SHA256`` ``Authorization``, an ``x-acs-action`` header or an ``Action`` parameter is Alibaba.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import _alibaba, _tencent
from ._common import (
    DELIVERY_FAILURES,
    Answer,
    EmulatorConversion,
    EmulatorMessage,
    Exchange,
    Incoming,
    State,
    json_body,
    to_e164,
)
from ._control import CONTROL_PREFIX, control_answer
from .dialects import Dialect, DialectSpec, registered_dialects
from .faults import ActiveFault, DropConnection, Fault, FaultKind, take_fault

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = [
    "STOPPING_ENVIRON_KEY",
    "DropConnection",
    "EmulatorCall",
    "EmulatorConversion",
    "EmulatorMessage",
    "Fault",
    "FaultKind",
    "ProviderEmulator",
]

#: A server may put a ``threading.Event`` here; when set, hangs and waits end at once (clean shutdown).
STOPPING_ENVIRON_KEY = "otp_emulator.stopping"
#: Largest request body the emulator reads (the clouds' own limits are far lower).
MAX_BODY = 1 << 20


@dataclass(frozen=True)
class EmulatorCall:
    """One request the emulator received, as recorded, whatever became of it."""

    #: The dialect's provider name (``"tencent"``, ``"twilio"``...), ``"unknown"`` when no dialect recognised it.
    provider: str
    action: str
    version: str
    #: ``X-TC-Region`` (Tencent); None for Alibaba, which sends no region.
    region: str | None
    #: The operation's parameters: Tencent's JSON body, Alibaba's decoded query/form fields as strings
    #: (v1 common parameters such as ``Signature`` left out; they are in ``query_string``).
    params: Mapping[str, Any]
    received_at: float
    #: True when the answer sent was a success (for Tencent SendSms: every number ``Ok``). With an
    #: ``after_processing`` fault the call took effect (see ``messages()``/``conversions()``) but this is
    #: False: it describes what the client got.
    ok: bool
    #: The error code answered (Tencent ``Error.Code`` or a failed number's ``Code``, Alibaba
    #: ``Code``/``ResponseCode``), None on success and for answers without a code (HTML 500, garbage, none).
    error_code: str | None
    #: The request headers, names lower-cased, values as received.
    headers: Mapping[str, str] = field(default_factory=dict)
    #: HTTP status answered; None when the connection was closed without an answer.
    http_status: int | None = 200
    #: ``TC3-HMAC-SHA256``, ``ACS3-HMAC-SHA256`` or ``HMAC-SHA1`` (by the request's form; not a verdict).
    signature_method: str = ""
    #: The injected fault that shaped the answer, ``"rate_limit"`` for the emulator's own cap, else None.
    fault: str | None = None
    request_id: str = ""
    query_string: str = ""
    body: bytes = b""


class ProviderEmulator:
    """Every registered provider dialect behind one WSGI callable, with one emulated account per provider:
    Tencent Cloud SMS (2021-01-11), Alibaba dysmsapi (2017-05-25, 2018-05-01) / cams (2020-06-06), and the
    others of :func:`~flask_otp_conversion.testing.dialects.registered_dialects`. Thread-safe.

    Each provider's credentials are its dialect's defaults (:meth:`credentials`) unless overridden through
    ``credentials={"twilio": {"auth_token": ...}}``; Tencent's and Alibaba's are also the class attributes
    below and their keywords. ``dialects`` adds dialects for this emulator only. ``clock`` (UNIX seconds) is
    what "now" means for timestamp checks, send times and statistics windows.
    """

    # Fake credentials of the emulated accounts (the dialects' defaults), not secrets of anyone's.
    TENCENT_SECRET_ID = _tencent.SPEC.credentials["secret_id"]
    TENCENT_SECRET_KEY = _tencent.SPEC.credentials["secret_key"]
    TENCENT_SDK_APP_ID = _tencent.SPEC.credentials["sdk_app_id"]
    ALIBABA_ACCESS_KEY_ID = _alibaba.SPEC.credentials["access_key_id"]
    ALIBABA_ACCESS_KEY_SECRET = _alibaba.SPEC.credentials["access_key_secret"]
    ALIBABA_CUST_SPACE_ID = _alibaba.SPEC.credentials["cust_space_id"]

    def __init__(
        self,
        *,
        tencent_secret_id: str | None = None,
        tencent_secret_key: str | None = None,
        tencent_sdk_app_id: str | None = None,
        alibaba_access_key_id: str | None = None,
        alibaba_access_key_secret: str | None = None,
        alibaba_cust_space_id: str | None = None,
        credentials: Mapping[str, Mapping[str, str]] | None = None,
        dialects: Iterable[DialectSpec] = (),
        clock: Callable[[], float] = time.time,
        latency: float = 0.0,
        rate_limits: Mapping[str, float] | None = None,
        on_call: Callable[[EmulatorCall], None] | None = None,
    ) -> None:
        cls = type(self)
        legacy = {
            "tencent": {
                "secret_id": tencent_secret_id or cls.TENCENT_SECRET_ID,
                "secret_key": tencent_secret_key or cls.TENCENT_SECRET_KEY,
                "sdk_app_id": tencent_sdk_app_id or cls.TENCENT_SDK_APP_ID,
            },
            "alibaba": {
                "access_key_id": alibaba_access_key_id or cls.ALIBABA_ACCESS_KEY_ID,
                "access_key_secret": alibaba_access_key_secret or cls.ALIBABA_ACCESS_KEY_SECRET,
                "cust_space_id": alibaba_cust_space_id or cls.ALIBABA_CUST_SPACE_ID,
            },
        }
        self._specs = registered_dialects(dialects)
        overrides = dict(credentials or {})
        unknown = sorted(set(overrides) - set(self._specs))
        if unknown:
            raise ValueError(f"credentials for providers the emulator has no dialect of: {', '.join(unknown)}")
        self._credentials: dict[str, dict[str, str]] = {}
        for name, spec in self._specs.items():
            given = dict(overrides.get(name, {}))
            extra = sorted(set(given) - set(spec.credentials))
            if extra:
                raise ValueError(f"{name} credentials have no field(s) {', '.join(extra)}")
            self._credentials[name] = {**spec.credentials, **legacy.get(name, {}), **given}
        self.TENCENT_SECRET_ID = self._credentials["tencent"]["secret_id"]
        self.TENCENT_SECRET_KEY = self._credentials["tencent"]["secret_key"]
        self.TENCENT_SDK_APP_ID = self._credentials["tencent"]["sdk_app_id"]
        self.ALIBABA_ACCESS_KEY_ID = self._credentials["alibaba"]["access_key_id"]
        self.ALIBABA_ACCESS_KEY_SECRET = self._credentials["alibaba"]["access_key_secret"]
        self.ALIBABA_CUST_SPACE_ID = self._credentials["alibaba"]["cust_space_id"]
        self._clock = clock
        #: Called with every call recorded, outside the emulator's lock (the standalone server logs them).
        self.on_call = on_call
        self._state = State(
            clock=clock,
            credentials={
                f"{name}_{key}": value for name, fields in self._credentials.items() for key, value in fields.items()
            },
        )
        self._dialects: dict[str, Dialect] = {
            name: spec.build(self._state, dict(self._credentials[name])) for name, spec in self._specs.items()
        }
        self._calls: list[EmulatorCall] = []
        self._faults: list[ActiveFault] = []
        self._latency = float(latency)
        # Waits (hang, slow, latency) sleep on this condition; release_hangs() bumps the generation.
        self._wake = threading.Condition(threading.Lock())
        self._generation = 0
        for action, rate in (rate_limits or {}).items():
            self.set_rate_limit(action, rate)

    def __repr__(self) -> str:
        return f"<ProviderEmulator calls={len(self._calls)} faults={len(self._faults)}>"

    # ---- configuration ------------------------------------------------------------------------------------

    @property
    def providers(self) -> list[str]:
        """The providers this emulator serves, in routing order."""
        return list(self._specs)

    def credentials(self, provider: str) -> Mapping[str, str]:
        """The emulated account of ``provider``: credential field -> value (fake, not anyone's secret)."""
        if provider not in self._credentials:
            raise ValueError(f"provider must be one of {', '.join(self._specs)}")
        return dict(self._credentials[provider])

    def app_config(self, provider: str, url: str, *, defaults: bool = True) -> dict[str, str]:
        """``OTP_CONVERSION_<PROVIDER>_*`` settings pointing ``provider``'s client at this emulator served at
        ``url`` (credentials, endpoints; with ``defaults`` the templates it accepts too)."""
        return app_config_of(self._specs, provider, url, self.credentials(provider), defaults=defaults)

    @property
    def latency(self) -> float:
        """Seconds added before every answer (on top of any ``Fault.latency``)."""
        return self._latency

    @latency.setter
    def latency(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("latency must be >= 0")
        self._latency = float(seconds)

    def inject(self, action: str, fault: Fault, *, provider: str | None = None) -> None:
        """Apply ``fault`` to calls of ``action`` (``"*"``: every action), optionally of one ``provider``
        only (``SendSms`` exists at both). Faults for the same call are used first come, first served."""
        if provider is not None and provider not in self._dialects:
            raise ValueError(f"provider must be one of {', '.join(self._specs)}, or None")
        with self._state.lock:
            self._faults.append(ActiveFault(fault, action, provider, fault.times))

    def clear_faults(self, action: str | None = None) -> None:
        """Forget the faults of ``action`` (None: all of them)."""
        with self._state.lock:
            self._faults = [f for f in self._faults if action is not None and f.action != action]

    def set_rate_limit(self, action: str, per_second: float | None) -> None:
        """Answer the provider's throttling error when ``action`` gets more than ``per_second`` calls within
        any one second (sliding window; only admitted calls count). None removes the cap."""
        with self._state.lock:
            if per_second is None:
                self._state.rate_limits.pop(action, None)
                self._state.rate_windows.pop(action, None)
                return
            if per_second <= 0:
                raise ValueError("per_second must be > 0")
            self._state.rate_limits[action] = float(per_second)

    def refuse_phone(self, phone: str, code: str | None = None, message: str | None = None) -> None:
        """Sends to ``phone`` (E.164) are refused: Tencent in that number's ``SendStatusSet`` entry (default
        ``LimitExceeded.PhoneNumberThirtySecondLimit``), Alibaba as a business error (default
        ``isv.BUSINESS_LIMIT_CONTROL``)."""
        with self._state.lock:
            self._state.refusals[_e164(phone)] = (code, message)

    def fail_delivery(self, phone: str, reason: str = "shutdown") -> None:
        """Messages sent to ``phone`` from now on get a ``FAIL`` delivery receipt; ``reason`` picks the
        CallbackStatusStatistics counter: shutdown, invalid_number, blacklist, frequency_limit,
        internal_error."""
        if reason not in DELIVERY_FAILURES:
            raise ValueError(f"reason must be one of {sorted(DELIVERY_FAILURES)}")
        with self._state.lock:
            self._state.delivery_failures[_e164(phone)] = reason

    def set_cams_phone_numbers(self, numbers: Iterable[Mapping[str, Any]]) -> None:
        """What ``ChatappSyncPhoneNumber`` answers in ``PhoneNumbers``."""
        with self._state.lock:
            self._state.cams_phone_numbers = [dict(n) for n in numbers]

    def issue_message_id(self, provider: str, phone: str, *, code: str | None = None, action: str | None = None) -> str:
        """Register a sent message without a send call and return its id, for tests that report
        conversions directly. ``action``: the dialect's send actions (None: its usual one); Tencent
        ``SendSms``; Alibaba ``SendMessageWithTemplate`` (default, a 2018-05-01 ``MessageId``) or
        ``SendSms`` (a 2017-05-25 ``BizId``)."""
        e164 = _e164(phone)
        dialect = self._dialects.get(provider)
        if dialect is None:
            raise ValueError(f"provider must be one of {', '.join(self._specs)}")
        with self._state.lock:
            now = self._clock()
            action, message_id = dialect.issue_message_id(action, now)
            status, description, reason = self._state.delivery_of(e164)
            self._state.record_send(
                EmulatorMessage(
                    provider,
                    action,
                    message_id,
                    e164,
                    code,
                    now,
                    accepted=True,
                    report_status=status,
                    report_description=description,
                    failure_reason=reason,
                )
            )
        return message_id

    def reset(self) -> None:
        """Forget calls, faults, codes, messages, conversions, nonces, refusals, rate limits and latency;
        release anything waiting. Credentials stay."""
        with self._state.lock:
            self._calls.clear()
            self._faults.clear()
            self._state.clear()
            self._latency = 0.0
        self.release_hangs()

    def release_hangs(self) -> None:
        """End every hang, slow answer and latency wait in progress now."""
        with self._wake:
            self._generation += 1
            self._wake.notify_all()

    # ---- what happened ------------------------------------------------------------------------------------

    def calls(
        self, action: str | None = None, *, provider: str | None = None, ok: bool | None = None
    ) -> list[EmulatorCall]:
        """Recorded calls in arrival order, optionally filtered."""
        with self._state.lock:
            return [
                c
                for c in self._calls
                if (action is None or c.action == action)
                and (provider is None or c.provider == provider)
                and (ok is None or c.ok is ok)
            ]

    def code_for(self, phone: str) -> str | None:
        """The OTP code the last accepted send to ``phone`` carried (Tencent: first ``TemplateParamSet``
        value; Alibaba: ``TemplateParam`` ``code``), or None. Alibaba forms (no ``+``) are accepted too."""
        with self._state.lock:
            return self._state.codes.get(_e164(phone))

    def messages(self, provider: str | None = None) -> list[EmulatorMessage]:
        """Every number of every send received (refused ones with ``accepted=False``), in order."""
        with self._state.lock:
            return [m for m in self._state.message_log if provider is None or m.provider == provider]

    def conversions(self, provider: str | None = None) -> list[EmulatorConversion]:
        """The conversion reports accepted, in order (duplicates included: the clouds accept them)."""
        with self._state.lock:
            return [c for c in self._state.conversions if provider is None or c.provider == provider]

    def phone_of(self, call: EmulatorCall) -> str | None:
        """The E.164 number a call concerns: the first one sent to, or the recipient of the message a
        conversion report names; None when there is none (statistics, unknown ids)."""
        dialect = self._dialects.get(call.provider)
        if dialect is None:
            return None
        with self._state.lock:
            return dialect.phone_of(call.params)

    # ---- WSGI ---------------------------------------------------------------------------------------------

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        received_at = self._clock()
        stopping = environ.get(STOPPING_ENVIRON_KEY)
        inc = _incoming(environ)
        if inc.path.startswith(CONTROL_PREFIX):
            control = control_answer(self, inc)
            start_response(
                f"{control.status} {_REASONS.get(control.status, 'Error')}",
                [*control.headers, ("Content-Length", str(len(control.body)))],
            )
            return [control.body]
        ex = Exchange()
        dialect = self._dialect_for(inc)
        if dialect is not None:
            dialect.route(inc, ex)
        with self._state.lock:
            fault = take_fault(self._faults, ex.action, ex.provider)

        waited = self._latency + (fault.seconds if fault is not None and fault.kind == "latency" else 0.0)
        if waited > 0:
            self._pause(waited, stopping)

        answer: Answer | None = None
        if dialect is None:
            answer = _unrecognised(self.providers)
        elif fault is None or fault.kind in ("latency", "slow") or fault.after_processing:
            with self._state.lock:
                answer = dialect.handle(inc, ex, self._clock())
        if dialect is not None and fault is not None and fault.kind not in ("latency", "slow"):
            if fault.kind in ("hang", "drop_connection"):
                # Record before going quiet: a test may be waiting to see the call arrive.
                self._record(inc, ex, received_at, None, fault=fault.kind)
                if fault.kind == "hang":
                    self._pause(fault.seconds, stopping)
                _shutdown_socket(environ)
                raise DropConnection(fault.kind)
            answer = self._fault_answer(dialect, ex, fault)
        assert answer is not None

        fault_name = fault.kind if fault is not None else ("rate_limit" if ex.rate_limited else None)
        self._record(inc, ex, received_at, answer, fault=fault_name)
        headers = [*answer.headers, ("Content-Length", str(len(answer.body)))]
        start_response(f"{answer.status} {_REASONS.get(answer.status, 'Error')}", headers)
        if fault is not None and fault.kind == "slow":
            return self._trickle(answer.body, fault.seconds, stopping)
        return [answer.body]

    def _dialect_for(self, inc: Incoming) -> Dialect | None:
        for name, spec in self._specs.items():
            if spec.recognises(inc):
                return self._dialects[name]
        return None

    def _fault_answer(self, dialect: Dialect, ex: Exchange, fault: Fault) -> Answer:
        if fault.kind == "http_500":
            return dialect.server_error(ex)
        if fault.kind == "throttle":
            return dialect.throttle(ex, fault.retry_after)
        if fault.kind == "malformed_json":
            return dialect.malformed(ex)
        return dialect.error(ex, fault.code, fault.message, fault.status)

    def _record(
        self, inc: Incoming, ex: Exchange, received_at: float, answer: Answer | None, *, fault: str | None
    ) -> None:
        call = EmulatorCall(
            provider=ex.provider,
            action=ex.action,
            version=ex.version,
            region=ex.region,
            params=dict(ex.params),
            received_at=received_at,
            ok=answer.ok if answer is not None else False,
            error_code=answer.error_code if answer is not None else None,
            headers=dict(inc.headers),
            http_status=answer.status if answer is not None else None,
            signature_method=ex.signature_method,
            fault=fault,
            request_id=ex.request_id,
            query_string=inc.query_string,
            body=inc.body,
        )
        with self._state.lock:
            self._calls.append(call)
        if self.on_call is not None:
            self.on_call(call)

    def _pause(self, seconds: float, stopping: threading.Event | None) -> None:
        """Sleep up to ``seconds``; cut short by :meth:`release_hangs` or a stopping server."""
        deadline = time.monotonic() + seconds
        with self._wake:
            generation = self._generation
            while self._generation == generation and not (stopping is not None and stopping.is_set()):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return
                # Poll a stopping server's event; otherwise sleep until woken or done.
                self._wake.wait(min(remaining, 0.05) if stopping is not None else remaining)

    def _trickle(self, body: bytes, seconds: float, stopping: threading.Event | None) -> Iterator[bytes]:
        pieces = max(1, min(len(body), 10))
        size = -(-len(body) // pieces)
        for start in range(0, len(body), size):
            if start:
                self._pause(seconds / pieces, stopping)
            yield body[start : start + size]


def _e164(phone: str) -> str:
    return to_e164(phone) or phone


def _incoming(environ: WSGIEnvironment) -> Incoming:
    headers: dict[str, str] = {}
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            headers[key[5:].replace("_", "-").lower()] = value
    for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
        if environ.get(key):
            headers[key.replace("_", "-").lower()] = environ[key]
    stream = environ.get("wsgi.input")
    body = b""
    if stream is not None:
        length = environ.get("CONTENT_LENGTH")
        if length:
            body = stream.read(min(int(length), MAX_BODY))
        elif environ.get("wsgi.input_terminated"):
            body = stream.read(MAX_BODY)
    return Incoming(
        method=environ.get("REQUEST_METHOD", "GET").upper(),
        path=environ.get("PATH_INFO", "/") or "/",
        headers=headers,
        query_string=environ.get("QUERY_STRING", ""),
        body=body,
    )


def app_config_of(
    specs: Mapping[str, DialectSpec], provider: str, url: str, credentials: Mapping[str, str], *, defaults: bool
) -> dict[str, str]:
    spec = specs[provider]
    prefix = f"OTP_CONVERSION_{provider.upper()}_"
    values = {**(spec.app_defaults(credentials) if defaults else {}), **spec.app_config(url, credentials)}
    return {prefix + key: value for key, value in values.items()}


def _unrecognised(providers: list[str]) -> Answer:
    body = json_body(
        {
            "Code": "MissingParameter",
            "Message": "No dialect of the emulator recognises this request (an X-TC-Action header is Tencent; "
            "an x-acs-action header, ACS3 Authorization or an Action parameter is Alibaba); it serves "
            + ", ".join(providers)
            + ".",
        }
    )
    return Answer(400, [("Content-Type", "application/json")], body, False, "MissingParameter")


def _shutdown_socket(environ: WSGIEnvironment) -> None:
    for key in ("werkzeug.socket", "gunicorn.socket"):
        sock = environ.get(key)
        if isinstance(sock, socket.socket):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            return


_REASONS = {
    200: "OK",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}
