"""Pauses and promises to pay (dunning/pauses.py) through the real send cycle, on SQLite and PostgreSQL:
a paused customer or invoice is skipped and says why, resumes where it stopped, and a promise past its
date ends kept or broken (a to-do and an alert event).
"""

from __future__ import annotations

import email
import email.policy
import json
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy import insert, select, update

from cycle_helpers import paris, setup_store
from dunningops.dunning.cycle import run_send
from dunningops.dunning.pause_ends import end_expired
from dunningops.dunning.pauses import pause_customer, pause_invoice, resolve_invoice, resume_customer, resume_invoice
from dunningops.errors import ConflictError, InvalidInputError, NotFoundError
from dunningops.store import open_store
from dunningops.store.schema import CustomerRow, InboxMessageRow, InvoiceRow, MessageRow, PauseRow, TodoRow
from dunningops.transport.maildir import MaildirTransport

# An invoice-level plan for the CHF customers, beside v1's customer-level standard plan.
PER_INVOICE = """\
plans:
  - id: per_invoice
    name: Per invoice
    level: invoice
    assign: {where: {currency: [CHF]}}
    min_contact_delay: 2d
    steps:
      - {id: courtesy, at: -3d, action: email, send: auto, from: alias.billing, to: [payer], template: statement}
      - {id: reminder, at: 10d, action: email, send: auto, from: alias.billing, to: [payer], template: statement}
templates:
  - id: statement
    name: Statement
    locales:
      fr: {subject: "Factures", body: statement.fr.txt}
"""
STATEMENT = "{% for invoice in invoices %}{{ invoice.number }} {% endfor %}\n"

LEDGER = dict(
    customers=(
        "C1,Boulangerie Martin SARL,FR,fr_FR,EUR,bob,\n"  # bob, the account manager
        "C2,Müller GmbH,DE,de_DE,EUR,,\n"  # no account manager: the owner (alice)
        "S1,Schmid AG,CH,fr_CH,CHF,,\n"  # in the invoice-level plan
    ),
    contacts=(
        "C1,paul@martin.fr,Paul Martin,,,payer,true\n"
        "C2,hans@mueller.de,Hans Müller,,,,true\n"
        "S1,urs@schmid.ch,Urs Schmid,,,payer,true\n"
    ),
    invoices=(
        "I1,C1,FA-1,2026-11-01,2026-12-07,1200.00,,EUR,,\n"
        "I2,C1,FA-2,2026-11-02,2026-12-08,300.00,,EUR,,\n"
        "I3,C2,FA-3,2026-11-01,2026-12-07,80.00,,EUR,,\n"
        "S1-A,S1,CH-1,2026-11-01,2026-12-10,10.00,,CHF,,\n"
        "S1-B,S1,CH-2,2026-11-01,2026-12-10,20.00,,CHF,,\n"
    ),
)
MONDAY = paris(2026, 11, 30)  # when people pause; the courtesy emails come due from 4 December


@pytest.fixture
def store(database_url: str, v1: Path, tmp_path: Path):
    (v1 / "per_invoice.yaml").write_text(PER_INVOICE)
    (v1 / "statement.fr.txt").write_text(STATEMENT)
    s = open_store(database_url)
    setup_store(s, v1, tmp_path, **LEDGER)
    yield s
    s.dispose()


@pytest.fixture
def send(store, tmp_path: Path):
    """A real send cycle into a maildir at an instant; returns its report."""
    folder = tmp_path / "maildir"
    return lambda at: run_send(store, at=at, transport_factory=lambda config: MaildirTransport(folder))


def _mails(tmp_path: Path, customer: str) -> list[email.message.EmailMessage]:
    folder = tmp_path / "maildir" / "new"
    found = (
        [email.message_from_bytes(f.read_bytes(), policy=email.policy.default) for f in sorted(folder.iterdir())]
        if folder.exists()
        else []
    )
    # In the order they were sent (the Date header), not by file name: maildir names do not sort by time.
    return sorted((m for m in found if m["X-Dunningops-Customer"] == customer), key=lambda m: m["Date"].datetime)


def _do(store, fn, *args, **kwargs):
    with store.session() as s:
        return fn(s, *args, **kwargs)


