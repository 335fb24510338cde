"""Run every benchmark in benchmarks/ (each a separate process) and write benchmarks/RESULTS.md.

    python benchmarks/run.py                       # the default sizes: about 11 minutes on 2 cores
    python benchmarks/run.py --base a8fd1ce        # also another commit's delivery (report_cpu, cap, steady)
    python benchmarks/run.py --only report_cpu,cap,steady
    python benchmarks/run.py --outage-verifications 100000 --seconds 20 --rounds 5

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

from flask_otp_conversion.delivery.ratelimit import interval_for_cap

RESULTS = h.BENCH / "RESULTS.md"
#: Every script run.py runs, in this order.
PLAN = ["overhead", "inline", "outage", "report_cpu", "cap", "steady", "stats_load", "stores"]


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
              *_outage_section(results.get("outage")), *_report_cpu_section(results.get("report_cpu")),
              *_cap_section(results.get("cap")), *_steady_section(results.get("steady")),
              *_stats_section(results.get("stats_load")), *_stores_section(results.get("stores")),
              "## Commands", ""]
    for entry in results.values():
        lines.append(f"- `{entry['command']}`: {entry['seconds']:.0f} s" + ("" if entry["figures"] else " (failed)"))
    lines.append("")
    return "\n".join(lines)


def _targets(results: dict[str, Any]) -> list[list[str]]:
    rows = [*_delivery_targets(results)]
    ov = (results.get("overhead") or {}).get("figures")
    if ov and "ours" in ov["ratios"]:
        r = ov["ratios"]["ours"]
        rows.append(["1. overhead: throughput with / without the extension (default config)", ">= 0.97",
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
    st = (results.get("stats_load") or {}).get("figures")
    if st:
        rows.append(["5. stats: provider fetches under load", f"one per TTL window per worker (<= {st['fetch_bound']})",
                     f"{st['cached']['fetches']} fetches, {st['cached']['wrk']['rps']:,.0f} req/s",
                     _verdict(st["fetches_within_bound"])])
    rows += _stores_targets(results)
    return rows


def _stores_targets(results: dict[str, Any]) -> list[list[str]]:
    f = (results.get("stores") or {}).get("figures") or {}
    rows = []
    ratios = (f.get("verify") or {}).get("ratios") or {}
    stores = (("PostgreSQL", "ours-postgresql", "drain"), ("Redis", "ours-redis", "redis_drain"))
    for store, variant, drain_key in stores:
        if variant in ratios and "ours" in ratios:
            ratio, lite = ratios[variant]["median"], ratios["ours"]["median"]
            rows.append([f"6. {store} store: verify throughput / plain, against SQLite's in the same run",
                         "the same ratio as SQLite", f"{ratio:.3f} vs {lite:.3f}", _verdict(ratio >= lite - 0.03)])
        paired = ((f.get("verify") or {}).get("paired") or {}).get("ratios") or {}
        if variant in paired and "ours" in paired:
            ratio, lite = paired[variant]["median"], paired["ours"]["median"]
            rows.append([f"6. the same, paired: {store} and SQLite each loaded at the same time as plain",
                         "the same ratio as SQLite", f"{ratio:.3f} vs {lite:.3f}", _verdict(ratio >= lite - 0.03)])
        drain = f.get(drain_key)
        if drain:
            rows.append([f"6. {store} store: most reports in any 1 s, 1-4 delivering processes at the cap",
                         f"<= {drain['setup']['cap_per_s']:,.0f}", f"{drain['max_in_1s_at_cap']:,}",
                         _verdict(not drain["over_cap"])])
    return rows


def _stores_section(entry: dict[str, Any] | None) -> list[str]:
    lines = ["## 6. Stores: PostgreSQL and Redis against SQLite and the plain app; drain by 1, 2 and 4 processes", ""]
    if not entry or not entry["figures"]:
        return [*lines, "Not run (failed); see the run's output.", ""]
    f = entry["figures"]
    verify = f.get("verify")
    if verify:
        s = verify["setup"]
        lines += [
            f"PostgreSQL {f['postgresql']} on the same machine (initdb in a temporary folder, fsync on). The verify "
            f"route as in section 1 ({s['rounds']} rounds of {s['seconds']:g} s, `wrk -c{s['connections']}`, order "
            "rotated): `ours` on SQLite, `ours-postgresql` the same app with the store on PostgreSQL, `ours-redis` "
            f"on Redis {f.get('redis', '')} (AOF, appendfsync always); the spool keeps every store out of the request.",
            "",
            "| variant | req/s | p50 ms | p99 ms | non-2xx | workers CPU ms/req | store server CPU ms/req |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, v in verify["variants"].items():
            store = v.get("store_cpu_ms_per_request")
            store_text = "-" if store is None else f"{store['median']:.3f}"
            workers = v["worker_cpu_ms_per_request"]["median"]
            lines.append(f"| {name} | {v['rps']['median']:,.0f} | {v['p50_ms']['median']:.1f} | "
                         f"{v['p99_ms']['median']:.1f} | {v['non2xx']} | {workers:.2f} | {store_text} |")
        lines.append("")
        for name, r in verify["ratios"].items():
            c = verify["cpu_ratios"][name]
            lines.append(f"- {name} / plain: **{r['median']:.3f}** by req/s (rounds {r['min']:.3f} to "
                         f"{r['max']:.3f}), **{c['median']:.3f}** by requests per worker CPU second")
        paired = verify.get("paired")
        if paired:
            lines += ["", f"Paired rounds ({paired['setup']['rounds']}: plain loaded at the same time as each "
                      "variant, each by its own wrk, so that both see the same machine):", ""]
            for name, r in paired["ratios"].items():
                c = paired["cpu_ratios"][name]
                lines.append(f"- {name} / plain: **{r['median']:.3f}** by req/s (rounds {r['min']:.3f} to "
                             f"{r['max']:.3f}), **{c['median']:.3f}** by requests per worker CPU second")
        lines.append("")
    drain = f.get("drain")
    if drain:
        s = drain["setup"]
        lines += [
            f"An outbox of {s['rows']:,} rows in one PostgreSQL schema drained by 1, 2 and 4 processes at once (each "
            f"`flush()`, an instance folder of its own), nginx answering a fixed success {s['latency_s'] * 1000:g} ms "
            f"late (alone: {drain['nginx_alone_req_per_s']:,} req/s); cap lifted, then at {s['cap_per_s']:,.0f}/s. "
            f"{s['rounds']} rounds, median. All of it (drainers, PostgreSQL, nginx) shares the 2 cores.",
            "",
            "| drain | reports/s | vs 1 process, cap lifted | most in any 1 s | CPU ms/report: drainers | server |",
            "|---|---|---|---|---|---|",
        ]
        redis_drain = f.get("redis_drain") or {"variants": {}}
        tables = [(drain, "", "postgres_cpu_ms_per_report"),  # the server column: PostgreSQL's, redis-server's
                  (redis_drain, f"Redis {f.get('redis', '')}: ", "redis_cpu_ms_per_report")]
        for figures, label, server_key in tables:
            for name, v in figures["variants"].items():
                lines.append(f"| {label}{name} | {v['reports_per_s']['median']:,.1f} "
                             f"| {figures['vs_one_process_cap_lifted'][name]} | {v['max_in_1s']:,} "
                             f"| {v['cpu_ms_per_report']['median']:.3f} | {v[server_key]['median']:.3f} |")
        lines.append("")
    return lines


VARIANT_NOTES = {
    "plain": "`create_app(conversion=False)`: the same app and verify view without the extension.",
    "ours": "`create_app()`, default config: each verification is appended to the worker's spool; one of the two "
    "workers (the store's deliverer) applies both spools and delivers to the emulator beside the requests it "
    "serves (the emulator's CPU is on the same cores, which a real provider's is not; the backlog column is what "
    "a run left, drained before the next run).",
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
              "(`benchmarks/_apps.py`, benchmark-only). `ours`: default config, its reports delivered by the "
              "deliverer off the request path.", ""]
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
        "settings, the deliverer meeting the outage while the verifications arrive. The issue's full size: "
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


def _delivery_targets(results: dict[str, Any]) -> list[list[str]]:
    """Issue 17's delivery targets: CPU per report, drain at the cap, steady-state p99."""
    rows = []
    rc = (results.get("report_cpu") or {}).get("figures")
    if rc:
        v = rc["variants"]
        d = v["delivery"]["cpu_ms"]
        others = [name for name in ("base", "client alone", "httpx.Client", "http.client") if name in v]
        scale = ", ".join(f"{name} {v[name]['cpu_ms']['median']:.3f}" for name in others)
        rows.append(["A. delivery CPU per report (drain of a SQLite outbox to nginx, signing and store work "
                     "included)", "<= 0.35 ms",
                     f"{d['median']:.3f} ms (rounds {d['min']:.3f} to {d['max']:.3f}); same run, ms per request: "
                     f"{scale}", _verdict(d["median"] <= 0.35)])
        # The issue set 0.35 ms beside the loops it measured on its own machine (a stock httpx.Client POST ~0.31 ms,
        # http.client ~0.08 ms): the same target as ratios to those loops in this run, whatever this machine's speed.
        ratios = rc["ratios"]["delivery"]
        rows.append(["A. the same, against the loops the issue measured beside it (httpx.Client ~0.31 ms, "
                     "http.client ~0.08 ms)", f"<= {0.35 / 0.31:.2f}x httpx.Client, <= {0.35 / 0.08:.1f}x http.client",
                     f"{ratios['vs_httpx_client']:.2f}x httpx.Client, {ratios['vs_http_client']:.2f}x http.client",
                     _verdict(ratios["vs_httpx_client"] <= 0.35 / 0.31 and ratios["vs_http_client"] <= 0.35 / 0.08)])
    cp = (results.get("cap") or {}).get("figures")
    if cp:
        o = cp["variants"]["ours"]
        rate = o["reports_per_s"]
        base = cp["variants"].get("base")
        versus = f"; base {base['reports_per_s']['median']:,.1f}/s, most {base['max_in_1s']:,}" if base else ""
        rows.append([f"B. one process at the documented {cp['setup']['cap_per_s']:,.0f}/s cap, "
                     f"{cp['setup']['latency_s'] * 1000:g} ms provider latency: reports/s",
                     ">= 950/s", f"{rate['median']:,.1f}/s (rounds {rate['min']:,.1f} to {rate['max']:,.1f}){versus}",
                     _verdict(rate["median"] >= 950)])
        middle, most = o["middle_reports_per_s"], 1 / interval_for_cap(cp["setup"]["cap_per_s"])
        rows.append(["B. the same, sustained: without the first and last 0.5 s (the senders' start, sized by the first "
                     "answers, and the last requests' round trip)", ">= 950/s",
                     f"{middle['median']:,.1f}/s (rounds {middle['min']:,.1f} to {middle['max']:,.1f}); the schedule's "
                     f"most: {most:,.1f}/s", _verdict(middle["median"] >= 950)])
        rows.append(["B. the same: most arrivals at the provider in any 1-second window", "never above the cap",
                     f"{o['max_in_1s']:,}", _verdict(not o["over_cap"])])
    sd = (results.get("steady") or {}).get("figures")
    if sd and "ours" in sd["ratios"]:
        r, v = sd["ratios"]["ours"], sd["variants"]
        base = sd["ratios"].get("base")
        versus = f"; base {base['p99']['median']:.2f}x" if base else ""
        rows.append([f"C. steady state at ~{sd['setup']['fraction']:.0%} of plain's capacity "
                     f"({sd['target_per_s']:,.0f} verifies/s offered): verify p99 ours / plain", "<= 1.5x",
                     f"{r['p99']['median']:.2f}x ({v['ours']['p99_ms']['median']:.2f} vs "
                     f"{v['plain']['p99_ms']['median']:.2f} ms){versus}", _verdict(r["p99"]["median"] <= 1.5)])
        cpu = ", ".join(f"{name} {v[name]['worker_cpu_ms_per_verify']['median']:.3f}" for name in v)
        rows.append(["C. the same: worker CPU ms per verify (ours: its delivery included)", "printed", cpu, "-"])
    return rows


