"""The alert rules and the Grafana dashboard in the docs name only metrics the endpoint serves."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from tests.conftest import AppFactory

DOCS = Path(__file__).resolve().parents[2] / "docs"
TOKEN = "docs-token"
_NAME = re.compile(r"\botp_conversion_[a-z_]+")


def served_families(make_app: AppFactory) -> set[str]:
    app, conversion = make_app(OTP_CONVERSION_STATS_TOKEN=TOKEN, OTP_CONVERSION_TENCENT_ENDPOINT="http://127.0.0.1:9")
    with app.app_context():
        conversion.record_sent("+8613711112222", "m-1")
    text = app.test_client().get("/otp-conversion/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).get_data(
        as_text=True
    )
    return set(re.findall(r"^# TYPE (\S+)", text, re.MULTILINE)) | set(re.findall(r"^(otp_conversion_\w+)", text, re.M))


def alert_rules() -> dict[str, object]:
    text = (DOCS / "metrics.md").read_text(encoding="utf-8")
    block = text.split("## Alert rules", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    rules: dict[str, object] = yaml.safe_load(block)
    return rules


def test_the_alert_rules_are_valid_yaml_with_an_expression_each() -> None:
    (group,) = alert_rules()["groups"]  # type: ignore[index]
    assert all(rule["expr"] for rule in group["rules"])


def test_the_alert_rules_name_only_served_metrics(make_app: AppFactory) -> None:
    served = served_families(make_app)
    named = set(_NAME.findall(json.dumps(alert_rules())))
    assert named - served == set()


def test_the_grafana_dashboard_names_only_served_metrics(make_app: AppFactory) -> None:
    dashboard = json.loads((DOCS / "monitoring" / "otp-conversion-grafana.json").read_text(encoding="utf-8"))
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    named = {name for expr in exprs for name in _NAME.findall(expr)}
    assert named and named - served_families(make_app) == set()
