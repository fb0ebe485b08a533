"""The send cycle end to end on SQLite and PostgreSQL: reminders rendered and delivered, to-dos,
history, at-most-once. Delivery here goes to a real maildir; SMTP behaviour is in test_send_smtp.py.
"""

from __future__ import annotations

import email
import email.policy
import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select, update

from cycle_helpers import paris, setup_store
from dunningops.dunning.aliases import resend, verify
from dunningops.dunning.cycle import run_send
from dunningops.dunning.manual import send_todo
from dunningops.dunning.status import collect_status
from dunningops.dunning.todos import close, list_todos
from dunningops.store import open_store
from dunningops.store.schema import ActionRow, AliasRow, ContactRow, MessageRow, OutboxRow, TemplateRow, TodoRow
from dunningops.transport.maildir import MaildirTransport

LEDGER = dict(
    customers="C1,Boulangerie Martin SARL,FR,fr_FR,EUR,bob,\nC2,Müller GmbH,DE,de_DE,EUR,,\nC3,Smith Ltd,GB,en_GB,EUR,,\n",
    contacts=(
        "C1,paul@martin.fr,Paul Martin,,,payer,true\n"
        "C1,anne@martin.fr,Anne Martin,,,accountant,false\n"
        "C2,hans@mueller.de,Hans Müller,,,,true\n"
        "C3,bad@smith.example,John Smith,+44 20 0000,,payer,true\n"
    ),
    invoices=(
        "I1,C1,FA-1,2026-11-01,2026-12-07,1200.00,,EUR,https://f.example/FA-1.pdf,\n"
        "I2,C1,FA-2,2026-11-02,2026-12-08,300.00,,EUR,,\n"
        "I3,C2,FA-3,2026-11-01,2026-12-07,80.00,,EUR,,\n"
        "I4,C3,FA-4,2026-11-01,2026-12-07,99.00,,EUR,,\n"
    ),
)


@pytest.fixture
def store(database_url: str, v1: Path, tmp_path: Path):
    s = open_store(database_url)
    setup_store(s, v1, tmp_path, **LEDGER)
    with s.session() as session:  # C3's only contact bounced earlier (C9)
        session.execute(update(ContactRow).where(ContactRow.email == "bad@smith.example").values(valid=False, invalid_reason="550"))
    yield s
    s.dispose()


@pytest.fixture
def maildir(tmp_path: Path):
    folder = tmp_path / "maildir"
    return folder, (lambda config: MaildirTransport(folder))


def _mails(folder: Path) -> list[email.message.EmailMessage]:
    files = sorted((folder / "new").iterdir()) if (folder / "new").exists() else []
    return [email.message_from_bytes(f.read_bytes(), policy=email.policy.default) for f in files]


def _messages(store) -> list[MessageRow]:
    with store.session() as s:
        return list(s.scalars(select(MessageRow).order_by(MessageRow.id)))


def test_walk_a_customer_through_the_plan_day_by_day(store, maildir):
    """An injected clock walks the plan (courtesy -3d auto, overdue 7d manual, call 14d) every morning."""
    folder, factory = maildir
    events = []
    day = paris(2026, 12, 1)
    while day <= paris(2026, 12, 31):
        report = run_send(store, at=day, transport_factory=factory)
        events += [(f"{day:%m-%d}", d.customer, d.step.id, d.outcome) for d in report.decisions if d.outcome in ("send", "todo")]
        day += timedelta(days=1)
    c1 = [e for e in events if e[1] == "C1"]
    # Due 7 December (a Monday): courtesy on Friday the 4th (-3d), the manual email on the 14th (+7d),
    # the call on the 21st (+14d); weekends and the window are respected.
    assert c1 == [("12-04", "C1", "courtesy", "send"), ("12-14", "C1", "overdue", "todo"), ("12-21", "C1", "call", "todo")]
    mails = _mails(folder)
    c1_mails = [m for m in mails if m["X-Dunningops-Customer"] == "C1"]
    assert len(c1_mails) == 1
    mail = c1_mails[0]
    # C6: to the payer; the courtesy covers the invoices due within 3 days (FA-1, not yet FA-2).
    assert mail["To"] == "Paul Martin <paul@martin.fr>"
    assert "Votre facture arrive à échéance le 7 décembre 2026." in mail.get_body(("plain",)).get_content()
    # A7: the plan's reply-to; A2: billing@acme.fr is inside the domain, so it is the From.
    assert mail["From"] == "Acme Billing <billing@acme.fr>" and mail["Reply-To"] == "ar@acme.fr"
    assert mail["Auto-Submitted"] == "auto-generated"
    rows = [m for m in _messages(store) if m.customer_id and m.kind == "reminder" and m.to_addresses == ["paul@martin.fr"]]
    assert [(m.status, m.sender_ref, m.automatic, len(m.invoice_ids)) for m in rows] == [("sent", "alias.billing", True, 1)]  # E6, A8
    with store.session() as s:
        todos = {t.step_id: t for t in s.scalars(select(TodoRow).where(TodoRow.customer_id == rows[0].customer_id))}
    # The manual email is prepared, sender preselected (A6: account manager bob), assigned to him;
    # it covers the invoices 7 days overdue (FA-1; FA-2 is due a day later).
    assert todos["overdue"].assignee == "bob" and todos["overdue"].payload["sender"] == "member.bob"
    assert todos["overdue"].payload["to"] == ["paul@martin.fr"] and len(todos["overdue"].payload["invoice_ids"]) == 1
    assert todos["call"].assignee == "bob"  # the step's assignee


