"""``flask otp-conversion alarms``."""

from __future__ import annotations

import json
import time

from tests.alarm.ranges import PREFIX, PREFIX_CONFIG, pump_a_range
from tests.conftest import AppFactory

PUMPED = "+2348031234567"


def test_an_open_alarm_is_listed_and_exits_2(make_app: AppFactory) -> None:
    app, conversion = make_app()
    with app.app_context():
        for i in range(40):
            conversion.record_sent(PUMPED, f"p-{i}", sent_at=time.time() - 300)
    result = app.test_cli_runner().invoke(args=["otp-conversion", "alarms"])
    assert result.exit_code == 2
    assert "ALARM +234" in result.output


def test_no_alarm_exits_0(make_app: AppFactory) -> None:
    app, conversion = make_app()
    with app.app_context():
        conversion.record_sent("+8613711112222", "ok-1", sent_at=time.time() - 300)
    result = app.test_cli_runner().invoke(args=["otp-conversion", "alarms"])
    assert (result.exit_code, "no alarm" in result.output) == (0, True)


def test_json_gives_every_code_of_the_window(make_app: AppFactory) -> None:
    app, conversion = make_app()
    with app.app_context():
        conversion.record_sent("+8613711112222", "ok-1", sent_at=time.time() - 300)
    result = app.test_cli_runner().invoke(args=["otp-conversion", "alarms", "--json"])
    codes = json.loads(result.output)["codes"]
    assert [(c["calling_code"], c["sends"]) for c in codes] == [("86", 1)]


def test_the_stats_command_names_an_open_alarm(make_app: AppFactory) -> None:
    app, conversion = make_app(OTP_CONVERSION_TENCENT_ENDPOINT="http://127.0.0.1:9")
    with app.app_context():
        for i in range(40):
            conversion.record_sent(PUMPED, f"p-{i}", sent_at=time.time() - 300)
    output = app.test_cli_runner().invoke(args=["otp-conversion", "stats"]).output
    assert any(line.startswith("ALARM") and "+234" in line for line in output.splitlines())


def test_an_open_prefix_alarm_is_listed_with_its_code_and_exits_2(make_app: AppFactory) -> None:
    app, conversion = make_app(**PREFIX_CONFIG)
    pump_a_range(app, conversion)
    result = app.test_cli_runner().invoke(args=["otp-conversion", "alarms"])
    assert result.exit_code == 2
    assert f"ALARM {PREFIX}... (in +44)" in result.output
    assert any(line.startswith(PREFIX) and line.endswith("ALARM") for line in result.output.splitlines())


def test_the_stats_command_names_an_open_prefix_alarm(make_app: AppFactory) -> None:
    app, conversion = make_app(OTP_CONVERSION_TENCENT_ENDPOINT="http://127.0.0.1:9", **PREFIX_CONFIG)
    pump_a_range(app, conversion)
    output = app.test_cli_runner().invoke(args=["otp-conversion", "stats"]).output
    assert any(line.startswith("ALARM") and f"{PREFIX}..." in line for line in output.splitlines())