def _report_cpu_section(entry: dict[str, Any] | None) -> list[str]:
    lines = ["## A. CPU per report (`benchmarks/report_cpu.py`)", ""]
    if not entry or not entry["figures"]:
        return [*lines, "Not run (failed); see the run's output.", ""]
    f = entry["figures"]
    s = f["setup"]
    lines += [
        f"nginx on loopback answering a fixed `ReportConversion` success (nginx alone: "
        f"{_fmt(f.get('nginx_alone_req_per_s'), 0)} req/s to wrk). `delivery`: one process draining an outbox of "
        f"{s['rows']:,} rows (SQLite, filled once through the extension, copied per round) with "
        "`conversion.flush()`, the rate cap lifted; its CPU (every thread, flush only) over the reports nginx "
        f"received. The loops: {s['requests']:,} requests per round, this process's CPU. {s['rounds']} rounds, "
        "variants alternated; median (min to max). Code: "
        + "; ".join(f"{name}: `{code}`" for name, code in f["code"].items()) + ".",
        "",
        "| variant | CPU ms per report/request | / http.client | / httpx.Client | per second | spread |",
        "|---|---|---|---|---|---|",
    ]
    for name, m in f["variants"].items():
        c, r = m["cpu_ms"], f["ratios"][name]
        lines.append(f"| {name} | {c['median']:.3f} ({c['min']:.3f} to {c['max']:.3f}) | {r['vs_http_client']:.2f}x "
                     f"| {r['vs_httpx_client']:.2f}x | {m['per_s']['median']:,.0f} | ±{c['spread_pct']:.1f} % |")
    lines += ["", "- `client alone`: the package's Tencent client (signing, `HTTPSender`, answer parsing) in a loop, "
              "no store; `HTTPSender`: the pre-signed request through the clients' sender (`StdlibTransport`), and "
              "`on httpcore` through the same sender on `httpx.HTTPTransport`; `httpx.Client` and `http.client`: the "
              "pre-signed Tencent-shaped POST in a loop; `SDK`: `tencentcloud-sdk-python-sms` in a loop (when "
              "installed).", ""]
    return lines


