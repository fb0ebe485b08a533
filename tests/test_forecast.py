"""The forecast is correct by construction: a forecast made on day 0 is what the real send cycle
then does, day by day (no payments, no replies), on SQLite and PostgreSQL.

Each walk runs the real ``run_send`` at exactly each simulated day's cycle instant (``Day.at``),
with a maildir transport, and compares each day's action rows, to-dos, messages and maildir files
with the forecast's events and counts (forecast_helpers.py). The ledger is built so that every rule
the simulation must reproduce binds somewhere in the window; each test also checks that its rule
visibly shaped the forecast, so that an equality is never a vacuous one.

The window: Monday 14 December 2026 to Tuesday 12 January 2027 (30 days), company in France:
weekends, Christmas (Friday 25 December) and New Year's Day (Friday 1 January) have no cycle, and
the window crosses a month boundary.
"""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, insert, select, update

from dunningops.dunning.cycle import run_send
from dunningops.dunning.pauses import pause_customer, pause_invoice
from dunningops.dunning.todos import add as add_todo
from dunningops.forecast.impact import Impact
from dunningops.forecast.model import Event, Forecast
from dunningops.forecast.run import forecast, impact
from dunningops.reconcile.apply import apply_config
from dunningops.spec import load_config
from dunningops.store.engine import Store
from dunningops.store.schema import ContactRow, CustomerRow, InvoiceRow, MessageRow, TodoRow
from forecast_helpers import (
    Cycle,
    Maildir,
    Names,
    assert_walk_matches,
    build_store,
    edit,
    example_config,
    fingerprint,
    mismatches,
    walk,
)

PARIS = ZoneInfo("Europe/Paris")
DAY0 = datetime(2026, 12, 14, 7, 0, tzinfo=PARIS)  # a Monday, before the 08:00-09:00 window
DAYS = 30

# The example config's three plans: standard (FR and default; customer level, entry by_age, 3 days
# between contacts), key_accounts (DE/BE/LU/NL; customer level, first step, 7 days) and per_invoice
# (CHF; invoice level, by_age, invoices grouped, 2 days).
LEDGER = dict(
    customers=(
        "F1,Boulangerie Martin SARL,FR,fr_FR,EUR,sophie,\n"  # three invoices, two of them 23 and 24 days overdue
        "F2,Garage Leroy,FR,fr_FR,EUR,karim,\n"  # one contact, no function: the primary contact (C6)
        "F3,Menuiserie Petit,FR,fr_FR,EUR,,\n"  # courtesy due on Christmas; no account manager
        "F4,Imprimerie Roux,FR,fr_FR,EUR,sophie,\n"  # no contact at all
        "F5,Transports Blanc,FR,en_GB,EUR,sophie,\n"  # its only contact bounced (C9)
        "F6,Fromagerie Dubois,FR,fr_FR,EUR,karim,\n"  # promised to pay by 22 December
        "F7,Café Moreau,FR,fr_FR,EUR,karim,\n"  # its oldest invoice is disputed past the window
        "F8,Librairie Girard,FR,fr_FR,EUR,sophie,\n"  # a reply waits for a person (R4)
        "F9,Pharmacie Lambert,FR,fr_FR,EUR,sophie,\n"  # written to by hand on Saturday 12 December
        "K1,Müller GmbH,DE,de_DE,EUR,thomas,\n"  # its newer invoice disputed until 27 December
        "K2,Janssens NV,BE,nl_BE,EUR,thomas,\n"  # 43 days overdue, entering at the first step (E7)
        "S1,Schmid AG,CH,de_CH,CHF,karim,\n"  # three invoices at three steps
        "S2,Keller & Co,CH,fr_CH,CHF,karim,\n"  # two invoices due the same day: one email
        "S3,Weber SA,CH,fr_CH,CHF,karim,\n"  # one of its two invoices disputed until 28 December
        "S4,Huber GmbH,CH,de_CH,CHF,karim,\n"  # a reply about one of its invoices waits (R9)
    ),
    contacts=(
        "F1,paul@martin.fr,Paul Martin,,,payer,true\n"
        "F1,anne@martin.fr,Anne Martin,,,accountant,false\n"
        "F1,luc@martin.fr,Luc Martin,,,sales;purchaser,false\n"
        "F2,contact@leroy.fr,Jean Leroy,,,,true\n"
        "F3,compta@petit.fr,,,,payer;accountant,true\n"
        "F5,ops@blanc.fr,Ops,,,payer,true\n"
        "F6,marie@dubois.fr,Marie Dubois,,,payer,true\n"
        "F7,cafe@moreau.fr,,,,,true\n"
        "F8,compta@girard.fr,,,,payer,true\n"
        "F9,officine@lambert.fr,,,,payer,true\n"
        "K1,hans@mueller.de,Hans Müller,,,payer,true\n"
        "K1,eva@mueller.de,Eva Müller,,,sales,false\n"
        "K2,finance@janssens.be,,,,payer,true\n"
        "S1,rechnungen@schmid.ch,,,,payer,true\n"
        "S1,buchhaltung@schmid.ch,,,,accountant,false\n"
        "S2,factures@keller.ch,,,,,true\n"
        "S3,compta@weber.ch,,,,payer,true\n"
        "S4,buchhaltung@huber.ch,,,,payer,true\n"
    ),
    invoices=(
        "I11,F1,FA-11,2026-10-20,2026-11-20,1200.00,,EUR,,\n"
        "I12,F1,FA-12,2026-10-21,2026-11-21,300.00,,EUR,,\n"
        "I13,F1,FA-13,2026-11-21,2026-12-21,450.00,,EUR,,\n"
        "I21,F2,FA-21,2026-11-17,2026-12-17,800.00,,EUR,,\n"
        "I31,F3,FA-31,2026-11-28,2026-12-28,90.00,,EUR,,\n"
        "I41,F4,FA-41,2026-11-16,2026-12-16,60.00,,EUR,,\n"
        "I51,F5,FA-51,2026-11-22,2026-12-22,75.00,,EUR,,\n"
        "I61,F6,FA-61,2026-11-10,2026-12-10,500.00,,EUR,,\n"
        "I71,F7,FA-71,2026-10-30,2026-11-30,250.00,,EUR,,\n"
        "I72,F7,FA-72,2026-11-20,2026-12-20,130.00,,EUR,,\n"
        "I81,F8,FA-81,2026-11-16,2026-12-16,40.00,,EUR,,\n"
        "I91,F9,FA-91,2026-11-17,2026-12-17,70.00,,EUR,,\n"
        "K11,K1,FA-K11,2026-11-19,2026-12-19,5000.00,,EUR,,\n"
        "K12,K1,FA-K12,2026-11-20,2026-12-20,2500.00,,EUR,,\n"
        "K21,K2,FA-K21,2026-10-01,2026-11-01,7000.00,,EUR,,\n"
        "S11,S1,FA-S11,2026-11-20,2026-12-20,1000.00,,CHF,,\n"
        "S12,S1,FA-S12,2026-11-21,2026-12-21,1100.00,,CHF,,\n"
        "S13,S1,FA-S13,2026-10-25,2026-11-25,1200.00,,CHF,,\n"
        "S21,S2,FA-S21,2026-11-22,2026-12-22,200.00,,CHF,,\n"
        "S22,S2,FA-S22,2026-11-22,2026-12-22,210.00,,CHF,,\n"
        "S31,S3,FA-S31,2026-11-18,2026-12-18,300.00,,CHF,,\n"
        "S32,S3,FA-S32,2026-11-18,2026-12-18,310.00,,CHF,,\n"
        "S41,S4,FA-S41,2026-11-22,2026-12-22,400.00,,CHF,,\n"
        "S42,S4,FA-S42,2026-11-22,2026-12-22,420.00,,CHF,,\n"
    ),
)