def _of(report, customer: str) -> list[tuple[str, str, str]]:
    return [(d.step.id, d.outcome, d.reason) for d in report.decisions if d.customer == customer]


def _id(store, model, **by) -> int:
    with store.session() as s:
        return s.scalar(select(model.id).filter_by(**by))


def _pauses(store) -> list[tuple]:
    with store.session() as s:
        return [tuple(r) for r in s.execute(select(PauseRow.reason, PauseRow.until, PauseRow.ended_how).order_by(PauseRow.id))]


# --- pausing and resuming a customer -------------------------------------------------------------


def test_customer_pause_skips_with_the_reason_then_resume_sends(store, send, tmp_path: Path):
    result = _do(
        store, pause_customer, "C1", until=date(2026, 12, 10), reason="promise", note="pays on the 10th", by="alice", now=MONDAY
    )
    assert result["replaced"] is None and result["until"] == date(2026, 12, 10)
    report = send(paris(2026, 12, 4))
    assert _of(report, "C1") == [("courtesy", "skip", "customer paused until 2026-12-10 (promise to pay)")]
    assert _of(report, "C2")[0][1] == "send" and not _mails(tmp_path, "C1")
    ended = _do(store, resume_customer, "C1", now=paris(2026, 12, 4, 8, 35))
    assert ended["ended"] == {"reason": "promise", "until": date(2026, 12, 10)}
    assert _of(send(paris(2026, 12, 4, 8, 40)), "C1")[0][:2] == ("courtesy", "send")
    assert len(_mails(tmp_path, "C1")) == 1
    assert _pauses(store) == [("promise", date(2026, 12, 10), "resumed")]
    with store.session() as s:
        assert s.execute(select(CustomerRow.paused_until, CustomerRow.pause_reason).filter_by(external_id="C1")).one() == (
            None,
            None,
        )


def test_pausing_again_replaces_the_active_pause(store):
    _do(store, pause_customer, "C1", until=date(2026, 12, 20), reason="dispute", now=MONDAY)
    again = _do(store, pause_customer, "C1", until=date(2026, 12, 15), reason="promise", now=MONDAY + timedelta(hours=1))
    assert again["replaced"] == {"reason": "dispute", "until": date(2026, 12, 20)}
    assert _pauses(store) == [("dispute", date(2026, 12, 20), "resumed"), ("promise", date(2026, 12, 15), None)]
    with store.session() as s:
        row = s.execute(select(CustomerRow.paused_until, CustomerRow.pause_reason).filter_by(external_id="C1")).one()
    assert tuple(row) == (date(2026, 12, 15), "promise to pay")


def test_pause_refuses_what_makes_no_sense(store):
    with pytest.raises(InvalidInputError, match=r"pause until 2026-11-29: the date is past \(today is 2026-11-30\)"):
        _do(store, pause_customer, "C1", until=date(2026, 11, 29), reason="promise", now=MONDAY)
    with pytest.raises(InvalidInputError, match="more than five years ahead"):
        _do(store, pause_customer, "C1", until=date(2032, 1, 1), reason="promise", now=MONDAY)
    with pytest.raises(InvalidInputError, match="pause reason 'holiday'"):
        _do(store, pause_customer, "C1", until=date(2026, 12, 1), reason="holiday", now=MONDAY)
    with pytest.raises(NotFoundError, match="no customer 'C9'"):
        _do(store, pause_customer, "C9", until=date(2026, 12, 1), reason="promise", now=MONDAY)
    with pytest.raises(NotFoundError, match="no member 'zoe'"):
        _do(store, pause_customer, "C1", until=date(2026, 12, 1), reason="promise", by="zoe", now=MONDAY)
    with pytest.raises(ConflictError, match="customer C1 is not paused"):
        _do(store, resume_customer, "C1", now=MONDAY)
    with store.session() as s:
        s.execute(update(InvoiceRow).where(InvoiceRow.external_id == "I3").values(status="paid", outstanding_cents=0))
    with pytest.raises(ConflictError, match="invoice FA-3 is paid: it is not chased, so it cannot be paused"):
        _do(store, pause_invoice, "I3", until=date(2026, 12, 1), reason="dispute", now=MONDAY)
    with pytest.raises(ConflictError, match="invoice FA-1 is not paused"):
        _do(store, resume_invoice, "I1", now=MONDAY)
    # Today itself is allowed: the pause holds through its day. Nothing was written by the refusals.
    _do(store, pause_customer, "C1", until=date(2026, 11, 30), reason="other", now=MONDAY)
    assert _pauses(store) == [("other", date(2026, 11, 30), None)]


