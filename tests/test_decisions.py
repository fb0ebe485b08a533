"""What the send cycle decides for a customer with several targets in one run, and where a
customer new to a plan starts: decide() and compose on SQLite and PostgreSQL.

- the minimum delay between two emails to a customer holds within a run, not only across runs;
- invoice-level plans send one email for a customer's invoices at the same step (group_invoices);
- E7: a plan's entry is its first step (standard logic) or, with ``entry: by_age``, the step the
  anchor invoice's age has reached;
- a to-do for a customer nobody can be written to says who was marked invalid, when and why.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import insert, select, update

from cycle_helpers import paris, setup_store
from dunningops.dunning import compose
from dunningops.dunning.calendar import SendingCalendar
from dunningops.dunning.recipients import Contact, choose, load_contacts, nobody_to_write_to
from dunningops.dunning.runconfig import RunConfig
from dunningops.dunning.schedule import Decision, decide
from dunningops.dunning.todos import add as add_todo
from dunningops.render import Renderer
from dunningops.spec import load_config
from dunningops.store import open_store
from dunningops.store.schema import ActionRow, ContactRow, CustomerRow, InvoiceRow, TodoRow

# An invoice-level plan for the CHF customers, beside v1's customer-level standard plan.
PER_INVOICE = """\
plans:
  - id: per_invoice
    name: Per invoice
    level: invoice
    assign: {{where: {{currency: [CHF]}}}}
    min_contact_delay: {delay}
    {extra}
    steps:
      - {{id: courtesy, at: -3d, action: email, send: auto, from: alias.billing, to: [payer], template: statement}}
      - {{id: reminder, at: 10d, action: email, send: auto, from: alias.billing, to: [payer], template: statement}}
      - {{id: call, at: 20d, action: call, assignee: member.bob}}
templates:
  - id: statement
    name: Statement
    locales:
      fr: {{subject: "Factures", body: statement.fr.txt}}
