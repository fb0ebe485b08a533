"""`dunningops notify`: the unpaid-invoice notification to debtors (T7). Thin."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from dunningops.app import App
from dunningops.cli.main import cli
from dunningops.cli.options import ACTOR, AT, DAYS, format_option, pass_app
from dunningops.cli.output import echo_json, finish, render_table
from dunningops.tables import money

if TYPE_CHECKING:
    from dunningops.notify.debtors import Result, Summary

EXAMPLES = 5  # customers shown before asking (all of them with --dry-run)


@cli.group()
def notify() -> None:
    """Notifications to customers besides the dunning plans."""


@notify.command("debtors")
@pass_app
@click.option(
    "--overdue-min",
    type=DAYS,
    default=1,
    show_default=True,
    metavar="DAYS",
    help="Only invoices at least this many days past their due date (0: due today too).",
)
@click.option(
    "--since-last-notification",
    "since_last",
    type=DAYS,
    metavar="DAYS",
    help="Only customers not sent this notification in the last DAYS days (never notified ones too).",
)
@click.option(
    "--customer",
    "customers",
    multiple=True,
    metavar="ID",
    help="Only this customer, by external id (repeatable). When the notification is off by default, only "
    "the customers named here are notified.",
)
@click.option("--dry-run", is_flag=True, help="Show every email it would send, and send nothing.")
@click.option("--yes", is_flag=True, help="Send without asking for confirmation.")
@click.option(
    "--again",
    is_flag=True,
    help="Also notify customers whose last notification was interrupted and may already have arrived.",
)
@ACTOR
@AT
@format_option("text", "json")
def notify_debtors(app: App, overdue_min, since_last, customers, dry_run, yes, again, actor, at_, fmt_) -> None:
    """Send the unpaid-invoice notification: one email per customer listing its overdue invoices,
    each with its reference, due date, amount and a link to the document.

    It covers the customers with an open invoice at least --overdue-min days overdue, leaving out
    paused customers and invoices. It shows first how many customers, invoices and recipients it
    covers and asks before sending (or --yes); the sending caps apply, and each customer's last
    notification is recorded.
    """
    from dunningops.errors import InvalidInputError
    from dunningops.notify.debtors import Filters, notify
    from dunningops.permissions import who_acts

    as_json = fmt_ == "json"

    def show(summary: Summary) -> None:
        if not as_json:
            click.echo(summary_text(summary, everyone=dry_run), nl=False)

    def confirm(summary: Summary) -> bool:
        if yes:
            return True
        if not sys.stdin.isatty():
            raise InvalidInputError(
                "no terminal to confirm on: pass --yes to send (or --dry-run to see every email); nothing was sent"
            )
        count = len(summary.ready)
        return click.confirm(f"Send {count} email{'s' if count != 1 else ''}?", default=False, err=as_json)

    result = notify(
        app.store,
        at=at_ or app.now(),
        filters=Filters(overdue_min, since_last, tuple(customers), again),
        actor=None if dry_run else who_acts(app.config_dir, actor),
        transport_factory=app.transport,
        dry_run=dry_run,
        show=show,
        confirm=confirm,
    )
    if as_json:
        echo_json(result_dict(result, dry_run))
    else:
        click.echo(outcome_text(result, dry_run), nl=False)
    problems = [o for o in result.outcomes if o.status != "sent"]
    over = result.summary.over_caps() if dry_run else None
    finish([over] if over else [], code=1 if problems or over else 0)


def summary_text(summary: Summary, *, everyone: bool) -> str:
    """The summary shown before sending: the counts, who is skipped and why, then the emails."""
    f = summary.selection.filters
    covers = [f"invoices at least {_n(f.overdue_min, 'day')} overdue" if f.overdue_min else "invoices due"]
    if f.since_last is not None:
        covers.append(f"customers not notified in the last {_n(f.since_last, 'day')}")
    if f.customers:
        covers.append(f"only {_n(len(f.customers), 'customer')} named")
    totals = ", ".join(money(c, cur) for cur, c in summary.totals.items()) or "nothing due"
    out = [
        f"Unpaid-invoice notification ({'; '.join(covers)}):",
        f"{_n(len(summary.ready), 'customer')}, {_n(summary.invoices, 'invoice')}, {_n(summary.recipients, 'recipient')} "
        f"({totals}); {_n(len(summary.skipped), 'customer')} skipped; caps: {summary.room_words}.",
    ]
    if summary.selection.named_only:
        out.append("The notification is off by default: only the customers named with --customer are notified.")
    for s in summary.skipped:
        out.append(f"  skipped {s.customer['external_id']} ({s.customer['name']}): {s.reason}")
    shown = summary.ready if everyone else summary.ready[:EXAMPLES]
    if shown:
        rows = [
            {
                "customer": r.customer["external_id"],
                "name": r.customer["name"],
                "invoices": len(r.invoice_ids),
                "outstanding": ", ".join(money(c, cur) for cur, c in summary.total(r).items()),
                "language": r.language,
                "to": ", ".join(c.email for c in (*r.recipients.to, *r.recipients.cc)),
            }
            for r in shown
        ]
        columns = [
            ("customer", "CUSTOMER"),
            ("name", "NAME"),
            ("invoices", "INVOICES"),
            ("outstanding", "OUTSTANDING"),
            ("language", "LANG"),
            ("to", "TO"),
        ]
        out.append(render_table(rows, columns).rstrip("\n"))
    if (more := len(summary.ready) - len(shown)) > 0:
        out.append(f"… and {_n(more, 'more customer')} (see them all with --dry-run).")
    return "\n".join(out) + "\n"


def outcome_text(result: Result, dry_run: bool) -> str:
    if dry_run:
        return "Dry run: nothing was sent.\n"
    if not result.summary.ready:
        return "Nothing to send.\n"
    if not result.sent:
        return "Cancelled; nothing was sent.\n"
    lines = []
    for o in result.outcomes:
        to = ", ".join(a.email for a in (*o.recorded.message.to, *o.recorded.message.cc))
        line = f"{o.letter.tag.customer['external_id']}: {o.status} to {to}"
        if o.status == "unknown":
            line += f" ({o.problem}; it may have arrived: it is not sent again)"
        elif o.status != "sent":
            line += f" ({o.problem})"
        lines.append(line)
    counts = {s: sum(1 for o in result.outcomes if o.status == s) for s in ("sent", "failed", "deferred", "unknown")}
    lines.append(", ".join(f"{n} {s}" for s, n in counts.items()) + ".")
    return "\n".join(lines) + "\n"


def result_dict(result: Result, dry_run: bool) -> dict:
    return {
        "dry_run": dry_run,
        "sent": result.sent,
        "actor": result.actor.member if result.actor else None,
        **result.summary.to_dict(),
        "outcomes": [
            {
                "customer": o.letter.tag.customer["external_id"],
                "status": o.status,
                "message_id": o.message_id,
                "to": [a.email for a in o.recorded.message.to],
                "cc": [a.email for a in o.recorded.message.cc],
                "problem": None if o.status == "sent" else o.problem,
            }
            for o in result.outcomes
        ],
    }


def _n(count: int, what: str) -> str:
    return f"{count:,} {what}{'' if count == 1 else 's'}"