def test_invoices_are_found_by_external_id_or_by_a_unique_number(store):
    assert _do(store, resolve_invoice, "I1") == "I1"
    assert _do(store, resolve_invoice, "FA-2") == "I2"
    with store.session() as s:
        s.execute(update(InvoiceRow).where(InvoiceRow.external_id == "I3").values(number="FA-2"))
    with pytest.raises(InvalidInputError, match=r"several invoices are numbered 'FA-2' \(I2, I3\): give the external id"):
        _do(store, resolve_invoice, "FA-2")
    with pytest.raises(NotFoundError, match="no invoice 'FA-9'"):
        _do(store, resolve_invoice, "FA-9")


# --- invoice pauses, in both plan levels ----------------------------------------------------------


def test_r9_invoice_pause_in_an_invoice_level_plan_is_skipped_with_the_reason(store, send, tmp_path: Path):
    _do(store, pause_invoice, "S1-A", until=date(2026, 12, 20), reason="dispute", now=MONDAY)
    report = send(paris(2026, 12, 8))
    s1 = [d for d in report.decisions if d.customer == "S1"]
    assert [(d.outcome, d.reason) for d in s1] == [("skip", "invoice paused until 2026-12-20 (dispute)"), ("send", "")]
    assert s1[0].anchor_invoice_id == _id(store, InvoiceRow, external_id="S1-A") and not s1[1].merged
    # The email goes out for CH-2 alone: the disputed invoice is not in it.
    (mail,) = _mails(tmp_path, "S1")
    assert mail.get_body(("plain",)).get_content().split() == ["CH-2"]
    # Resumed: its courtesy is due, and waits for the plan's minimum delay after yesterday's email.
    _do(store, resume_invoice, "S1-A", now=paris(2026, 12, 9, 8, 0))
    assert _of(send(paris(2026, 12, 9)), "S1") == [("courtesy", "skip", "last contact 2026-12-08, minimum delay 2d")]
    assert _of(send(paris(2026, 12, 10)), "S1") == [("courtesy", "send", "")]
    assert [m.get_body(("plain",)).get_content().split() for m in _mails(tmp_path, "S1")] == [["CH-2"], ["CH-1"]]


def test_invoice_pause_in_a_customer_level_plan_is_left_out_of_the_anchor_and_the_email(store, send, tmp_path: Path):
    _do(store, pause_invoice, "I1", until=date(2026, 12, 31), reason="dispute", now=MONDAY)
    # FA-1 (the oldest) is disputed: FA-2 anchors the customer's round, and the grouped email leaves FA-1 out.
    assert [d for d in send(paris(2026, 12, 4)).decisions if d.customer == "C1"] == []  # FA-2's courtesy is due on the 5th
    report = send(paris(2026, 12, 7))
    (c1,) = [d for d in report.decisions if d.customer == "C1"]
    assert (c1.step.id, c1.outcome, c1.anchor_invoice_id) == ("courtesy", "send", _id(store, InvoiceRow, external_id="I2"))
    with store.session() as s:
        sent = s.scalars(select(MessageRow).where(MessageRow.customer_id == c1.customer_id)).one()
    assert sent.invoice_ids == [_id(store, InvoiceRow, external_id="I2")]
    assert "FA-1" not in _mails(tmp_path, "C1")[0].get_body(("plain",)).get_content()


# --- pauses past their date -------------------------------------------------------------------------


