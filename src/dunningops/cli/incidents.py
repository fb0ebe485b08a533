"""`dunningops incident`: open, close, list, show and import customer incidents (T8). Thin."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from dunningops.app import App
from dunningops.cli.main import cli
from dunningops.cli.options import ACTOR, AT, LIMIT, OFFSET, format_option, pass_app
from dunningops.cli.output import echo_json, more_line, render_table

FORMAT = format_option("text", "json")
OBSERVATIONS_FILE_LIMIT = 64 * 1024  # bytes: far above the 10,000 characters an incident holds
CELL = 40  # the list's observations and rating message, cut to one short line


def _notify_option(what: str):
    return click.option(
        "--notify/--no-notify",
        "notify",
        default=None,
        help=f"Send the customer the {what} notification, or not, whatever the settings say (default: as the settings say).",
    )


def _actor(app: App, given: str | None) -> str:
    from dunningops.permissions import who_acts

    return who_acts(app.config_dir, given)


@cli.group("incident")
def incident() -> None:
    """Customer incidents (tickets, e.g. an invoice dispute): open, close, list, show, import, notify.

    An open dispute about an invoice pauses that invoice's dunning until the
    incident is closed. The customer is told when an incident is opened and
    when it is closed, as the settings say (settings.notifications), unless
    the incident says otherwise (--notify / --no-notify).
    """


@incident.command("open")
@pass_app
@click.option("--customer", required=True, metavar="ID", help="The customer's external id.")
@click.option("--invoice", metavar="ID", help="The invoice it is about: its external id or its number.")
@click.option(
    "--kind",
    type=click.Choice(["dispute", "other"]),
    default="dispute",
    show_default=True,
    help="dispute: the customer contests the invoice (its dunning pauses until the incident is closed); other.",
)
@click.option("--observations", metavar="TEXT", help="What it is about (at most 10,000 characters).")
@click.option(
    "--observations-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    metavar="FILE",
    help="Read the observations from a UTF-8 text file instead.",
)
@click.option("--reference", metavar="REF", help="Its reference (default: the next INC-0001, INC-0002, …).")
@_notify_option("opening")
@ACTOR
@AT
@FORMAT
def incident_open(
    app: App, customer, invoice, kind, observations, observations_file, reference, notify, actor, at_, fmt_
) -> None:
    """Open an incident of a customer, then tell the customer (the opening notification)."""
    from dunningops.incidents.incidents import open_incident

    text = _observations(observations, observations_file)
    result = open_incident(
        app.store,
        customer=customer,
        invoice=invoice,
        kind=kind,
        observations=text,
        reference=reference,
        notify=notify,
        actor=_actor(app, actor),
        at=at_ or app.now(),
        origin="cli",
        transport_factory=app.transport,
    )
    if fmt_ == "json":
        echo_json(result)
        return
    about = f", about invoice {result['invoice']}" if result["invoice"] else ""
    click.echo(f"Incident {result['reference']} opened for {result['customer_name']} ({result['customer']}){about}: {kind}.")
    if result["holding"]:
        click.echo(f"The dunning of invoice {result['invoice']} is paused until the incident is closed.")
    click.echo(_notification_line(result["notification"]))


def _observations(text: str | None, path: Path | None) -> str:
    if (text is None) == (path is None):
        raise click.UsageError("give the observations with --observations TEXT or --observations-file FILE (one of them)")
    if path is None:
        return text or ""
    from dunningops.errors import InvalidInputError

    with path.open("rb") as handle:
        data = handle.read(OBSERVATIONS_FILE_LIMIT + 1)
    if len(data) > OBSERVATIONS_FILE_LIMIT:
        raise InvalidInputError(f"{path}: over {OBSERVATIONS_FILE_LIMIT // 1024} KB; the observations hold 10,000 characters")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInputError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def _notification_line(notification: dict[str, Any]) -> str:
    from dunningops.incidents.notices import Result

    return Result(
        notification["event"],
        notification["status"],
        notification["reason"],
        tuple(notification["to"]),
        notification["message_id"],
    ).line


@incident.command("close")
@pass_app
@click.argument("reference")
@click.option("--note", metavar="TEXT", help="How it was resolved, for the team (not sent to the customer).")
@_notify_option("closing")
@ACTOR
@AT
@FORMAT
def incident_close(app: App, reference, note, notify, actor, at_, fmt_) -> None:
    """Close the open incident REFERENCE, then tell the customer (the closing notification).

    A disputed invoice's dunning goes on, unless another open dispute of it
    still holds it.
    """
    from dunningops.incidents.incidents import close_incident

    result = close_incident(
        app.store,
        reference,
        note=note,
        notify=notify,
        actor=_actor(app, actor),
        at=at_ or app.now(),
        transport_factory=app.transport,
    )
    if fmt_ == "json":
        echo_json(result)
        return
    click.echo(f"Incident {result['reference']} closed ({result['customer_name']}, {result['customer']}).")
    if result["resumed"]:
        click.echo(f"The dunning of invoice {result['invoice']} goes on from the step after the last one performed.")
    elif result["holding"]:
        click.echo(f"The dunning of invoice {result['invoice']} stays paused: another open dispute of it holds it.")
    click.echo(_notification_line(result["notification"]))


@incident.command("notify")
@pass_app
@AT
@click.argument("reference")
@FORMAT
def incident_notify(app: App, reference, at_, fmt_) -> None:
    """Send the notifications incident REFERENCE is owed and that were never sent (after an interruption).

    A notification recorded before, even one that may or may not have
    arrived, is never sent again.
    """
    from dunningops.incidents.notices import send_owed

    results = send_owed(app.store, reference, at=at_ or app.now(), transport_factory=app.transport)
    if fmt_ == "json":
        echo_json([r.to_dict() for r in results])
        return
    for r in results:
        click.echo(r.line)


def _when(value) -> str:
    return f"{value:%Y-%m-%d %H:%M}" if value else ""


def _short(text: str | None, width: int = CELL) -> str:
    line = " ".join((text or "").split())
    return line if len(line) <= width else line[: width - 1] + "…"


def _stars(rating: int | None) -> str:
    return f"{rating}/5" if rating is not None else ""


@incident.command("list")
@pass_app
@click.option(
    "--state",
    type=click.Choice(["open", "closed", "all"]),
    default="all",
    show_default=True,
    help="Only the open or closed ones.",
)
@click.option("--customer", metavar="ID", help="Only this customer's (its external id).")
@click.option("--kind", type=click.Choice(["dispute", "other"]), help="Only disputes, or only the others.")
@click.option(
    "--rating",
    multiple=True,
    type=click.Choice(["rated", "unrated", "1", "2", "3", "4", "5"]),
    help="rated: the customer rated it; unrated: no rating yet; 1-5: that score (repeatable: any of them).",
)
@click.option("--limit", type=LIMIT, default=100, show_default=True, help="At most this many incidents.")
@click.option("--offset", type=OFFSET, default=0, show_default=True, help="Skip this many first.")
@FORMAT
def incident_list(app: App, state, customer, kind, rating, limit, offset, fmt_) -> None:
    """List incidents, newest first, with their state and the customer's rating (score and message)."""
    from dunningops.incidents.incidents import list_incidents

    with app.session() as session:
        page = list_incidents(
            session,
            state=None if state == "all" else state,
            customer=customer,
            kind=kind,
            rating=rating,
            limit=limit,
            offset=offset,
        )
    if fmt_ == "json":
        echo_json({"total": page.total, "offset": offset, "limit": limit, "incidents": page.rows})
        return
    rows = [
        {
            **r,
            "opened": _when(r["opened_at"]),
            "closed": _when(r["closed_at"]),
            "about": _short(r["observations"]),
            "score": _stars(r["rating"]),
            "said": _short(r["rating_message"]),
            "rated": _when(r["rated_at"]),
        }
        for r in page.rows
    ]
    click.echo(
        render_table(
            rows,
            [
                ("reference", "REFERENCE"),
                ("state", "STATE"),
                ("kind", "KIND"),
                ("customer", "CUSTOMER"),
                ("invoice", "INVOICE"),
                ("opened", "OPENED (UTC)"),
                ("closed", "CLOSED (UTC)"),
                ("score", "RATING"),
                ("said", "MESSAGE"),
                ("rated", "RATED (UTC)"),
                ("about", "OBSERVATIONS"),
            ],
        ),
        nl=False,
    )
    if line := more_line(offset + len(page.rows), page.total, "incidents"):
        click.echo(line, err=True)