def _cap_section(entry: dict[str, Any] | None) -> list[str]:
    lines = ["## B. Drain at the documented cap (`benchmarks/cap.py`)", ""]
    if not entry or not entry["figures"]:
        return [*lines, "Not run (failed); see the run's output.", ""]
    f = entry["figures"]
    s = f["setup"]
    lines += [
        f"One process drains {s['rows']:,} rows with the default rate limits (ReportConversion "
        f"{s['cap_per_s']:,.0f}/s) to nginx answering {s['latency_s'] * 1000:g} ms late (nginx alone at that "
        f"latency: {_fmt(f.get('nginx_alone_req_per_s'), 0)} req/s to wrk -c200). Rate: between the first and last "
        "arrival in nginx's log; most in 1 s: sliding window over the arrival times. Code: "
        + "; ".join(f"{name}: `{code}`" for name, code in f["code"].items()) + ".",
        "",
        "| code | reports/s | most in any 1 s | arrived | left | CPU ms/report |",
        "|---|---|---|---|---|---|",
    ]
    for name, m in f["variants"].items():
        r = m["reports_per_s"]
        lines.append(f"| {name} | {r['median']:,.1f} ({r['min']:,.1f} to {r['max']:,.1f}) | {m['max_in_1s']:,} | "
                     f"{', '.join(f'{n:,}' for n in m['arrived'])} | {', '.join(str(n) for n in m['left'])} | "
                     f"{m['cpu_ms_per_report']['median']:.3f} |")
    return [*lines, ""]