def test_promise_kept_ends_the_pause_without_a_todo(store, send):
    _do(store, pause_customer, "C1", until=date(2026, 12, 10), reason="promise", now=MONDAY)
    with store.session() as s:
        s.execute(update(InvoiceRow).where(InvoiceRow.external_id.in_(["I1", "I2"])).values(status="paid", outstanding_cents=0))
    report = send(paris(2026, 12, 11))
    assert [(e.customer, e.how) for e in report.pauses_ended] == [("C1", "kept")] and report.alerts == []
    assert _pauses(store) == [("promise", date(2026, 12, 10), "kept")]
    with store.session() as s:
        assert s.scalar(select(TodoRow.id).where(TodoRow.kind == "promise_broken")) is None
        assert s.execute(select(CustomerRow.paused_until, CustomerRow.pause_reason).filter_by(external_id="C1")).one() == (
            None,
            None,
        )


def test_promise_broken_makes_a_todo_and_an_alert_and_the_plan_resumes(store, send, tmp_path: Path):
    _do(store, pause_customer, "C1", until=date(2026, 12, 10), reason="promise", by="alice", now=MONDAY)
    _do(store, pause_customer, "C2", until=date(2026, 12, 10), reason="promise", now=MONDAY)
    # The promise holds through its day ...
    report = send(paris(2026, 12, 10))
    assert report.pauses_ended == [] and _of(report, "C1")[0][2] == "customer paused until 2026-12-10 (promise to pay)"
    # ... and the first run after it finds it broken.
    report = send(paris(2026, 12, 11))
    assert [(e.customer, e.how, e.summary) for e in report.pauses_ended] == [
        ("C1", "broken", "promise to pay by 2026-12-10 broken: 2 invoices, 1 500.00 EUR still due"),
        ("C2", "broken", "promise to pay by 2026-12-10 broken: 1 invoice, 80.00 EUR still due"),
    ]
    with store.session() as s:
        made = s.execute(
            select(TodoRow.id, TodoRow.customer_id, TodoRow.assignee, TodoRow.reason, TodoRow.status)
            .where(TodoRow.kind == "promise_broken")
            .order_by(TodoRow.id)
        ).all()
    c1, c2 = _id(store, CustomerRow, external_id="C1"), _id(store, CustomerRow, external_id="C2")
    # The account manager, else the organisation's owner.
    assert [(r.customer_id, r.assignee, r.reason, r.status) for r in made] == [
        (c1, "bob", "promise to pay by 2026-12-10 broken: 2 invoices, 1 500.00 EUR still due", "open"),
        (c2, "alice", "promise to pay by 2026-12-10 broken: 1 invoice, 80.00 EUR still due", "open"),
    ]
    alert = report.alerts[0]
    assert (alert.kind, alert.customer_id, alert.title) == (
        "promise_broken",
        c1,
        "Promise to pay broken: Boulangerie Martin SARL (C1), 1 500.00 EUR still due",
    )
    assert alert.details["todo_id"] == made[0].id and alert.details["invoices"] == ["FA-1", "FA-2"]
    assert alert.details["until"] == "2026-12-10" and alert.details["assignee"] == "bob"
    # The plan resumes in the same run: nothing was performed before the pause, so the first step.
    assert _of(report, "C1") == [("courtesy", "send", "")] and len(_mails(tmp_path, "C1")) == 1
    assert _pauses(store) == [("promise", date(2026, 12, 10), "broken")] * 2
    # Ended once: the next run raises nothing again.
    again = send(paris(2026, 12, 14))
    assert again.pauses_ended == [] and again.alerts == []


def test_a_promise_covers_invoices_due_by_its_date_but_not_a_disputed_one(store):
    _do(store, pause_invoice, "I1", until=date(2026, 12, 31), reason="dispute", now=MONDAY)
    _do(store, pause_customer, "C1", until=date(2026, 12, 7), reason="promise", now=MONDAY)
    with store.session() as s:
        # FA-1 is disputed and FA-2 falls due after the promised day: nothing promised is unpaid.
        (ending,) = [e for e in _ended(s, date(2026, 12, 8))]
    assert ending.how == "kept"
    _do(store, pause_customer, "C1", until=date(2026, 12, 8), reason="promise", now=paris(2026, 12, 8))
    with store.session() as s:
        (ending,) = _ended(s, date(2026, 12, 9))
    assert (ending.how, ending.summary) == ("broken", "promise to pay by 2026-12-08 broken: 1 invoice, 300.00 EUR still due")


def _ended(session, today: date):
    from dunningops.dunning.pause_ends import expiring

    return expiring(session, today=today)


