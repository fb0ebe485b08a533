"""Customers and invoices: listing, one customer's whole picture, pauses and promises to pay,
temporary customers (merge, delete). Thin."""

from __future__ import annotations

import click

from dunningops.app import App
from dunningops.cli.main import cli
from dunningops.cli.options import DAYS, LIMIT, OFFSET, format_option, pass_app
from dunningops.cli.output import echo_json, more_line, render_table, to_json
from dunningops.tables import contacts_table, money

FORMAT = format_option("table", "json")
# T8: by the rating status of the incidents (customers' or invoices').
RATING = click.option(
    "--rating",
    type=click.Choice(["rated", "unrated", "none"]),
    help="By their incidents: rated (one has the customer's rating), unrated (incidents, none rated yet), none (no incident).",
)


@cli.group()
def customers() -> None:
    """Customers in the ledger."""


@customers.command("list")
@pass_app
@click.option(
    "--origin", type=click.Choice(["import", "manual", "incoming_message"]), help="e.g. customers created from unmatched mail."
)
@click.option("--plan", help="Only customers in this plan (explicit or by the assignment rules).")
@click.option("--overdue-days", type=DAYS, help="Only customers with an open invoice at least this many days overdue.")
@RATING
@click.option("--limit", type=LIMIT, default=100, show_default=True, help="At most this many customers.")
@click.option("--offset", type=OFFSET, default=0, show_default=True, help="Skip this many first.")
@FORMAT
def customers_list(app: App, origin, plan, overdue_days, rating, limit, offset, fmt_) -> None:
    """List customers with their plan, open invoices and outstanding amount (a page of them)."""
    from dunningops.ledger.queries import list_customers

    with app.session() as session:
        page = list_customers(
            session,
            today=app.now().date(),
            origin=origin,
            plan=plan,
            overdue_days=overdue_days,
            rating=rating,
            limit=limit,
            offset=offset,
        )
    rows, total = page.rows, page.total
    if fmt_ == "json":
        # An explicit page: never a silently truncated list.
        echo_json({"total": total, "offset": offset, "limit": limit, "customers": rows})
        return
    for r in rows:
        r["outstanding"] = money(r["outstanding_cents"], r["currency"])
    click.echo(
        render_table(
            rows,
            [
                ("external_id", "ID"),
                ("name", "NAME"),
                ("country", "CC"),
                ("plan", "PLAN"),
                ("origin", "ORIGIN"),
                ("contacts", "CONTACTS"),
                ("open_invoices", "OPEN"),
                ("outstanding", "OUTSTANDING"),
                ("days_overdue", "DAYS OVERDUE"),
            ],
        ),
        nl=False,
    )
    if line := more_line(offset + len(rows), total, "customers"):
        click.echo(line, err=True)