@incident.command("show")
@pass_app
@click.argument("reference")
@FORMAT
def incident_show(app: App, reference, fmt_) -> None:
    """Show one incident: its observations, state, dates and who, the rating, and the notifications sent."""
    from dunningops.incidents.incidents import show_incident

    with app.session() as session:
        r = show_incident(session, reference)
    if fmt_ == "json":
        echo_json(r)
        return
    click.echo(f"{r['reference']}  {r['kind']}, {r['state']}")
    invoice = f"; invoice {r['invoice']}" if r["invoice"] else ""
    held = " (its dunning is paused until the incident is closed)" if r["holding"] else ""
    click.echo(f"customer: {r['customer_name']} ({r['customer']}){invoice}{held}")
    click.echo(f"opened: {_when(r['opened_at'])} UTC by {r['opened_by'] or 'unknown'} ({r['origin']})")
    if r["closed_at"]:
        click.echo(f"closed: {_when(r['closed_at'])} UTC by {r['closed_by'] or 'unknown'}")
        if r["closing_note"]:
            click.echo(f"closing note: {r['closing_note']}")
    if r["rating"] is not None:
        said = f": {r['rating_message']}" if r["rating_message"] else ""
        click.echo(f"rating: {r['rating']}/5 on {_when(r['rated_at'])} UTC{said}")
    else:
        click.echo("rating: none yet")
    choices = {None: "as the settings say", True: "on for this incident", False: "off for this incident"}
    click.echo(f"notifications: opening {choices[r['notify_opened']]}; closing {choices[r['notify_closed']]}")
    click.echo("\nObservations:")
    for line in r["observations"].splitlines() or [""]:
        click.echo(f"  {line}".rstrip())
    click.echo("\nNotifications sent:")
    rows = [
        {**m, "when": _when(m["sent_at"] or m["created_at"]), "to": ", ".join(m["to_addresses"] or ())} for m in r["messages"]
    ]
    click.echo(
        render_table(
            rows,
            [("event", "EVENT"), ("when", "WHEN (UTC)"), ("status", "STATUS"), ("to", "TO"), ("subject", "SUBJECT")],
        ),
        nl=False,
    )


@incident.command("import")
@pass_app
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Check the file and say what it would change; write nothing.")
@ACTOR
@FORMAT
def incident_import(app: App, file, dry_run, actor, fmt_) -> None:
    """Import incidents from a CSV FILE (e.g. another tool's history); no notification is sent for them.

    Columns: reference, customer_external_id, invoice_external_id, kind
    (dispute | other; default: dispute with an invoice, else other),
    observations, state (open | closed; default: closed when closed_at is
    given), opened_at, closed_at (ISO 8601 timestamps, or dates). Required:
    reference, customer_external_id, observations, opened_at.

    Nothing is imported when any row is bad (each problem names its row and
    column). A reference already imported is the same incident: importing
    the file again changes nothing. An open dispute about an open invoice
    pauses its dunning, as when opened by hand.
    """
    from dunningops.incidents.importer import import_incidents

    result = import_incidents(app.store, file, at=app.now(), actor=_actor(app, actor), dry_run=dry_run)
    if fmt_ == "json":
        echo_json(result.to_dict())
        return
    click.echo(result.line())