def test_c6_primary_contact_when_nobody_has_the_function(store, maildir):
    folder, factory = maildir
    run_send(store, at=paris(2026, 12, 4), transport_factory=factory)
    to = {m["X-Dunningops-Customer"]: m["To"] for m in _mails(folder)}
    assert to["C2"] == "Hans Müller <hans@mueller.de>"  # no payer: the primary contact


def test_c9_invalid_contact_gets_a_todo_not_an_email(store, maildir):
    folder, factory = maildir
    report = run_send(store, at=paris(2026, 12, 4), transport_factory=factory)
    assert "C3" not in {m["X-Dunningops-Customer"] for m in _mails(folder)}
    with store.session() as s:
        todo = s.scalars(select(TodoRow).where(TodoRow.kind == "no_recipient")).one()
    # In a person's words: who was marked invalid and why, and that nobody else can receive it.
    assert todo.reason == "Nobody can be written to: bad@smith.example was marked invalid (550); no other contact has the function payer or is primary."
    assert report.todos == 1


def test_a3_unverified_alias_sends_from_the_fallback_sender(store, maildir):
    folder, factory = maildir
    with store.session() as s:
        s.execute(update(AliasRow).values(verified=False))
    run_send(store, at=paris(2026, 12, 4), transport_factory=factory)
    mail = next(m for m in _mails(folder) if m["X-Dunningops-Customer"] == "C1")
    assert mail["From"] == "Acme SAS <reminders@mail.dunningops.local>"


def test_a2_alias_outside_the_domain_goes_out_from_the_fallback(store, maildir, v1: Path):
    folder, factory = maildir
    plans = v1 / "plans.yaml"
    plans.write_text(plans.read_text().replace("from: alias.billing", "from: alias.agency"))
    from cycle_helpers import APPLIED
    from dunningops.reconcile.apply import apply_config
    from dunningops.spec import load_config

    apply_config(store, load_config(v1), now=APPLIED, actor="t", git_commit=None)
    with store.session() as s:
        s.execute(update(AliasRow).values(verified=True))
    run_send(store, at=paris(2026, 12, 4), transport_factory=factory)
    mail = next(m for m in _mails(folder) if m["X-Dunningops-Customer"] == "C1")
    # The alias's name, the fallback's address; replies go to the plan's reply-to (A7).
    assert mail["From"] == "Cabinet Lenoir <reminders@mail.dunningops.local>"
    assert mail["Reply-To"] == "ar@acme.fr"


def test_t4_last_send_recorded(store, maildir):
    _, factory = maildir
    run_send(store, at=paris(2026, 12, 4), transport_factory=factory)
    with store.session() as s:
        assert s.scalar(select(TemplateRow.last_sent_at).where(TemplateRow.id == "courtesy")) is not None
        assert s.scalar(select(AliasRow.last_sent_at).where(AliasRow.id == "billing")) is not None


