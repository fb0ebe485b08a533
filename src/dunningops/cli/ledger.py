"""The ledger: `ledger import|generate`, `customers list|show|pause|resume|merge|delete`, `invoices pause|resume`,
`contacts …`. Thin."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from dunningops.app import App
from dunningops.cli.main import cli
from dunningops.cli.options import LIMIT, OFFSET, ROW_ID, format_option, pass_app
from dunningops.cli.output import echo_json, more_line, to_json
from dunningops.tables import contacts_table

KIND = click.Choice(["customers", "contacts", "invoices", "payments"])
FORMAT = format_option("table", "json")


@cli.group()
def ledger() -> None:
    """Customers, contacts, invoices and payments from the accounting system."""


def _write_options(*, rejects: str, prune: str, summary: str):
    """--skip-invalid, --reject-file, --prune and --dry-run, worded for one file or several."""

    def decorate(command):
        for option in reversed(
            (
                click.option(
                    "--skip-invalid", is_flag=True, help="Import the valid rows; write the invalid ones to --reject-file."
                ),
                click.option(
                    "--reject-file",
                    type=click.Path(dir_okay=False, path_type=Path),
                    help=f"Where --skip-invalid writes {rejects} and why.",
                ),
                click.option("--prune", is_flag=True, help=prune),
                click.option("--dry-run", is_flag=True, help=f"Do everything, show {summary}, write nothing."),
            )
        ):
            command = option(command)
        return command

    return decorate


@ledger.command("import")
@pass_app
@click.argument("kind", type=KIND)
@click.argument("file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--format", "file_format", type=click.Choice(["csv", "jsonl"]), help="Default: from the file's extension.")
@click.option(
    "--mapping",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="YAML column mapping for another system's export.",
)
@_write_options(
    rejects="the rejected rows",
    prune="Invoices: the file is a full export; void open invoices it lacks.",
    summary="the summary",
)
def ledger_import(app: App, kind, file, file_format, mapping, skip_invalid, reject_file, prune, dry_run) -> None:
    """Import KIND (customers, contacts, invoices, payments) from a CSV or JSON Lines FILE.

    Rows are upserted by external id: importing the same file twice changes
    nothing. Any invalid row stops the import with every error listed (file,
    row, column) and nothing written, unless --skip-invalid.
    """
    from dunningops.ledger.importer import import_file
    from dunningops.ledger.mapping import load_mapping
    from dunningops.progress import row_progress

    with row_progress(f"Importing {kind}") as progress:
        summary = import_file(
            app.store,
            kind,
            file,
            now=app.now(),
            fmt=file_format,
            mapping=load_mapping(mapping),
            skip_invalid=skip_invalid,
            reject_file=reject_file,
            prune=prune,
            dry_run=dry_run,
            confirm=_prune_confirm(prune, file.name),
            progress=progress,
        )
    _summaries(app, [summary], reject_file)


@ledger.command("import-all")
@pass_app
@click.argument("directory", type=click.Path(file_okay=False, exists=True, path_type=Path))
@_write_options(
    rejects="the rejected rows of every file",
    prune="The invoices file is a full export; void open invoices it lacks.",
    summary="the summaries",
)
def ledger_import_all(app: App, directory, skip_invalid, reject_file, prune, dry_run) -> None:
    """Import the ledger files in DIRECTORY in one transaction: all of them or nothing.

    DIRECTORY holds customers, contacts, invoices and payments files (.csv or
    .jsonl, named as `ledger generate` writes them); those present are
    imported in that order, each checked against the ones before. Every file
    is checked, so one run lists the errors of all of them.
    """
    from dunningops.ledger.importer import import_files, ledger_files
    from dunningops.progress import row_progress

    files = ledger_files(directory)
    invoices = next((f.path.name for f in files if f.kind == "invoices"), "the invoices file")
    with row_progress(f"Importing {directory.name or directory}") as progress:
        done: dict[str, int] = {}

        def each(kind: str, rows: int) -> None:
            done[kind] = rows
            progress(sum(done.values()))

        summaries = import_files(
            app.store,
            files,
            now=app.now(),
            skip_invalid=skip_invalid,
            reject_file=reject_file,
            prune=prune,
            dry_run=dry_run,
            confirm=_prune_confirm(prune, invoices),
            progress=each,
        )
    _summaries(app, summaries, reject_file)


def _prune_confirm(prune: bool, name: str):
    def confirm(summary) -> bool:
        # A prune voids invoices: on a terminal, say how many and ask first.
        if not (prune and summary.pruned and sys.stdin.isatty()):
            return True
        click.echo(summary.line())
        return click.confirm(f"Void {summary.pruned} invoices absent from {name}?", default=False)

    return confirm


def _summaries(app: App, summaries: list, reject_file: Path | None) -> None:
    """Each file's summary line, what --skip-invalid left out, then the payment notifications it owes."""
    for summary in summaries:
        click.echo(summary.line())
    rejected = sum(summary.rejected for summary in summaries)
    if rejected:
        where = f" (see {reject_file})" if reject_file else ""
        click.echo(f"{rejected} invalid rows were skipped{where}.", err=True)
    for summary in summaries:
        if summary.kind == "payments":
            _payment_notifications(app, summary)


