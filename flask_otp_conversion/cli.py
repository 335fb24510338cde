"""``flask otp-conversion ...``: operate the outbox from a shell (degrade, flush, dead letters, prune), and
run the reporter as a delivery process of its own (deliver).

The group is registered on every app the extension is initialised on, disabled ones included: there each
command says the extension is disabled (exit status 1) instead of the group vanishing (``No such command``)."""

from __future__ import annotations

import datetime as dt
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING, Any

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from .delivery.priority import give_way
from .delivery.worker import Reporter
from .phone import mask_phone
from .redaction import describe_error
from .store import Store
from .store.quarantine import quarantined

if TYPE_CHECKING:
    from .state import ConversionState

otp_conversion_cli = AppGroup("otp-conversion", help="Operate flask-otp-conversion's outbox and reporter.")

DISABLED = "flask-otp-conversion is disabled on this app (OTP_CONVERSION_ENABLED is false): nothing to do"
NOT_INITIALISED = "flask-otp-conversion is not initialised on this app (OTPConversion(app) was not called)"


def register_cli(app: Flask) -> None:
    """Add the ``otp-conversion`` group to ``app.cli``; ``init_app`` calls this before it looks at ``enabled``."""
    app.cli.add_command(otp_conversion_cli)


def _parts() -> tuple[ConversionState, Store, Reporter]:
    from .state import EXTENSION_KEY

    state: ConversionState | None = current_app.extensions.get(EXTENSION_KEY)
    if state is None:
        raise click.ClickException(NOT_INITIALISED)
    if state.store is None or state.reporter is None:
        raise click.ClickException(DISABLED)
    return state, state.store, state.reporter


