"""The emulator's /_emulator/ routes, read through RemoteEmulator as a process other than the server's would."""

from __future__ import annotations

import httpx
from emulator_wire import CN_PHONE, Wire

from flask_otp_conversion.testing import EmulatorServer
from flask_otp_conversion.testing.remote import RemoteEmulator


def send_code(wire: Wire, code: str = "123456") -> None:
    wire.tencent_response(
        "SendSms",
        {
            "PhoneNumberSet": [CN_PHONE],
            "SmsSdkAppId": wire.emu.TENCENT_SDK_APP_ID,
            "TemplateId": "1110",
            "SignName": "Example",
            "TemplateParamSet": [code],
        },
    )


def test_remote_calls_are_the_emulators_own(wire: Wire, remote: RemoteEmulator) -> None:
    send_code(wire)
    assert remote.calls() == wire.emu.calls()


def test_remote_messages_and_conversions_are_the_emulators_own(wire: Wire, remote: RemoteEmulator) -> None:
    send_code(wire)
    serial = wire.emu.messages()[0].message_id
    wire.tencent_response("ReportConversion", {"SmsSdkAppId": wire.emu.TENCENT_SDK_APP_ID, "SerialNo": serial})
    assert remote.messages() == wire.emu.messages()
    assert remote.conversions() == wire.emu.conversions()


def test_remote_code_for_is_the_code_sent(wire: Wire, remote: RemoteEmulator) -> None:
    send_code(wire, "482913")
    assert remote.code_for(CN_PHONE) == "482913"


def test_remote_code_for_a_phone_never_sent_to_is_none(remote: RemoteEmulator) -> None:
    assert remote.code_for(CN_PHONE) is None


def test_remote_refuse_phone_refuses_the_next_send(wire: Wire, remote: RemoteEmulator) -> None:
    remote.refuse_phone(CN_PHONE, "InvalidParameterValue.IncorrectPhoneNumber")
    send_code(wire)
    assert wire.emu.messages()[0].error_code == "InvalidParameterValue.IncorrectPhoneNumber"


def test_remote_reset_forgets_the_calls(wire: Wire, remote: RemoteEmulator) -> None:
    send_code(wire)
    remote.reset()
    assert wire.emu.calls() == []


def test_control_requests_are_not_recorded_as_calls(remote: RemoteEmulator) -> None:
    assert remote.answers()
    remote.calls()
    assert remote.calls() == []


def test_an_unknown_control_route_is_a_404_naming_the_known_ones(provider_emulator_server: EmulatorServer) -> None:
    response = httpx.get(f"{provider_emulator_server.url}/_emulator/nothing")
    assert response.status_code == 404
    assert "GET /_emulator/calls" in response.json()["error"]


def test_a_port_with_no_emulator_does_not_answer() -> None:
    assert not RemoteEmulator("http://127.0.0.1:9").answers()