def _situation(store: Store) -> None:
    """What people did before day 0: pauses, a reply waiting, a bounce, an email by hand."""
    now = datetime(2026, 12, 11, 10, 0, tzinfo=PARIS)
    with store.session() as s:
        pause_customer(s, "F6", until=date(2026, 12, 22), reason="promise", now=now)
        pause_invoice(s, "S31", until=date(2026, 12, 28), reason="dispute", now=now)
        pause_invoice(s, "K12", until=date(2026, 12, 27), reason="dispute", now=now)
        pause_invoice(s, "I71", until=date(2027, 2, 26), reason="dispute", now=now)
        ids = dict(s.execute(select(CustomerRow.external_id, CustomerRow.id)).all())
        add_todo(s, kind="reply", customer_id=ids["F8"], now=now, assignee="sophie", payload={})  # R4
        s41 = s.scalar(select(InvoiceRow.id).where(InvoiceRow.external_id == "S41"))
        add_todo(s, kind="reply", customer_id=ids["S4"], invoice_id=s41, now=now, assignee="karim", payload={})  # R9
        s.execute(update(ContactRow).where(ContactRow.email == "ops@blanc.fr").values(valid=False, invalid_reason="550 5.1.1"))
        s.execute(
            insert(MessageRow).values(
                message_id="<by-hand@ateliers-durand.fr>",
                kind="manual",
                automatic=False,
                customer_id=ids["F9"],
                from_address="sophie.garnier@ateliers-durand.fr",
                to_addresses=["officine@lambert.fr"],
                cc_addresses=[],
                bcc_addresses=[],
                subject="Votre facture",
                invoice_ids=[],
                status="sent",
                created_at=datetime(2026, 12, 12, 10, 0, tzinfo=PARIS),
            )
        )


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return example_config(tmp_path)


@pytest.fixture
def make_store(database_url: str, config: Path, tmp_path: Path):
    """Builds the store once the test has edited ``config``: the ledger imported, the situation set."""
    made: list[Store] = []

    def build(ledger: dict[str, str] = LEDGER) -> Store:
        s = build_store(database_url, config, tmp_path, ledger)
        _situation(s)
        made.append(s)
        return s

    yield build
    for s in made:
        s.dispose()


@pytest.fixture
def store(make_store) -> Store:
    return make_store()


