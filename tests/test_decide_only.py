"""`run send --dry-run --decide-only`: what is due and why the rest waits, without preparing the
steps (no recipients chosen, nothing rendered), so that a large ledger's answer costs the due query.

And the due query's join order on SQLite (the customers of invoice-level plans drive the walk over
their open invoices), which must not change its rows: the streaming tests compare them on SQLite and
PostgreSQL, and here the SQL each dialect is given.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import update
from sqlalchemy.dialects import postgresql, sqlite

from cycle_helpers import paris
from dunningops.dunning.cycle import run_send
from dunningops.dunning.due import due_query
from dunningops.dunning.runconfig import RunConfig
from dunningops.store.schema import ContactRow
from test_decisions import TUESDAY, _store


@pytest.fixture
def store(database_url: str, v1: Path, tmp_path: Path):
    s = _store(database_url, v1, tmp_path)
    yield s
    s.dispose()


def _keys(report) -> list[tuple]:
    return [(d.customer, d.plan.id, d.step.id, d.anchor_invoice_id, d.outcome, d.reason) for d in report.decisions]


def test_decide_only_gives_the_decisions_of_the_dry_run_before_preparing(store):
    at = paris(*TUESDAY)
    full = run_send(store, at=at, dry_run=True)
    decided = run_send(store, at=at, dry_run=True, decide_only=True)
    assert full.decisions and _keys(decided) == _keys(full)
    assert decided.outcomes() == full.outcomes()


def test_decide_only_does_not_choose_recipients_the_full_dry_run_does(store):
    # A customer whose contacts are all invalid: the full dry run finds nobody to write to (a to-do),
    # deciding alone still says the email is due (what --decide-only's help warns of).
    at = paris(*TUESDAY)
    full = run_send(store, at=at, dry_run=True)
    lead = next(d for d in full.decisions if d.outcome == "send")
    with store.session() as s:
        s.execute(update(ContactRow).where(ContactRow.customer_id == lead.customer_id).values(valid=False))
    full = run_send(store, at=at, dry_run=True)
    decided = run_send(store, at=at, dry_run=True, decide_only=True)
    mine = [d for d in full.decisions if d.customer_id == lead.customer_id]
    assert mine and all(d.outcome == "todo" and "nobody can be written to" in d.reason for d in mine)
    assert all(d.outcome == "send" for d in decided.decisions if d.customer_id == lead.customer_id)
    assert full.todos == decided.todos == 0 and full.sent == decided.sent == 0  # neither wrote nor sent


def test_decide_only_on_the_command_line(run, repo):
    config, url = repo
    args = ("run", "send", "--dry-run", "--at", "2026-12-28T08:30:00+01:00", "--format", "json", "--config", config,
            "--database-url", url)
    full = json.loads(run(*args).stdout)
    result = run(*args, "--decide-only")
    assert result.exit_code == 0
    decided = json.loads(result.stdout)
    assert decided["decisions"] == full["decisions"] and len(decided["decisions"]) == 2
    table = run(*args[:-6], "--decide-only", "--config", config, "--database-url", url)
    assert table.exit_code == 0
    assert table.stdout.rstrip().endswith("Recipients and templates were not checked (--decide-only).")


def test_decide_only_needs_dry_run(run, repo):
    config, url = repo
    result = run("run", "send", "--decide-only", "--config", config, "--database-url", url)
    assert result.exit_code == 1
    assert "--decide-only goes with --dry-run" in result.output
    assert "Traceback" not in result.output


def test_invoice_level_targets_are_walked_from_the_customers_on_sqlite_only(store):
    with store.session() as session:
        config = RunConfig.from_store(session)
    query = due_query(config, date(2026, 12, 8))
    lite = str(query.compile(dialect=sqlite.dialect()))
    pg = str(query.compile(dialect=postgresql.dialect()))
    # One CROSS JOIN (SQLite's loop order kept: customers, then their open invoices), none elsewhere.
    assert lite.count("CROSS JOIN invoices ON invoices.customer_id = assigned.customer_id") == 1
    assert "CROSS JOIN" not in pg and "JOIN invoices ON invoices.customer_id = assigned.customer_id" in pg
