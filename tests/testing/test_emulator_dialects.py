"""Dialects plug into the emulator by provider name: a third party's is served, faulted and recorded like ours."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping

import httpx
import pytest

from flask_otp_conversion.testing import EmulatorServer, Fault, ProviderEmulator
from flask_otp_conversion.testing.dialects import (
    Answer,
    ApiError,
    DialectSpec,
    EmulatorConversion,
    EmulatorMessage,
    Exchange,
    Incoming,
    State,
    dialect_spec,
    json_body,
    register_dialect,
    registered_dialects,
    unregister_dialect,
)
from flask_otp_conversion.testing.remote import RemoteEmulator

PHONE = "+15550100123"


class EchoDialect:
    """A made-up provider: ``POST /echo/<Action>`` with a JSON body and ``X-Echo-Key``."""

    name = "echo"

    def __init__(self, state: State, credentials: Mapping[str, str]) -> None:
        self.state = state
        self.key = credentials["key"]

    def route(self, inc: Incoming, ex: Exchange) -> None:
        ex.provider = self.name
        ex.action = inc.path.rsplit("/", 1)[-1]
        ex.params = json.loads(inc.body or b"{}")

    def handle(self, inc: Incoming, ex: Exchange, now: float) -> Answer:
        try:
            if inc.headers.get("x-echo-key") != self.key:
                raise ApiError("bad_key", "wrong key", 401)
            if ex.action == "Send":
                _, message_id = self.issue_message_id(None, now)
                self.state.record_send(
                    EmulatorMessage(self.name, "Send", message_id, ex.params["to"], None, now, accepted=True)
                )
                return Answer(200, [], json_body({"id": message_id}), True, None)
            if ex.action == "Report":
                sent = self.state.find_message(ex.params["id"], self.name, frozenset({"Send"}))
                if sent is None:
                    raise ApiError("unknown_id", "no such message")
                self.state.conversions.append(
                    EmulatorConversion(self.name, "Report", sent.message_id, sent.phone, None, True, now)
                )
                return Answer(200, [], b"{}", True, None)
            raise ApiError("no_action", ex.action, 404)
        except ApiError as err:
            return self.error(ex, err.code, err.message, err.status)

    def error(self, ex: Exchange, code: str, message: str, status: int | None = None) -> Answer:
        return Answer(status or 400, [], json_body({"error": code}), False, code)

    def throttle(self, ex: Exchange, retry_after: float | None, count: int = 0, limit: float = 0) -> Answer:
        headers = [] if retry_after is None else [("Retry-After", str(int(retry_after)))]
        return Answer(429, headers, json_body({"error": "slow_down"}), False, "slow_down")

    def server_error(self, ex: Exchange) -> Answer:
        return Answer(503, [], b"down", False, None)

    def malformed(self, ex: Exchange) -> Answer:
        return Answer(200, [], b'{"id', False, None)

    def issue_message_id(self, action: str | None, now: float) -> tuple[str, str]:
        return "Send", f"echo-{len(self.state.message_log) + 1}"

    def phone_of(self, params: Mapping[str, object]) -> str | None:
        to = params.get("to")
        return to if isinstance(to, str) else None


ECHO = DialectSpec(
    name="echo",
    recognises=lambda inc: inc.path.startswith("/echo/"),
    build=EchoDialect,
    credentials={"key": "emulated-echo-key"},
    app_config=lambda url, c: {"ENDPOINT": url, "KEY": c["key"]},
    app_defaults=lambda c: {"SENDER": "Example"},
    credential_keys=("KEY",),
)


@pytest.fixture
def echo_server() -> Iterator[EmulatorServer]:
    with EmulatorServer(ProviderEmulator(dialects=[ECHO])) as server:
        yield server


def send(server: EmulatorServer, key: str = "emulated-echo-key") -> httpx.Response:
    return httpx.post(f"{server.url}/echo/Send", json={"to": PHONE}, headers={"X-Echo-Key": key})


def test_a_plugged_in_dialect_serves_its_requests_and_records_the_send(echo_server: EmulatorServer) -> None:
    answer = send(echo_server)
    assert answer.status_code == 200
    [message] = echo_server.emulator.messages("echo")
    assert message.message_id == answer.json()["id"]


def test_a_plugged_in_dialect_records_its_conversions(echo_server: EmulatorServer) -> None:
    message_id = echo_server.emulator.issue_message_id("echo", PHONE)
    answer = httpx.post(
        f"{echo_server.url}/echo/Report", json={"id": message_id}, headers={"X-Echo-Key": "emulated-echo-key"}
    )
    assert answer.status_code == 200
    assert [c.message_id for c in echo_server.emulator.conversions("echo")] == [message_id]


def test_a_plugged_in_dialect_checks_its_own_credentials(echo_server: EmulatorServer) -> None:
    assert send(echo_server, key="wrong").status_code == 401
    [call] = echo_server.emulator.calls(provider="echo")
    assert (call.ok, call.error_code) == (False, "bad_key")


def test_faults_injected_for_a_plugged_in_provider_take_its_throttling_shape(echo_server: EmulatorServer) -> None:
    echo_server.emulator.inject("Send", Fault.throttle(retry_after=3), provider="echo")
    answer = send(echo_server)
    assert (answer.status_code, answer.headers["retry-after"]) == (429, "3")


def test_faults_for_another_provider_leave_a_plugged_in_one_alone(echo_server: EmulatorServer) -> None:
    echo_server.emulator.inject("Send", Fault.http_500(), provider="tencent")
    assert send(echo_server).status_code == 200


def test_a_plugged_in_dialect_routes_after_the_built_in_ones() -> None:
    emulator = ProviderEmulator(dialects=[ECHO])
    assert (emulator.providers[:2], emulator.providers[-1]) == (["tencent", "alibaba"], "echo")


def test_credentials_of_a_plugged_in_provider_can_be_overridden() -> None:
    emulator = ProviderEmulator(dialects=[ECHO], credentials={"echo": {"key": "other"}})
    assert emulator.credentials("echo") == {"key": "other"}


def test_credentials_for_a_field_the_dialect_lacks_are_refused() -> None:
    with pytest.raises(ValueError, match="no field"):
        ProviderEmulator(dialects=[ECHO], credentials={"echo": {"token": "x"}})


def test_credentials_for_an_unknown_provider_are_refused() -> None:
    with pytest.raises(ValueError, match="nowhere"):
        ProviderEmulator(credentials={"nowhere": {"key": "x"}})


def test_tencent_keyword_credentials_still_override_the_dialect_default() -> None:
    emulator = ProviderEmulator(tencent_secret_id="AKIDother")
    assert emulator.credentials("tencent")["secret_id"] == emulator.TENCENT_SECRET_ID == "AKIDother"


def test_app_config_points_a_provider_at_the_emulator_with_its_defaults() -> None:
    emulator = ProviderEmulator(dialects=[ECHO])
    assert emulator.app_config("echo", "http://127.0.0.1:9") == {
        "OTP_CONVERSION_ECHO_ENDPOINT": "http://127.0.0.1:9",
        "OTP_CONVERSION_ECHO_KEY": "emulated-echo-key",
        "OTP_CONVERSION_ECHO_SENDER": "Example",
    }


def test_inject_for_a_provider_without_dialect_is_refused() -> None:
    with pytest.raises(ValueError, match="provider must be one of"):
        ProviderEmulator().inject("Send", Fault.http_500(), provider="echo")


def test_register_dialect_makes_later_emulators_serve_it() -> None:
    register_dialect(ECHO)
    try:
        assert "echo" in ProviderEmulator().providers
        assert dialect_spec("echo") is ECHO
        assert RemoteEmulator("http://127.0.0.1:9").credentials("echo") == {"key": "emulated-echo-key"}
    finally:
        unregister_dialect("echo")
    assert "echo" not in registered_dialects()


def test_a_built_in_dialect_cannot_be_replaced() -> None:
    impostor = DialectSpec(name="tencent", recognises=lambda inc: False, build=EchoDialect)
    with pytest.raises(ValueError, match="built-in"):
        register_dialect(impostor)


def test_a_dialect_name_is_a_lower_case_identifier() -> None:
    with pytest.raises(ValueError, match="lower-case"):
        DialectSpec(name="Echo-SMS", recognises=lambda inc: False, build=EchoDialect)