"""
STATEMENT = "{% for invoice in invoices %}{{ invoice.number }} ({{ invoice.days_overdue }}) {% endfor %}\n"

LEDGER = dict(
    customers=(
        "C1,Boulangerie Martin SARL,FR,fr_FR,EUR,bob,\n"
        "S1,Schmid AG,CH,fr_CH,CHF,,\n"
        "S2,Keller GmbH,CH,fr_CH,CHF,,\n"
    ),
    contacts=(
        "C1,paul@martin.fr,Paul Martin,,,payer,true\n"
        "S1,urs@schmid.ch,Urs Schmid,,,payer,true\n"
        "S2,eva@keller.ch,Eva Keller,,,payer,true\n"
    ),
    invoices=(
        "I1,C1,FA-1,2026-10-01,2026-11-01,100.00,,EUR,,\n"
        "S1-A,S1,CH-1,2026-11-01,2026-12-10,10.00,,CHF,,\n"
        "S1-B,S1,CH-2,2026-11-01,2026-12-10,20.00,,CHF,,\n"
        "S1-C,S1,CH-3,2026-11-01,2026-12-11,30.00,,CHF,,\n"
        "S2-A,S2,CH-4,2026-11-01,2026-12-10,40.00,,CHF,,\n"
    ),
)
TUESDAY = (2026, 12, 8)  # the CHF invoices' courtesy (-3d) is due from the 7th and the 8th


def _store(database_url: str, v1: Path, tmp_path: Path, *, delay: str = "2d", extra: str = "", by_age: bool = False):
    (v1 / "per_invoice.yaml").write_text(PER_INVOICE.format(delay=delay, extra=extra))
    (v1 / "statement.fr.txt").write_text(STATEMENT)
    if by_age:
        plans = v1 / "plans.yaml"
        delay = "    min_contact_delay: 3d\n"
        plans.write_text(plans.read_text().replace(delay, delay + "    entry: by_age\n"))
    store = open_store(database_url)
    setup_store(store, v1, tmp_path, **LEDGER)
    return store


@pytest.fixture
def store(database_url: str, v1: Path, tmp_path: Path):
    s = _store(database_url, v1, tmp_path)
    yield s
    s.dispose()


def _decisions(store, at: datetime) -> list[Decision]:
    with store.session() as session:
        return list(decide(session, RunConfig.from_store(session), at))


def _ids(store, model, **by) -> int:
    with store.session() as s:
        return s.scalar(select(model.id).filter_by(**by))


def _performed(store, plan: str, step: str, customer: str, invoice: str, at: datetime) -> None:
    with store.session() as s:
        c = s.scalar(select(CustomerRow.id).filter_by(external_id=customer))
        i = s.scalar(select(InvoiceRow.id).filter_by(external_id=invoice))
        s.execute(insert(ActionRow).values(plan_id=plan, step_id=step, customer_id=c, anchor_invoice_id=i,
                                           outcome="sent", performed_at=at))


# --- one email for a customer's invoices at the same step ------------------------------------


def test_invoice_level_same_day_invoices_one_email(store):
    decisions = [d for d in _decisions(store, paris(*TUESDAY)) if d.plan.id == "per_invoice"]
    # One decision per customer: S1's three invoices at the courtesy step go out together.
    assert [(d.customer, d.step.id, d.outcome) for d in decisions] == [("S1", "courtesy", "send"), ("S2", "courtesy", "send")]
    s1 = decisions[0]
    assert len(s1.merged) == 2 and {m.step.id for m in s1.merged} == {"courtesy"}
    assert s1.reason == "3 invoices in one email"
    assert len(set(s1.anchor_invoice_ids)) == 3
    with store.session() as session:
        config = RunConfig.from_store(session)
        batch = compose.Batch.load(session, [s1.customer_id])
        pending = compose.pending(config, batch, s1, date(*TUESDAY))
    assert isinstance(pending, compose.Pending)
    drafted = pending.drafted(Renderer(config.templates, company=config.settings.company.model_dump()).render(*pending.request))
    assert drafted.email.text.split() == ["CH-1", "(0)", "CH-2", "(0)", "CH-3", "(0)"]
    assert sorted(drafted.invoice_ids) == sorted(s1.anchor_invoice_ids)


def test_invoice_level_same_day_invoices_one_email_sent_and_recorded_per_invoice(store, tmp_path: Path):
    import email
    import email.policy

    from dunningops.dunning.cycle import run_send
    from dunningops.store.schema import MessageRow
    from dunningops.transport.maildir import MaildirTransport

    folder = tmp_path / "maildir"
    run_send(store, at=paris(*TUESDAY), transport_factory=lambda c: MaildirTransport(folder))
    mails = [email.message_from_bytes(f.read_bytes(), policy=email.policy.default) for f in (folder / "new").iterdir()]
    s1 = [m for m in mails if m["X-Dunningops-Customer"] == "S1"]
    assert len(s1) == 1 and s1[0].get_body(("plain",)).get_content().split() == ["CH-1", "(0)", "CH-2", "(0)", "CH-3", "(0)"]
    with store.session() as s:
        customer = s.scalar(select(CustomerRow.id).filter_by(external_id="S1"))
        performed = s.scalars(select(ActionRow.step_id).where(ActionRow.customer_id == customer)).all()
        message = s.scalars(select(MessageRow).where(MessageRow.customer_id == customer)).one()
    assert performed == ["courtesy"] * 3 and len(message.invoice_ids) == 3
    # Every invoice's courtesy is performed: none of them is sent again.
    later = [d for d in _decisions(store, paris(2026, 12, 9)) if d.customer == "S1"]
    assert all(d.step.id != "courtesy" for d in later)


def test_invoice_level_grouping_can_be_switched_off_then_min_delay_holds(database_url, v1: Path, tmp_path: Path):
    from dunningops.dunning.cycle import run_send
    from dunningops.transport.maildir import MaildirTransport

    store = _store(database_url, v1, tmp_path, extra="group_invoices: false")
    try:
        s1 = [d for d in _decisions(store, paris(*TUESDAY)) if d.customer == "S1"]
        assert [d.outcome for d in s1] == ["send", "wait", "wait"] and not s1[0].merged
        assert s1[1].reason == "another email to this customer goes out in this run, minimum delay 2d"
        # Run every morning: one email per invoice, two days apart (the weekend in between).
        sent = []
        for day in (8, 9, 10, 11, 14):
            report = run_send(store, at=paris(2026, 12, day), transport_factory=lambda c: MaildirTransport(tmp_path / "m"))
            sent += [(day, d.anchor_invoice_id) for d in report.decisions if d.customer == "S1" and d.outcome == "send"]
    finally:
        store.dispose()
    assert [day for day, _ in sent] == [8, 10, 14] and len({i for _, i in sent}) == 3


def test_min_contact_delay_within_one_run(store):
    """Two emails for one customer in one run, for different steps: the oldest goes, the other waits."""
    _performed(store, "per_invoice", "courtesy", "S1", "S1-A", paris(2026, 12, 7))
    # 21 December: S1-A's reminder (10d) is due; S1-B and S1-C, with nothing performed yet, are at
    # their courtesy. The oldest due goes out; the other step waits (for both invoices).
    due = [d for d in _decisions(store, paris(2026, 12, 21)) if d.customer == "S1"]
    assert [(d.step.id, d.outcome) for d in due] == [("reminder", "send"), ("courtesy", "wait"), ("courtesy", "wait")]
    assert due[0].anchor_invoice_id == _ids(store, InvoiceRow, external_id="S1-A") and not due[0].merged
    assert {d.reason for d in due[1:]} == {"another email to this customer goes out in this run, minimum delay 2d"}
    # S2 is another customer: not held back.
    assert [d.outcome for d in _decisions(store, paris(2026, 12, 21)) if d.customer == "S2"] == ["send"]


def test_min_contact_delay_zero_sends_every_step_in_one_run(database_url, v1: Path, tmp_path: Path):
    store = _store(database_url, v1, tmp_path, delay="0d")
    try:
        _performed(store, "per_invoice", "courtesy", "S1", "S1-A", paris(2026, 12, 7))
        due = [d for d in _decisions(store, paris(2026, 12, 21)) if d.customer == "S1"]
    finally:
        store.dispose()
    assert [(d.step.id, d.outcome, len(d.merged)) for d in due] == [("reminder", "send", 0), ("courtesy", "send", 1)]


def test_min_contact_delay_within_one_run_does_not_count_calls(store):
    """The delay counts emails, not calls; a call after an email in the same run waits."""
    _performed(store, "per_invoice", "courtesy", "S1", "S1-A", paris(2026, 12, 7))
    _performed(store, "per_invoice", "reminder", "S1", "S1-A", paris(2026, 12, 21))
    # 31 December: S1-A at its call (20d); S1-B and S1-C at their courtesy (their first step).
    due = [(d.step.id, d.outcome) for d in _decisions(store, paris(2026, 12, 31)) if d.customer == "S1"]
    assert due == [("call", "todo"), ("courtesy", "send")]


def test_min_contact_delay_within_one_run_holds_back_a_call_after_an_email(store):
    with store.session() as s:
        s.execute(update(InvoiceRow).where(InvoiceRow.external_id == "S1-A").values(due_date=date(2026, 12, 1)))
    _performed(store, "per_invoice", "courtesy", "S1", "S1-A", paris(2026, 11, 30))
    _performed(store, "per_invoice", "courtesy", "S1", "S1-B", paris(2026, 12, 7))
    _performed(store, "per_invoice", "reminder", "S1", "S1-B", paris(2026, 12, 21))
    due = [(d.step.id, d.outcome) for d in _decisions(store, paris(2026, 12, 31)) if d.customer == "S1"]
    assert due == [("reminder", "send"), ("call", "wait"), ("courtesy", "wait")]


# --- E7: where a customer new to a plan starts ---------------------------------------------


def test_e7_first_step_is_the_default_entry(store):
    c1 = next(d for d in _decisions(store, paris(2026, 11, 24)) if d.customer == "C1")
    assert (c1.step.id, c1.outcome, c1.skipped) == ("courtesy", "send", ())


def test_e7_by_age_entry_skips_passed_steps(database_url, v1: Path, tmp_path: Path):
    store = _store(database_url, v1, tmp_path, by_age=True, extra="entry: by_age")
    try:
        # C1's invoice is 23 days overdue on 24 November: courtesy (-3d) and overdue (7d) have
        # passed, the call (14d) is the step its age has reached.
        c1 = next(d for d in _decisions(store, paris(2026, 11, 24)) if d.customer == "C1")
        assert (c1.step.id, c1.outcome, c1.skipped) == ("call", "todo", ("courtesy", "overdue"))
        assert c1.reason == "23 days overdue: starts here, skipping courtesy and overdue"
        # Invoice-level: each invoice enters at its own age; S2's invoice (due 10 December) is
        # 12 days overdue on the 22nd: at its reminder (10d), the courtesy skipped.
        s2 = next(d for d in _decisions(store, paris(2026, 12, 22)) if d.customer == "S2")
        assert (s2.step.id, s2.skipped) == ("reminder", ("courtesy",))
        # A young invoice enters at the first step whatever the entry.
        s1 = next(d for d in _decisions(store, paris(*TUESDAY)) if d.customer == "S1")
        assert (s1.step.id, s1.skipped, len(s1.merged)) == ("courtesy", (), 2)
    finally:
        store.dispose()


def test_e7_by_age_after_entry_goes_on_from_the_entry_step(database_url, v1: Path, tmp_path: Path):
    """Skipped steps are not performed (no action row): the next step is the one after the entry."""
    store = _store(database_url, v1, tmp_path, by_age=True)
    try:
        with store.session() as s:
            s.execute(update(InvoiceRow).where(InvoiceRow.external_id == "I1").values(due_date=date(2026, 11, 14)))
        c1 = next(d for d in _decisions(store, paris(2026, 11, 24)) if d.customer == "C1")
        assert (c1.step.id, c1.skipped) == ("overdue", ("courtesy",))  # 10 days overdue
        _performed(store, "standard", "overdue", "C1", "I1", paris(2026, 11, 24))
        assert "C1" not in {d.customer for d in _decisions(store, paris(2026, 11, 25))}  # the call is at 14d
        c1 = next(d for d in _decisions(store, paris(2026, 11, 30)) if d.customer == "C1")
        assert (c1.step.id, c1.skipped, c1.reason) == ("call", (), "")
        _performed(store, "standard", "call", "C1", "I1", paris(2026, 11, 30))
        # The last step performed: nothing more, and the skipped courtesy never comes back.
        assert "C1" not in {d.customer for d in _decisions(store, paris(2027, 1, 30))}
    finally:
        store.dispose()


# --- the run's calendar and day, built once ---------------------------------------------------


def test_decide_takes_the_run_calendar_and_day(store):
    at = paris(2026, 11, 24)
    with store.session() as session:
        config = RunConfig.from_store(session)
        calendar = SendingCalendar(config.settings)
        given = [(d.customer, d.step.id, d.outcome)
                 for d in decide(session, config, at, calendar=calendar, today=date(2026, 11, 24))]
        built = [(d.customer, d.step.id, d.outcome) for d in decide(session, config, at)]
        # ``today`` is the day the thresholds are computed for.
        early = [d.customer for d in decide(session, config, at, calendar=calendar, today=date(2026, 10, 1))]
    assert given == built and given
    assert early == []


# --- to-dos in a person's words (C6, C9) -------------------------------------------------------


def _contact(cid: int, email: str, *, functions=(), primary=False, valid=True, reason=None, at=None) -> Contact:
    return Contact(cid, email, None, None, primary, valid, frozenset(functions), reason, at)


def test_c9_nobody_to_write_to_says_who_when_and_why():
    bounced = datetime(2026, 11, 19, 23, 30, tzinfo=UTC)  # 20 November in Paris
    paris_tz = ZoneInfo("Europe/Paris")
    jean = _contact(1, "jean@x.fr", functions={"payer"}, primary=True, valid=False, reason="550 5.1.1 user unknown", at=bounced)
    assert nobody_to_write_to(("payer",), [jean], paris_tz) == (
        "jean@x.fr was marked invalid on 2026-11-20 (550 5.1.1 user unknown); "
        "no other contact has the function payer or is primary"
    )
    # The payer bounced; the primary contact has no function and bounced too.
    marc = _contact(2, "marc@x.fr", primary=True, valid=False, reason="550 mailbox full", at=bounced)
    jean = _contact(1, "jean@x.fr", functions={"payer"}, valid=False, reason="550 5.1.1 user unknown", at=bounced)
    assert nobody_to_write_to(("payer", "accountant"), [jean, marc], paris_tz) == (
        "jean@x.fr was marked invalid on 2026-11-20 (550 5.1.1 user unknown); "
        "the primary contact marc@x.fr was marked invalid on 2026-11-20 (550 mailbox full); "
        "no other contact has the functions payer or accountant or is primary"
    )
    # No function on the step: the primary contact only.
    assert nobody_to_write_to((), [marc], paris_tz) == (
        "the primary contact marc@x.fr was marked invalid on 2026-11-20 (550 mailbox full)")
    assert nobody_to_write_to((), [_contact(3, "a@x.fr"), _contact(4, "b@x.fr")], paris_tz) == "none of its 2 contacts is primary"
    assert nobody_to_write_to(("payer",), [_contact(3, "a@x.fr")]) == "no contact has the function payer or is primary"
    assert nobody_to_write_to(("payer",), []) == "the customer has no contact"


def test_c9_todo_says_why_nobody_can_be_written_to(store):
    """The bounce's date and reason come from the store; the to-do's reason is a sentence."""
    with store.session() as s:
        s.execute(update(ContactRow).where(ContactRow.email == "urs@schmid.ch").values(
            valid=False, invalid_reason="550 5.1.1 user unknown", invalid_at=datetime(2026, 11, 20, 9, 12, tzinfo=UTC)))
        s1 = s.scalar(select(CustomerRow.id).filter_by(external_id="S1"))
        config = RunConfig.from_store(s)
        step = config.plans["per_invoice"].steps[0]
        who = choose(step, load_contacts(s, [s1])[s1])
        assert who.to == () and who.problem == (
            "urs@schmid.ch was marked invalid on 2026-11-20 (550 5.1.1 user unknown); "
            "no other contact has the function payer or is primary"
        )
        todo_id = add_todo(s, kind="no_recipient", customer_id=s1, now=paris(*TUESDAY), assignee="alice",
                           payload={"action": "email", "problem": who.problem}, reason=who.problem)
        reason = s.scalar(select(TodoRow.reason).where(TodoRow.id == todo_id))
    assert reason == ("Nobody can be written to: urs@schmid.ch was marked invalid on 2026-11-20 "
                      "(550 5.1.1 user unknown); no other contact has the function payer or is primary.")


# --- the example templates, in either entry --------------------------------------------------


@pytest.mark.parametrize("language", ["fr", "en"])
def test_e7_courtesy_never_lists_an_overdue_invoice_as_coming_due(config_dir: Path, language: str):
    """First step entry sends the courtesy email to a customer far behind: what is overdue says so."""
    from dunningops.reconcile.objects import desired_objects
    from dunningops.render.context import EmailContext, InvoiceData

    objects = desired_objects(load_config(config_dir))
    templates = {a.split(".", 1)[1]: f for a, f in objects.items() if a.startswith("template.")}
    renderer = Renderer(templates, company=objects["settings"]["company"])
    today = date(2026, 12, 2)

    def render(*dues: date):
        invoices = [InvoiceData(f"F-{i}", due, 10000, 10000, "EUR", days_overdue=max(0, (today - due).days))
                    for i, due in enumerate(dues)]
        ctx = EmailContext(company=objects["settings"]["company"], customer={"name": "Client", "external_id": "C1"},
                           contact={"name": None, "email": "c@client.fr"}, invoices=invoices,
                           sender={"name": "Compta", "email": "c@a.fr"}, signature="", today=today,
                           locale="fr_FR" if language == "fr" else "en_GB")
        return renderer.render("courtesy", language, ctx)

    coming, late = ("arrive prochainement à échéance", "est échue et reste à régler") if language == "fr" else \
        ("falls due shortly", "is past due and still to be paid")
    only_late = render(date(2026, 7, 10))
    assert coming not in only_late.text and late in only_late.text
    assert ("prochaine échéance" if language == "fr" else "due soon") not in only_late.subject
    only_coming = render(date(2026, 12, 4))
    assert coming in only_coming.text and late not in only_coming.text
    both = render(date(2026, 7, 10), date(2026, 12, 4)).text
    # Each invoice under its own heading: F-1 is coming due, F-0 is overdue.
    assert both.index(coming) < both.index("F-1") < both.index("F-0") and "F-0" not in both[:both.index("F-1")]


def test_migration_0005_plans_applied_before_keep_first_step_and_grouping(tmp_path: Path):
    from alembic import command
    from sqlalchemy import create_engine, text
    from sqlalchemy.orm import Session

    from dunningops.store import migrate
    from dunningops.store.config_objects import read_actual

    engine = create_engine(f"sqlite:///{tmp_path}/old.db")
    config = migrate.alembic_config(engine)
    command.upgrade(config, "0004")
    with engine.begin() as c:
        c.execute(text("INSERT INTO plans VALUES ('p', 'P', 'invoice', '{}', '0d', NULL, "
                       "'2026-01-01 00:00:00', '2026-01-01 00:00:00')"))
    command.upgrade(config, "head")
    with Session(engine) as s:
        fields = read_actual(s)["plan.p"].fields
        assert (fields["entry"], fields["group_invoices"]) == ("first_step", True)
        plan = RunConfig.from_objects({"settings": {"company": {"name": "A"}, "deliverability": {"fallback_sender": "a@b.fr"}},
                                       "plan.p": fields}, {}, {}).plans["p"]
    assert (plan.entry, plan.group_invoices, plan.enters_by_age) == ("first_step", True, False)
    engine.dispose()
