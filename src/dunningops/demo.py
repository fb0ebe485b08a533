"""`dunningops demo`: a round on the example config, on SQLite, in a directory of its own.

Today the round is plan → apply → plan (no changes) → generate and import a
ledger → who each plan would reach; the cycles extend it as they arrive.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from dunningops import clock
from dunningops.cli_ledger import render_table
from dunningops.ledger.generate import generate_ledger
from dunningops.ledger.importer import import_file
from dunningops.ledger.queries import reach_by_plan
from dunningops.reconcile import build_plan
from dunningops.reconcile.apply import apply_config
from dunningops.reconcile.render import render_text
from dunningops.spec import load_config
from dunningops.store import open_store
from dunningops.store.config_objects import read_actual

EXAMPLE_CONFIG = Path(__file__).with_name("example_config")
DEMO_CUSTOMERS = 300


def _ledger_round(store, desired, ledger_dir: Path, echo: Callable[[str], None]) -> None:
    """Generate a ledger as an accounting export would be, import it, show who each plan reaches."""
    today = clock.now().date()
    echo(f"$ dunningops ledger generate --customers {DEMO_CUSTOMERS} --seed 1 {ledger_dir.name}")
    counts = generate_ledger(
        ledger_dir, customers=DEMO_CUSTOMERS, seed=1, members=sorted(desired.members),
        functions=sorted(desired.contact_functions), today=today, plans=sorted(desired.plans),
    )
    echo(", ".join(f"{n} {name}" for name, n in counts.items() if n) + " written")
    for kind in ("customers", "contacts", "invoices", "payments"):
        echo(f"$ dunningops ledger import {kind} {ledger_dir.name}/{kind}.csv")
        echo(import_file(store, kind, ledger_dir / f"{kind}.csv", now=clock.now()).line())
    echo("\nWho each plan would reach today:")
    with store.session() as session:
        rows = reach_by_plan(session, today)
    for row in rows:
        row["plan"] = row["plan"] or "(no plan)"
        row["outstanding"] = f"{row['outstanding_cents'] / 100:,.2f}".replace(",", " ")
    echo(render_table(rows, [("plan", "PLAN"), ("customers", "CUSTOMERS"), ("with_open_invoices", "WITH OPEN INVOICES"),
                             ("overdue_invoices", "OVERDUE INVOICES"), ("outstanding", "OUTSTANDING"),
                             ("without_valid_contact", "NO VALID CONTACT")]))


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

    desired = load_config(config_dir)
    store = open_store(url)
    try:
        echo("$ dunningops plan")
        with store.session() as session:
            echo(render_text(build_plan(desired, read_actual(session))))
        echo("$ dunningops apply --auto-approve")
        result = apply_config(store, desired, now=clock.now(), actor="demo", git_commit=None)
        s = result.plan.summary()
        echo(f"Apply complete! Resources: {s['add']} added, {s['change']} changed, {s['replace']} replaced, {s['destroy']} destroyed.")
        for item in result.outbox:
            echo(f"Queued: confirmation email to {item['payload']['email']} for {item['ref']} (A3).")
        echo("\n$ dunningops plan")
        with store.session() as session:
            echo(render_text(build_plan(desired, read_actual(session))))
        _ledger_round(store, desired, directory / "ledger", echo)
    finally:
        store.dispose()
    echo(f"Done. Look around: cd {directory} && dunningops show")
    return directory
