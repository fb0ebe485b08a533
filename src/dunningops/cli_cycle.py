"""Commands of the send cycle: `run send`, `status`, `todo …`, `alias …`, `template …`, `messages`. Thin."""

from __future__ import annotations

import sys
from datetime import UTC, datetime

import click

from dunningops import clock
from dunningops.cli_base import _session, _store, cli, config_option, database_option, render_table, to_json, transport_factory

FORMAT = click.option("--format", "fmt_", type=click.Choice(["table", "json"]), default="table", show_default=True)


def _instant(value: str | None) -> datetime:
    if not value:
        return clock.now()
    try:
        at = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO timestamp such as 2026-11-24T08:30+01:00") from None
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).astimezone(UTC)


@cli.group()
def run() -> None:
    """Run a cycle once (from CI or cron)."""


@run.command("send")
@config_option
@database_option
@click.option("--at", "at_", metavar="TIMESTAMP", help="The instant to run at (ISO 8601; default: now).")
@click.option("--dry-run", is_flag=True, help="Show what is due and what would happen; write and send nothing.")
@FORMAT
def run_send_command(config_dir, database_url, at_, dry_run, fmt_) -> None:
    """The send cycle: send due automatic emails, turn manual steps into to-dos."""
    from dunningops.dunning.cycle import run_send

    with _store(config_dir, database_url) as store:
        report = run_send(store, at=_instant(at_), transport_factory=transport_factory(config_dir), dry_run=dry_run)
    rows = [d.row() for d in report.decisions]
    if fmt_ == "json":
        click.echo(to_json({"at": report.at.isoformat(), "dry_run": dry_run, "decisions": rows, "sent": report.sent,
                          "failed": report.failed, "deferred": report.deferred, "todos": report.todos,
                          "unknown": report.unknown, "errors": report.errors}), nl=False)
        return
    click.echo(render_table(rows, [("customer", "CUSTOMER"), ("plan", "PLAN"), ("step", "STEP"), ("action", "ACTION"),
                                   ("due_since", "DUE SINCE"), ("outcome", "OUTCOME"), ("reason", "WHY")]), nl=False)
    counts = report.outcomes()
    line = ", ".join(f"{counts[k]} {k}" for k in ("send", "todo", "wait", "skip") if counts[k]) or "nothing due"
    if dry_run:
        click.echo(f"Dry run at {report.at:%Y-%m-%d %H:%M} UTC: {line}. Nothing was written or sent.")
    else:
        click.echo(f"Send cycle at {report.at:%Y-%m-%d %H:%M} UTC: {report.sent} sent, {report.failed} failed, "
                   f"{report.deferred} deferred, {report.todos} to-dos ({line}).")
        if report.confirmations:
            click.echo(f"{report.confirmations} alias confirmation emails sent (A3).")
        if report.unknown:
            click.echo(f"Warning: {report.unknown} messages of an interrupted run are now 'unknown' (see `dunningops status`).", err=True)
    for error in report.errors:
        click.echo(f"Error: {error}", err=True)
    if report.errors:
        sys.exit(1)


@cli.command()
@config_option
@database_option
def status(config_dir, database_url) -> None:
    """Messages by status (with the `unknown` ones of an interrupted run), open to-dos, pending outbox."""
    from dunningops.dunning.status import collect_status

    with _session(config_dir, database_url) as session:
        data = collect_status(session)
    click.echo("Messages: " + (", ".join(f"{n} {s}" for s, n in sorted(data["messages"].items())) or "none"))
    click.echo("Open to-dos: " + (", ".join(f"{n} {k}" for k, n in sorted(data["todos"].items())) or "none"))
    click.echo(f"Alias confirmations waiting to be sent: {data['outbox']}")
    for m in data["unknown"]:
        click.echo(f"unknown: {m['message_id']} to {', '.join(m['to_addresses'])} ({m['subject']}) at {m['created_at']}: "
                   "the run stopped during sending; it may or may not have left. It will not be re-sent.")


@cli.group()
def todo() -> None:
    """To-dos for people (E1): manual emails, calls, letters, replies."""


@todo.command("list")
@config_option
@database_option
@click.option("--status", "status_", type=click.Choice(["open", "done", "dismissed", "sent", "all"]), default="open", show_default=True)
@click.option("--assignee", help="A member id.")
@click.option("--kind", type=click.Choice(["email", "call", "letter", "reply", "no_recipient"]))
@FORMAT
def todo_list(config_dir, database_url, status_, assignee, kind, fmt_) -> None:
    """List to-dos."""
    from dunningops.dunning.todos import list_todos

    with _session(config_dir, database_url) as session:
        rows = list_todos(session, status=None if status_ == "all" else status_, assignee=assignee, kind=kind)
    if fmt_ == "json":
        click.echo(to_json(rows), nl=False)
        return
    click.echo(render_table(rows, [("id", "#"), ("kind", "KIND"), ("status", "STATUS"), ("customer", "CUSTOMER"),
                                   ("plan_id", "PLAN"), ("step_id", "STEP"), ("assignee", "ASSIGNEE"), ("reason", "WHY")]), nl=False)


