"""Deciding what is due streams (performance.md: memory flat): decide() hands the decisions on in
chunks, each lead with the invoices merged into it found by one query per chunk, and the CLI
prints a dry run from a spool, byte for byte as it printed the whole list.

The reference is RunRules fed every row of the due query and gathering the merged invoices from
the later rows (what decide() did, and what the forecast still does).
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import update

from cycle_helpers import paris
from dunningops.cli.output import DECISION_COLUMNS, to_json
from dunningops.dunning import schedule
from dunningops.dunning.calendar import SendingCalendar
from dunningops.dunning.cycle import run_send
from dunningops.dunning.runconfig import RunConfig
from dunningops.dunning.due import due_query
from dunningops.dunning.schedule import RunRules, decide, sent_counts
from dunningops.store.schema import InvoiceRow, TodoRow
from dunningops.tables import render_table
from test_decisions import TUESDAY, _store


def _gathered(session, config: RunConfig, at: datetime) -> list[tuple]:
    """The whole run judged first, merges gathered from the later rows, then noted."""
    calendar = SendingCalendar(config.settings)
    today = calendar.local(at).date()
    rules = RunRules(config, at, calendar, today, *sent_counts(session, calendar, at))
    decided = [d for row in session.execute(due_query(config, today)) if (d := rules.judge(row)) is not None]
    return [_key(rules.noted(d)) for d in decided]


def _key(d) -> tuple:
    return (d.customer, d.plan.id, d.step.id, d.anchor_invoice_id, d.outcome, d.reason, tuple(m.anchor_invoice_id for m in d.merged))


@pytest.fixture
def store(database_url: str, v1: Path, tmp_path: Path):
    s = _store(database_url, v1, tmp_path)
    yield s
    s.dispose()


@pytest.mark.parametrize("chunk", [1, 2, 2000])
def test_decide_streamed_in_chunks_equals_the_whole_run_judged_at_once(store, monkeypatch, chunk: int):
    # S1's three invoices go out in one email; with CH-2 paused the other two still do, and an
    # invoice-level reply to-do (R9) holds CH-3 alone: the rows that cannot be merged stay apart.
    monkeypatch.setattr(schedule, "DECIDE_CHUNK", chunk)
    at = paris(*TUESDAY)
    with store.session() as session:
        config = RunConfig.from_store(session)
        plain = [_key(d) for d in decide(session, config, at)]
        assert plain == _gathered(session, config, at)
        assert any(len(k[6]) == 2 for k in plain)  # S1: three invoices in one email
    with store.session() as s:
        s.execute(update(InvoiceRow).where(InvoiceRow.external_id == "S1-B").values(paused=True, paused_until=None))
        s1 = s.get(InvoiceRow, s.query(InvoiceRow.id).filter_by(external_id="S1-C").scalar())
        s.add(TodoRow(kind="reply", status="open", customer_id=s1.customer_id, invoice_id=s1.id, created_at=at, payload={}))
    with store.session() as session:
        config = RunConfig.from_store(session)
        held = [_key(d) for d in decide(session, config, at)]
        assert held == _gathered(session, config, at)
    s1 = [k for k in held if k[0] == "S1"]
    assert sorted(k[4] for k in s1) == ["send", "skip", "skip"] and all(not k[6] for k in s1)


def test_decide_keeps_the_due_order_across_chunks(store, monkeypatch):
    monkeypatch.setattr(schedule, "DECIDE_CHUNK", 1)
    at = paris(2026, 12, 28)  # everything past its courtesy and reminder: each customer's steps due
    with store.session() as session:
        config = RunConfig.from_store(session)
        assert [_key(d) for d in decide(session, config, at)] == _gathered(session, config, at)


def test_run_send_hands_decisions_on_in_batches_and_keeps_only_the_counts(store, monkeypatch):
    monkeypatch.setattr(schedule, "DECIDE_CHUNK", 1)
    at = paris(*TUESDAY)
    kept = run_send(store, at=at, dry_run=True)
    batches: list[list] = []
    streamed = run_send(store, at=at, dry_run=True, batch_size=1, on_decisions=batches.append)
    assert streamed.decisions == [] and len(batches) > 1
    assert [_key(d) for b in batches for d in b] == [_key(d) for d in kept.decisions]
    assert streamed.outcomes() == kept.outcomes() == {"send": len(kept.decisions)}
    assert streamed.due == kept.due == len(kept.decisions)


def test_dry_run_json_and_table_are_those_of_the_whole_list(run, repo, monkeypatch):
    # Spooled in batches of one, printed as to_json / render_table print the whole report.
    monkeypatch.setattr(schedule, "DECIDE_CHUNK", 1)
    config, url = repo
    args = ("run", "send", "--dry-run", "--at", "2026-12-28T08:30:00+01:00", "--config", config, "--database-url", url)
    out = run(*args, "--format", "json").stdout
    data = json.loads(out)
    assert len(data["decisions"]) == 2 and out == to_json(data)
    table = run(*args).stdout
    assert table.startswith(render_table(data["decisions"], DECISION_COLUMNS))
    empty = run("run", "send", "--dry-run", "--at", "2026-01-05T08:30:00+01:00", "--format", "json", "--config", config,
                "--database-url", url).stdout
    assert json.loads(empty)["decisions"] == [] and empty == to_json(json.loads(empty))
    assert run(*args[:4], "2026-01-05T08:30:00+01:00", *args[5:]).stdout.startswith("(none)\n")
