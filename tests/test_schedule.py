"""What is due, and why it waits: decide() on SQLite and PostgreSQL, with an injected instant.

These tests only decide (nothing is sent), so no transport is involved.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import insert, update

from cycle_helpers import paris, setup_store
from dunningops.dunning.runconfig import RunConfig
from dunningops.dunning.schedule import decide
from dunningops.reconcile.objects import desired_objects
from dunningops.spec import load_config
from dunningops.store import open_store
from dunningops.store.schema import ActionRow, CustomerRow, InvoiceRow, MessageRow, TodoRow

LEDGER = dict(
    customers="C1,Boulangerie Martin SARL,FR,fr_FR,EUR,bob,\nC2,Müller GmbH,DE,de_DE,EUR,,\nC3,Schmid AG,CH,de_CH,CHF,,\n",
    contacts="C1,paul@martin.fr,Paul Martin,,,payer,true\nC2,hans@mueller.de,Hans,,,payer,true\nC3,info@schmid.ch,,,,,true\n",
    invoices=(
        "I1,C1,FA-1,2026-10-01,2026-11-01,100.00,,EUR,,\n"
        "I2,C1,FA-2,2026-11-01,2026-12-01,50.00,,EUR,,\n"
        "I3,C2,FA-3,2026-11-01,2026-11-27,80.00,,EUR,,\n"
        "I4,C3,FA-4,2026-11-01,2026-12-20,10.00,,CHF,,\n"
    ),
)


@pytest.fixture
def store(database_url: str, v1: Path, tmp_path: Path):
    s = open_store(database_url)
    setup_store(s, v1, tmp_path, **LEDGER)
    yield s
    s.dispose()


def _decide(store, at) -> dict[str, tuple[str, str, str]]:
    with store.session() as session:
        return {d.customer: (d.step.id, d.outcome, d.reason) for d in decide(session, RunConfig.from_store(session), at)}


def test_e7_customer_starts_at_first_step_and_threshold_uses_due_date(store):
    due = _decide(store, paris(2026, 11, 24))  # Tuesday
    # C1's oldest invoice is 23 days overdue: it still starts at the first step (E7).
    assert due["C1"][:2] == ("courtesy", "send")
    # C2's invoice is due on the 27th: courtesy is due from the 24th (-3d).
    assert due["C2"][:2] == ("courtesy", "send")
    # C3's invoice is due on 20 December: nothing yet.
    assert "C3" not in due


def test_e3_new_automatic_step_waits_for_next_working_day(store):
    # Applied on Friday 20 November 10:00 Paris: first sends on Monday 23 from 08:00.
    due = _decide(store, paris(2026, 11, 20, 10, 30))
    assert due["C1"][1] == "wait" and due["C1"][2] == "new automatic step: first sends from 2026-11-23 08:00"
    assert _decide(store, paris(2026, 11, 23))["C1"][1] == "send"


def test_e3_sending_window_and_public_holidays(store):
    assert _decide(store, paris(2026, 11, 24, 10, 0))["C1"][2] == "outside the sending window 08:00-09:00 Europe/Paris"
    assert _decide(store, paris(2026, 11, 28))["C1"][2].startswith("not a sending day")  # Saturday
    assert _decide(store, paris(2026, 12, 25))["C1"][2].startswith("public holiday")  # Christmas, a Friday


def test_t6_caps_stop_sending_oldest_due_first(store, v1: Path):
    config = v1 / "dunningops.yaml"
    config.write_text(config.read_text().replace("caps: {per_day: 300, per_month: 1000}", "caps: {per_day: 1, per_month: 1000}"))
    from dunningops.reconcile.apply import apply_config

    apply_config(store, load_config(v1), now=paris(2026, 11, 20), actor="t", git_commit=None)
    due = _decide(store, paris(2026, 11, 24))
    assert due["C1"][1] == "send"  # due since 1 November: the oldest first
    assert due["C2"][1] == "wait" and "sending cap reached (1/day" in due["C2"][2]


def test_r4_pending_reply_and_r9_invoice_reply(store):
    with store.session() as s:
        c1 = s.query(CustomerRow.id).filter_by(external_id="C1").scalar()
        s.execute(insert(TodoRow).values(kind="reply", status="open", customer_id=c1, payload={}, created_at=paris(2026, 11, 23)))
    assert _decide(store, paris(2026, 11, 24))["C1"][1:] == ("skip", "waiting for the reply to-do #1")
    with store.session() as s:
        s.execute(update(TodoRow).values(status="dismissed"))
        # R9: a reply about another invoice does not block this one.
        i2 = s.query(InvoiceRow.id).filter_by(external_id="I2").scalar()
        s.execute(insert(TodoRow).values(kind="reply", status="open", customer_id=c1, invoice_id=i2, payload={}, created_at=paris(2026, 11, 23)))
    assert _decide(store, paris(2026, 11, 24))["C1"][1] == "send"


def test_min_delay_between_contacts_and_pauses(store):
    with store.session() as s:
        c1 = s.query(CustomerRow.id).filter_by(external_id="C1").scalar()
        c2 = s.query(CustomerRow.id).filter_by(external_id="C2").scalar()
        s.execute(insert(MessageRow).values(
            message_id="<m1@acme.fr>", kind="manual", automatic=False, customer_id=c1, from_address="a@acme.fr",
            to_addresses=[], cc_addresses=[], bcc_addresses=[], subject="s", invoice_ids=[], status="sent",
            created_at=paris(2026, 11, 23),
        ))
        s.execute(update(CustomerRow).where(CustomerRow.id == c2).values(paused_until=date(2026, 12, 1), pause_reason="promise to pay"))
    due = _decide(store, paris(2026, 11, 24))
    assert due["C1"][1:] == ("skip", "last contact 2026-11-23, minimum delay 3d")
    assert due["C2"][1:] == ("skip", "customer paused until 2026-12-01 (promise to pay)")
    assert _decide(store, paris(2026, 11, 26))["C1"][1] == "send"


def test_performed_steps_move_the_target_on(store):
    with store.session() as s:
        c1 = s.query(CustomerRow.id).filter_by(external_id="C1").scalar()
        i1 = s.query(InvoiceRow.id).filter_by(external_id="I1").scalar()
        s.execute(insert(ActionRow).values(plan_id="standard", step_id="courtesy", customer_id=c1, anchor_invoice_id=i1,
                                           outcome="sent", performed_at=paris(2026, 11, 2)))
    assert _decide(store, paris(2026, 11, 24))["C1"][:2] == ("overdue", "todo")


def test_paid_invoice_leaves_dunning_and_next_one_anchors(store):
    with store.session() as s:
        s.execute(update(InvoiceRow).where(InvoiceRow.external_id == "I1").values(status="paid", outstanding_cents=0))
    # I2 (due 1 December) now anchors C1: courtesy from 28 November.
    assert "C1" not in _decide(store, paris(2026, 11, 26))
    assert _decide(store, paris(2026, 11, 30))["C1"][:2] == ("courtesy", "send")


def test_dry_run_writes_nothing_and_can_look_ahead(store):
    from dunningops.dunning.cycle import run_send

    report = run_send(store, at=paris(2026, 12, 21), dry_run=True)
    assert {d.customer for d in report.decisions} == {"C1", "C2", "C3"}
    with store.session() as s:
        assert s.query(MessageRow).count() == 0 and s.query(ActionRow).count() == 0 and s.query(TodoRow).count() == 0


def test_decide_against_a_desired_config_not_applied(store, v1: Path):
    plans = v1 / "plans.yaml"
    plans.write_text(plans.read_text().replace("at: -3d", "at: -10d"))
    with store.session() as s:
        preview = RunConfig.from_desired(desired_objects(load_config(v1)), s)
        due = {d.customer: d for d in decide(s, preview, paris(2026, 12, 14))}
    # With courtesy 10 days before the due date, C3 (due 20 December) is reached on the 14th.
    assert due["C3"].step.id == "courtesy"
    assert "C3" not in _decide(store, paris(2026, 12, 14))  # the applied config: not yet


def test_instants_stored_as_utc_with_offset(database_url: str, v1: Path, tmp_path: Path):
    """An instant with an offset is stored as UTC and read back aware, on both backends: a step
    applied at 23:30+01:00 on Tuesday first sends on Wednesday morning (E3), not a day late."""
    from datetime import datetime, timedelta, timezone

    from sqlalchemy import select, text

    from cycle_helpers import CONTACTS, CUSTOMERS, INVOICES
    from dunningops.ledger.importer import import_file
    from dunningops.reconcile.apply import apply_config
    from dunningops.store.schema import PlanStepRow

    applied = datetime(2027, 11, 16, 23, 30, tzinfo=timezone(timedelta(hours=1)))  # Tuesday evening, Paris
    store = open_store(database_url)
    try:
        apply_config(store, load_config(v1), now=applied, actor="t", git_commit=None)
        for kind, header, body in (("customers", CUSTOMERS, "C1,Boulangerie Martin SARL,FR,fr_FR,EUR,,\n"),
                                   ("contacts", CONTACTS, "C1,paul@martin.fr,Paul Martin,,,payer,true\n"),
                                   ("invoices", INVOICES, "I1,C1,FA-1,2027-10-19,2027-11-19,100.00,,EUR,,\n")):
            (tmp_path / f"{kind}.csv").write_text(header + body)
            import_file(store, kind, tmp_path / f"{kind}.csv", now=applied)
        with store.session() as s:
            created = s.scalar(select(PlanStepRow.created_at).where(PlanStepRow.id == "courtesy"))
            raw = s.execute(text("SELECT created_at FROM plan_steps WHERE id = 'courtesy'")).scalar()
        assert created == applied and created.utcoffset() == timedelta(0) and created.hour == 22
        if database_url.startswith("sqlite"):
            assert str(raw).startswith("2027-11-16 22:30:00")  # UTC in the file, not the wall time
        assert _decide(store, paris(2027, 11, 17))["C1"][:2] == ("courtesy", "send")
        # A bound with an offset compares as the instant it is (the caps count from local midnight).
        with store.session() as s:
            assert s.scalar(select(PlanStepRow.id).where(
                PlanStepRow.id == "courtesy", PlanStepRow.created_at < datetime(2027, 11, 16, 23, 31, tzinfo=applied.tzinfo),
            )) == "courtesy"
    finally:
        store.dispose()


def test_a_config_of_more_steps_than_a_compound_select_allows(store):
    # SQLite refuses a UNION of more than 500 SELECTs: the steps' table is built in chunks.
    import dataclasses

    with store.session() as session:
        config = RunConfig.from_store(session)
        plan = config.plans["standard"]
        template = plan.steps[0]
        steps = tuple(
            dataclasses.replace(template, id=f"s{i:04d}", position=i, at_days=-10 + i, action="call", send="manual", template=None)
            for i in range(1200)
        )
        config = dataclasses.replace(config, plans={**config.plans, "standard": dataclasses.replace(plan, steps=steps)})
        due = {d.customer: (d.step.id, d.outcome) for d in decide(session, config, paris(2026, 11, 24))}
    # C1's oldest invoice (due 1 November) enters at the first step (E7): a call, a to-do.
    assert due["C1"] == ("s0000", "todo")