@pytest.fixture
def maildir(tmp_path: Path) -> Maildir:
    return Maildir(tmp_path / "maildir")


@dataclass
class Walk:
    """The example ledger's forecast made on day 0, and the real cycles walked over its days."""

    store: Store
    made: Forecast
    cycles: list[Cycle]

    def checked(self) -> Forecast:
        """The forecast, once checked against the walk day by day."""
        assert self.made.events, "a forecast with nothing in it proves nothing"
        assert_walk_matches(self.made, self.cycles, self.store)
        return self.made


@pytest.fixture(
    scope="module",
    params=[pytest.param("sqlite", id="sqlite"), pytest.param("postgresql", id="postgresql", marks=pytest.mark.postgres)],
)
def main_walk(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Walk]:
    """One walk of the example ledger per backend, shared by the tests that only read it (as
    ``database_url`` does per test: a fresh SQLite file, or a fresh database on the real PostgreSQL)."""
    tmp = tmp_path_factory.mktemp(f"forecast-{request.param}")
    server, name = None, f"forecast_walk_{os.getpid()}"
    if request.param == "sqlite":
        url = f"sqlite:///{tmp}/state.db"
    else:
        server = request.getfixturevalue("postgres_server")
        server.create_database(name)
        url = server.url(name)
    try:
        store = build_store(url, example_config(tmp), tmp, LEDGER)
        try:
            _situation(store)
            made = forecast(store, at=DAY0, days=DAYS)
            yield Walk(store, made, walk(store, made, Maildir(tmp / "maildir")))
        finally:
            store.dispose()
    finally:
        if server is not None:
            server.drop_database(name)


def _walked(store: Store, maildir: Maildir, *, at: datetime = DAY0, days: int = DAYS) -> Forecast:
    """The forecast made at ``at``, after checking it against the real cycle walked over its days."""
    made = forecast(store, at=at, days=days)
    assert made.events, "a forecast with nothing in it proves nothing"
    assert_walk_matches(made, walk(store, made, maildir), store)
    return made


def _events(f: Forecast, store: Store, customer: str) -> list[tuple[date, str, str]]:
    names = Names.load(store)
    return [(e.day, e.step, e.outcome) for e in f.events if names.customers[e.customer_id] == customer]


def _day(f: Forecast, day: date):
    return next(d for d in f.days if d.day == day)


# --- the walks ------------------------------------------------------------------------------------


def test_e1_c6_a6_several_plans_forecast_matches_the_send_cycle_day_by_day(main_walk: Walk):
    made, store = main_walk.checked(), main_walk.store
    assert {e.plan for e in made.events} == {"standard", "key_accounts", "per_invoice"}
    # E1: automatic emails are sent, manual emails, calls and letters are to-dos, in every plan.
    assert {(e.outcome, e.todo_kind) for e in made.events} >= {
        ("send", None),
        ("todo", "email"),
        ("todo", "call"),
        ("todo", "letter"),
    }
    by_key = {(Names.load(store).customers[e.customer_id], e.step): e for e in made.events}
    # A customer-level step covers the customer's invoices due by its threshold: F1's final notice
    # (30 days after 20 November, on Monday 21 December) lists those due by 21 November, not FA-13.
    assert (by_key[("F1", "final-notice")].invoices, by_key[("F1", "final-notice")].amount_cents) == (2, 150000)
    # C6: F2's only contact has no function: the primary contact receives it.
    assert by_key[("F2", "courtesy")].recipients == ("to:contact@leroy.fr",)
    # A6: a manual email is prepared from the account manager (karim), or the fallback sender
    # when the customer has none (F3).
    assert by_key[("F2", "personal-follow-up")].sender == "member.karim"
    assert by_key[("F3", "personal-follow-up")].sender == "fallback"


def test_invoice_level_grouped_invoices_one_email_each_target_performed(main_walk: Walk):
    made, store = main_walk.checked(), main_walk.store
    wednesday = _day(made, date(2026, 12, 16))
    # S1's S11 and S12 both reach the courtesy on Wednesday 16 December: one email, two targets.
    assert wednesday.sent[("per_invoice", "courtesy")] == 1
    courtesy = [e for e in made.events if e.day == wednesday.day and e.plan == "per_invoice" and e.step == "courtesy"]
    assert sorted((e.invoices, e.merged) for e in courtesy) == [(1, 1), (1, 1)]
    # S2's two invoices go out together on the courtesy and again on the first reminder.
    assert _events(made, store, "S2") == [
        (date(2026, 12, 17), "courtesy", "send"),
        (date(2026, 12, 17), "courtesy", "send"),
        (date(2027, 1, 4), "first-reminder", "send"),
        (date(2027, 1, 4), "first-reminder", "send"),
    ]


