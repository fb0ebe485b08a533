"""`dunningops demo`: a round on the example config, on SQLite, in a directory of its own.

The round: plan → apply → plan (no changes) → generate and import a ledger →
who each plan would reach → the alias owners confirm their aliases (A3) →
the send cycle on the next working morning, mail written to a local maildir →
customers write back (a reply, a bounce, an out-of-office, a stranger) into the
demo's inbox, another maildir → the import cycle acts on it → the next morning's
dry run shows the customer who replied waiting and the dead address left out.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select

from dunningops.alerts.store import list_alerts
from dunningops.app import App
from dunningops.demo_mail import customer_mail
from dunningops.dunning.aliases import verify
from dunningops.dunning.calendar import SendingCalendar
from dunningops.dunning.cycle import run_send
from dunningops.dunning.letters import document as letter_document
from dunningops.dunning.runconfig import RunConfig
from dunningops.errors import DunningOpsError
from dunningops.inbox.importer import run_import
from dunningops.inbox.people import list_inbox
from dunningops.incidents.incidents import close_incident, list_incidents, open_incident
from dunningops.incidents.notices import Result as NoticeResult
from dunningops.incidents.ratings import rating_url, tell_team
from dunningops.incidents.ratings import record as record_rating
from dunningops.ledger.generate import generate_ledger
from dunningops.ledger.importer import import_files, ledger_files
from dunningops.ledger.queries import reach_by_plan
from dunningops.notify.debtors import Filters
from dunningops.notify.debtors import notify as notify_debtors
from dunningops.reconcile import build_plan
from dunningops.reconcile.apply import apply_config
from dunningops.reconcile.render import render_text
from dunningops.store.config_objects import read_actual
from dunningops.store.meta import signing_key
from dunningops.store.schema import CustomerRow, InvoiceRow, PortalNotificationRow, TodoRow
from dunningops.tables import DECISION_COLUMNS, INBOX_COLUMNS, inbox_row, money, render_table
from dunningops.transport.maildir import MaildirTransport
from dunningops.transport.sources import open_source

EXAMPLE_CONFIG = Path(__file__).with_name("example_config")


def demo_maildir(directory: Path) -> Path:
    """Where the demo's emails go: a local maildir in its directory."""
    return directory / ".dunningops" / "maildir"


def demo_inbox(directory: Path) -> Path:
    """Where the demo's customers write back: another maildir, read by the import cycle."""
    return directory / ".dunningops" / "inbox"


DEMO_CUSTOMERS = 300
DEMO_ROWS = 15


def _ledger_round(app: App, desired, ledger_dir: Path, echo: Callable[[str], None]) -> None:
    """Generate a ledger as an accounting export would be, import it, show who each plan reaches."""
    store = app.store
    today = app.now().date()
    echo(f"$ dunningops ledger generate --customers {DEMO_CUSTOMERS} --seed 1 {ledger_dir.name}")
    counts = generate_ledger(
        ledger_dir,
        customers=DEMO_CUSTOMERS,
        seed=1,
        members=sorted(desired.members),
        functions=sorted(desired.contact_functions),
        today=today,
        plans=sorted(desired.plans),
    )
    echo(", ".join(f"{n} {name}" for name, n in counts.items() if n) + " written")
    echo(f"$ dunningops ledger import-all {ledger_dir.name}   # the four files in one transaction")
    for summary in import_files(store, ledger_files(ledger_dir), now=app.now()):
        echo(summary.line())
        if summary.notices:
            # A9: owed in the import's transaction; the aliases are confirmed below, so the send cycle sends them.
            echo(f"Payment notifications owed: {summary.notices} (sent from the portal alias by the send cycle)")
    echo("\nWho each plan would reach today:")
    with store.session() as session:
        rows = reach_by_plan(session, today)
    for row in rows:
        row["plan"] = row["plan"] or "(no plan)"
        row["outstanding"] = money(row["outstanding_cents"])
    echo(
        render_table(
            rows,
            [
                ("plan", "PLAN"),
                ("customers", "CUSTOMERS"),
                ("with_open_invoices", "WITH OPEN INVOICES"),
                ("overdue_invoices", "OVERDUE INVOICES"),
                ("outstanding", "OUTSTANDING"),
                ("without_valid_contact", "NO VALID CONTACT"),
            ],
        )
    )


