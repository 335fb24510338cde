"""The alarm as figures (JSON for the stats endpoint, the dashboard and the CLI) and as the CLI's lines."""

from __future__ import annotations

import time

from .detection import pct
from .episodes import Evaluation


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def figures(evaluation: Evaluation) -> dict[str, object]:
    """The alarm as JSON (the stats endpoint's ``alarms``, the dashboard, ``flask otp-conversion alarms --json``)."""
    return {
        "window": {
            "from": _iso(evaluation.window_start),
            "to": _iso(evaluation.window_end),
            "seconds": evaluation.window_end - evaluation.window_start,
        },
        "open": [
            {
                "calling_code": e.calling_code,
                "since": _iso(e.since),
                "seconds": max(0.0, evaluation.at - e.since),
                "rate": None if e.assessment is None else e.assessment.rate,
                "baseline": None if e.assessment is None else e.assessment.baseline,
                "sends": 0 if e.assessment is None else e.assessment.sends,
            }
            for e in sorted(evaluation.episodes.values(), key=lambda e: e.calling_code)
        ],
        "codes": [
            {
                "calling_code": a.calling_code,
                "sends": a.sends,
                "verified": a.verified,
                "rate": a.rate,
                "baseline": a.baseline,
                "baseline_source": a.baseline_source,
                "trigger_below": a.trigger_below,
                "alarm": a.calling_code in evaluation.episodes,
            }
            for a in evaluation.codes
        ],
    }


def report_lines(shown: dict[str, object]) -> list[str]:
    """``flask otp-conversion alarms``: the open episodes, then every code of the window."""
    window = shown["window"]
    opened = shown["open"]
    codes = shown["codes"]
    assert isinstance(window, dict) and isinstance(opened, list) and isinstance(codes, list)
    lines = [f"window           {window['from']} .. {window['to']}"]
    if opened:
        for e in opened:
            lines.append(
                f"ALARM +{e['calling_code']:<5} since {e['since']}: rate {pct(e['rate'])} over {e['sends']} sends, "
                f"baseline {pct(e['baseline'])}"
            )
    else:
        lines.append("no alarm")
    lines += ["", f"{'calling code':<14} {'sends':>7} {'verified':>9} {'rate':>7} {'baseline':>9} {'alarm below':>12}"]
    for a in codes:
        code = "+" + str(a["calling_code"])
        lines.append(
            f"{code:<14} {a['sends']:>7} {a['verified']:>9} {pct(a['rate']):>7} {pct(a['baseline']):>9} "
            f"{pct(a['trigger_below']):>12}{'  ALARM' if a['alarm'] else ''}"
        )
    return lines