def test_min_contact_delay_across_runs_and_within_a_run(main_walk: Walk):
    made, store = main_walk.checked(), main_walk.store
    # F9 was written to by hand on Saturday 12 December: its courtesy, due since the 14th, waits for
    # three days to pass (the 15th).
    assert _events(made, store, "F9")[0] == (date(2026, 12, 15), "courtesy", "send")
    assert _day(made, date(2026, 12, 14)).waiting["min_delay"] >= 1
    # S1: S13's first reminder on the 14th holds S11's courtesy (due on the 15th) until the 16th.
    assert _events(made, store, "S1")[:3] == [
        (date(2026, 12, 14), "first-reminder", "send"),
        (date(2026, 12, 16), "courtesy", "send"),
        (date(2026, 12, 16), "courtesy", "send"),
    ]
    # S1 on the 30th: the call (a to-do) and S11's first reminder; S12's first reminder, due on the
    # 31st, waits for the two days to pass: after New Year's Day, on Monday 4 January.
    assert [(d, s) for d, s, _ in _events(made, store, "S1") if d >= date(2026, 12, 30)][:3] == [
        (date(2026, 12, 30), "call"),
        (date(2026, 12, 30), "first-reminder"),
        (date(2027, 1, 4), "first-reminder"),
    ]
    # K2 (7 days): its to-dos wait a week after the courtesy email, whatever their due dates.
    assert _events(made, store, "K2")[:2] == [
        (date(2026, 12, 14), "courtesy", "send"),
        (date(2026, 12, 21), "first-reminder", "todo"),
    ]


def test_e3_weekends_and_public_holidays_have_no_cycle(main_walk: Walk):
    made, store = main_walk.checked(), main_walk.store
    closed = {d.day: d.closed for d in made.days if d.at is None}
    assert closed[date(2026, 12, 25)] == "public holiday (Christmas Day)"
    assert closed[date(2027, 1, 1)] == "public holiday (New Year's Day)"
    assert closed[date(2026, 12, 19)].startswith("not a sending day")
    assert len(closed) == 2 + 2 * 4  # two holidays and four weekends (19-20 Dec … 9-10 Jan)
    assert all(d.at is not None and d.at.astimezone(PARIS).strftime("%H:%M") == "08:00" for d in made.days if d.day not in closed)
    # F3's courtesy falls due on Christmas Day (28 December - 3 days): it goes on Monday the 28th.
    assert _events(made, store, "F3")[0] == (date(2026, 12, 28), "courtesy", "send")


def test_e3_forecast_made_after_the_window_closed_starts_the_next_working_day(store: Store, maildir: Maildir):
    made = _walked(store, maildir, at=datetime(2026, 12, 14, 10, 0, tzinfo=PARIS))
    # Monday's window is over at 10:00: no cycle that day; Tuesday's does Monday's work.
    assert made.days[0].at is None and made.days[0].closed == "outside the sending window 08:00-09:00 Europe/Paris"
    assert min(e.day for e in made.events) == date(2026, 12, 15)
    assert _events(made, store, "F1")[0] == (date(2026, 12, 15), "call", "todo")


def test_pauses_of_a_customer_and_of_an_invoice_end_inside_the_window(main_walk: Walk):
    made, store = main_walk.checked(), main_walk.store
    names = Names.load(store)

    def of(customer: str) -> list[Event]:
        return [e for e in made.events if names.customers[e.customer_id] == customer]

    # F6 promised to pay by 22 December: nothing until the 23rd, where its age (13 days) enters the
    # first reminder (by_age); its earlier step is skipped.
    assert _events(made, store, "F6")[0] == (date(2026, 12, 23), "first-reminder", "send")
    # F6 and S31 wait for their pauses; a paused invoice of a customer-level plan (K12, I71) is no target.
    assert _day(made, date(2026, 12, 22)).waiting["paused"] == 2
    # S3 (invoice level): S32 goes on, S31 is disputed through the 28th; on the 29th the minimum delay
    # after S32's email of the 28th holds it one more day.
    assert _events(made, store, "S3")[:3] == [
        (date(2026, 12, 14), "courtesy", "send"),
        (date(2026, 12, 28), "first-reminder", "send"),
        (date(2026, 12, 30), "first-reminder", "send"),
    ]
    assert [names.invoices[e.anchor_invoice_id] for e in of("S3") if e.day == date(2026, 12, 30)] == ["S31"]
    # Customer level: a disputed invoice is neither the anchor nor in the emails while its pause
    # holds (F7's, past the window), and is back in them once it ends (K1's, through the 27th).
    assert {(names.invoices[e.anchor_invoice_id], e.invoices) for e in of("F7")} == {("I72", 1)}
    assert [(e.step, e.invoices, e.amount_cents) for e in of("K1")][:2] == [
        ("courtesy", 1, 500000),
        ("first-reminder", 2, 750000),
    ]
    # Not in the forecast (its docstring says so): the broken promise's to-do the real cycle made on
    # the 23rd. It is no step of a plan and holds nothing back, so the walk still matched.
    with store.session() as s:
        broken = s.execute(select(TodoRow.customer_id, TodoRow.created_at).where(TodoRow.kind == "promise_broken")).all()
    assert [(names.customers[c], at) for c, at in broken] == [("F6", datetime(2026, 12, 23, 8, 0, tzinfo=PARIS))]