def _payment_notifications(app: App, summary) -> None:
    """Receipts and failed-payment emails, sent once the import committed (with any left from before)."""
    from dunningops.notify.portal import send_pending

    if summary.dry_run:
        if summary.notices:
            click.echo(f"Payment notifications: {summary.notices} owed by this import (a dry run sends nothing).")
        return
    report = send_pending(app.store, at=app.now(), transport_factory=app.transport)
    for line in report.lines():
        click.echo(line)
    for problem in report.problems:
        click.echo(f"Warning: {problem}", err=True)
    if report.fatal is not None:
        click.echo(f"Warning: {report.fatal}; the payment notifications left go out with the next send cycle.", err=True)


@ledger.command("generate")
@pass_app(database=False)
@click.option("--customers", type=click.IntRange(1), default=200, show_default=True)
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--invalid-emails", is_flag=True, help="Make about 0.5% of contact emails malformed (to try --skip-invalid).")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
def ledger_generate(app: App, customers, seed, invalid_emails, directory) -> None:
    """Write realistic demo CSV files (customers, contacts, invoices, payments) into DIRECTORY."""
    from dunningops.ledger.generate import generate_ledger

    desired = app.load_config()
    directory.mkdir(parents=True, exist_ok=True)
    counts = generate_ledger(
        directory,
        customers=customers,
        seed=seed,
        members=sorted(desired.members),
        functions=sorted(desired.contact_functions),
        today=app.now().date(),
        plans=sorted(desired.plans),
        invalid_emails=invalid_emails,
    )
    click.echo(", ".join(f"{n} {name}" for name, n in counts.items() if isinstance(n, int)) + f" written to {directory}")


@cli.group()
def contacts() -> None:
    """Contacts of customers: functions, primary contact, validity."""


@contacts.command("list")
@pass_app
@click.option("--customer", help="A customer's external id.")
@click.option("--invalid", is_flag=True, help="Only contacts marked invalid (bounces).")
@click.option("--function", help="Only contacts with this function id.")
@click.option("--limit", type=LIMIT, default=1000, show_default=True, help="At most this many contacts.")
@click.option("--offset", type=OFFSET, default=0, show_default=True, help="Skip this many first.")
@FORMAT
def contacts_list(app: App, customer, invalid, function, limit, offset, fmt_) -> None:
    """List contacts (a page of them)."""
    from dunningops.ledger.queries import list_contacts

    with app.session() as session:
        page = list_contacts(session, customer=customer, invalid=invalid, function=function, limit=limit, offset=offset)
    if fmt_ == "json":
        echo_json({"total": page.total, "offset": offset, "limit": limit, "contacts": page.rows})
        return
    click.echo(contacts_table(page.rows), nl=False)
    if line := more_line(offset + len(page.rows), page.total, "contacts"):
        click.echo(line, err=True)


@contacts.command("show")
@pass_app
@click.argument("contact_id", type=ROW_ID)
def contacts_show(app: App, contact_id) -> None:
    """Show one contact, with its customer, functions, primary flag and validity."""
    from dunningops.errors import NotFoundError
    from dunningops.ledger.queries import list_contacts

    with app.session() as session:
        rows = list_contacts(session, contact_id=contact_id)
    if not rows:
        raise NotFoundError(f"no contact #{contact_id}")
    click.echo(to_json(rows[0]), nl=False)


def _contact_change(app: App, action, message: str) -> None:
    with app.session() as session:
        result = action(session, app.now())
    click.echo(message.format(result=result))


@contacts.command("set-functions")
@pass_app
@click.argument("contact_id", type=ROW_ID)
@click.argument("functions", nargs=-1)
def contacts_set_functions(app: App, contact_id, functions) -> None:
    """Set a contact's functions (ids or labels; none clears them)."""
    from dunningops.ledger.contacts import set_functions

    _contact_change(
        app, lambda s, now: set_functions(s, contact_id, list(functions), now), f"Contact #{contact_id} functions: {{result}}"
    )


@contacts.command("set-primary")
@pass_app
@click.argument("contact_id", type=ROW_ID)
def contacts_set_primary(app: App, contact_id) -> None:
    """Make this contact its customer's primary contact."""
    from dunningops.ledger.contacts import set_primary

    _contact_change(app, lambda s, now: set_primary(s, contact_id, now), f"Contact #{contact_id} is now the primary contact.")


@contacts.command("mark-valid")
@pass_app
@click.argument("contact_id", type=ROW_ID)
def contacts_mark_valid(app: App, contact_id) -> None:
    """The customer confirmed this address; reminders go to it again."""
    from dunningops.ledger.contacts import mark_valid

    _contact_change(app, lambda s, now: mark_valid(s, contact_id, now), f"Contact #{contact_id} is marked valid.")