def test_invoice_promise_kept_when_paid_broken_when_not(store, send):
    _do(store, pause_invoice, "S1-A", until=date(2026, 12, 10), reason="promise", now=MONDAY)
    _do(store, pause_invoice, "S1-B", until=date(2026, 12, 10), reason="promise", now=MONDAY)
    with store.session() as s:
        s.execute(update(InvoiceRow).where(InvoiceRow.external_id == "S1-A").values(status="paid", outstanding_cents=0))
        events = end_expired(s, today=date(2026, 12, 11), now=paris(2026, 12, 11))
    assert _pauses(store) == [("promise", date(2026, 12, 10), "kept"), ("promise", date(2026, 12, 10), "broken")]
    (event,) = events
    assert event.title == "Promise to pay broken: Schmid AG (S1), 20.00 CHF still due" and event.details["invoice"] == "CH-2"
    with store.session() as s:
        todo = s.execute(select(TodoRow.invoice_id, TodoRow.assignee).where(TodoRow.kind == "promise_broken")).one()
        cleared = s.execute(select(InvoiceRow.paused, InvoiceRow.paused_until).where(InvoiceRow.external_id == "S1-B")).one()
    assert tuple(todo) == (_id(store, InvoiceRow, external_id="S1-B"), "alice") and tuple(cleared) == (False, None)


def test_dry_run_says_what_would_end_and_writes_nothing(store):
    _do(store, pause_customer, "C1", until=date(2026, 12, 10), reason="promise", now=MONDAY)
    _do(store, pause_invoice, "S1-A", until=date(2026, 12, 9), reason="dispute", now=MONDAY)
    report = run_send(store, at=paris(2026, 12, 11), dry_run=True)
    assert [(e.customer, e.invoice, e.how) for e in report.pauses_ended] == [("C1", None, "broken"), ("S1", "CH-1", "expired")]
    assert report.alerts == []  # a dry run raises nothing
    # The decisions are the real run's: both pauses are over after their day.
    assert _of(report, "C1") == [("courtesy", "send", "")]
    assert [d.outcome for d in report.decisions if d.customer == "S1"] == ["send"]
    assert _pauses(store) == [("promise", date(2026, 12, 10), None), ("dispute", date(2026, 12, 9), None)]
    with store.session() as s:
        assert s.scalar(select(TodoRow.id)) is None


def test_after_a_pause_the_plan_goes_on_one_step_per_run(store, send):
    """While paused, all three steps of C1's plan came due; afterwards they follow one by one, at the
    plan's pace (3 days between emails): none is sent at once with another, none is skipped."""
    _do(store, pause_customer, "C1", until=date(2027, 1, 3), reason="other", now=MONDAY)
    done = []
    day = paris(2027, 1, 4)  # a Monday
    while day <= paris(2027, 1, 12):
        done += [(f"{day:%m-%d}", step, outcome) for step, outcome, _ in _of(send(day), "C1") if outcome in ("send", "todo")]
        day += timedelta(days=1)
    # 4 January: the first step only (nothing was performed before the pause); the manual email then
    # waits for the minimum delay after it; the call follows the next run (a to-do is not an email).
    assert done == [("01-04", "courtesy", "send"), ("01-07", "overdue", "todo"), ("01-08", "call", "todo")]


# --- the command line ---------------------------------------------------------------------------------


def _cli_history(url: str) -> None:
    """One email sent to C1 and one received from it (and one deleted, never shown)."""
    s = open_store(url)
    try:
        with s.session() as session:
            c1 = session.scalar(select(CustomerRow.id).filter_by(external_id="C1"))
            session.execute(
                insert(MessageRow).values(
                    message_id="<m1@acme.fr>",
                    kind="reminder",
                    automatic=True,
                    customer_id=c1,
                    from_address="billing@acme.fr",
                    to_addresses=["paul@martin.fr"],
                    cc_addresses=[],
                    bcc_addresses=[],
                    subject="Rappel : échéance proche",
                    invoice_ids=[],
                    status="sent",
                    created_at=paris(2026, 11, 3),
                    sent_at=paris(2026, 11, 3),
                )
            )
            for n, status in ((1, "linked"), (2, "deleted")):
                session.execute(
                    insert(InboxMessageRow).values(
                        dedupe_key=f"k{n}",
                        source="maildir",
                        folder="INBOX",
                        source_key=str(n),
                        status=status,
                        kind="reply",
                        from_address="paul@martin.fr",
                        to_addresses=["ar@acme.fr"],
                        subject=f"Re: Rappel ({n})",
                        received_at=paris(2026, 11, 4 + n),
                        imported_at=paris(2026, 11, 4 + n),
                        referenced_ids=[],
                        attachments=[],
                        details={},
                        customer_id=c1,
                    )
                )
    finally:
        s.dispose()