def test_not_simulated_an_older_invoice_pause_ending_re_anchors_a_customer_level_plan(store: Store, maildir: Maildir):
    """A limit the simulation's docstring states: customer-level anchors are those of day 0. When the
    pause of a customer's older invoice ends inside the window, the real cycle anchors a new round on
    it; the forecast goes on with the day-0 anchor. The difference is that customer's alone."""
    with store.session() as s:
        pause_invoice(s, "I71", until=date(2026, 12, 28), reason="dispute", now=datetime(2026, 12, 11, 10, 0, tzinfo=PARIS))
    made = forecast(store, at=DAY0, days=DAYS)
    problems = mismatches(made, walk(store, made, maildir), store)
    steps = [p for p in problems if "forecast only:" in p or "real cycle only:" in p]
    assert steps == [
        "2026-12-31 (Thu): real cycle only: standard.final-notice F7/I71: "
        "send from fallback to:cafe@moreau.fr, 1 invoice(s), 25000 cents",
        # The forecast's steps on the day-0 anchor list I71 too once its pause has ended.
        "2027-01-04 (Mon): forecast only:   standard.personal-follow-up F7/I72: "
        "to-do email (prepared from member.karim) to:cafe@moreau.fr, 2 invoice(s), 38000 cents",
        "2027-01-11 (Mon): forecast only:   standard.call F7/I72: to-do call, 2 invoice(s), 38000 cents",
    ]
    # Everything else (the counts of those days, F7's waits on the 29th and 30th) follows from those three.
    assert all("F7" in p or "by step:" in p or "by reason:" in p for p in problems)


def test_r4_r9_pending_reply_todo_blocks_the_customer_or_its_invoice(main_walk: Walk):
    made, store = main_walk.checked(), main_walk.store
    # R4: F8's reply waits for a person: nothing for F8, whose courtesy is due from the 14th.
    assert _events(made, store, "F8") == []
    # R9: S4's reply is about S41 (invoice level): S42 goes on alone, S41 waits.
    assert [
        (e.day, e.step, Names.load(store).invoices[e.anchor_invoice_id], e.merged)
        for e in made.events
        if e.customer_id in _ids(store, "S4")
    ] == [
        (date(2026, 12, 17), "courtesy", "S42", 0),
        (date(2027, 1, 4), "first-reminder", "S42", 0),
    ]
    assert [d.waiting["reply"] for d in made.days if d.at is not None][:5] == [1, 1, 1, 2, 2]  # S41 due from the 17th


def _ids(store: Store, *customers: str) -> set[int]:
    names = Names.load(store)
    return {i for i, c in names.customers.items() if c in customers}


def test_e7_entry_by_age_and_first_step(main_walk: Walk):
    made, store = main_walk.checked(), main_walk.store
    # standard (by_age): F1's oldest invoice is 24 days overdue: it starts at the call.
    assert _events(made, store, "F1") == [
        (date(2026, 12, 14), "call", "todo"),
        (date(2026, 12, 21), "final-notice", "send"),
        (date(2027, 1, 4), "formal-notice", "todo"),
    ]
    # key_accounts (first_step): K2's invoice is 43 days overdue, yet it starts at the courtesy.
    assert _events(made, store, "K2")[0] == (date(2026, 12, 14), "courtesy", "send")


def test_c6_c9_automatic_email_nobody_can_receive_is_a_todo(main_walk: Walk):
    made, store = main_walk.checked(), main_walk.store
    # F4 has no contact, F5's only contact bounced: the automatic emails are no-recipient to-dos
    # (in the real cycle as in the forecast: the walk compares the to-dos' kinds).
    assert _events(made, store, "F4")[:2] == [
        (date(2026, 12, 14), "courtesy", "todo"),
        (date(2026, 12, 21), "first-reminder", "todo"),
    ]
    no_recipient = {(Names.load(store).customers[e.customer_id], e.step) for e in made.events if e.todo_kind == "no_recipient"}
    assert {("F4", "courtesy"), ("F4", "first-reminder"), ("F5", "courtesy"), ("F5", "first-reminder")} <= no_recipient
    # Nobody is written to, so nobody counts as contacted: F5's steps follow their own dates.
    assert all(e.sender is None and e.recipients == () for e in made.events if e.todo_kind == "no_recipient")


def test_a2_a3_unverified_alias_sends_from_the_fallback_sender(main_walk: Walk):
    made = main_walk.checked()  # the walk checks each maildir's From against the forecast's sender
    by_sender = Counter((e.step, e.sender) for e in made.events if e.outcome == "send" and e.plan == "standard")
    # `credit` was never verified: the final notices go out from the fallback; `billing` was.
    assert by_sender[("final-notice", "fallback")] == 2 and by_sender[("final-notice", "alias.credit")] == 0
    assert by_sender[("courtesy", "alias.billing")] >= 4