def test_a3_confirmation_email_verify_and_resend(store, maildir):
    folder, factory = maildir
    with store.session() as s:
        s.execute(update(AliasRow).values(verified=False))
    report = run_send(store, at=paris(2026, 12, 4), transport_factory=factory)
    assert report.confirmations == 3  # billing, credit, agency from the apply's outbox
    confirmation = next(m for m in _mails(folder) if "Confirm the sender address credit@acme.fr" in m["Subject"])
    token = next(line.split()[-1] for line in confirmation.get_body(("plain",)).get_content().splitlines() if "alias verify" in line)
    now = paris(2026, 12, 4)
    with store.session() as s:
        assert verify(s, token, now) == "credit"
        assert s.scalar(select(AliasRow.verified).where(AliasRow.id == "credit")) is True
        email_address = resend(s, "agency", now)
        assert email_address == "agent@recouvrement-externe.com"
        assert s.scalar(select(OutboxRow.id).where(OutboxRow.delivered_at.is_(None))) is not None
    from dunningops.errors import DunningOpsError

    with store.session() as s, pytest.raises(DunningOpsError, match="matches no alias"):
        verify(s, token, now)


def test_a6_a8_manual_email_sent_from_its_todo_with_another_sender(store, maildir):
    folder, factory = maildir
    for day in (4, 14):
        run_send(store, at=paris(2026, 12, day), transport_factory=factory)
    with store.session() as s:
        todo_id = s.scalar(select(TodoRow.id).where(TodoRow.step_id == "overdue"))
    result = send_todo(store, todo_id, at=paris(2026, 12, 14, 10), sender="alias.billing", member="alice", transport_factory=factory)
    assert result.startswith("sent from Acme Billing <billing@acme.fr>")
    manual = [m for m in _messages(store) if m.kind == "manual"][0]
    assert (manual.performed_by, manual.sender_ref, manual.automatic, manual.status) == ("alice", "alias.billing", False, "sent")
    with store.session() as s:
        assert s.scalar(select(TodoRow.status).where(TodoRow.id == todo_id)) == "sent"
        # C1's was sent; C2's waits for someone, C3's says why nobody can receive it.
        assert [t["customer"] for t in list_todos(s, status="open", kind="email")] == ["C2", "C3"]


def test_r4_reply_todo_dismissed_lets_the_plan_go_on(store, maildir):
    _, factory = maildir
    run_send(store, at=paris(2026, 12, 4), transport_factory=factory)
    with store.session() as s:
        c1 = s.scalar(select(MessageRow.customer_id).where(MessageRow.kind == "reminder").limit(1))
        from dunningops.dunning.todos import add

        todo_id = add(s, kind="reply", customer_id=c1, now=paris(2026, 12, 5), assignee="alice", payload={})
    blocked = run_send(store, at=paris(2026, 12, 14), dry_run=True)
    assert any(d.outcome == "skip" and "reply to-do" in d.reason for d in blocked.decisions)
    with store.session() as s:
        close(s, todo_id, "dismissed", "alice", paris(2026, 12, 14))
    assert not any("reply to-do" in d.reason for d in run_send(store, at=paris(2026, 12, 14), dry_run=True).decisions)


def test_at_most_once_a_crash_between_sending_and_sent_leaves_unknown(store, database_url: str, tmp_path: Path):
    """A process killed inside the transport leaves `sending`; the next run marks it unknown and never re-sends."""
    with store.session() as s:  # the aliases' confirmations went out earlier
        s.execute(update(OutboxRow).values(delivered_at=paris(2026, 12, 1)))
    script = tmp_path / "crash.py"
    script.write_text(textwrap.dedent(f"""
        import os, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from cycle_helpers import paris
        from dunningops.dunning.cycle import run_send
        from dunningops.store import open_store

        class Dies:
            def send(self, messages):
                os._exit(3)  # the machine stops in the middle of the SMTP transaction
            def close(self):
                pass

        run_send(open_store({database_url!r}), at=paris(2026, 12, 4), transport_factory=lambda c: Dies())
    """))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 3, done.stderr
    assert {m.status for m in _messages(store) if m.kind == "reminder"} == {"sending"}
    folder = tmp_path / "after"
    report = run_send(store, at=paris(2026, 12, 4, 8, 45), transport_factory=lambda c: MaildirTransport(folder))
    assert report.unknown == 2 and report.sent == 0
    assert [m for m in _mails(folder) if m["X-Dunningops-Customer"]] == []
    with store.session() as s:
        status = collect_status(s)
    assert status["messages"]["unknown"] == 2 and len(status["unknown"]) == 2