def _steady_section(entry: dict[str, Any] | None) -> list[str]:
    lines = ["## C. Steady state: verify latency with delivery beside the requests (`benchmarks/steady.py`)", ""]
    if not entry or not entry["figures"]:
        return [*lines, "Not run (failed); see the run's output.", ""]
    f = entry["figures"]
    s = f["setup"]
    lines += [
        f"plain's capacity (closed loop, wrk -c16): {f['plain_capacity_per_s']:,.0f} verifies/s; the paced load "
        f"offers {s['fraction']:.0%} of it (~{f['target_per_s']:,.0f}/s, wrk -c{s['connections']} with `delay()`), "
        f"{s['warm_seconds']:g} s warm-up then {s['seconds']:g} s measured per app, {s['rounds']} rounds. `ours` "
        "delivers to nginx answering a fixed success; reports meanwhile: what nginx received during the measured "
        "seconds. Workers' CPU per verify includes their delivery. Code: "
        + "; ".join(f"{name}: `{code}`" for name, code in f["code"].items()) + ".",
        "",
        "| app | verifies/s | p50 ms | p99 ms | non-2xx | workers CPU ms/verify | reports meanwhile |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, m in f["variants"].items():
        lines.append(f"| {name} | {m['rps']['median']:,.0f} | {m['p50_ms']['median']:.2f} | "
                     f"{m['p99_ms']['median']:.2f} ({m['p99_ms']['min']:.2f} to {m['p99_ms']['max']:.2f}) | "
                     f"{m['non2xx']} | {m['worker_cpu_ms_per_verify']['median']:.3f} | "
                     f"{', '.join(f'{n:,}' for n in m['reports_during_run'])} |")
    lines.append("")
    for name, r in f["ratios"].items():
        lines.append(f"- {name} / plain, per round then median: p99 **{r['p99']['median']:.2f}x** (rounds "
                     f"{r['p99']['min']:.2f} to {r['p99']['max']:.2f}), p50 {r['p50']['median']:.2f}x, worker CPU per "
                     f"verify {r['cpu']['median']:.2f}x")
    return [*lines, ""]


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
    parser.add_argument("--report-rows", type=int, default=5_000, help="report_cpu.py --rows (default 5000)")
    parser.add_argument("--cap-rows", type=int, default=6_000, help="cap.py --rows (default 6000)")
    parser.add_argument("--steady-seconds", type=float, default=15.0, help="steady.py --seconds (default 15)")
    parser.add_argument("--stats-seconds", type=float, default=10.0, help="stats load seconds (default 10)")
    parser.add_argument("--base", help="a git ref whose delivery report_cpu, cap and steady also measure")
    parser.add_argument(
        "--delivery-rounds", type=int, default=4, help="report_cpu, cap and steady rounds (default 4)"
    )
    parser.add_argument("--only", help="comma-separated subset: " + ",".join(PLAN))
    parser.add_argument("--output", default=str(RESULTS), help="where to write the results")
    args = parser.parse_args()
    started_at = datetime.now(timezone.utc)
    started = time.perf_counter()
    machine = h.machine()  # before anything runs: its load average is other work on the machine
    base = ["--base", args.base] if args.base else []
    plan = {
        "overhead": [
            "--seconds", f"{args.seconds:g}", "--rounds", str(args.rounds), "--paired-rounds", str(args.rounds),
            # append-only is measured in the paired rounds only, beside the hand-written floor
            "--variants", "plain,ours", "--paired-variants", "plain-twin,hand-append,append-only,ours",
        ],
        "inline": ["--seconds", f"{args.seconds:g}", "--rounds", str(max(1, args.rounds // 2))],
        "outage": ["--verifications", str(args.outage_verifications)],
        "report_cpu": ["--rows", str(args.report_rows), "--rounds", str(args.delivery_rounds), *base],
        "cap": ["--rows", str(args.cap_rows), "--rounds", str(args.delivery_rounds), *base],
        "steady": ["--seconds", f"{args.steady_seconds:g}", "--rounds", str(args.delivery_rounds), *base],
        "stats_load": ["--seconds", f"{args.stats_seconds:g}"],
        "stores": ["--seconds", f"{args.seconds:g}", "--rounds", "2", "--paired-rounds", "2"],
    }  # fmt: skip
    assert list(plan) == PLAN
    chosen = args.only.split(",") if args.only else PLAN
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="otp-bench-run-") as tmp:
        for name in chosen:
            figures, output, seconds, shown = run_script(name, plan[name], Path(tmp))
            results[name] = {"figures": figures, "output": output, "seconds": seconds, "command": shown}
    total = time.perf_counter() - started
    Path(args.output).write_text(render(results, machine, total, started_at))
    print(f"\nwrote {args.output} ({total:.0f} s)")
    return 0 if all(entry["figures"] for entry in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
