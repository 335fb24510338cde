"""``flask otp-conversion ...``: operate the outbox from a shell (degrade, flush, dead letters, prune)."""

from __future__ import annotations

import datetime as dt
import sys
import time
from typing import TYPE_CHECKING

import click
from flask import current_app
from flask.cli import AppGroup

from .phone import mask_phone
from .reporter import Reporter
from .store import Store

if TYPE_CHECKING:
    from .extension import ConversionState

otp_conversion_cli = AppGroup("otp-conversion", help="Operate flask-otp-conversion's outbox and reporter.")


def _parts() -> tuple[ConversionState, Store, Reporter]:
    from .extension import EXTENSION_KEY, ConversionState

    state = current_app.extensions.get(EXTENSION_KEY)
    if not isinstance(state, ConversionState) or state.store is None or state.reporter is None:
        raise click.ClickException("flask-otp-conversion is not enabled on this app")
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
    """Deliver every pending report now; exit status 1 if any is left."""
    _, store, reporter = _parts()
    left = reporter.flush(timeout)
    stats = store.outbox_stats(now=time.time())
    click.echo(f"pending: {left}, dead letters: {stats.dead}")
    if left:
        if reporter.last_error:
            click.echo(f"last error: {reporter.last_error}", err=True)
        sys.exit(1)


@otp_conversion_cli.command("dead-letters")
@click.option("--replay", is_flag=True, help="Make every dead letter pending again.")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True)
def dead_letters_command(replay: bool, limit: int) -> None:
    """List dead letters (reports that will not be retried), or requeue them with --replay."""
    _, store, _ = _parts()
    if replay:
        count = store.replay_dead_letters(now=time.time())
        click.echo(f"requeued {count} dead letter(s)")
        return
    rows = store.dead_letters(limit=limit)
    if not rows:
        click.echo("no dead letters")
        return
    for row in rows:
        click.echo(
            f"{row.id}\t{_when(row.dead_at)}\t{row.provider}\t{row.message_id}\t{mask_phone(row.phone)}\t"
            f"attempts={row.attempts}\t{row.reason}"
        )


@otp_conversion_cli.command("prune")
def prune_command() -> None:
    """Delete records older than OTP_CONVERSION_RETENTION days (pending reports are kept)."""
    state, store, _ = _parts()
    removed = store.prune(before=time.time() - state.settings.retention * 86400)
    click.echo(f"pruned {removed} row(s)")