def test_t6_caps_per_day_and_per_month_after_a_history_across_the_month_boundary(make_store, config: Path, maildir: Maildir):
    """The caps bind (3 a day, 12 a month) on top of what real cycles sent before day 0, including one
    at 08:00 on day 0 itself: the forecast is made at 08:30, and December's cap lifts in January."""
    edit(config / "dunningops.yaml", "per_day: 300\n      per_month: 1000", "per_day: 3\n      per_month: 12")
    store = make_store()
    day = datetime(2026, 12, 1, 8, 0, tzinfo=PARIS)
    while day <= datetime(2026, 12, 14, 8, 0, tzinfo=PARIS):
        run_send(store, at=day, transport_factory=maildir.factory)
        day += timedelta(days=1)
    eight = datetime(2026, 12, 14, 8, 0, tzinfo=PARIS)
    with store.session() as s:
        at_eight = s.scalar(select(func.count()).where(MessageRow.kind == "reminder", MessageRow.created_at == eight))
    assert at_eight == 2
    made = _walked(store, maildir, at=datetime(2026, 12, 14, 8, 30, tzinfo=PARIS))
    first = made.days[0]
    assert first.at == datetime(2026, 12, 14, 8, 30, tzinfo=PARIS)
    assert first.room == 3 - at_eight  # what the 08:00 cycle sent counts against the day
    december = [d for d in made.days if d.day.month == 12 and d.at]
    assert sum(d.held_by_caps for d in december) > 0
    # No room at a cycle's start, when nothing was sent yet that day: the month's twelve are gone.
    assert any(d.room == 0 and d.held_by_caps for d in december[1:])
    january = [d for d in made.days if d.day.month == 1 and d.at]
    assert january[0].room == 3 and sum(sum(d.sent.values()) for d in january) > 0
    assert all(sum(d.sent.values()) <= 3 for d in made.days)


def test_t6_month_cap_counts_every_email_to_a_customer_in_a_day(make_store, config: Path, maildir: Maildir):
    """Invoice level, not grouped, no minimum delay: a customer gets one email per invoice on one day,
    and each counts against the month's cap."""
    plans = config / "plans" / "per_invoice.yaml"
    edit(plans, "min_contact_delay: 2d", "min_contact_delay: 0d")
    edit(plans, "group_invoices: true", "group_invoices: false")
    edit(config / "dunningops.yaml", "per_day: 300\n      per_month: 1000", "per_day: 6\n      per_month: 9")
    store = make_store()
    made = _walked(store, maildir)
    names = Names.load(store)
    emails = Counter((e.day, names.customers[e.customer_id]) for e in made.events if e.outcome == "send")
    assert emails[(date(2027, 1, 5), "S1")] == 2  # S11 and S12's first reminders, one email each
    # December: eight reminders, and the email written by hand to F9 on the 12th; January: nine.
    assert sum(sum(d.sent.values()) for d in made.days if d.day.month == 12) == 8
    assert sum(sum(d.sent.values()) for d in made.days if d.day.month == 1) == 9
    assert sum(d.held_by_caps for d in made.days if d.day.month == 1) > 0


# F10's invoice is 11 days overdue on day 0: the step the E3 test adds (at 10d) is its step.
EXTRA = dict(
    customers="F10,Plomberie Fontaine,FR,fr_FR,EUR,sophie,\n",
    contacts="F10,compta@fontaine.fr,,,,payer,true\n",
    invoices="I101,F10,FA-101,2026-11-03,2026-12-03,640.00,,EUR,,\n",
)
NEW_STEP = """      - id: reminder-bis
        at: 10d
        action: email
        send: auto
        from: alias.billing
        to: [payer]
        template: first-reminder

      # A personal email"""


def test_e3_new_automatic_step_applied_on_day_0_first_sends_the_next_working_day(make_store, config: Path, maildir: Maildir):
    store = make_store({k: v + EXTRA[k] for k, v in LEDGER.items()})
    edit(config / "plans" / "standard.yaml", "      # A personal email", NEW_STEP)
    desired = load_config(config)
    # Before it is applied: the impact plan simulates it as applied at its start (E3 from then).
    planned = impact(store, desired, at=DAY0, days=DAYS)
    apply_config(store, desired, now=DAY0, actor="t", git_commit=None)
    made = _walked(store, maildir)
    assert sorted(map(_bare, made.events)) == sorted(map(_bare, planned.after.events))
    # F10's invoice (due 3 December) is 11 days overdue on Monday: reminder-bis is its step, but a new
    # automatic step first sends the next working day (Tuesday 15 December, 08:00).
    assert _day(made, date(2026, 12, 14)).waiting["new_step"] == 1
    assert _events(made, store, "F10")[0] == (date(2026, 12, 15), "reminder-bis", "send")
    assert planned.count("added") == sum(1 for e in made.events if e.step == "reminder-bis" and e.outcome == "send") >= 3


def _bare(e: Event) -> tuple:
    return (e.day, e.key, e.content, e.amount_cents, e.invoices, e.merged)


# --- the comparison itself --------------------------------------------------------------------------