def _send_round(app: App, outbox: list[dict], echo: Callable[[str], None]) -> datetime:
    """A3: the alias owners confirm; then the send cycle runs on the next working morning (E3)."""
    store, now = app.store, app.now()
    with store.session() as session:
        for item in outbox:
            verify(session, item["payload"]["token"], now)
        config = RunConfig.from_store(session)
    echo(f"\n$ dunningops alias verify <code>   # x{len(outbox)}: each alias owner confirms")
    at = SendingCalendar(config.settings).next_working_day_start(now) + timedelta(minutes=30)
    maildir = demo_maildir(app.config_dir.parent)
    factory = app.transport
    echo(f"\n$ dunningops run send --dry-run --at {at.isoformat()}")
    report = run_send(store, at=at, transport_factory=factory, dry_run=True)
    rows = [d.row() for d in report.decisions]
    echo(render_table(rows[:DEMO_ROWS], DECISION_COLUMNS).rstrip())
    if len(rows) > DEMO_ROWS:
        echo(f"… and {len(rows) - DEMO_ROWS} more")
    echo(f"\n$ dunningops run send --at {at.isoformat()}")
    report = run_send(store, at=at, transport_factory=factory)
    counts = report.outcomes()
    echo(
        f"Send cycle: {report.sent} emails sent, {report.todos} to-dos created, {counts['wait']} waiting, "
        f"{counts['skip']} skipped; {report.confirmations} alias confirmation emails."
    )
    with store.session() as session:
        portal = dict(
            session.execute(
                select(PortalNotificationRow.kind, func.count())
                .where(PortalNotificationRow.status == "sent")
                .group_by(PortalNotificationRow.kind)
            ).all()
        )
    if portal:
        echo(
            f"Payment notifications: {portal.get('payment_receipt', 0)} receipts and "
            f"{portal.get('payment_failed', 0)} failed-payment emails sent from the portal alias."
        )
    echo(f"The emails are files in {maildir / 'new'} (open one with any mail reader).")
    return at


def _notices_round(app: App, at: datetime, echo: Callable[[str], None]) -> None:
    """T7, T8, letters: an unpaid-invoice notification, an incident opened, closed and rated, a letter as PDF."""
    store, factory = app.store, app.transport
    at = at + timedelta(minutes=5)
    echo(f"\n$ dunningops notify debtors --overdue-min 160 --yes --actor claire --at {at.isoformat()}")
    filters = Filters(overdue_min=160, since_last=None, customers=())
    try:
        result = notify_debtors(store, at=at, filters=filters, actor="claire", transport_factory=factory)
    except DunningOpsError as exc:
        echo(f"Error: {exc}")
    else:
        s = result.summary
        sent = sum(1 for o in result.outcomes if o.status == "sent")
        echo(
            f"Unpaid-invoice notification: {len(s.ready)} customers, {s.invoices} invoices, {s.recipients} recipients; "
            f"{len(s.skipped)} skipped; {sent} emails sent (each lists its invoices with a link to the document)."
        )
    with store.session() as session:
        row = session.execute(
            select(CustomerRow.external_id, InvoiceRow.external_id, InvoiceRow.number)
            .join(InvoiceRow, InvoiceRow.customer_id == CustomerRow.id)
            .where(InvoiceRow.status == "open", InvoiceRow.paused.is_(False))
            .order_by(InvoiceRow.due_date, InvoiceRow.id)
            .limit(1)
        ).first()
    if row is None:
        return
    customer, invoice, number = row
    echo(f'\n$ dunningops incident open --customer {customer} --invoice {invoice} --observations "…" --actor sophie')
    opened = open_incident(
        store,
        customer=customer,
        invoice=invoice,
        observations=f"La facture {number} est contestée : deux palettes sur trois livrées.",
        actor="sophie",
        at=at,
        origin="cli",
        transport_factory=factory,
    )
    echo(f"{opened['reference']} opened; invoice {number} is paused until it is closed. {_said(opened)}")
    later = at + timedelta(days=1)
    echo(f"$ dunningops incident close {opened['reference']} --actor sophie --at {later.isoformat()}")
    closed = close_incident(store, opened["reference"], actor="sophie", at=later, transport_factory=factory)
    echo(f"{closed['reference']} closed; invoice {number}'s dunning resumes. {_said(closed)}")
    with store.session() as session:
        config = RunConfig.from_store(session)
        url = rating_url(config.settings, signing_key(session), opened["id"], later)
    echo(f"The customer follows the email's rating link ({url.split('/l/')[0]}/l/r/…) and gives 5 stars:")
    rated = record_rating(store, url.rsplit("/", 1)[1], 5, "Merci pour la réactivité.", later + timedelta(hours=2))
    tell_team(store, rated, config=config, transport_factory=factory, env={}, at=later + timedelta(hours=2))
    echo("$ dunningops incident list --rating rated")
    with store.session() as session:
        for r in list_incidents(session, rating=["rated"]).rows:
            echo(f"  {r['reference']}  {r['customer']}  {r['state']}  {r['rating']}/5  “{r['rating_message'] or ''}”")
    _letter_round(app, later, echo)


def _said(incident: dict) -> str:
    n = incident["notification"]
    return NoticeResult(n["event"], n["status"], n["reason"], tuple(n["to"]), n["message_id"]).line


def _letter_round(app: App, at: datetime, echo: Callable[[str], None]) -> None:
    with app.store.session() as session:
        todo_id = session.scalar(
            select(TodoRow.id).where(TodoRow.kind == "letter", TodoRow.status == "open").order_by(TodoRow.id).limit(1)
        )
    if todo_id is None:
        return
    echo(f"\n$ dunningops todo letter {todo_id}")
    try:
        doc = letter_document(app.store, todo_id, at)
    except DunningOpsError as exc:  # no Pango on this machine: say so, the round goes on
        echo(f"Error: {exc}")
        return
    path = app.config_dir.parent / doc.name
    path.write_bytes(doc.data)
    echo(f"{path.name} written ({len(doc.data) // 1024} KiB, A4: letterhead, the customer's postal address, the letter)")