@customers.command("show")
@pass_app
@click.argument("external_id")
@click.option("--mail-limit", type=LIMIT, default=20, show_default=True, help="The latest emails shown, sent and received.")
@FORMAT
def customers_show(app: App, external_id, mail_limit, fmt_) -> None:
    """Show one customer: plan, contacts, open invoices, pauses, and its mail sent and received."""
    from dunningops.dunning.pauses import UNTIL_CLOSED
    from dunningops.ledger.queries import show_customer
    from dunningops.render.pdf import address_lines

    with app.session() as session:
        data = show_customer(session, external_id, app.now().date(), mail_limit=mail_limit)
    if fmt_ == "json":
        click.echo(to_json(data), nl=False)
        return
    paused = f", paused until {data['paused_until']} ({data['pause_reason']})" if data["paused_until"] else ""
    click.echo(f"{data['external_id']}  {data['name']}  ({data['country'] or '-'}, {data['locale']}, {data['currency']})")
    click.echo(
        f"plan: {data['plan'] or 'none'}{' (explicit)' if data['plan_id'] else ''}; account manager: "
        f"{data['account_manager'] or 'none'}; origin: {data['origin']}{paused}"
    )
    if postal := address_lines(data):  # letters are printed with it
        click.echo(f"postal address: {', '.join(postal)}")
    click.echo("\nContacts:")
    click.echo(contacts_table(data["contacts"]), nl=False)
    click.echo("\nOpen invoices:")
    for inv in data["open_invoices"]:
        inv["outstanding"] = money(inv["outstanding_cents"], inv["currency"])
        inv["amount"] = money(inv["amount_cents"])
        inv["pause"] = _pause_words(inv["paused_until"], inv["pause_reason"]) if inv["paused"] else ""
    click.echo(
        render_table(
            data["open_invoices"],
            [
                ("number", "NUMBER"),
                ("due_date", "DUE"),
                ("days_overdue", "DAYS"),
                ("amount", "AMOUNT"),
                ("outstanding", "OUTSTANDING"),
                ("pause", "PAUSED"),
            ],
        ),
        nl=False,
    )
    click.echo("\nPauses:")
    for p in data["pauses"]:
        p["since"] = f"{p['created_at']:%Y-%m-%d}"
        if p["until"] == UNTIL_CLOSED:  # an incident's dispute: no date, until it is closed
            p["until"] = "its incident is closed"
        p["ended"] = f"{p['ended_how']} {p['ended_at']:%Y-%m-%d}" if p["ended_how"] else "active"
    click.echo(
        render_table(
            data["pauses"],
            [
                ("since", "SINCE"),
                ("invoice", "INVOICE"),
                ("reason", "REASON"),
                ("until", "UNTIL"),
                ("created_by", "BY"),
                ("ended", "ENDED"),
                ("note", "NOTE"),
            ],
        ),
        nl=False,
    )
    if data["incidents"]:
        click.echo("\nIncidents, newest first:")
        for i in data["incidents"]:
            i["opened"] = f"{i['opened_at']:%Y-%m-%d}"
            i["closed"] = f"{i['closed_at']:%Y-%m-%d}" if i["closed_at"] else ""
            i["score"] = f"{i['rating']}/5" if i["rating"] is not None else ""
        click.echo(
            render_table(
                data["incidents"],
                [
                    ("reference", "REFERENCE"),
                    ("kind", "KIND"),
                    ("state", "STATE"),
                    ("invoice", "INVOICE"),
                    ("opened", "OPENED"),
                    ("closed", "CLOSED"),
                    ("score", "RATING"),
                    ("rating_message", "MESSAGE"),
                ],
            ),
            nl=False,
        )
    click.echo("\nMail, newest first:")
    for m in data["mail"]:
        m["when"] = f"{m['at']:%Y-%m-%d %H:%M}" if m["at"] else "-"
    click.echo(
        render_table(
            data["mail"],
            [("when", "WHEN (UTC)"), ("direction", "DIR"), ("kind", "KIND"), ("status", "STATUS"), ("subject", "SUBJECT")],
        ),
        nl=False,
    )
    if (more := data["mail_total"] - len(data["mail"])) > 0:
        click.echo(f"… and {more:,} more emails not shown (of {data['mail_total']:,}; use --mail-limit).")


def _pause_words(until, reason: str | None) -> str:
    return f"until {until} ({reason or 'no reason given'})" if until else f"({reason or 'no reason given'})"


# --- pauses: stop chasing a customer or an invoice, for a reason, until a date ---------------

UNTIL = click.option(
    "--until",
    required=True,
    type=click.DateTime(formats=["%Y-%m-%d"]),
    metavar="DATE",
    help="The last day of the pause (YYYY-MM-DD, today or later); the dunning resumes the day after.",
)
REASON = click.option(
    "--reason",
    required=True,
    type=click.Choice(["promise", "dispute", "other"]),
    help="promise: a promise to pay (checked at the end: kept, or broken and a to-do); dispute; other.",
)
NOTE = click.option("--note", help="Why, in a few words (shown in the pause history).")
BY = click.option("--by", "member", envvar="DUNNINGOPS_MEMBER", metavar="MEMBER", help="The member pausing, e.g. alice.")


def _paused_line(what: str, result: dict) -> str:
    from dunningops.dunning.pauses import LABELS, UNTIL_CLOSED

    line = f"{what} paused until {result['until']}: {LABELS[result['reason']]}"
    if replaced := result["replaced"]:
        until = f" until {replaced['until']}" if replaced["until"] else ""
        if replaced["until"] == UNTIL_CLOSED:
            until = " until its incident is closed"
        line += f" (replaces the pause{until}, {LABELS.get(replaced['reason'] or '', replaced['reason'] or 'no reason given')})"
    return line + "."