def test_the_walk_comparison_sees_each_kind_of_difference(main_walk: Walk):
    """The comparison is not vacuous: a forecast with an email a day late, another email from another
    sender, a to-do of another kind and a step missing is told apart from the walk, line by line."""
    made, cycles, store = main_walk.made, main_walk.cycles, main_walk.store
    assert mismatches(made, cycles, store) == []
    assert sum(len(c.mails) for c in cycles) == sum(sum(d.sent.values()) for d in made.days) >= 20
    names = Names.load(store)
    monday = [e for e in made.events if e.outcome == "send" and e.day == date(2026, 12, 14)]
    late = next(e for e in monday if e.sender == "alias.billing")
    other = next(e for e in monday if e.sender == "alias.billing" and e.customer_id != late.customer_id)
    todo = next(e for e in made.events if e.todo_kind == "call")
    gone = next(e for e in made.events if e.step == "formal-notice")

    def altered(e: Event) -> Event:
        if e is late:
            return dataclasses.replace(e, day=date(2026, 12, 15))
        if e is other:
            return dataclasses.replace(e, sender="alias.ceo")
        return dataclasses.replace(e, todo_kind="letter") if e is todo else e

    problems = mismatches(dataclasses.replace(made, events=[altered(e) for e in made.events if e is not gone]), cycles, store)
    who, whom = names.customers[late.customer_id], names.customers[other.customer_id]
    assert any(p.startswith("2026-12-14 (Mon): real cycle only: ") and f" {who}/" in p and late.step in p for p in problems)
    assert any(p.startswith("2026-12-15 (Tue): forecast only:   ") and f" {who}/" in p for p in problems)
    # The maildir's From is checked against the forecast's sender: billing's address, not the CEO's.
    assert any(
        f" {whom}/" in p and "From comptabilite@ateliers-durand.fr, expected direction@ateliers-durand.fr" in p for p in problems
    )
    assert any("forecast only:" in p and "to-do letter" in p for p in problems)
    assert any("real cycle only:" in p and "formal-notice" in p for p in problems)


# --- it writes nothing ------------------------------------------------------------------------------


def test_forecast_and_impact_write_nothing(store: Store, config: Path, maildir: Maildir):
    edit(config / "plans" / "standard.yaml", "        at: 5d\n", "        at: 7d\n")
    before = fingerprint(store)
    made = forecast(store, at=DAY0, days=DAYS)
    planned = impact(store, load_config(config), at=DAY0, days=DAYS)
    assert made.events and not planned.empty
    assert fingerprint(store) == before
    assert maildir.files() == []
    # The fingerprint would see a write: one real cycle changes it.
    run_send(store, at=made.days[0].at, transport_factory=maildir.factory)
    after = fingerprint(store)
    assert after != before and after["rows.actions"] > before["rows.actions"] and maildir.files()


# --- the impact plan ----------------------------------------------------------------------------------


def _change_first_reminder_delay(config: Path) -> None:
    edit(config / "plans" / "standard.yaml", "        at: 5d\n", "        at: 7d\n")


def _remove_personal_follow_up(config: Path) -> None:
    text = (config / "plans" / "standard.yaml").read_text()
    start = text.index("      - id: personal-follow-up")
    end = text.index("      # A phone call")
    (config / "plans" / "standard.yaml").write_text(text[:start] + text[end:])


def _change_template(config: Path) -> None:
    plans = config / "plans" / "standard.yaml"
    edit(plans, "cc: [sales]\n        template: first-reminder", "cc: [sales]\n        template: second-reminder")


def _change_sender(config: Path) -> None:
    path = config / "plans" / "standard.yaml"
    text = path.read_text()
    start = text.index("      - id: courtesy")
    head, tail = text[:start], text[start:]
    path.write_text(head + tail.replace("from: alias.billing", "from: alias.ceo", 1))


def _delay_checked(planned: Impact, names: Names) -> None:
    lines = {(x.change, x.outcome, x.plan, x.step): x for x in planned.lines}
    # F2 and F9 (due 17 December): Tuesday 22 → Thursday 24 December. F7's and F3's move from a
    # Sunday and a Saturday to the same Monday as before; F6 enters there after its pause either way.
    later = lines[("later", "send", "standard", "first-reminder")]
    assert {names.customers[c] for c in later.customers} == {"F2", "F9"} and later.shifts == [2, 2]
    assert [x.change for x in planned.lines if x.outcome == "send"] == ["later"]
    # F4's and F5's no-recipient to-dos move too (F5's from Monday 28 to Tuesday 29).
    todo = lines[("later", "todo", "standard", "first-reminder")]
    assert {names.customers[c] for c in todo.customers} == {"F4", "F5"} and sorted(todo.shifts) == [1, 2]


def _removal_checked(planned: Impact, names: Names) -> None:
    lines = {(x.change, x.outcome, x.plan, x.step): x for x in planned.lines}
    removed = lines[("removed", "todo", "standard", "personal-follow-up")]
    assert {names.customers[c] for c in removed.customers} == {"F2", "F3", "F4", "F5", "F6", "F7", "F9"}
    # The steps after it keep their own dates (the call is 20 days after the due date either way).
    assert [(x.change, x.outcome, x.step) for x in planned.lines] == [("removed", "todo", "personal-follow-up")]


