"""The alarm as figures (JSON for the stats endpoint, the dashboard and the CLI) and as the CLI's lines."""

from __future__ import annotations

import time

from .detection import CodeAssessment, pct
from .episodes import Episode, Evaluation


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _open(episodes: dict[str, Episode], at: float) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for e in sorted(episodes.values(), key=lambda e: e.key):
        entry: dict[str, object] = {"calling_code": e.calling_code}
        if e.prefix is not None:
            entry["prefix"] = e.prefix
        entry.update(
            since=_iso(e.since),
            seconds=max(0.0, at - e.since),
            rate=None if e.assessment is None else e.assessment.rate,
            baseline=None if e.assessment is None else e.assessment.baseline,
            sends=0 if e.assessment is None else e.assessment.sends,
        )
        out.append(entry)
    return out


def _seen(a: CodeAssessment, alarm: bool) -> dict[str, object]:
    entry: dict[str, object] = {"calling_code": a.calling_code}
    if a.prefix is not None:
        entry["prefix"] = a.prefix
    entry.update(
        sends=a.sends,
        verified=a.verified,
        rate=a.rate,
        baseline=a.baseline,
        baseline_source=a.baseline_source,
        trigger_below=a.trigger_below,
        alarm=alarm,
    )
    return entry


def figures(evaluation: Evaluation) -> dict[str, object]:
    """The alarm as JSON (the stats endpoint's ``alarms``, the dashboard, ``flask otp-conversion alarms --json``):
    ``open`` and ``codes`` are whole calling codes; ``open_prefixes`` and ``prefixes`` the per-prefix alarm's."""
    at = evaluation.at
    return {
        "window": {
            "from": _iso(evaluation.window_start),
            "to": _iso(evaluation.window_end),
            "seconds": evaluation.window_end - evaluation.window_start,
        },
        "open": _open(evaluation.episodes, at),
        "codes": [_seen(a, a.calling_code in evaluation.episodes) for a in evaluation.codes],
        "open_prefixes": _open(evaluation.prefix_episodes, at),
        "prefixes": [_seen(a, a.prefix in evaluation.prefix_episodes) for a in evaluation.prefixes],
    }


def report_lines(shown: dict[str, object]) -> list[str]:
    """``flask otp-conversion alarms``: the open episodes, then every code of the window (and every prefix the
    per-prefix alarm assessed)."""
    window = shown["window"]
    opened, codes = shown["open"], shown["codes"]
    opened_prefixes, prefixes = shown.get("open_prefixes", []), shown.get("prefixes", [])
    assert isinstance(window, dict) and isinstance(opened, list) and isinstance(codes, list)
    assert isinstance(opened_prefixes, list) and isinstance(prefixes, list)
    lines = [f"window           {window['from']} .. {window['to']}"]
    for e in opened + opened_prefixes:
        what = f"+{e['calling_code']:<5}" if "prefix" not in e else f"{e['prefix']}... (in +{e['calling_code']})"
        lines.append(
            f"ALARM {what} since {e['since']}: rate {pct(e['rate'])} over {e['sends']} sends, "
            f"baseline {pct(e['baseline'])}"
        )
    if not opened and not opened_prefixes:
        lines.append("no alarm")
    for title, rows, name in (("calling code", codes, None), ("prefix", prefixes, "prefix")):
        if name is not None and not rows:
            continue
        lines += ["", f"{title:<14} {'sends':>7} {'verified':>9} {'rate':>7} {'baseline':>9} {'alarm below':>12}"]
        for a in rows:
            label = "+" + str(a["calling_code"]) if name is None else str(a[name])
            lines.append(
                f"{label:<14} {a['sends']:>7} {a['verified']:>9} {pct(a['rate']):>7} {pct(a['baseline']):>9} "
                f"{pct(a['trigger_below']):>12}{'  ALARM' if a['alarm'] else ''}"
            )
    return lines