def test_cli_pause_show_resume(run, repo, snapshot):
    config, url = repo
    db = ("--config", config, "--database-url", url)
    _cli_history(url)
    paused = run(
        "customers",
        "pause",
        "C1",
        "--until",
        "2026-12-15",
        "--reason",
        "promise",
        "--note",
        "pays on the 15th",
        "--by",
        "alice",
        *db,
    )
    assert paused.exit_code == 0, paused.output
    disputed = run("invoices", "pause", "FA-1", "--until", "2026-12-31", "--reason", "dispute", *db)
    assert disputed.exit_code == 0, disputed.output
    replaced = run("customers", "pause", "C1", "--until", "2026-12-20", "--reason", "promise", *db)
    shown = run("customers", "show", "C1", *db)
    assert shown.exit_code == 0, shown.output
    short = run("customers", "show", "C1", "--mail-limit", "1", *db)
    resumed = run("customers", "resume", "C1", *db)
    invoice_resumed = run("invoices", "resume", "I1", *db)
    assert (paused.stdout + disputed.stdout + replaced.stdout) == snapshot(name="pause")
    assert shown.stdout == snapshot(name="show")
    assert short.stdout.endswith("… and 1 more emails not shown (of 2; use --mail-limit).\n")
    assert (resumed.stdout + invoice_resumed.stdout) == snapshot(name="resume")


def test_cli_pause_json_and_show_json(run, repo):
    config, url = repo
    db = ("--config", config, "--database-url", url)
    _cli_history(url)
    paused = json.loads(
        run("customers", "pause", "C1", "--until", "2026-12-15", "--reason", "dispute", "--format", "json", *db).stdout
    )
    assert (paused["customer"], paused["reason"], paused["until"], paused["replaced"]) == ("C1", "dispute", "2026-12-15", None)
    shown = json.loads(run("customers", "show", "C1", "--format", "json", *db).stdout)
    assert shown["pause"]["until"] == "2026-12-15" and shown["pause"]["ended_how"] is None
    assert [(m["direction"], m["kind"], m["status"], m["subject"]) for m in shown["mail"]] == [
        ("in", "reply", "linked", "Re: Rappel (1)"),
        ("out", "reminder", "sent", "Rappel : échéance proche"),
    ]
    assert shown["mail_total"] == 2
    resumed = json.loads(run("customers", "resume", "C1", "--format", "json", *db).stdout)
    assert resumed["ended"] == {"reason": "dispute", "until": "2026-12-15"}


def test_cli_pause_errors_are_one_line(run, repo):
    config, url = repo
    db = ("--config", config, "--database-url", url)
    past = run("customers", "pause", "C1", "--until", "2026-01-01", "--reason", "promise", *db)
    assert past.exit_code == 1 and past.stderr == "Error: pause until 2026-01-01: the date is past (today is 2026-11-20)\n"
    unknown = run("invoices", "pause", "FA-9", "--until", "2026-12-01", "--reason", "dispute", *db)
    assert unknown.exit_code == 1 and unknown.stderr == "Error: no invoice 'FA-9' (neither an external id nor a number)\n"
    not_paused = run("invoices", "resume", "FA-4", *db)
    assert not_paused.exit_code == 1 and not_paused.stderr == "Error: invoice FA-4 is not paused\n"
    bad_date = run("customers", "pause", "C1", "--until", "15/12/2026", "--reason", "promise", *db)
    assert bad_date.exit_code == 1 and "'15/12/2026' does not match the format '%Y-%m-%d'" in bad_date.stderr
