"""The import cycle: `run import`, and `inbox list|show|explain|relink|delete`. Thin."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from dunningops.app import App
from dunningops.cli.cycle import run
from dunningops.cli.main import cli
from dunningops.cli.options import AT, LIMIT, MEMBER, OFFSET, ROW_ID, format_option, pass_app
from dunningops.cli.output import echo_json, finish, more_line, render_table, to_json
from dunningops.tables import INBOX_COLUMNS, inbox_row

FORMAT = format_option("table", "json")


def import_report_json(report) -> dict:
    e = report.effects
    return {
        "at": report.at.isoformat(),
        "source": report.source,
        "ok": report.ok,
        "imported": report.imported,
        "linked": e.linked,
        "ignored": e.ignored,
        "quarantined": e.quarantine,
        "kinds": e.by_kind,
        "reply_todos": e.reply_todos,
        "bounce_todos": e.bounce_todos,
        "contacts_invalidated": e.invalidated,
        "temporary_customers": e.temporary_customers,
        "alerts": report.alert_ids,
        "announced": report.announced,
        "handled": report.handled,
        "folders": [vars(f) for f in report.folders],
        "errors": report.errors + ([str(report.fatal)] if report.fatal else []),
        "warnings": report.warnings,
    }


def run_import_cycle(app: App, at, lock_timeout: float):
    from dunningops.inbox.importer import run_import

    return run_import(
        app.store,
        app.source,
        at=at or app.now(),
        transport_factory=app.transport,
        env=app.env,
        lock_timeout_s=lock_timeout,
    )


def echo_import_report(report) -> None:
    for f in report.folders:
        note = " (UIDVALIDITY changed: read again from the start, duplicates left out)" if f.rescanned else ""
        click.echo(f"{f.folder}: {f.read} read, {f.duplicates} already imported{note}")
    for q in report.effects.quarantine:
        click.echo(f"Quarantined #{q['id']} ({q['folder']} {q['key']}): {q['reason']}", err=True)
    click.echo(report.line())
    for kind, n in sorted(report.handled.items()):
        click.echo(f"{n} imported messages {kind} in the mailbox.")
    for warning in report.warnings:
        click.echo(f"Warning: {warning}", err=True)


@run.command("import")
@pass_app
@AT
@click.option(
    "--lock-timeout",
    type=click.FloatRange(0, 3600),
    default=30.0,
    show_default=True,
    help="Seconds to wait for an import cycle already running on this store.",
)
@FORMAT
def run_import_command(app: App, at_, lock_timeout, fmt_) -> None:
    """The import cycle: read new mail, classify replies, auto-replies and bounces, act on them."""
    report = run_import_cycle(app, at_, lock_timeout)
    if fmt_ == "json":
        echo_json(import_report_json(report))
    else:
        echo_import_report(report)
    finish(report.errors + ([str(report.fatal)] if report.fatal else []), code=report.exit_code)


@cli.group()
def inbox() -> None:
    """Incoming mail: replies, auto-replies and bounces, and why each was linked or ignored."""


@inbox.command("list")
@pass_app
@click.option(
    "--status",
    "status_",
    type=click.Choice(["linked", "ignored", "quarantined", "deleted", "all"]),
    default="linked",
    show_default=True,
)
@click.option("--kind", type=click.Choice(["reply", "auto_reply", "bounce", "complaint"]))
@click.option("--customer", metavar="EXTERNAL_ID", help="Only this customer's mail.")
@click.option("--limit", type=LIMIT, default=50, show_default=True)
@click.option("--offset", type=OFFSET, default=0)
@FORMAT
def inbox_list(app: App, status_, kind, customer, limit, offset, fmt_) -> None:
    """List incoming mail, newest first."""
    from dunningops.inbox.people import list_inbox

    with app.session() as session:
        rows, total = list_inbox(
            session, status=None if status_ == "all" else status_, kind=kind, customer=customer, limit=limit, offset=offset
        )
    if fmt_ == "json":
        echo_json({"total": total, "messages": rows})
        return
    click.echo(render_table([inbox_row(r) for r in rows], INBOX_COLUMNS), nl=False)
    line = more_line(offset + len(rows), total, "messages")
    if line:
        click.echo(line)


@inbox.command("show")
@pass_app
@click.argument("inbox_id", type=ROW_ID)
@click.option("--raw", is_flag=True, help="Print a quarantined message's raw bytes (as received).")
@FORMAT
def inbox_show(app: App, inbox_id, raw, fmt_) -> None:
    """Show one incoming message: its kind and evidence, bounce details, match, and the text."""
    from dunningops.inbox.people import get

    with app.session() as session:
        row = get(session, inbox_id)
    raw_bytes = row.pop("raw")
    if raw:
        if raw_bytes is None:
            finish([f"message #{inbox_id} has no raw bytes kept (only quarantined messages keep them)"])
            return
        sys.stdout.flush()
        sys.stdout.buffer.write(raw_bytes)  # as received: not decoded, not re-encoded
        sys.stdout.buffer.flush()
        return
    text = row.pop("text")
    if fmt_ == "json":
        echo_json({**row, "text": text, "raw_size": len(raw_bytes) if raw_bytes else None})
        return
    click.echo(f"#{row['id']} {row['status']} {row['kind'] or ''}: {row['subject'] or '(no subject)'}")
    click.echo(f"From: {row['from_name'] or ''} <{row['from_address'] or ''}>")
    click.echo(f"Received: {row['received_at'] or 'unknown'}; imported {row['imported_at']}; {row['folder']} {row['source_key']}")
    if row["evidence"]:
        click.echo(f"Classified by: {row['evidence']}")
    click.echo(f"Customer: {row['customer'] or 'none'} ({inbox_row(row)['why']})")
    for b in row["details"].get("bounces", []):
        click.echo(
            f"Bounce: {b['recipient']} {b['status'] or ''} {'permanent' if b['permanent'] else 'not permanent'} "
            f"({b['category']}); "
            f"original {b['original_message_id'] or 'unknown'}; {b['diagnostic'] or ''}"
        )
    if row["todo_id"]:
        click.echo(f"Reply to-do: #{row['todo_id']}")
    for defect in row["details"].get("defects", []):
        click.echo(f"Repaired: {defect}")
    if row["attachments"]:
        click.echo(
            "Attachments: " + ", ".join(f"{a['filename'] or '(unnamed)'} ({a['size']:,} bytes)" for a in row["attachments"])
        )
    if row["reply_text"]:
        click.echo(f"\n{row['reply_text']}")
    elif raw_bytes is not None:
        click.echo(f"\n{len(raw_bytes):,} raw bytes kept: `dunningops inbox show {inbox_id} --raw`")


@inbox.command("explain")
@pass_app
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@FORMAT
def inbox_explain(app: App, files, fmt_) -> None:
    """Why each raw message (.eml) is a reply, an auto-reply, a bounce or a complaint, and which customer it would go to."""
    from dunningops.inbox.people import explain

    with app.session() as session:
        results = explain(list(files), session)
    if fmt_ == "json":
        for r in results:
            click.echo(to_json(r), nl=False)
        return
    for r in results:
        click.echo(f"{r['file']}:")
        if r["kind"] is None:
            click.echo(f"  cannot be read: {r['quarantine']} (it would be quarantined)")
            continue
        click.echo(f"  kind: {r['kind']} ({r['evidence']})")
        for b in r.get("bounces") or []:
            click.echo(
                f"  bounce: {b['recipient']} status {b['status'] or '?'}, {'permanent' if b['permanent'] else 'not permanent'} "
                f"({b['category']}), original {b['original_message_id'] or 'unknown'}"
            )
        m = r["match"]
        if m is None:
            continue
        if m["customer"]:
            click.echo(f"  match: customer {m['customer']} by {m['by']}")
        elif m["by"] == "temporary":
            click.echo(f"  match: a new temporary customer for {m['address']} (replies.import: all)")
        else:
            click.echo(f"  match: ignored ({m['reason']})")


@inbox.command("relink")
@pass_app
@click.argument("inbox_id", type=ROW_ID)
@click.option("--customer", required=True, metavar="EXTERNAL_ID", help="The customer the message belongs to.")
@MEMBER
def inbox_relink(app: App, inbox_id, customer, member) -> None:
    """Link a message to another customer (or an ignored one to its customer); reply to-dos follow."""
    from dunningops.inbox.people import relink

    with app.session() as session:
        notes = relink(session, inbox_id, customer, at=app.now(), by=member)
    click.echo("\n".join(notes))


@inbox.command("delete")
@pass_app
@click.argument("inbox_id", type=ROW_ID)
@MEMBER
def inbox_delete(app: App, inbox_id, member) -> None:
    """Delete a message from the inbox (never imported again); its reply to-do follows."""
    from dunningops.inbox.people import delete

    with app.session() as session:
        notes = delete(session, inbox_id, at=app.now(), by=member)
    click.echo("\n".join(notes))