def _when(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


@otp_conversion_cli.command("degrade")
@click.argument("mode", type=click.Choice(["on", "off", "status"]))
def degrade_command(mode: str) -> None:
    """Stop (on) or resume (off) all provider calls in every worker, or show the switch (status)."""
    _, store, reporter = _parts()
    if mode != "status":
        reporter.set_degraded(mode == "on")
    stats = store.outbox_stats(now=time.time())
    label = "on: no provider calls; reports accumulate" if reporter.degraded else "off: reports flow"
    click.echo(f"degraded: {label} ({stats.pending} pending)")


@otp_conversion_cli.command("flush")
@click.option("--timeout", type=click.FloatRange(min=0), default=30.0, show_default=True, help="Seconds.")
def flush_command(timeout: float) -> None:
    """Deliver every pending report now; exit status 1 if any is left (and why, when it can be said)."""
    state, store, reporter = _parts()
    try:
        _flush(state, store, reporter, timeout)
    except (click.ClickException, click.exceptions.Exit):
        raise
    except Exception as exc:  # the store unreachable, the disk refusing: say what, never a traceback
        raise click.ClickException(f"flush failed: {describe_error(exc)}") from None


def _flush(state: ConversionState, store: Store, reporter: Reporter, timeout: float) -> None:
    try:
        state.apply_spool()
    except Exception as exc:  # what could be applied was; deliver it, and say why the rest was not
        click.echo(f"spooled verifications not all applied: {describe_error(exc)}", err=True)
        spool_failed = True
    else:
        spool_failed = False
    if reporter.degraded:  # nothing would be delivered: say so now rather than after the timeout
        stats = store.outbox_stats(now=time.time())
        click.echo(f"pending: {stats.pending}, dead letters: {stats.dead}")
        if stats.pending:
            click.echo(DEGRADED_FLUSH, err=True)
            sys.exit(1)
        if spool_failed:
            sys.exit(1)
        return
    left = reporter.flush(timeout)
    stats = store.outbox_stats(now=time.time())
    click.echo(f"pending: {left}, dead letters: {stats.dead}")
    if left:
        if reporter.degraded:  # switched on by another process while this one flushed
            click.echo(DEGRADED_FLUSH, err=True)
        elif reporter.last_error:
            click.echo(f"last error: {reporter.last_error}", err=True)
        sys.exit(1)
    if spool_failed:
        sys.exit(1)


DEGRADED_FLUSH = (
    "not delivered: degraded mode is on (no provider calls are made); "
    "`flask otp-conversion degrade off` resumes delivery"
)


#: Seconds between the delivery process's passes over the web workers' verification spools.
SPOOL_INTERVAL = 0.1


@otp_conversion_cli.command("deliver")
@click.option(
    "--nice",
    type=click.IntRange(0, 19),
    default=0,
    show_default=True,
    help="Lower this process's CPU priority by this much, so that on a busy host the web workers go first.",
)
@click.option(
    "--idle",
    is_flag=True,
    help="Run under Linux's SCHED_IDLE instead (where it is refused or missing: --nice): a request that wakes "
    "takes the core from this process at once.",
)
def deliver_command(nice: int, idle: bool) -> None:
    """Apply the web workers' spooled verifications and deliver reports from this process until SIGTERM or
    Ctrl-C, then flush within the shutdown timeout.

    For apps whose web workers run with OTP_CONVERSION_REPORTER_AUTOSTART=false: the workers then only append
    each verification to their spool, and the store writes and provider calls cost them neither CPU nor GIL
    time. Run one or more (they share the rate cap). With --nice or --idle, a host saturated by requests lets the
    backlog wait; it goes out when the load falls.
    """
    priority = give_way(nice=nice, idle=idle)
    state, store, reporter = _parts()
    stopping = threading.Event()

    def stop(signum: int, frame: object) -> None:
        stopping.set()

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        reporter.ensure_running()
        click.echo(f"delivering conversion reports at {priority} (SIGTERM or Ctrl-C stops)")
        while not stopping.wait(SPOOL_INTERVAL):
            reporter.ensure_running()  # restarts the thread should it ever die
            state.apply_spool()  # what the web workers spooled (they only append when they do not deliver)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        state.apply_spool()
        reporter.stop()
    click.echo(f"stopped; pending: {store.outbox_stats(now=time.time()).pending}")


@otp_conversion_cli.command("dead-letters")
@click.option("--replay", is_flag=True, help="Make dead letters pending again: every one, or those given with --id.")
@click.option(
    "--id", "ids", type=click.IntRange(min=1), multiple=True, metavar="N", help="With --replay: this one (repeatable)."
)
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
def dead_letters_command(replay: bool, ids: tuple[int, ...], limit: int) -> None:
    """List dead letters (reports that will not be retried), or requeue them with --replay [--id N ...]."""
    if ids and not replay:
        raise click.UsageError("--id chooses dead letters to replay: add --replay")
    _, store, _ = _parts()
    if replay:
        count = store.replay_dead_letters(list(ids) if ids else None, now=time.time())
        click.echo(f"requeued {count} dead letter(s)")
        if ids and count < len(set(ids)):
            click.echo(f"{len(set(ids)) - count} of the ids given are not dead letters", err=True)
        return
    rows = store.dead_letters(limit=limit)
    if not rows:
        click.echo("no dead letters")
        return
    click.echo("id\tdead at\tprovider\tmessage id\tphone\tattempts\treason")
    for row in rows:
        click.echo(
            f"{row.id}\t{_when(row.dead_at)}\t{row.provider}\t{row.message_id}\t{mask_phone(row.phone)}\t"
            f"{row.attempts}\t{row.reason}"
        )


@otp_conversion_cli.command("prune")
def prune_command() -> None:
    """Delete records older than OTP_CONVERSION_RETENTION days (pending reports are kept)."""
    state, store, _ = _parts()
    removed = store.prune(before=time.time() - state.settings.retention * 86400)
    click.echo(f"pruned {removed} row(s)")


@otp_conversion_cli.command("check")
def check_command() -> None:
    """Run SQLite's full integrity check on the store file (the start runs only the quick one); exit status 1
    with the problems found. Also says how many spool lines were quarantined."""
    state, store, _ = _parts()
    check = getattr(store, "check_integrity", None)
    problems: list[str] = []
    if check is None:
        click.echo(f"store: {type(store).__name__} keeps no file to check")
    else:
        try:
            problems = check(full=True)
        except Exception as exc:  # could not even run the check: the file is locked or gone
            raise click.ClickException(f"store: the check could not run: {describe_error(exc)}") from None
        if problems:
            click.echo(f"store: {len(problems)} problem(s) found by SQLite's integrity check:", err=True)
            for problem in problems:
                click.echo(f"  {problem}", err=True)
            click.echo(
                "restore the store file from a backup, or stop the app and move it aside (with its -wal and -shm "
                "files) to start empty; it holds the outbox's pending reports: keep it",
                err=True,
            )
        else:
            click.echo("store: ok")
    if state.spool is not None:
        click.echo(f"spool: {quarantined(state.spool.directory)} quarantined line(s) or entries")
    if problems:
        sys.exit(1)


@otp_conversion_cli.command("stats")
@click.option("--since", default="24h", show_default=True, help="Window length: 90m, 24h, 7d.")
@click.option("--json", "as_json", is_flag=True, help="Print the same JSON the stats endpoint serves.")
def stats_command(since: str, as_json: bool) -> None:
    """Local conversion counts, the reporter's state and the provider's own figures (no auth: your shell)."""
    import json

    from .web.stats import WindowError, parse_window

    state, _, _ = _parts()
    service = state.stats
    if service is None:
        raise click.ClickException(DISABLED)
    try:
        window = parse_window({"since": since}, provider=service.provider_class)
    except WindowError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from None
    figures = service.collect(window)
    if as_json:
        click.echo(json.dumps(figures, indent=2, sort_keys=True))
        return
    for line in _stats_table(figures):
        click.echo(line)


@otp_conversion_cli.command("alarms")
@click.option("--json", "as_json", is_flag=True, help="Print the alarm's figures as JSON.")
def alarms_command(as_json: bool) -> None:
    """The SMS-pumping alarm: open episodes and every calling code's (and assessed prefix's) window rate against
    its baseline; exit status 2 while an alarm is open (for a cron job or a health check)."""
    import json

    from .alarm import figures, report_lines

    state, _, _ = _parts()
    if state.alarms is None:
        raise click.ClickException(DISABLED)
    shown = figures(state.alarms.evaluate(fresh=True))
    if as_json:
        click.echo(json.dumps(shown, indent=2, sort_keys=True))
    else:
        for line in report_lines(shown):
            click.echo(line)
    if shown["open"] or shown["open_prefixes"]:
        sys.exit(2)


def _pct(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:.1%}"


def _stats_table(figures: dict[str, Any]) -> list[str]:
    window, rep = figures["window"], figures["reporter"]
    lines = [
        f"window           {window['from']} .. {window['to']}",
        f"requested        {figures['requested']}",
        f"verified         {figures['verified']}",
        f"conversion rate  {_pct(figures['conversion_rate'])}",
        f"unmatched        {figures['unmatched']}",
    ]
    if "delivery" in figures:
        delivery = figures["delivery"]
        lines += [
            f"delivered        {delivery['delivered']}",
            f"retried          {delivery['retried']}",
            f"dead-lettered    {delivery['dead_lettered']}",
        ]
    alarms = figures.get("alarms") or {}
    for episode in alarms.get("open", []) + alarms.get("open_prefixes", []):
        what = f"{episode['prefix']}..." if "prefix" in episode else f"+{episode['calling_code']}"
        lines.append(f"ALARM            {what} since {episode['since']} (flask otp-conversion alarms)")
    for title, key in (("provider", "by_provider"), ("calling code", "by_calling_code")):
        lines.append("")
        lines.append(f"{title:<16} {'requested':>9} {'verified':>9} {'rate':>7}")
        for name, row in figures[key].items():
            lines.append(f"{name:<16} {row['requested']:>9} {row['verified']:>9} {_pct(row['conversion_rate']):>7}")
    age = rep["oldest_pending_age_seconds"]
    lines += [
        "",
        f"reporter         spooled={rep['spooled']} quarantined={rep['quarantined']} pending={rep['pending']} "
        f"in_flight={rep['in_flight']} "
        f"dead={rep['dead']} "
        f"oldest_pending={'-' if age is None else f'{age:.0f}s'}",
        f"                 breaker={rep['breaker_state']} degraded={'yes' if rep['degraded'] else 'no'} "
        f"last_error={rep['last_error'] or '-'}",
    ]
    if rep.get("held_in_memory") or rep.get("lost"):
        lines.append(f"                 held_in_memory={rep['held_in_memory']} lost={rep['lost']}")
    for account in rep.get("accounts", []):
        if not account["configured"]:  # the ones an operator must know about: never sent, expiring
            lines.append(
                f"                 not the configured account: {account['provider']} {account['account'] or '?'}"
                f" pending={account['pending']} oldest={account['oldest_pending_age_seconds']:.0f}s"
            )
    lines.append("")
    provider = figures["provider"]
    zone = f" (hours in {figures['provider_time_zone']})" if figures["provider_time_zone"] else ""
    label = f"provider {figures['provider_name']}{zone}"
    if provider is None:
        lines.append(f"{label}: {figures['provider_error'] or 'no figures'}")
    else:
        lines.append(f"{label}{' [stale: ' + str(figures['provider_error']) + ']' if figures['stale'] else ''}")
        if figures.get("provider_fetched_at"):
            lines.append(f"  fetched at {figures['provider_fetched_at']} ({figures['provider_age_seconds']:.0f} s ago)")
        lines += [f"  {k}: {v}" for k, v in _flatten(provider)]
    return lines


def _flatten(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(value, dict):
        out: list[tuple[str, Any]] = []
        for key, item in value.items():
            out += _flatten(item, f"{prefix}{key}.")
        return out
    return [(prefix.rstrip("."), value)]