def _resumed_line(what: str, result: dict) -> str:
    from dunningops.dunning.pauses import LABELS, UNTIL_CLOSED

    ended = result["ended"]
    until = f" until {ended['until']}" if ended["until"] else ""
    if ended["until"] == UNTIL_CLOSED:
        until = " until its incident is closed"
    reason = LABELS.get(ended["reason"] or "", ended["reason"] or "no reason given")
    return f"{what} resumed (the pause{until}, {reason}, ended): its dunning goes on from the step after the last one performed."


@customers.command("pause")
@pass_app
@click.argument("external_id")
@UNTIL
@REASON
@NOTE
@BY
@FORMAT
def customers_pause(app: App, external_id, until, reason, note, member, fmt_) -> None:
    """Stop chasing a customer (all its invoices) until a date, for a reason; replaces an active pause."""
    from dunningops.dunning.pauses import pause_customer

    with app.session() as session:
        result = pause_customer(session, external_id, until=until.date(), reason=reason, note=note, by=member, now=app.now())
    _pause_result(result, fmt_, _paused_line(f"Customer {external_id} ({result['name']})", result))


def _pause_result(result: dict, fmt_: str, line: str) -> None:
    """A pause or resume command's answer: the row as JSON, or one line."""
    if fmt_ == "json":
        echo_json(result)
    else:
        click.echo(line)


@customers.command("resume")
@pass_app
@click.argument("external_id")
@FORMAT
def customers_resume(app: App, external_id, fmt_) -> None:
    """End a customer's pause now: the dunning goes on where it stopped."""
    from dunningops.dunning.pauses import resume_customer

    with app.session() as session:
        result = resume_customer(session, external_id, now=app.now())
    _pause_result(result, fmt_, _resumed_line(f"Customer {external_id} ({result['name']})", result))


@cli.group()
def invoices() -> None:
    """Invoices in the ledger: listing, pauses (a dispute, a promise to pay)."""


@invoices.command("list")
@pass_app
@click.option("--customer", metavar="ID", help="Only this customer's (its external id).")
@click.option(
    "--status", type=click.Choice(["open", "paid", "void", "all"]), default="open", show_default=True, help="Their status."
)
@RATING
@click.option("--limit", type=LIMIT, default=100, show_default=True, help="At most this many invoices.")
@click.option("--offset", type=OFFSET, default=0, show_default=True, help="Skip this many first.")
@FORMAT
def invoices_list(app: App, customer, status, rating, limit, offset, fmt_) -> None:
    """List invoices, oldest due first, with their customer, outstanding amount and pause."""
    from dunningops.ledger.queries import list_invoices

    with app.session() as session:
        page = list_invoices(
            session,
            today=app.now().date(),
            customer=customer,
            status=None if status == "all" else status,
            rating=rating,
            limit=limit,
            offset=offset,
        )
    if fmt_ == "json":
        echo_json({"total": page.total, "offset": offset, "limit": limit, "invoices": page.rows})
        return
    for r in page.rows:
        r["amount"] = money(r["amount_cents"])
        r["outstanding"] = money(r["outstanding_cents"], r["currency"])
        r["pause"] = _pause_words(r["paused_until"], r["pause_reason"]) if r["paused"] else ""
    click.echo(
        render_table(
            page.rows,
            [
                ("external_id", "ID"),
                ("number", "NUMBER"),
                ("customer", "CUSTOMER"),
                ("due_date", "DUE"),
                ("days_overdue", "DAYS"),
                ("status", "STATUS"),
                ("amount", "AMOUNT"),
                ("outstanding", "OUTSTANDING"),
                ("pause", "PAUSED"),
            ],
        ),
        nl=False,
    )
    if line := more_line(offset + len(page.rows), page.total, "invoices"):
        click.echo(line, err=True)


@invoices.command("pause")
@pass_app
@click.argument("invoice")
@UNTIL
@REASON
@NOTE
@BY
@FORMAT
def invoices_pause(app: App, invoice, until, reason, note, member, fmt_) -> None:
    """Stop chasing one open INVOICE (its number or external id) until a date, for a reason.

    The customer's other invoices are still chased; the grouped email of a
    customer-level plan leaves the paused invoice out.
    """
    from dunningops.dunning.pauses import pause_invoice, resolve_invoice

    with app.session() as session:
        ext = resolve_invoice(session, invoice)
        result = pause_invoice(session, ext, until=until.date(), reason=reason, note=note, by=member, now=app.now())
    _pause_result(result, fmt_, _paused_line(f"Invoice {result['invoice']} (customer {result['customer']})", result))


