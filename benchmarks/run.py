"""Run every benchmark in benchmarks/ (each a separate process) and write benchmarks/RESULTS.md.

    python benchmarks/run.py                       # the default sizes: under 10 minutes on 2 cores
    python benchmarks/run.py --outage-verifications 100000 --seconds 20 --rounds 5 --drain-rows 20000

Every figure is measured in this run, side by side with its baseline; nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import _harness as h

RESULTS = h.BENCH / "RESULTS.md"


def run_script(name: str, args: list[str], workdir: Path) -> tuple[dict[str, Any] | None, str, float, str]:
    """(figures from --json, stdout, seconds, the command as run)."""
    out = workdir / f"{name}.json"
    cmd = [h.PYTHON, str(h.BENCH / f"{name}.py"), *args, "--json", str(out)]
    shown = " ".join(["python", f"benchmarks/{name}.py", *args])
    print(f"\n== {shown}", flush=True)
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=h.ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    print(done.stdout, end="", flush=True)
    if done.returncode != 0:
        print(done.stderr[-3000:], file=sys.stderr)
        return None, done.stdout + done.stderr[-2000:], seconds, shown
    figures = json.loads(out.read_text()) if out.exists() else None
    return figures, done.stdout, seconds, shown


def run_drain(rows: int, sdk_rows: int, workdir: Path) -> tuple[dict[str, Any] | None, str, float, str]:
    """benchmarks/drain.py (the reporter drain rate), its figures read from its --json file."""
    script = h.BENCH / "drain.py"
    args = ["--rows", str(rows), "--sdk-rows", str(sdk_rows)]
    shown = " ".join(["python", "benchmarks/drain.py", *args])
    out = workdir / "drain.json"
    cmd = [h.PYTHON, str(script), *args, "--json", str(out)]
    print(f"\n== {shown}", flush=True)
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=h.ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    print(done.stdout, end="", flush=True)
    if done.returncode != 0:
        return None, f"not run: drain.py exited {done.returncode}: {done.stderr[-500:]}", seconds, shown
    return json.loads(out.read_text()), done.stdout, seconds, shown


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "**missed**")


def render(results: dict[str, Any], machine: dict[str, str], total: float, started_at: datetime) -> str:
    lines = [
        "# Benchmark results",
        "",
        f"Written by `make bench` (`python benchmarks/run.py`) on {started_at:%Y-%m-%d %H:%M} UTC; "
        f"the whole run took {total:.0f} s.",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores; {machine['os']}; Python {machine['python']}; "
        f"gunicorn {machine['gunicorn']}; {machine['wrk']}. Load average before the run: "
        f"{machine['loadavg']} (1/5/15 min: other work on the machine, which the ratios are meant to cancel).",
        "",
        f"Served by gunicorn, {h.WORKERS} workers x {h.THREADS} threads (gthread), on 127.0.0.1; load from `wrk` "
        "(its own process, 1 thread, Lua script posting one fresh pre-issued phone/code pair per request); the "
        "provider emulator in its own process. All of it shares the machine's cores, so every figure below is "
        "read against its baseline from the same run, not as an absolute.",
        "",
        "## Targets",
        "",
        "| measurement | target | measured | verdict |",
        "|---|---|---|---|",
    ]
    targets = _targets(results)
    for row in targets:
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", *_overhead_section(results.get("overhead")), *_inline_section(results.get("inline")),
              *_outage_section(results.get("outage")), *_drain_section(results.get("drain")),
              *_stats_section(results.get("stats_load")), "## Commands", ""]
    for entry in results.values():
        lines.append(f"- `{entry['command']}`: {entry['seconds']:.0f} s" + ("" if entry["figures"] else " (failed)"))
    lines.append("")
    return "\n".join(lines)


def _targets(results: dict[str, Any]) -> list[list[str]]:
    rows = []
    ov = (results.get("overhead") or {}).get("figures")
    if ov and "ours" in ov["ratios"]:
        r = ov["ratios"]["ours"]
        rows.append(["1. overhead: throughput with / without the extension (default config; a run shorter than "
                     "the 30 s yield window)", ">= 0.97",
                     f"{r['median']:.3f} (rounds {r['min']:.3f} to {r['max']:.3f})", _verdict(r["median"] >= 0.97)])
    if ov and "ours" in (ov.get("cpu_ratios") or {}):
        r = ov["cpu_ratios"]["ours"]
        rows.append(["1. the same, as requests per worker CPU second (what the ratio is on cores of its own)",
                     ">= 0.97", f"{r['median']:.3f} (rounds {r['min']:.3f} to {r['max']:.3f})",
                     _verdict(r["median"] >= 0.97)])
    paired = (ov or {}).get("paired") or {}
    if "ours" in paired.get("ratios", {}):
        r, c = paired["ratios"]["ours"], paired["cpu_ratios"]["ours"]
        twin = paired["ratios"].get("plain-twin")
        control = f"; control plain-twin / plain {twin['median']:.3f}" if twin else ""
        rows.append(["1. the same, paired: ours and plain loaded at the same time", ">= 0.97",
                     f"{r['median']:.3f} by req/s (rounds {r['min']:.3f} to {r['max']:.3f}), {c['median']:.3f} by "
                     f"worker CPU{control}", _verdict(r["median"] >= 0.97)])
    if "hand-append" in paired.get("ratios", {}):
        r, c = paired["ratios"]["hand-append"], paired["cpu_ratios"]["hand-append"]
        rows.append(["1. for scale, paired: the floor, a durable record written by hand in the view "
                     "(`hand-append`) against plain", "-",
                     f"{r['median']:.3f} by req/s, {c['median']:.3f} by worker CPU (rounds {c['min']:.3f} to "
                     f"{c['max']:.3f}): the least a durable record made in the request does", "-"])
    if ov and "ours-sustained" in ov["ratios"]:
        r = ov["ratios"]["ours-sustained"]
        rows.append(["1. overhead when the load outlasts the yield window (window set to 1 s: reports delivered "
                     "beside the requests)", ">= 0.97",
                     f"{r['median']:.3f} (rounds {r['min']:.3f} to {r['max']:.3f})", _verdict(r["median"] >= 0.97)])
    il = (results.get("inline") or {}).get("figures")
    if il and ov:
        ours_p99, base_p99 = il["variants"]["ours"]["p99_ms"]["median"], ov["variants"]["ours"]["p99_ms"]["median"]
        rows.append(["2. inline baseline: ours p99 at 50 ms provider latency vs ours in (1)", "at the level of (1)",
                     f"{ours_p99:.0f} ms vs {base_p99:.0f} ms", _verdict(ours_p99 <= base_p99 * 1.2)])
    ou = (results.get("outage") or {}).get("figures")
    if ou:
        ratio = ou["p99_ratio_outage_vs_normal"]
        rows.append(["3. outage: verify p99 during outage / normal", "<= 1.2", f"{ratio:.2f}", _verdict(ratio <= 1.2)])
        growth = ou["rss_growth_mib_max"]
        rows.append(["3. outage: worker RSS growth", "<= 50 MB", f"{growth:.1f} MiB (largest worker)",
                     _verdict(growth <= 50)])
        drained = ou["seconds_to_drain_after_recovery"]
        rows.append(["3. outage: backlog drained after recovery", "everything delivered",
                     f"{ou['pending_at_recovery']:,} reports in {_fmt(drained)} s, {ou['pending_left']} left, "
                     f"{ou['dead_letters']} dead", _verdict(drained is not None and ou["pending_left"] == 0)])
    dr = (results.get("drain") or {}).get("figures")
    if dr:
        rate, ratio = dr.get("ours_reports_per_s"), dr.get("ratio")
        versus = f"{ratio:.1f}x the SDK loop" if ratio is not None else "SDK loop not run"
        if dr.get("ours_no_latency_reports_per_s") is not None:
            versus += f" (with no provider latency: {dr['ours_no_latency_reports_per_s']:,.0f}/s"
            versus += f", {dr['ratio_no_latency']}x)" if dr.get("ratio_no_latency") is not None else ")"
        rows.append(["4. drain rate (issue 4)", ">= 1,000/s and >= 3x the SDK loop", f"{_fmt(rate, 0)}/s, {versus}",
                     _verdict(None if rate is None or ratio is None else (rate >= 1000 and ratio >= 3))])
    st = (results.get("stats_load") or {}).get("figures")
    if st:
        rows.append(["5. stats: provider fetches under load", f"one per TTL window per worker (<= {st['fetch_bound']})",
                     f"{st['cached']['fetches']} fetches, {st['cached']['wrk']['rps']:,.0f} req/s",
                     _verdict(st["fetches_within_bound"])])
    return rows


VARIANT_NOTES = {
    "plain": "`create_app(conversion=False)`: the same app and verify view without the extension.",
    "ours": "`create_app()`, default config: each verification is appended to the worker's spool; one of the two "
    "workers (the store's deliverer) applies both spools and delivers, its reporter and spool applier giving way "
    "while it serves requests (`OTP_CONVERSION_YIELD_TO_REQUESTS`, 30 s), "
    "so a run shorter than that leaves its reports for the quiet moment after it (see the backlog column; drained "
    "before the next run).",
    "ours-sustained": "the same with `OTP_CONVERSION_YIELD_TO_REQUESTS = 1`: what load that outlasts the window "
    "costs, the workers applying the spool and delivering to the emulator beside the requests (the emulator's CPU "
    "is on the same cores too, which a real provider's is not).",
    "append-only": "`OTP_CONVERSION_REPORTER_AUTOSTART = False` and nobody applying: the request path alone "
    "(decorator, signal, validated spool append), no background thread in the workers.",
    "disabled": "`OTP_CONVERSION_ENABLED = False`: the decorator alone (the signal has no receiver).",
    "plain-twin": "plain again, as the control of the paired rounds.",
    "hand-append": "plain, its verify view wrapped by hand to append the phone (if E.164) and the time to a file of "
    "the worker with one `os.write` after a 200 (`_apps._hand_append`): the least a durable record made in the "
    "request costs, with none of the product's checks, locking, recovery or signals.",
    "degraded": "`OTP_CONVERSION_DEGRADED`: no provider calls; the spool is applied, reports accumulate.",
    "ours-nginx": "`create_app()`, the reporter delivering to nginx answering a fixed success "
    "(`benchmarks/fixed_server.py`), so the emulator's CPU is off the cores.",
    "ours-every": "the same with `OTP_CONVERSION_SINGLE_DELIVERER = False`: each worker applies its own spool and "
    "delivers.",
    "ours-sidecar": "workers with `OTP_CONVERSION_REPORTER_AUTOSTART = False`, and `flask otp-conversion deliver "
    "--nice 19` applying the spools and delivering to nginx (its CPU counted with the workers').",
}


def _overhead_section(entry: dict[str, Any] | None) -> list[str]:
    lines = ["## 1. Overhead: the verify route with and without the extension", ""]
    if not entry or not entry["figures"]:
        return [*lines, "Not run (failed); see the run's output.", ""]
    f = entry["figures"]
    s = f["setup"]
    repeated = ", ".join(f"{name} {v.get('imbalanced_runs_repeated', 0)}" for name, v in f["variants"].items())
    lines += [
        f"{s['rounds']} rounds of {s['seconds']:g} s per variant, `wrk -c{s['connections']}`, variant order rotated "
        "each round; the extension's outbox drained between runs. Median (min to max over rounds). CPU per request: "
        "CPU time of the gunicorn workers / of the emulator process during the run, over the requests served. "
        "Busier worker's share: per round, the larger of the two workers' CPU over both (0.5 = load spread "
        "evenly; near 1.0 = one worker got the connections). A run in which one worker took 80 % or more is run "
        "again on fresh pairs (up to 3 times a variant): it measures one core, whatever the app "
        f"(repeated: {repeated}).",
        "",
        "| variant | req/s | p50 ms | p99 ms | non-2xx | workers CPU ms/req | emulator CPU ms/req | backlog after run "
        "| workers CPU ms/req after the run (the backlog) | busier worker's CPU share |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, v in f["variants"].items():
        lines.append(
            f"| {name} | {v['rps']['median']:,.0f} ({v['rps']['min']:,.0f} to {v['rps']['max']:,.0f}) "
            f"| {v['p50_ms']['median']:.1f} ({v['p50_ms']['min']:.1f} to {v['p50_ms']['max']:.1f}) "
            f"| {v['p99_ms']['median']:.1f} ({v['p99_ms']['min']:.1f} to {v['p99_ms']['max']:.1f}) "
            f"| {v['non2xx']} | {v['worker_cpu_ms_per_request']['median']:.2f} "
            f"| {v['emulator_cpu_ms_per_request']['median']:.2f} "
            f"| {', '.join(str(n) for n in v.get('outbox_pending_after_run', [])) or '-'} "
            f"| {_fmt((v.get('deferred_cpu_ms_per_request') or {}).get('median'), 2)} "
            f"| {', '.join(f'{x:.2f}' for x in v.get('busier_worker_cpu_share', []))} |"
        )
    lines.append("")
    for name, r in f["ratios"].items():
        lines.append(f"- throughput ratio {name} / plain: **{r['median']:.3f}** (rounds {r['min']:.3f} to "
                     f"{r['max']:.3f}, spread ±{r['spread_pct']:.1f} %)")
    for name, r in (f.get("cpu_ratios") or {}).items():
        lines.append(f"- requests per worker CPU second, {name} / plain: **{r['median']:.3f}** (rounds "
                     f"{r['min']:.3f} to {r['max']:.3f}): the throughput ratio on cores of their own, read from "
                     "CPU time, which other work on the machine hardly moves")
    paired = f.get("paired")
    if paired:
        lines += [
            "",
            f"Paired rounds ({paired['setup']['rounds']}): each variant below and plain loaded **at the same time**, "
            "each gunicorn with its own wrk, so that both halves of a ratio see the same machine. Both servers "
            "share the 2 cores, so req/s are about half of the above; the ratio is what counts. `plain-twin` is "
            "plain again: its ratio shows what the method makes of two equal apps.",
            "",
        ]
        for name, r in paired["ratios"].items():
            c = paired["cpu_ratios"][name]
            lines.append(
                f"- paired, {name} / plain: **{r['median']:.3f}** by req/s (rounds {r['min']:.3f} to {r['max']:.3f}),"
                f" **{c['median']:.3f}** by worker CPU (rounds {c['min']:.3f} to {c['max']:.3f})"
            )
    names = [*f["variants"], *((paired or {}).get("ratios") or {})]
    lines += ["", *[f"- `{name}`: {VARIANT_NOTES[name]}" for name in dict.fromkeys(names) if name in VARIANT_NOTES], ""]
    return lines


def _inline_section(entry: dict[str, Any] | None) -> list[str]:
    lines = ["## 2. Inline baseline: reporting inside the request, provider at 50 ms", ""]
    if not entry or not entry["figures"]:
        return [*lines, "Not run (failed); see the run's output.", ""]
    f = entry["figures"]
    s = f["setup"]
    lines += [
        f"Emulator latency {s['latency']:g} s on every call. {s['rounds']} rounds of {s['seconds']:g} s per variant, "
        f"`wrk -c{s['connections']}`, order rotated.",
        "",
        "| variant | req/s | p50 ms | p99 ms | non-2xx |",
        "|---|---|---|---|---|",
    ]
    for name, v in f["variants"].items():
        lines.append(f"| {name} | {v['rps']['median']:,.0f} | {v['p50_ms']['median']:.1f} | "
                     f"{v['p99_ms']['median']:.1f} | {v['non2xx']} |")
    r = f["ratios"]
    lines += ["", f"- ours / inline throughput: **{r['ours_vs_inline_rps']}x**; inline p50 / ours p50: "
              f"**{r['inline_vs_ours_p50']}x**", "",
              "`inline`: the example app without the extension, its verify view calling the package's provider "
              "client (`report_conversion`) after a right code and waiting for the answer "
              "(`benchmarks/_apps.py`, benchmark-only). `ours`: default config, so its reports wait for a quiet "
              "moment while a run (shorter than the 30 s yield window) lasts, and go out after it: the figures "
              "compare what the requests see, not where the provider calls' cost goes (see (1) for that).", ""]
    return lines


def _outage_section(entry: dict[str, Any] | None) -> list[str]:
    lines = ["## 3. Outage: HTTP 500, then hangs", ""]
    if not entry or not entry["figures"]:
        return [*lines, "Not run (failed); see the run's output.", ""]
    f = entry["figures"]
    n = f["normal"]
    lines += [
        f"{f['setup']['verifications']:,} verifications during the outage (half while every ReportConversion "
        "answered HTTP 500, half while every one hung), `wrk -c16`, each request a fresh code; default extension "
        "settings but `OTP_CONVERSION_YIELD_TO_REQUESTS = 1`, so that the reporter meets the outage while the "
        "verifications arrive (with the default 30 s it would hold every call back during runs this short), and "
        "the normal phase pays for delivering beside its requests. The issue's full size: "
        "`python benchmarks/outage.py --verifications 100000`.",
        "",
        "| phase | verifications | p50 ms | p99 ms | max ms | non-2xx |",
        "|---|---|---|---|---|---|",
        f"| normal (healthy emulator) | {n['requests']:,} | {n['p50_ms']:.1f} | {n['p99_ms']:.1f} | "
        f"{n['max_ms']:.1f} | {n['non2xx']} |",
    ]
    for name, r in f["outage"].items():
        lines.append(f"| outage: {name} | {r['requests']:,} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | "
                     f"{r['max_ms']:.1f} | {r['non2xx']} |")
    growth = ", ".join(f"{v:.1f}" for v in f["rss_growth_mib_per_worker"].values())
    first = ", ".join(f"{v:.1f}" for v in f["rss_first_mib"].values())
    lines += [
        "",
        f"- p99 during the outage (worst phase) / normal: **{f['p99_ratio_outage_vs_normal']:.2f}**",
        f"- worker VmRSS growth, peak minus first sample (per worker): **{growth} MiB** (first samples {first} MiB)",
        f"- outage lasted {f['outage_seconds']:.0f} s; backlog at recovery {f['pending_at_recovery']:,} reports; "
        f"first report {_fmt(f['seconds_to_first_report_after_recovery'])} s after recovery (the breaker's "
        f"probe), all drained {_fmt(f['seconds_to_drain_after_recovery'])} s after recovery "
        f"({_fmt(f['drain_rate_reports_per_s'], 0)} reports/s once the breaker closed); "
        f"pending left {f['pending_left']}, dead letters {f['dead_letters']}",
        f"- emulator calls: {json.dumps(f['emulator_calls'])}",
        "",
    ]
    return lines


def _drain_section(entry: dict[str, Any] | None) -> list[str]:
    lines = ["## 4. Drain rate (`benchmarks/drain.py`)", ""]
    if not entry or not entry["figures"]:
        reason = (entry or {}).get("output", "not run")
        return [*lines, f"Not run: {reason.strip().splitlines()[-1] if reason.strip() else 'no output'}", ""]
    f = entry["figures"]
    latency_ms = f["latency_s"] * 1000
    lines += [
        f"An outbox of {f['rows']:,} rows drained by {f['processes']} processes at once (each an app calling "
        f"`conversion.flush()`, `REPORT_CONCURRENCY` {f['report_concurrency']}) to nginx on loopback answering a "
        f"fixed success (nginx alone: {_fmt(f.get('nginx_alone_req_per_s'), 0)} req/s), beside the official "
        "`tencentcloud-sdk-python-sms` reporting one after another against the same server. CPU per report: the "
        "drain processes' CPU time (start-up included) over the reports.",
        "",
        "| provider latency | who | rate cap | processes | reports | reports/s | CPU ms/report |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, group in (("none", f["no_latency"]), (f"{latency_ms:g} ms", f["latency"])):
        for key, who in (("ours", "ours"), ("ours_one_process", "ours"), ("ours_default_cap", "ours"),
                         ("sdk", "SDK loop")):
            run = group.get(key)
            if run:
                cap = run.get("rate_cap", "n/a")
                lines.append(f"| {label} | {who} | {cap} | {run.get('processes', 1)} | {run['rows']:,} | "
                             f"{run['reports_per_s']:,.0f} | {run['cpu_ms_per_report']} |")
    emu = f.get("emulator")
    if emu:
        lines += ["", f"Correctness: {emu['rows']:,} reports to the emulator (every signature checked), default "
                  f"config, one process: {emu['reports_per_s']:,.0f} reports/s, all accepted: "
                  f"{emu['accepted_by_emulator']}."]
    if f.get("ratio") is not None:
        lines += ["", f"Ratio ours / SDK loop: **{f['ratio']}x** at {latency_ms:g} ms, {f['ratio_no_latency']}x with "
                  "no latency."]
    lines += ["", "```", entry["output"].strip(), "```", ""]
    return lines


def _stats_section(entry: dict[str, Any] | None) -> list[str]:
    lines = ["## 5. Statistics endpoint under load", ""]
    if not entry or not entry["figures"]:
        return [*lines, "Not run (failed); see the run's output.", ""]
    f = entry["figures"]
    s = f["setup"]
    lines += [
        f"`GET /otp-conversion/stats` with the bearer token, `wrk -c{s['connections']}`; cache TTL {s['ttl']:g} s for "
        f"{s['seconds']:g} s, then the cache off (TTL 0) as the baseline.",
        "",
        "| cache | req/s | p50 ms | p99 ms | non-2xx | provider fetches (Send/CallbackStatusStatistics) |",
        "|---|---|---|---|---|---|",
    ]
    for label, m in (("TTL " + f"{s['ttl']:g} s", f["cached"]), ("off (TTL 0)", f["uncached"])):
        if m:
            w = m["wrk"]
            lines.append(f"| {label} | {w['rps']:,.0f} | {w['p50_ms']:.1f} | {w['p99_ms']:.1f} | {w['non2xx']} | "
                         f"{m['fetches']} ({m['provider_calls']}) |")
    lines += ["", f"- fetches with the cache: {f['cached']['fetches']}, bound one per TTL window per worker "
              f"({f['fetch_bound']}: the cache is per process); cached / uncached throughput "
              f"**{_fmt(f['rps_ratio_cached_vs_uncached'])}x**", ""]
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=4.0, help="seconds per overhead/inline run (default 4)")
    parser.add_argument(
        "--rounds", type=int, default=4, help="overhead rounds, and as many paired ones (default 4; inline: half)"
    )
    parser.add_argument("--outage-verifications", type=int, default=10_000, help="default 10000; issue: 100000")
    parser.add_argument("--drain-rows", type=int, default=20_000, help="drain.py --rows (default 20000)")
    parser.add_argument("--drain-sdk-rows", type=int, default=2_000, help="drain.py --sdk-rows (default 2000)")
    parser.add_argument("--stats-seconds", type=float, default=10.0, help="stats load seconds (default 10)")
    parser.add_argument("--only", help="comma-separated subset: overhead,inline,outage,drain,stats_load")
    parser.add_argument("--output", default=str(RESULTS), help="where to write the results")
    args = parser.parse_args()
    started_at = datetime.now(timezone.utc)
    started = time.perf_counter()
    machine = h.machine()  # before anything runs: its load average is other work on the machine
    plan = {
        "overhead": [
            "--seconds",
            f"{args.seconds:g}",
            "--rounds",
            str(args.rounds),
            "--paired-rounds",
            str(args.rounds),
            # append-only is measured in the paired rounds only, beside the hand-written floor
            "--variants",
            "plain,ours,ours-sustained",
            "--paired-variants",
            "plain-twin,hand-append,append-only,ours",
        ],
        "inline": ["--seconds", f"{args.seconds:g}", "--rounds", str(max(1, args.rounds // 2))],
        "outage": ["--verifications", str(args.outage_verifications)],
        "drain": [],
        "stats_load": ["--seconds", f"{args.stats_seconds:g}"],
    }
    chosen = args.only.split(",") if args.only else list(plan)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="otp-bench-run-") as tmp:
        for name in chosen:
            if name == "drain":
                figures, output, seconds, shown = run_drain(args.drain_rows, args.drain_sdk_rows, Path(tmp))
            else:
                figures, output, seconds, shown = run_script(name, plan[name], Path(tmp))
            results[name] = {"figures": figures, "output": output, "seconds": seconds, "command": shown}
    total = time.perf_counter() - started
    Path(args.output).write_text(render(results, machine, total, started_at))
    print(f"\nwrote {args.output} ({total:.0f} s)")
    return 0 if all(entry["figures"] for entry in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
