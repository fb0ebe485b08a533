"""The send loop overlaps (outgoing/overlap.py): batch N+1 is claimed, rendered and its to-dos made
while batch N is sent on a worker thread. Every reminder still leaves once, every step is
settled (nothing left ``claimed``), and the decisions come out in the due query's order."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from cycle_helpers import paris
from dunningops.dunning.cycle import run_send
from dunningops.store.schema import ActionRow, MessageRow
from dunningops.transport.maildir import MaildirTransport
from test_decisions import _store


@pytest.fixture
def store(database_url: str, v1: Path, tmp_path: Path):
    s = _store(database_url, v1, tmp_path, extra="group_invoices: false", delay="0d")
    yield s
    s.dispose()


def test_batches_of_one_send_each_reminder_once_and_settle_every_step(store, tmp_path: Path):
    at = paris(2026, 12, 8)
    dry = run_send(store, at=at, dry_run=True)
    due = [d for d in dry.decisions if d.outcome == "send"]
    assert len(due) >= 3  # S1's three invoices (not grouped) and S2's: several batches of one
    batches: list[list] = []
    report = run_send(store, at=at, batch_size=1, transport_factory=lambda c: MaildirTransport(tmp_path / "m"),
                      on_decisions=batches.append)
    assert report.sent == len(due) and report.errors == [] and report.decisions == []
    assert [(d.customer, d.anchor_invoice_id, d.outcome) for b in batches for d in b] == [
        (d.customer, d.anchor_invoice_id, d.outcome) for d in dry.decisions
    ]
    assert len(list((tmp_path / "m" / "new").iterdir())) == len(due) + report.confirmations  # A3: the outbox too
    with store.session() as s:
        outcomes = s.scalars(select(ActionRow.outcome)).all()
        sent = s.scalars(select(MessageRow.status).where(MessageRow.kind == "reminder")).all()
    assert sorted(set(outcomes)) == ["sent"] and len(outcomes) == len(due) and set(sent) == {"sent"}
    # Nothing is due twice.
    again = run_send(store, at=at, transport_factory=lambda c: MaildirTransport(tmp_path / "m"))
    assert again.sent == 0


def test_todos_of_a_batch_are_made_in_one_statement_with_their_ids_in_order(store):
    # The batch's claims are settled with these ids: each step must point at its own to-do.
    from dunningops.dunning import todos
    from dunningops.store.schema import CustomerRow, TodoRow

    at = paris(2026, 12, 8)
    with store.session() as s:
        customers = s.scalars(select(CustomerRow.id).order_by(CustomerRow.id)).all()
        rows = [todos.new("call", c, at, None, {"n": i}, reason=f"r{i}") for i, c in enumerate(reversed(customers))]
        ids = todos.add_many(s, rows)
        made = {t.id: (t.customer_id, t.reason, t.payload) for t in s.scalars(select(TodoRow).where(TodoRow.id.in_(ids)))}
    assert [made[i] for i in ids] == [(c, f"r{n}", {"n": n}) for n, c in enumerate(reversed(customers))]
