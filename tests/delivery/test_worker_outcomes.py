"""Report deadlines and the negative outcome (#20), end to end: real SQLite outbox, real clients, the emulator."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from delivery_helpers import Env, pending, wait_for

from flask_otp_conversion.config import Settings
from flask_otp_conversion.providers import Provider
from flask_otp_conversion.providers.tencent import TencentProvider


class ShortLivedTencent(TencentProvider):
    """Tencent as a provider that takes no report 30 s after the send would be (a third party may declare it)."""

    report_deadline = 30.0


def short_lived(settings: Settings) -> Callable[[], Provider]:
    return lambda: ShortLivedTencent.from_settings(settings.provider_settings)


@pytest.mark.timeout(60)
def test_a_report_past_the_providers_deadline_is_dead_lettered_never_sent(env: Env) -> None:
    reporter, store = env.reporter(factory=short_lived)
    late = env.seed(store, 2, age=40)
    on_time = env.seed(store, 2, age=1)
    assert reporter.flush(10) == 0
    assert sorted(env.delivered()) == sorted(on_time)
    dead = {letter.message_id: letter.reason for letter in store.dead_letters()}
    assert sorted(dead) == sorted(late)
    assert all("30 s after the send" in reason for reason in dead.values())


@pytest.mark.timeout(60)
def test_without_a_deadline_an_old_report_is_still_sent(env: Env) -> None:
    reporter, store = env.reporter()
    ids = env.seed(store, 2, age=40)
    assert reporter.flush(10) == 0
    assert sorted(env.delivered()) == sorted(ids)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("variant", ["alibaba-intl", "alibaba-china"])
def test_an_otp_never_verified_is_reported_as_not_converted_once(env: Env, variant: str) -> None:
    reporter, store = env.reporter(variant, report_unverified=True, match_window=1)
    ids = env.send_only(store, 3, age=2)
    assert reporter.flush(10) == 0
    calls = [call for call in env.calls() if call.ok]
    assert sorted(call.params["MessageId"] for call in calls) == sorted(ids)
    assert all(call.params["Delivered"] == "false" for call in calls)
    assert reporter.flush(2) == 0
    assert len([call for call in env.calls() if call.ok]) == 3  # once


@pytest.mark.timeout(60)
def test_an_otp_still_inside_its_match_window_is_not_reported_yet(env: Env) -> None:
    reporter, store = env.reporter("alibaba-intl", report_unverified=True, match_window=60)
    env.send_only(store, 2)
    reporter.flush(2)
    assert env.calls() == [] and pending(store) == 0


@pytest.mark.timeout(60)
def test_negative_reports_are_off_unless_the_app_opts_in(env: Env) -> None:
    reporter, store = env.reporter("alibaba-intl", match_window=1)
    env.send_only(store, 2, age=2)
    reporter.flush(2)
    assert env.calls() == [] and pending(store) == 0


@pytest.mark.timeout(60)
def test_a_provider_without_a_negative_form_gets_no_negative_reports(env: Env) -> None:
    reporter, store = env.reporter("tencent", report_unverified=True, match_window=1)
    env.send_only(store, 2, age=2)
    reporter.flush(2)
    assert env.calls() == [] and pending(store) == 0


@pytest.mark.timeout(60)
def test_the_loop_settles_otps_whose_window_ends_while_it_runs(env: Env) -> None:
    reporter, store = env.reporter("alibaba-intl", report_unverified=True, match_window=1)
    reporter.ensure_running()
    (message_id,) = env.send_only(store, 1)
    assert wait_for(lambda: any(call.ok for call in env.calls()), timeout=20)
    (call,) = env.calls()
    assert (call.params["MessageId"], call.params["Delivered"]) == (message_id, "false")