def _template_checked(planned: Impact, names: Names) -> None:
    # Every first reminder emailed in the window, on the same day as before, with the other template.
    content = next(x for x in planned.lines if (x.change, x.outcome, x.step) == ("content", "send", "first-reminder"))
    emailed = [e for e in planned.before.events if e.outcome == "send" and (e.plan, e.step) == ("standard", "first-reminder")]
    assert content.what == {"template"} and content.count == len(emailed) >= 4
    # So are the to-dos for the first reminders nobody can receive (F4, F5): a person sends them.
    assert [(x.change, x.outcome) for x in planned.lines] == [("content", "send"), ("content", "todo")]
    assert {names.customers[c] for c in planned.lines[1].customers} == {"F4", "F5"}


def _sender_checked(planned: Impact, names: Names) -> None:
    content = next(x for x in planned.lines if (x.change, x.outcome, x.step) == ("content", "send", "courtesy"))
    emailed = [e for e in planned.before.events if e.outcome == "send" and (e.plan, e.step) == ("standard", "courtesy")]
    assert content.what == {"sender"} and content.count == len(emailed) >= 4
    assert content.examples[0]["changed"] == {"sender": {"before": "alias.billing", "after": "alias.ceo"}}
    assert [x.change for x in planned.lines] == ["content"]


@pytest.mark.parametrize(
    ("change", "checked"),
    [
        (_change_first_reminder_delay, _delay_checked),
        (_remove_personal_follow_up, _removal_checked),
        (_change_template, _template_checked),
        (_change_sender, _sender_checked),
    ],
    ids=["first_reminder_5d_to_7d", "step_removed", "template", "sender_alias"],
)
def test_impact_lines_match_a_forecast_of_each_config(store: Store, config: Path, maildir: Maildir, change, checked):
    change(config)
    desired = load_config(config)
    planned = impact(store, desired, at=DAY0, days=DAYS)
    assert not planned.empty
    # Each side is the forecast of its config: the applied one now, and the desired one once applied,
    # which is in turn what the real cycle then does (the walk).
    assert sorted(map(_bare, planned.before.events)) == sorted(map(_bare, forecast(store, at=DAY0, days=DAYS).events))
    apply_config(store, desired, now=DAY0, actor="t", git_commit=None)
    assert sorted(map(_bare, planned.after.events)) == sorted(map(_bare, _walked(store, maildir).events))
    # The lines are those two forecasts compared target by target.
    assert _lines(planned) == _expected_lines(planned.before, planned.after)
    checked(planned, Names.load(store))


def _lines(i: Impact) -> dict[tuple[str, str, str, str], tuple[int, list[int], set[str]]]:
    return {(x.change, x.outcome, x.plan, x.step): (x.count, sorted(x.shifts), x.what) for x in i.lines}


def _expected_lines(before: Forecast, after: Forecast) -> dict[tuple[str, str, str, str], tuple[int, list[int], set[str]]]:
    """The impact's lines said from the two forecasts: each target's step in one only (added, removed;
    an email that became a to-do is both), on another day (earlier, later), with other content."""
    old, new = {e.key: e for e in before.events}, {e.key: e for e in after.events}
    out: dict[tuple[str, str, str, str], tuple[int, list[int], set[str]]] = {}

    def add(change: str, e: Event, shift: int | None = None, what: frozenset[str] = frozenset()) -> None:
        count, shifts, whats = out.get((change, e.outcome, e.plan, e.step), (0, [], set()))
        out[(change, e.outcome, e.plan, e.step)] = (count + 1, sorted(shifts + ([] if shift is None else [shift])), whats | what)

    for key in old.keys() | new.keys():
        b, a = old.get(key), new.get(key)
        if b is not None and (a is None or a.outcome != b.outcome):
            add("removed", b)
        if a is not None and (b is None or a.outcome != b.outcome):
            add("added", a)
        if a is not None and b is not None and a.outcome == b.outcome:
            if a.day != b.day:
                add("later" if a.day > b.day else "earlier", a, (a.day - b.day).days)
            pairs = (("kind", b.todo_kind, a.todo_kind), ("template", b.template, a.template), ("sender", b.sender, a.sender))
            fields = frozenset(n for n, x, y in (*pairs, ("recipients", b.recipients, a.recipients)) if x != y)
            if fields:
                add("content", a, what=fields)
    return out


def test_e1_overdue_todo_steps_follow_one_another_a_daemon_cycle_apart(main_walk: Walk):
    made, store = main_walk.checked(), main_walk.store
    # A to-do is not a contact: K2, 43 days overdue, gets one to-do per send cycle of Monday
    # 21 December (08:00, 08:15, 08:30, 08:45) once the minimum delay after its courtesy is over.
    monday = _day(made, date(2026, 12, 21))
    assert [c.astimezone(PARIS).strftime("%H:%M") for c in monday.cycles] == ["08:00", "08:15", "08:30", "08:45"]
    k2 = [(s, o) for d, s, o in _events(made, store, "K2") if d == monday.day]
    assert len(k2) == 4 and all(o == "todo" for _s, o in k2), k2
    assert monday.ran == 4
    # A day where nothing follows on stops simulating after its first cycle.
    assert any(d.ran == 1 and len(d.cycles) == 4 for d in made.days)