@todo.command("show")
@config_option
@database_option
@click.argument("todo_id", type=int)
def todo_show(config_dir, database_url, todo_id) -> None:
    """Show a to-do with its prepared email, letter or phone numbers."""
    from dunningops.dunning.todos import get

    with _session(config_dir, database_url) as session:
        data = get(session, todo_id)
    payload = data.pop("payload")
    click.echo(to_json(data), nl=False)
    if payload.get("subject"):
        click.echo(f"\nFrom: {payload.get('from_name', '')} <{payload.get('from', '')}>  (sender {payload.get('sender', '-')})")
        if payload.get("to"):
            click.echo(f"To: {', '.join(payload['to'])}")
        click.echo(f"Subject: {payload['subject']}\n\n{payload.get('text', '')}")
    elif payload.get("phones") is not None:
        click.echo("\nPhone numbers: " + (", ".join(f"{p['name'] or p['email']}: {p['phone']}" for p in payload["phones"]) or "none"))
    if payload.get("problem"):
        click.echo(f"\nProblem: {payload['problem']}")


def _close(config_dir, database_url, todo_id, status_, member) -> None:
    from dunningops.dunning.todos import close

    with _session(config_dir, database_url) as session:
        close(session, todo_id, status_, member, clock.now())
    click.echo(f"To-do #{todo_id} is {status_}.")


MEMBER = click.option("--as", "member", envvar="DUNNINGOPS_MEMBER", help="The member doing it (A8), e.g. alice.")


@todo.command("done")
@config_option
@database_option
@click.argument("todo_id", type=int)
@MEMBER
def todo_done(config_dir, database_url, todo_id, member) -> None:
    """Mark a to-do done (the call was made, the letter posted)."""
    _close(config_dir, database_url, todo_id, "done", member)


@todo.command("dismiss")
@config_option
@database_option
@click.argument("todo_id", type=int)
@MEMBER
def todo_dismiss(config_dir, database_url, todo_id, member) -> None:
    """Dismiss a to-do (R4: a dismissed reply to-do lets the plan go on)."""
    _close(config_dir, database_url, todo_id, "dismissed", member)


@todo.command("send")
@config_option
@database_option
@click.argument("todo_id", type=int)
@click.option("--from", "sender", help="Change the sender (A6): alias.<id>, member.<id> or account_manager.")
@MEMBER
def todo_send(config_dir, database_url, todo_id, sender, member) -> None:
    """Send the prepared email of a manual-email to-do (A6: the sender can be changed)."""
    from dunningops.dunning.manual import send_todo

    with _store(config_dir, database_url) as store:
        result = send_todo(store, todo_id, at=clock.now(), sender=sender, member=member,
                           transport_factory=transport_factory(config_dir))
    click.echo(f"To-do #{todo_id}: {result}")


@cli.group()
def alias() -> None:
    """Sender aliases: verification (A3)."""


@alias.command("verify")
@config_option
@database_option
@click.argument("token")
def alias_verify(config_dir, database_url, token) -> None:
    """Verify an alias with the code from its confirmation email (A3)."""
    from dunningops.dunning.aliases import verify

    with _session(config_dir, database_url) as session:
        alias_id = verify(session, token, clock.now())
    click.echo(f"Alias {alias_id} is verified: reminders can now be sent from it.")


@alias.command("resend")
@config_option
@database_option
@click.argument("alias_id")
def alias_resend(config_dir, database_url, alias_id) -> None:
    """Queue a new confirmation email for an unverified alias (sent by the next `run send`)."""
    from dunningops.dunning.aliases import resend

    with _session(config_dir, database_url) as session:
        email = resend(session, alias_id, clock.now())
    click.echo(f"A new confirmation email to {email} is queued; `dunningops run send` delivers it.")


@cli.command()
@config_option
@database_option
@click.option("--customer", help="A customer's external id.")
@click.option("--status", "status_", type=click.Choice(["sending", "sent", "unknown", "failed", "deferred"]))
@click.option("--limit", type=int, default=50, show_default=True)
@FORMAT
def messages(config_dir, database_url, customer, status_, limit, fmt_) -> None:
    """The history of emails (E6, A8): status, automatic or manual, sender, who sent it."""
    from dunningops.dunning.status import message_history

    with _session(config_dir, database_url) as session:
        rows = message_history(session, customer=customer, status=status_, limit=limit)
    if fmt_ == "json":
        click.echo(to_json(rows), nl=False)
        return
    for r in rows:
        r["when"] = f"{r['created_at']:%Y-%m-%d %H:%M}"
        r["how"] = "auto" if r["automatic"] else f"manual ({r['performed_by']})" if r["performed_by"] else "manual"
        r["step"] = f"{r['plan_id']}.{r['step_id']}" if r["plan_id"] else r["kind"]
        r["to"] = ", ".join(r["to_addresses"])
    click.echo(render_table(rows, [("id", "#"), ("when", "WHEN (UTC)"), ("customer", "CUSTOMER"), ("step", "STEP"),
                                   ("how", "HOW"), ("sender_ref", "SENDER"), ("to", "TO"), ("status", "STATUS")]), nl=False)
