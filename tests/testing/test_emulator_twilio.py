"""Twilio wire checks and answers over raw HTTP: Basic auth, the path's account, Messages.json and Feedback.json."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator, Mapping

import httpx
import pytest

from flask_otp_conversion.testing import EmulatorServer, Fault, ProviderEmulator

PHONE = "+15558675310"


class Twilio:
    """Raw requests to the emulator, built by hand so each check controls exactly what is sent."""

    def __init__(self, server: EmulatorServer, client: httpx.Client) -> None:
        self.emu = server.emulator
        self.url = server.url
        self.client = client
        self.account = dict(server.emulator.credentials("twilio"))

    def auth(self, user: str | None = None, password: str | None = None) -> str:
        pair = f"{user or self.account['account_sid']}:{password or self.account['auth_token']}"
        return "Basic " + base64.b64encode(pair.encode()).decode()

    def post(
        self, path: str, form: Mapping[str, str], *, authorization: str | None = None, account: str | None = None
    ) -> httpx.Response:
        return self.client.post(
            f"{self.url}/2010-04-01/Accounts/{account or self.account['account_sid']}/{path}",
            data=dict(form),
            headers={"Authorization": authorization or self.auth()},
        )

    def send(self, **form: str) -> httpx.Response:
        fields = {"To": PHONE, "From": self.account["sender"], "Body": "Your code is 482913", "ProvideFeedback": "true"}
        return self.post("Messages.json", {**fields, **form})

    def feedback(self, sid: str, outcome: str | None = "confirmed", **kwargs: str) -> httpx.Response:
        return self.post(f"Messages/{sid}/Feedback.json", {} if outcome is None else {"Outcome": outcome}, **kwargs)


@pytest.fixture
def twilio(provider_emulator_server: EmulatorServer) -> Iterator[Twilio]:
    with httpx.Client(timeout=10.0) as client:
        yield Twilio(provider_emulator_server, client)


def test_send_answers_201_with_an_sm_sid(twilio: Twilio) -> None:
    response = twilio.send()
    assert response.status_code == 201
    assert re.fullmatch(r"SM[0-9a-f]{32}", response.json()["sid"])


def test_send_answers_the_message_resource(twilio: Twilio) -> None:
    body = twilio.send().json()
    assert (body["to"], body["status"], body["account_sid"]) == (PHONE, "queued", twilio.account["account_sid"])
    assert body["subresource_uris"]["feedback"].endswith(f"/Messages/{body['sid']}/Feedback.json")


def test_send_remembers_the_code_in_the_body(twilio: Twilio) -> None:
    twilio.send()
    assert twilio.emu.code_for(PHONE) == "482913"


def test_send_is_recorded_as_a_twilio_create_message(twilio: Twilio) -> None:
    twilio.send()
    [call] = twilio.emu.calls(provider="twilio")
    assert (call.action, call.version, call.ok, call.signature_method) == ("CreateMessage", "2010-04-01", True, "Basic")


def test_wrong_auth_token_is_401_20003_with_www_authenticate(twilio: Twilio) -> None:
    response = twilio.post("Messages.json", {"To": PHONE}, authorization=twilio.auth(password="0" * 32))
    assert (response.status_code, response.json()["code"]) == (401, 20003)
    assert response.headers["www-authenticate"] == 'Basic realm="Twilio API"'


def test_missing_authorization_is_401(twilio: Twilio) -> None:
    response = twilio.post("Messages.json", {"To": PHONE}, authorization="Bearer x")
    assert response.status_code == 401


def test_api_key_sid_and_secret_authenticate(twilio: Twilio) -> None:
    key = twilio.auth(twilio.account["api_key_sid"], twilio.account["api_key_secret"])
    response = twilio.post("Messages.json", {"To": PHONE, "From": "+15005550006", "Body": "1234"}, authorization=key)
    assert response.status_code == 201


def test_api_key_on_another_accounts_path_is_404_20404(twilio: Twilio) -> None:
    key = twilio.auth(twilio.account["api_key_sid"], twilio.account["api_key_secret"])
    response = twilio.post("Messages.json", {"To": PHONE}, authorization=key, account="AC" + "1" * 32)
    assert (response.status_code, response.json()["code"]) == (404, 20404)


@pytest.mark.parametrize(
    ("form", "code"),
    [
        ({"To": ""}, 21604),
        ({"To": "5558675310"}, 21211),
        ({"From": ""}, 21603),
        ({"From": "not a sender id"}, 21212),
        ({"Body": ""}, 21602),
        ({"Body": "1" * 1601}, 21617),
        ({"ProvideFeedback": "True"}, 21000),
    ],
)
def test_bad_send_parameters_are_400_with_twilios_code(twilio: Twilio, form: dict[str, str], code: int) -> None:
    response = twilio.send(**form)
    assert (response.status_code, response.json()["code"]) == (400, code)


def test_error_body_has_twilios_shape(twilio: Twilio) -> None:
    body = twilio.send(To="").json()
    assert set(body) == {"code", "message", "more_info", "status"}
    assert body["more_info"] == "https://www.twilio.com/docs/errors/21604"


def test_refused_phone_is_21610_and_recorded_as_refused(twilio: Twilio) -> None:
    twilio.emu.refuse_phone(PHONE)
    response = twilio.send()
    assert (response.status_code, response.json()["code"]) == (400, 21610)
    assert [m.accepted for m in twilio.emu.messages("twilio")] == [False]


def test_feedback_answers_201_and_records_the_conversion(twilio: Twilio) -> None:
    sid = twilio.send().json()["sid"]
    response = twilio.feedback(sid)
    assert (response.status_code, response.json()["outcome"], response.json()["message_sid"]) == (201, "confirmed", sid)
    [conversion] = twilio.emu.conversions("twilio")
    assert (conversion.message_id, conversion.phone, conversion.delivered) == (sid, PHONE, True)


def test_unconfirmed_feedback_is_recorded_as_not_delivered(twilio: Twilio) -> None:
    sid = twilio.send().json()["sid"]
    assert twilio.feedback(sid, "unconfirmed").status_code == 201
    assert [c.delivered for c in twilio.emu.conversions("twilio")] == [False]


def test_feedback_posted_again_is_accepted_again(twilio: Twilio) -> None:
    sid = twilio.send().json()["sid"]
    assert [twilio.feedback(sid).status_code for _ in range(2)] == [201, 201]
    assert len(twilio.emu.conversions("twilio")) == 2


@pytest.mark.parametrize("outcome", [None, "CONFIRMED", "delivered"])
def test_feedback_without_a_valid_outcome_is_400(twilio: Twilio, outcome: str | None) -> None:
    sid = twilio.send().json()["sid"]
    response = twilio.feedback(sid, outcome)
    assert (response.status_code, response.json()["code"]) == (400, 21000)


def test_feedback_for_an_unknown_sid_is_404_20404(twilio: Twilio) -> None:
    response = twilio.feedback("SM" + "f" * 32)
    assert (response.status_code, response.json()["code"]) == (404, 20404)


def test_feedback_for_a_message_sent_without_provide_feedback_is_404(twilio: Twilio) -> None:
    sid = twilio.send(ProvideFeedback="false").json()["sid"]
    assert twilio.feedback(sid).status_code == 404


def test_issued_message_id_takes_feedback(twilio: Twilio) -> None:
    sid = twilio.emu.issue_message_id("twilio", PHONE)
    assert twilio.feedback(sid).status_code == 201
    assert twilio.emu.phone_of(twilio.emu.calls("CreateMessageFeedback")[0]) == PHONE


def test_throttle_fault_is_429_20429_with_retry_after(twilio: Twilio) -> None:
    twilio.emu.inject("CreateMessage", Fault.throttle(retry_after=2.4), provider="twilio")
    response = twilio.send()
    assert (response.status_code, response.json()["code"], response.headers["retry-after"]) == (429, 20429, "2")


def test_rate_limit_answers_429_past_the_cap(twilio: Twilio) -> None:
    twilio.emu.set_rate_limit("CreateMessage", 2)
    assert [twilio.send().status_code for _ in range(3)] == [201, 201, 429]
    assert twilio.emu.calls(provider="twilio")[-1].fault == "rate_limit"


def test_http_500_fault_is_twilios_20500(twilio: Twilio) -> None:
    twilio.emu.inject("*", Fault.http_500(), provider="twilio")
    response = twilio.send()
    assert (response.status_code, response.json()["code"]) == (500, 20500)


def test_error_fault_with_a_known_code_takes_its_status(twilio: Twilio) -> None:
    twilio.emu.inject("CreateMessageFeedback", Fault.error("20404"), provider="twilio")
    assert twilio.feedback(twilio.emu.issue_message_id("twilio", PHONE)).status_code == 404


def test_malformed_fault_is_a_truncated_201(twilio: Twilio) -> None:
    twilio.emu.inject("CreateMessage", Fault.malformed_json(), provider="twilio")
    response = twilio.send()
    assert response.status_code == 201
    with pytest.raises(ValueError):
        response.json()


def test_send_fault_after_processing_still_sends(twilio: Twilio) -> None:
    twilio.emu.inject("CreateMessage", Fault.http_500(after_processing=True), provider="twilio")
    assert twilio.send().status_code == 500
    assert len(twilio.emu.messages("twilio")) == 1


def test_other_credentials_can_be_given_to_the_emulator() -> None:
    emu = ProviderEmulator(credentials={"twilio": {"auth_token": "another-token-000000000000000000"}})
    assert emu.credentials("twilio")["auth_token"] == "another-token-000000000000000000"
