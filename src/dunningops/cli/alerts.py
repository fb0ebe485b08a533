"""Alerts: `alerts list|show|ack|announce`. Thin."""

from __future__ import annotations

from typing import Any

import click

from dunningops.alerts.events import ALERT_KINDS
from dunningops.app import App
from dunningops.cli.main import cli
from dunningops.cli.options import LIMIT, OFFSET, ROW_ID, format_option, pass_app
from dunningops.cli.output import echo_json, finish, more_line, render_table

FORMAT = format_option("table", "json")
TITLE_WIDTH = 80  # the table stays one line per alert; `alerts show` has the whole title

# Who acknowledges: `--by` as asked for here, `--as` (and $DUNNINGOPS_MEMBER) as every other command.
BY = click.option(
    "--by", "--as", "member", envvar="DUNNINGOPS_MEMBER", metavar="MEMBER", help="The member acknowledging, e.g. alice."
)


def _channels(channels: dict[str, str] | None) -> str:
    """``in_app email:sent slack:failed``: each channel and the first word of its outcome."""
    parts = []
    for channel, outcome in (channels or {}).items():
        word = str(outcome).split(":")[0]
        parts.append(channel if channel == "in_app" and word == "shown" else f"{channel}:{word}")
    return " ".join(parts)


def _table_row(row: dict[str, Any]) -> dict[str, Any]:
    title = row["title"]
    return {
        **row,
        "created": f"{row['created_at']:%Y-%m-%d %H:%M}",
        "title": title if len(title) <= TITLE_WIDTH else title[: TITLE_WIDTH - 1] + "…",
        "channels": _channels(row["channels"]),
        "acked": f"{row['acked_at']:%Y-%m-%d} {row['acked_by'] or ''}".rstrip() if row["acked_at"] else "",
    }


COLUMNS = [
    ("id", "#"),
    ("created", "RAISED"),
    ("kind", "KIND"),
    ("customer", "CUSTOMER"),
    ("title", "ALERT"),
    ("channels", "ANNOUNCED"),
]


@cli.group()
def alerts() -> None:
    """Alerts for the team: bounces, spam complaints, refused emails, broken promises, unreadable mail."""


@alerts.command("list")
@pass_app
@click.option("--all", "all_", is_flag=True, help="Acknowledged alerts too.")
@click.option("--kind", type=click.Choice(list(ALERT_KINDS)))
@click.option("--customer", metavar="EXTERNAL_ID", help="Only this customer's alerts.")
@click.option("--limit", type=LIMIT, default=50, show_default=True)
@click.option("--offset", type=OFFSET, default=0)
@FORMAT
def alerts_list(app: App, all_, kind, customer, limit, offset, fmt_) -> None:
    """List the alerts still to acknowledge, newest first."""
    from dunningops.alerts.store import list_alerts

    with app.session() as session:
        acked = None if all_ else False
        page = list_alerts(session, acked=acked, kind=kind, customer_external_id=customer, limit=limit, offset=offset)
    if fmt_ == "json":
        echo_json({"total": page.total, "offset": offset, "limit": limit, "alerts": page.rows})
        return
    columns = COLUMNS + ([("acked", "ACKNOWLEDGED")] if all_ else [])
    click.echo(render_table([_table_row(r) for r in page.rows], columns), nl=False)
    if line := more_line(offset + len(page.rows), page.total, "alerts"):
        click.echo(line, err=True)


@alerts.command("show")
@pass_app
@click.argument("alert_id", type=ROW_ID)
@FORMAT
def alerts_show(app: App, alert_id, fmt_) -> None:
    """Show one alert and where it was announced."""
    from dunningops.alerts.store import get

    with app.session() as session:
        row = get(session, alert_id)
    if fmt_ == "json":
        echo_json(row)
        return
    click.echo(f"#{row['id']} {row['kind']} at {row['created_at']:%Y-%m-%d %H:%M} UTC: {row['title']}")
    if row["customer"]:
        click.echo(f"Customer: {row['customer']} ({row['customer_name']})")
    if row["contact_email"]:
        click.echo(f"Contact: {row['contact_email']}")
    for key, value in (row["details"] or {}).items():
        if value not in (None, "", [], {}):
            click.echo(f"{key}: {value}")
    if row["inbox_message_id"]:
        click.echo(f"Incoming email: #{row['inbox_message_id']} (`dunningops inbox show {row['inbox_message_id']}`)")
    if row["message_id"]:
        click.echo(f"About our email: #{row['message_id']}")
    click.echo("Announced: " + (", ".join(f"{c} {o}" for c, o in (row["channels"] or {}).items()) or "nowhere (the list only)"))
    if row["acked_at"]:
        click.echo(f"Acknowledged: {row['acked_at']:%Y-%m-%d %H:%M} UTC" + (f" by {row['acked_by']}" if row["acked_by"] else ""))
    else:
        click.echo(f"Not acknowledged: `dunningops alerts ack {row['id']}`")


@alerts.command("ack")
@pass_app
@click.argument("alert_ids", nargs=-1, type=ROW_ID, metavar="[ID]...")
@click.option("--all", "all_", is_flag=True, help="Every alert still to acknowledge.")
@BY
def alerts_ack(app: App, alert_ids, all_, member) -> None:
    """Acknowledge alerts: they leave the list.

    `alerts list --all` still shows them, with who acknowledged them and when.
    """
    from dunningops.alerts.store import ack, ack_all

    if bool(alert_ids) == all_:
        raise click.UsageError("give the ids of the alerts to acknowledge, or --all (not both)")
    with app.session() as session:
        if all_:
            done = ack_all(session, by=member, at=app.now())
        else:
            done = ack(session, alert_ids, by=member, at=app.now())
    already = 0 if all_ else len(set(alert_ids)) - done
    click.echo(f"{done} alert{'s' if done != 1 else ''} acknowledged" + (f" ({already} already were)." if already else "."))


@alerts.command("announce")
@pass_app
def alerts_announce(app: App) -> None:
    """Announce the alerts not announced yet, by email and on Slack.

    An import announces its alerts once it has recorded them; this catches up with those it could not
    announce (it was stopped in between, or had no transport). An alert is never announced twice on a channel.
    """
    from dunningops.alerts.channels import announce
    from dunningops.alerts.store import pending
    from dunningops.dunning.context import message_domain
    from dunningops.dunning.runconfig import RunConfig

    with app.session() as session:
        config = RunConfig.from_store(session)
        ids = pending(session)
    if not ids:
        click.echo("No alerts wait to be announced.")
        return
    settings = config.settings
    by_email = any("email" in settings.alerts.channels_for(kind) for kind in ALERT_KINDS)
    transport = app.transport(config) if by_email else None
    try:
        report = announce(
            app.store, ids, settings=settings, env=app.env, transport=transport, at=app.now(), domain=message_domain(settings)
        )
    finally:
        if transport is not None:
            transport.close()
    click.echo(report.line())
    finish(report.problems)