def _import_round(app: App, sent_at: datetime, echo: Callable[[str], None]) -> None:
    """Customers write back; the import cycle reads the inbox and acts; the next dry run shows it."""
    store = app.store
    arrive = sent_at + timedelta(hours=2)
    with store.session() as session:
        incoming = customer_mail(session, sent_at)
        config = RunConfig.from_store(session)
    source = app.source(config)
    try:
        for what, raw in incoming:
            source.deliver(raw)  # type: ignore[attr-defined]  # the demo's source is a maildir
            echo(f"  … {what} arrives in {demo_inbox(app.config_dir.parent).name}/")
    finally:
        source.close()
    echo(f"\n$ dunningops run import --at {arrive.isoformat()}")
    report = run_import(store, app.source, at=arrive, transport_factory=app.transport, env=app.env)
    echo(report.line())
    echo("\n$ dunningops inbox list --status all")
    with store.session() as session:
        rows, _ = list_inbox(session, status=None)
        alerts = list_alerts(session)
    echo(render_table([inbox_row(r) for r in rows], INBOX_COLUMNS).rstrip())
    echo("\n$ dunningops alerts list")
    echo(render_table(alerts.rows, [("id", "#"), ("kind", "KIND"), ("customer", "CUSTOMER"), ("title", "ALERT")]).rstrip())
    touched = {r["customer"] for r in rows if r["status"] == "linked" and r["kind"] in ("reply", "bounce")}
    later = sent_at + timedelta(days=1)
    echo(f"\n$ dunningops run send --dry-run --at {later.isoformat()}   # the customers who wrote back")
    decisions = run_send(store, at=later, transport_factory=app.transport, dry_run=True).decisions
    shown = [d.row() for d in decisions if d.row().get("customer") in touched]
    echo(render_table(shown, DECISION_COLUMNS).rstrip())


def _forecast(app: App, echo: Callable[[str], None]) -> None:
    """The next two weeks with the applied config: what the engine will send, and what the caps hold back."""
    from dunningops.forecast.render import caps_line, forecast_headline
    from dunningops.forecast.run import forecast

    echo("\n$ dunningops forecast --days 14")
    ahead = forecast(app.store, at=app.now(), days=14)
    echo(forecast_headline(ahead))
    echo(caps_line(ahead))
    echo("(the day-by-day table: dunningops forecast; what a change to config/ does to customers: dunningops plan --impact)\n")


def run_demo(directory: Path | None, echo: Callable[[str], None]) -> Path:
    """Copy the example config into ``directory`` and run the round there; returns the directory."""
    directory = Path(directory) if directory else Path(tempfile.mkdtemp(prefix="dunningops-demo-"))
    directory.mkdir(parents=True, exist_ok=True)
    config_dir = directory / "config"
    if not config_dir.exists():
        shutil.copytree(EXAMPLE_CONFIG, config_dir)
    url = f"sqlite:///{directory / '.dunningops' / 'state.db'}"
    echo(f"dunningops demo in {directory}")
    echo(f"  config: {config_dir}\n  store:  {url}\n")

    # The demo's embedded transport: a local maildir, whatever the example config says.
    app = App(
        config_dir,
        url,
        transport_factory=lambda cfg: MaildirTransport(demo_maildir(directory)),
        source_factory=lambda cfg: open_source(
            cfg.settings.inbox.model_copy(update={"kind": "maildir", "path": str(demo_inbox(directory))}), directory, {}
        ),
    )
    desired = app.load_config()
    store = app.store
    try:
        echo("$ dunningops plan")
        with store.session() as session:
            echo(render_text(build_plan(desired, read_actual(session))))
        echo("$ dunningops apply --auto-approve")
        result = apply_config(store, desired, now=app.now(), actor="demo", git_commit=None)
        s = result.plan.summary()
        echo(
            f"Apply complete! Resources: {s['add']} added, {s['change']} changed, "
            f"{s['replace']} replaced, {s['destroy']} destroyed."
        )
        for item in result.outbox:
            echo(f"Queued: confirmation email to {item['payload']['email']} for {item['ref']}.")
        echo("\n$ dunningops plan")
        with store.session() as session:
            echo(render_text(build_plan(desired, read_actual(session))))
        _ledger_round(app, desired, directory / "ledger", echo)
        sent_at = _send_round(app, result.outbox, echo)
        _notices_round(app, sent_at, echo)
        echo("\nCustomers write back:")
        _import_round(app, sent_at, echo)
        _forecast(app, echo)
    finally:
        app.close()
    echo(
        f"Done. Look around: cd {directory} && dunningops show, dunningops customers list, dunningops todo list, "
        "dunningops inbox list, dunningops alerts list"
    )
    echo(
        "Or run it continuously: dunningops member set-password claire, then dunningops daemon: both cycles on a "
        "schedule, and the team console at http://127.0.0.1:8780/ (sign in as claire)"
    )
    return directory