def test_render_error_never_sends_a_hole(store, maildir):
    folder, factory = maildir
    with store.session() as s:
        row = s.get(TemplateRow, "courtesy")
        locales = {lang: {**loc, "body": loc["body"] + "{{ customer.vat_number }}"} for lang, loc in row.locales.items()}
        s.execute(update(TemplateRow).where(TemplateRow.id == "courtesy").values(locales=locales))
    report = run_send(store, at=paris(2026, 12, 4), transport_factory=factory)
    assert report.sent == 0 and report.errors and "vat_number" in report.errors[0]
    with store.session() as s:
        # No step was recorded as sent: it stays due until the template is fixed.
        assert s.scalar(select(ActionRow.id).where(ActionRow.step_id == "courtesy", ActionRow.outcome == "sent")) is None


def _outcomes(report) -> list[tuple[str, str, str, str]]:
    return sorted((d.customer, d.step.id, d.outcome, d.reason) for d in report.decisions)


def _written(store) -> tuple[int, int, int]:
    with store.session() as s:
        return tuple(len(s.scalars(select(t.id)).all()) for t in (MessageRow, TodoRow, ActionRow))


def test_c9_dry_run_says_todo_when_nobody_can_be_written_to_and_the_real_run_does_it(store, maildir):
    folder, factory = maildir
    before = _written(store)
    dry = run_send(store, at=paris(2026, 12, 4), dry_run=True)
    c3 = next(d for d in dry.decisions if d.customer == "C3")
    assert c3.outcome == "todo" and c3.reason.startswith("nobody can be written to: bad@smith.example was marked invalid")
    assert {d.outcome for d in dry.decisions if d.customer != "C3"} == {"send"}
    assert _written(store) == before and not folder.exists()  # the dry run wrote and sent nothing
    real = run_send(store, at=paris(2026, 12, 4), transport_factory=factory)
    assert _outcomes(real) == _outcomes(dry)
    assert (real.sent, real.todos, real.exit_code) == (2, 1, 0)


def test_dry_run_says_error_when_a_template_fails_to_render_and_the_real_run_does_it(store, maildir):
    folder, factory = maildir
    with store.session() as s:
        row = s.get(TemplateRow, "courtesy")
        locales = {lang: {**loc, "body": loc["body"] + "{{ customer.vat_number }}"} for lang, loc in row.locales.items()}
        s.execute(update(TemplateRow).where(TemplateRow.id == "courtesy").values(locales=locales))
    dry = run_send(store, at=paris(2026, 12, 4), dry_run=True)
    errors = [d for d in dry.decisions if d.outcome == "error"]
    assert {d.customer for d in errors} == {"C1", "C2"} and all("vat_number" in d.reason for d in errors)
    assert dry.exit_code == 1 and len(dry.errors) == 2
    real = run_send(store, at=paris(2026, 12, 4), transport_factory=factory)
    assert _outcomes(real) == _outcomes(dry)
    assert (real.sent, real.exit_code) == (0, 1) and real.errors == dry.errors
    assert [m for m in _mails(folder) if m["X-Dunningops-Customer"]] == []


def test_e6_date_header_is_the_run_instant(store, maildir):
    folder, factory = maildir
    run_send(store, at=paris(2026, 12, 4), transport_factory=factory)
    assert {m["Date"].datetime for m in _mails(folder)} == {paris(2026, 12, 4)}



@pytest.mark.parametrize("keep", [True, False])
def test_each_reminders_fate_kept_for_the_log_only_when_asked(store, maildir, keep: bool):
    # The daemon logs every message's fate after the cycle; the CLI prints counts, and a run of
    # 100,000 customers must not hold a row per email for nobody (memory flat).
    folder, factory = maildir
    report = run_send(store, at=paris(2026, 12, 4), transport_factory=factory, keep_messages=keep)
    sent = len([m for m in _mails(folder) if m["X-Dunningops-Customer"]])  # the reminders (no alias confirmations)
    assert sent > 0 and report.sent == sent
    assert [m["status"] for m in report.messages] == (["sent"] * sent if keep else [])
    # The same emails are recorded either way.
    assert [m.status for m in _messages(store) if m.kind == "reminder"] == ["sent"] * sent