@invoices.command("resume")
@pass_app
@click.argument("invoice")
@FORMAT
def invoices_resume(app: App, invoice, fmt_) -> None:
    """End the pause of INVOICE (its number or external id) now: its dunning goes on where it stopped."""
    from dunningops.dunning.pauses import resolve_invoice, resume_invoice

    with app.session() as session:
        result = resume_invoice(session, resolve_invoice(session, invoice), now=app.now())
    _pause_result(result, fmt_, _resumed_line(f"Invoice {result['invoice']} (customer {result['customer']})", result))


# --- temporary customers (made from mail that matched nobody): merge, delete -----------------


@customers.command("merge")
@pass_app
@click.argument("temporary")
@click.argument("into")
@FORMAT
def customers_merge(app: App, temporary, into, fmt_) -> None:
    """Merge the temporary customer TEMPORARY (made from incoming mail) into the customer INTO.

    Its mail, to-dos and pause history move to INTO, and its contacts'
    addresses INTO lacks become INTO's contacts; TEMPORARY is then deleted.
    """
    from dunningops.ledger.customers import merge_customer

    with app.session() as session:
        result = merge_customer(session, temporary, into, now=app.now())
    if fmt_ == "json":
        echo_json(result)
        return
    moved = result["moved"]
    parts = [
        f"{moved['received']} received and {_n(moved['sent'], 'sent email')}",
        _n(moved["todos"], "to-do"),
        _n(moved["pauses"], "pause"),
        f"{_n(result['contacts_added'], 'contact')} added ({result['contacts_already_there']} already there)",
    ]
    click.echo(f"Merged {temporary} into {into} ({result['into_name']}): {', '.join(parts)}; {temporary} is deleted.")
    if result["pauses_ended"]:
        click.echo(f"Its active pause ended: pause {into} if it still applies.")


@customers.command("delete")
@pass_app
@click.argument("external_id", required=False)
@click.option(
    "--origin",
    type=click.Choice(["import", "manual", "incoming_message"]),
    help="Delete every customer of this origin (only incoming_message: the temporary ones).",
)
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@FORMAT
def customers_delete(app: App, external_id, origin, yes, fmt_) -> None:
    """Delete a temporary customer EXTERNAL_ID (made from incoming mail), or all of them with --origin incoming_message.

    Their contacts, to-dos and pauses go with them; their received mail stays
    in the inbox, no longer linked. Customers from the accounting system are
    never deleted here.
    """
    from dunningops.errors import InvalidInputError
    from dunningops.ledger.customers import TEMPORARY, count_temporary, delete_temporary

    if (external_id is None) == (origin is None):
        raise click.UsageError("give one customer's EXTERNAL_ID, or --origin incoming_message for all the temporary ones")
    if origin is not None and origin != TEMPORARY:
        raise InvalidInputError(f"only temporary customers (origin {TEMPORARY}) can be deleted in bulk, not origin {origin}")
    with app.session() as session:
        if external_id is None:
            count = count_temporary(session)
            if count and not yes:
                click.echo(f"{_n(count, 'temporary customer')} (origin {TEMPORARY}) will be deleted.", err=fmt_ == "json")
                if not click.confirm(f"Delete {'it' if count == 1 else f'these {count:,}'}?", default=False, err=fmt_ == "json"):
                    raise click.Abort()
        result = delete_temporary(session, external_id)
    if fmt_ == "json":
        echo_json(result)
        return
    if external_id is not None:
        click.echo(f"Customer {external_id} is deleted.")
    else:
        click.echo(f"{_n(result['deleted'], 'temporary customer')} deleted.")
    if result["kept"]:
        click.echo(f"{_n(result['kept'], 'temporary customer')} with invoices kept: delete or merge them one by one.", err=True)


def _n(count: int, what: str) -> str:
    return f"{count:,} {what}{'' if count == 1 else 's'}"
