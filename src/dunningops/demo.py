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

from dunningops.alerts.store import list_alerts
from dunningops.app import App
from dunningops.demo_mail import customer_mail
from dunningops.dunning.aliases import verify
from dunningops.dunning.calendar import SendingCalendar
from dunningops.dunning.cycle import run_send
from dunningops.dunning.runconfig import RunConfig
from dunningops.inbox.importer import run_import
from dunningops.inbox.people import list_inbox
from dunningops.ledger.generate import generate_ledger
from dunningops.ledger.importer import import_file
from dunningops.ledger.queries import reach_by_plan
from dunningops.reconcile import build_plan
from dunningops.reconcile.apply import apply_config
from dunningops.reconcile.render import render_text
from dunningops.store.config_objects import read_actual
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
    for kind in ("customers", "contacts", "invoices", "payments"):
        echo(f"$ dunningops ledger import {kind} {ledger_dir.name}/{kind}.csv")
        echo(import_file(store, kind, ledger_dir / f"{kind}.csv", now=app.now()).line())
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
    echo(f"The emails are files in {maildir / 'new'} (open one with any mail reader).")
    return at


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
