"""What both emulated clouds share: the received request, the answer, the account state, phone helpers.

Private to :mod:`flask_otp_conversion.testing`; the public names are re-exported from there.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from ..phone import calling_code, national_number

__all__ = [
    "DEFAULT_CAMS_PHONE_NUMBERS",
    "Answer",
    "ApiError",
    "EmulatorConversion",
    "EmulatorMessage",
    "Exchange",
    "Incoming",
    "State",
    "country_of",
    "json_body",
    "to_e164",
]


class ApiError(Exception):
    """Raised inside a dialect to answer an error. ``status`` None means the dialect's default status
    (Tencent: always 200; Alibaba: 200 business error for ``isv.*``/``isp.*`` codes, else a gateway 4xx)."""

    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


@dataclass(frozen=True)
class Incoming:
    """The request as received: nothing normalised, so signatures are recomputed from the real bytes."""

    method: str
    path: str
    #: Lower-cased header names, values exactly as received.
    headers: Mapping[str, str]
    #: The raw (still percent-encoded) query string.
    query_string: str
    body: bytes

    def query_pairs(self) -> list[tuple[str, str]]:
        """Query parameters decoded as a server does (``+`` and ``%20`` both become a space)."""
        raw = self.query_string.encode("latin-1", "replace").decode("utf-8", "replace")
        return parse_qsl(raw, keep_blank_values=True, encoding="utf-8", errors="replace")

    def form_pairs(self) -> list[tuple[str, str]]:
        """Parameters of a form-encoded body (Alibaba accepts them there too), else none."""
        content_type = self.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if content_type != "application/x-www-form-urlencoded" or not self.body:
            return []
        return parse_qsl(self.body.decode("utf-8", "replace"), keep_blank_values=True)


@dataclass
class Exchange:
    """What the emulator learns about one call as it goes; becomes the recorded ``EmulatorCall``."""

    provider: str = "unknown"
    action: str = ""
    version: str = ""
    region: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    signature_method: str = ""
    #: Alibaba v1 answers XML unless ``Format=JSON`` was sent.
    xml: bool = False
    request_id: str = ""
    #: Answered with the throttling error because of a configured ``rate_limit``.
    rate_limited: bool = False


@dataclass
class Answer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes
    ok: bool
    error_code: str | None


@dataclass(frozen=True)
class EmulatorMessage:
    """One number of one send the emulator received, accepted or refused."""

    provider: str
    action: str
    #: Tencent ``SerialNo``, Alibaba ``BizId`` (2017-05-25) or ``MessageId`` (2018-05-01); "" if refused.
    message_id: str
    phone: str
    code: str | None
    sent_at: float
    accepted: bool
    error_code: str | None = None
    fee: int = 1
    session_context: str = ""
    #: Delivery receipt: ``SUCCESS`` or ``FAIL`` and its description (``DELIVRD`` ...).
    report_status: str = "SUCCESS"
    report_description: str = "DELIVRD"
    #: Which failure counter of CallbackStatusStatistics a failed delivery falls under.
    failure_reason: str | None = None


@dataclass(frozen=True)
class EmulatorConversion:
    """One conversion report the emulator accepted."""

    provider: str
    action: str
    message_id: str
    phone: str
    #: UNIX seconds (Alibaba's milliseconds divided by 1000); None when the request carried none.
    conversion_time: float | None
    delivered: bool
    received_at: float


#: ChatappSyncPhoneNumber's default answer: one connected number (shape of the official example).
DEFAULT_CAMS_PHONE_NUMBERS: tuple[Mapping[str, Any], ...] = (
    {
        "PhoneNumber": "8613800001234",
        "VerifiedName": "Emulated Business",
        "Status": "CONNECTED",
        "QualityRating": "GREEN",
        "CodeVerificationStatus": "VERIFIED",
        "NameStatus": "APPROVED",
        "NewNameStatus": "NONE",
        "MessagingLimitTier": "TIER_10K",
        "IsOfficial": "false",
        "UpQueue": "alicom-0939****-queue",
        "StatusQueue": "alicom-0939****-queue",
        "UpCallbackUrl": "https://example.com/inbound",
        "StatusCallbackUrl": "https://example.com/status",
    },
)

#: Failure reasons of :meth:`ProviderEmulator.fail_delivery` -> (receipt description, statistics counter).
DELIVERY_FAILURES: Mapping[str, tuple[str, str]] = {
    "shutdown": ("MK:0001 power off or out of service", "ShutdownErrorCount"),
    "invalid_number": ("MK:0012 invalid number", "InvalidNumberCount"),
    "blacklist": ("MK:0026 number in carrier blacklist", "BlackListCount"),
    "frequency_limit": ("MK:0100 carrier frequency limit", "FrequencyLimitCount"),
    "internal_error": ("MK:0005 carrier internal error", "InternalErrorCount"),
}


class State:
    """Everything one emulated account remembers. Callers hold ``lock`` while they touch it."""

    def __init__(self, *, clock: Callable[[], float], credentials: Mapping[str, str]) -> None:
        self.lock = threading.RLock()
        self.clock = clock
        self.credentials = dict(credentials)
        self._counter = 0
        self.clear()

    def clear(self) -> None:
        self.messages: dict[str, list[EmulatorMessage]] = {}
        self.message_log: list[EmulatorMessage] = []
        self.codes: dict[str, str] = {}
        self.conversions: list[EmulatorConversion] = []
        self.receipts: deque[EmulatorMessage] = deque()
        #: (access key id, nonce) -> when it was first used.
        self.nonces: dict[tuple[str, str], float] = {}
        #: E.164 phone -> (code, message) a send to it is refused with; code None: the provider's usual.
        self.refusals: dict[str, tuple[str | None, str | None]] = {}
        #: E.164 phone -> failure reason of its delivery receipts.
        self.delivery_failures: dict[str, str] = {}
        self.cams_phone_numbers: list[dict[str, Any]] = [dict(n) for n in DEFAULT_CAMS_PHONE_NUMBERS]
        self.rate_limits: dict[str, float] = {}
        self.rate_windows: dict[str, deque[float]] = {}

    # ---- ids ---------------------------------------------------------------------------------------------

    def _next(self) -> int:
        self._counter += 1
        return self._counter

    def tencent_serial_no(self, now: float) -> str:
        """``5000:`` and 28 digits, like ``5000:1045710669157053657849499619``; unique per emulator."""
        return f"5000:{int(now) % 10**10:010d}{self._next():08d}{secrets.randbelow(10**10):010d}"

    def alibaba_biz_id(self, now: float) -> str:
        """18 digits, ``^`` and the segment index, like ``900619746936498440^0``."""
        return f"9{int(now) % 10**9:09d}{self._next():08d}^0"

    def alibaba_message_id(self, now: float) -> str:
        """16 digits, like ``1008030300123456``."""
        return f"10{int(now) % 10**6:06d}{self._next():08d}"

    # ---- sends, receipts, conversions --------------------------------------------------------------------

    def record_send(self, message: EmulatorMessage) -> None:
        self.message_log.append(message)
        if not message.accepted:
            return
        self.messages.setdefault(message.message_id, []).append(message)
        if message.code is not None:
            self.codes[message.phone] = message.code
        if message.provider == "tencent":
            self.receipts.append(message)

    def delivery_of(self, phone: str) -> tuple[str, str, str | None]:
        """(ReportStatus, Description, failure reason) of a message sent now to ``phone``."""
        reason = self.delivery_failures.get(phone)
        if reason is None:
            return "SUCCESS", "DELIVRD", None
        return "FAIL", DELIVERY_FAILURES[reason][0], reason

    def find_message(self, message_id: str, provider: str, actions: frozenset[str]) -> EmulatorMessage | None:
        for message in self.messages.get(message_id, ()):
            if message.provider == provider and message.action in actions:
                return message
        return None

    # ---- replay protection and rate limits --------------------------------------------------------------

    def use_nonce(self, key_id: str, nonce: str, now: float, window: float) -> bool:
        """False when ``nonce`` was already used by ``key_id`` within ``window`` seconds."""
        if len(self.nonces) > 10_000:
            for key in [k for k, at in self.nonces.items() if now - at > window]:
                del self.nonces[key]
        seen = self.nonces.get((key_id, nonce))
        if seen is not None and now - seen <= window:
            return False
        self.nonces[(key_id, nonce)] = now
        return True

    def admit(self, action: str, now: float) -> tuple[bool, int, float]:
        """Sliding one-second window per action: (admitted, requests in the window, the limit)."""
        limit = self.rate_limits.get(action)
        if limit is None:
            return True, 0, 0.0
        window = self.rate_windows.setdefault(action, deque())
        while window and now - window[0] >= 1.0:
            window.popleft()
        if len(window) + 1 > limit:
            return False, len(window) + 1, limit
        window.append(now)
        return True, len(window), limit


# ---- small helpers ---------------------------------------------------------------------------------------

_COUNTRIES: Mapping[str, tuple[str, str]] = {
    "1": ("US", "United States"),
    "7": ("RU", "Russia"),
    "20": ("EG", "Egypt"),
    "33": ("FR", "France"),
    "44": ("GB", "United Kingdom"),
    "49": ("DE", "Germany"),
    "52": ("MX", "Mexico"),
    "55": ("BR", "Brazil"),
    "60": ("MY", "Malaysia"),
    "61": ("AU", "Australia"),
    "62": ("ID", "Indonesia"),
    "63": ("PH", "Philippines"),
    "65": ("SG", "Singapore"),
    "66": ("TH", "Thailand"),
    "81": ("JP", "Japan"),
    "82": ("KR", "South Korea"),
    "84": ("VN", "Vietnam"),
    "86": ("CN", "China"),
    "90": ("TR", "Turkey"),
    "91": ("IN", "India"),
    "92": ("PK", "Pakistan"),
    "234": ("NG", "Nigeria"),
    "852": ("HK", "Hong Kong, China"),
    "853": ("MO", "Macau, China"),
    "880": ("BD", "Bangladesh"),
    "886": ("TW", "Taiwan, China"),
    "966": ("SA", "Saudi Arabia"),
    "971": ("AE", "United Arab Emirates"),
}

_E164 = re.compile(r"\+[1-9]\d{6,14}")


def country_of(phone: str) -> tuple[str, str, str]:
    """(calling code, ISO code, name) of an E.164 number; ISO ``DEF`` when the emulator does not know it."""
    code = calling_code(phone)
    iso, name = _COUNTRIES.get(code, ("DEF", ""))
    return code, iso, name


def to_e164(raw: str) -> str | None:
    """The E.164 form of a number as Alibaba accepts it (``+86...``, ``0086...``, ``86...``, bare mainland
    11 digits, or dialing code + number without ``+``); None when it is not a plausible number."""
    text = raw.strip()
    if text.startswith("00"):
        text = "+" + text[2:]
    if re.fullmatch(r"1\d{10}", text):
        text = "+86" + text
    elif re.fullmatch(r"\d+", text):
        text = "+" + text
    return text if _E164.fullmatch(text) else None


def subscriber_number(phone: str) -> str:
    return national_number(phone)


def json_body(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False).encode("utf-8")


def new_request_id(upper: bool = False) -> str:
    rid = str(uuid.uuid4())
    return rid.upper() if upper else rid
