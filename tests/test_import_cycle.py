"""The import cycle on a real store (SQLite and PostgreSQL) with a maildir source: replies, bounces,
auto-replies acted on (R1-R10, C9-C11), imported once, quarantined when unreadable."""

from __future__ import annotations

from datetime import timedelta
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from pathlib import Path

import pytest
from sqlalchemy import select, update

from cycle_helpers import paris, setup_store
from dunningops.dunning.cycle import run_send
from dunningops.inbox import people
from dunningops.inbox.importer import run_import
from dunningops.spec.models import Inbox
from dunningops.store import open_store
from dunningops.store.schema import AlertRow, ContactRow, CustomerRow, InboxMessageRow, MessageRow, PlanRow, TodoRow
from dunningops.transport.maildir import MaildirTransport
from dunningops.transport.sources import open_source

LEDGER = dict(
    customers="C1,Boulangerie Martin SARL,FR,fr_FR,EUR,bob,\nC2,Müller GmbH,DE,de_DE,EUR,,\nC3,Café du Port,FR,fr_FR,EUR,,\n",
    contacts=(
        "C1,paul@martin.fr,Paul Martin,,,payer,true\nC2,hans@mueller.de,Hans Müller,,,payer,true\n"
        "C2,greta@mueller.de,Greta,,,payer,false\nC3,jean@cafeduport.fr,Jean,,,payer,true\n"
    ),
    invoices=(
        "I1,C1,FA-1,2026-11-01,2026-12-07,1200.00,,EUR,,\nI2,C2,FA-2,2026-11-01,2026-12-07,80.00,,EUR,,\n"
        "I3,C3,FA-3,2026-11-01,2026-12-07,50.00,,EUR,,\n"
    ),
)
SENT_AT = paris(2026, 12, 4)
LATER = SENT_AT + timedelta(hours=3)


@pytest.fixture
def store(database_url: str, v1: Path, tmp_path: Path):
    s = open_store(database_url)
    setup_store(s, v1, tmp_path, **LEDGER)
    yield s
    s.dispose()


@pytest.fixture
def inbox_dir(tmp_path: Path) -> Path:
    return tmp_path / "inbox"


@pytest.fixture
def source_factory(inbox_dir: Path, tmp_path: Path):
    def factory(config):
        settings = config.settings.inbox.model_copy(update={"kind": "maildir", "path": str(inbox_dir)})
        return open_source(settings, tmp_path, {})

    return factory


@pytest.fixture
def outbox_dir(tmp_path: Path) -> Path:
    return tmp_path / "outbox"


@pytest.fixture
def sent(store, outbox_dir: Path) -> dict[str, MessageRow]:
    """The courtesy reminders of the first send cycle, by their recipient."""
    run_send(store, at=SENT_AT, transport_factory=lambda c: MaildirTransport(outbox_dir))
    with store.session() as s:
        rows = {m.to_addresses[0]: m for m in s.scalars(select(MessageRow).where(MessageRow.kind == "reminder"))}
    assert {"paul@martin.fr", "hans@mueller.de", "jean@cafeduport.fr"} <= set(rows)
    return rows


def deliver(source_factory, store, raw: bytes) -> str:
    from dunningops.dunning.runconfig import RunConfig

    with store.session() as s:
        config = RunConfig.from_store(s)
    source = source_factory(config)
    try:
        return source.deliver(raw)
    finally:
        source.close()


def reply(
    sent_row: MessageRow | None, sender: str, body: str = "Bonjour,\n\nJ'ai payé hier.\n", *, hours: int = 1, **headers
) -> bytes:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = sent_row.from_address if sent_row else "billing@acme.fr"
    msg["Subject"] = f"RE: {sent_row.subject}" if sent_row else "Question"
    msg["Date"] = format_datetime(SENT_AT + timedelta(hours=hours))
    msg["Message-ID"] = f"<reply-{hours}.{parseaddr(sender)[1]}>"
    if sent_row is not None:
        msg["In-Reply-To"] = sent_row.message_id
        msg["References"] = sent_row.message_id
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(body + "\nLe 4 déc. 2026 à 08:30, Acme Billing <billing@acme.fr> a écrit :\n> Rappel : échéance proche\n")
    return bytes(msg)


def dsn(sent_row: MessageRow, recipient: str, status: str = "5.1.1", diagnostic: str = "550 5.1.1 User unknown") -> bytes:
    boundary = "BOUNDARY42"
    text = (
        f"From: MAILER-DAEMON@mx.mueller.de (Mail Delivery System)\nTo: {sent_row.from_address}\n"
        f"Subject: Undelivered Mail Returned to Sender\nDate: {format_datetime(SENT_AT + timedelta(minutes=3))}\n"
        f"Message-ID: <dsn-{status}-{recipient}>\nMIME-Version: 1.0\n"
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"\n\n'
        f"--{boundary}\nContent-Type: text/plain\n\nYour message could not be delivered.\n\n"
        f"--{boundary}\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.mueller.de\n\n"
        f"Final-Recipient: rfc822; {recipient}\nAction: failed\nStatus: {status}\nDiagnostic-Code: smtp; {diagnostic}\n\n"
        f"--{boundary}\nContent-Type: text/rfc822-headers\n\nFrom: {sent_row.from_address}\nTo: {recipient}\n"
        f"Subject: {sent_row.subject}\nMessage-ID: {sent_row.message_id}\n\n--{boundary}--\n"
    )
    return text.replace("\n", "\r\n").encode()


def do_import(store, source_factory, at=LATER, **kw):
    return run_import(store, source_factory, at=at, **kw)


def rows(store, table, *where):
    with store.session() as s:
        return [dict(r) for r in s.execute(select(table.__table__).where(*where)).mappings()]


def decisions_for(store, customer: str, at=None):
    report = run_send(
        store, at=at or paris(2026, 12, 14), transport_factory=lambda c: MaildirTransport(Path("/nonexistent")), dry_run=True
    )
    return [d.row() for d in report.decisions if d.row()["customer"] == customer]


# --- R3, R4, R5(a): a reply to a reminder -------------------------------------------------------


def test_r3_r4_r5_reply_to_a_reminder_makes_one_reply_todo_and_the_plan_waits(store, sent, source_factory):
    deliver(source_factory, store, reply(sent["paul@martin.fr"], "Paul Martin <paul@martin.fr>"))
    report = do_import(store, source_factory)
    assert report.ok and report.effects.linked == 1 and report.effects.reply_todos == 1
    (msg,) = rows(store, InboxMessageRow)
    assert msg["status"] == "linked" and msg["kind"] == "reply" and msg["match_by"] == "in_reply_to"
    assert "J'ai payé hier." in msg["reply_text"] and "Rappel : échéance proche" not in msg["reply_text"]
    (todo,) = rows(store, TodoRow, TodoRow.kind == "reply")
    # R3: an automatic reminder sent with an alias: the organisation owner.
    assert todo["assignee"] == "alice" and todo["status"] == "open" and todo["payload"]["inbox_message_id"] == msg["id"]
    # R4: nothing else of C1's plan runs while it is open; the other customers go on.
    (c1,) = decisions_for(store, "C1")
    assert c1["outcome"] == "skip" and f"reply to-do #{todo['id']}" in c1["reason"]
    assert all(d["outcome"] != "skip" or "reply" not in (d["reason"] or "") for d in decisions_for(store, "C3"))


def test_r2_with_manage_off_a_reply_only_shows(store, sent, source_factory):
    with store.session() as s:
        from dunningops.store.schema import SettingsRow

        row = s.get(SettingsRow, "settings")
        data = dict(row.data)
        data["replies"] = {**data.get("replies", {}), "manage": False}
        s.execute(update(SettingsRow).values(data=data))
    deliver(source_factory, store, reply(sent["paul@martin.fr"], "paul@martin.fr"))
    report = do_import(store, source_factory)
    assert report.effects.linked == 1 and report.effects.reply_todos == 0
    assert rows(store, TodoRow, TodoRow.kind == "reply") == []


def test_r10_several_replies_one_todo_the_latest_behind_it(store, sent, source_factory):
    deliver(source_factory, store, reply(sent["paul@martin.fr"], "paul@martin.fr", "Premier message", hours=1))
    do_import(store, source_factory)
    deliver(source_factory, store, reply(sent["paul@martin.fr"], "paul@martin.fr", "Second message", hours=2))
    deliver(source_factory, store, reply(None, "paul@martin.fr", "Troisième, sans In-Reply-To", hours=3))
    report = do_import(store, source_factory, at=LATER + timedelta(hours=1))
    assert report.effects.reply_todos == 0  # no second to-do
    (todo,) = rows(store, TodoRow, TodoRow.kind == "reply")
    latest = max(rows(store, InboxMessageRow), key=lambda r: r["received_at"])
    assert "Troisième" in latest["reply_text"] and latest["match_by"] == "sender"  # R5(b)
    assert todo["payload"]["inbox_message_id"] == latest["id"] and todo["payload"]["replies"] == 3


def test_r9_reply_to_an_invoice_level_plan_stops_only_that_invoice(store, sent, source_factory):
    with store.session() as s:
        s.execute(update(PlanRow).where(PlanRow.id == "standard").values(level="invoice"))
    deliver(source_factory, store, reply(sent["paul@martin.fr"], "paul@martin.fr"))
    do_import(store, source_factory)
    (todo,) = rows(store, TodoRow, TodoRow.kind == "reply")
    assert todo["invoice_id"] == sent["paul@martin.fr"].anchor_invoice_id


# --- R5(c), R6: unknown senders -------------------------------------------------------------------


def test_r5c_unknown_sender_is_ignored_and_r6_import_all_makes_a_temporary_customer(store, sent, source_factory):
    deliver(source_factory, store, reply(None, "Prospect <contact@nouveau.fr>", "Un devis ?"))
    report = do_import(store, source_factory)
    assert report.effects.ignored == 1 and report.effects.linked == 0
    (msg,) = rows(store, InboxMessageRow)
    assert msg["status"] == "ignored" and "no customer's contact" in msg["reason"]

    from dunningops.store.schema import SettingsRow

    with store.session() as s:
        data = dict(s.get(SettingsRow, "settings").data)
        data["replies"] = {**data.get("replies", {}), "import": "all"}
        s.execute(update(SettingsRow).values(data=data))
    deliver(source_factory, store, reply(None, "Other <autre@nouveau.fr>", "Bonjour", hours=2))
    report = do_import(store, source_factory)
    assert report.effects.temporary_customers == 1 and report.effects.linked == 1
    (temp,) = rows(store, CustomerRow, CustomerRow.origin == "incoming_message")
    assert temp["name"] == "autre@nouveau.fr" and temp["external_id"] == "mail:autre@nouveau.fr"
    (contact,) = rows(store, ContactRow, ContactRow.customer_id == temp["id"])
    assert contact["email"] == "autre@nouveau.fr"


# --- C9-C11: bounces ---------------------------------------------------------------------------------


def test_c9_c11_permanent_bounce_invalidates_the_contact_offers_a_todo_and_alerts(store, sent, source_factory):
    deliver(source_factory, store, dsn(sent["hans@mueller.de"], "hans@mueller.de"))
    report = do_import(store, source_factory)
    assert report.effects.invalidated == 1 and report.effects.bounce_todos == 1
    (contact,) = rows(store, ContactRow, ContactRow.email == "hans@mueller.de")
    assert contact["valid"] is False and "5.1.1" in contact["invalid_reason"] and contact["invalid_at"] is not None
    (greta,) = rows(store, ContactRow, ContactRow.email == "greta@mueller.de")
    assert greta["valid"] is True  # only the failed address
    (todo,) = rows(store, TodoRow, TodoRow.kind == "bounce")
    assert "hans@mueller.de" in todo["reason"] and "another contact" in todo["reason"]
    (alert,) = rows(store, AlertRow)
    assert alert["kind"] == "bounce" and alert["contact_email"] == "hans@mueller.de" and alert["channels"].get("in_app")
    # C11: the bounced reminder is not sent again; nothing is resent to the dead address.
    (message,) = rows(store, MessageRow, MessageRow.id == sent["hans@mueller.de"].id)
    assert message["status"] == "sent"
    later = run_send(store, at=paris(2026, 12, 16), transport_factory=lambda c: MaildirTransport(Path("/tmp/unused-outbox")))
    with store.session() as s:
        addressed = [m.to_addresses for m in s.scalars(select(MessageRow).where(MessageRow.created_at > SENT_AT))]
    assert all("hans@mueller.de" not in to for to in addressed), later


def test_c10_a_contact_marked_valid_again_is_invalidated_again_by_a_new_bounce(store, sent, source_factory):
    deliver(source_factory, store, dsn(sent["hans@mueller.de"], "hans@mueller.de"))
    do_import(store, source_factory)
    with store.session() as s:
        s.execute(update(ContactRow).where(ContactRow.email == "hans@mueller.de").values(valid=True, invalid_reason=None))
    raw = dsn(sent["hans@mueller.de"], "hans@mueller.de", diagnostic="550 5.1.1 mailbox unavailable").replace(
        b"<dsn-5.1.1-hans@mueller.de>", b"<dsn-second@mx.mueller.de>"
    )
    deliver(source_factory, store, raw)
    do_import(store, source_factory)
    (contact,) = rows(store, ContactRow, ContactRow.email == "hans@mueller.de")
    assert contact["valid"] is False and "mailbox unavailable" in contact["invalid_reason"]


@pytest.mark.parametrize(
    ("status", "diagnostic", "alert_kind"),
    [
        ("5.2.2", "552 5.2.2 Mailbox full", None),
        ("5.7.1", "550 5.7.1 Message rejected as spam", "sending_refused"),
        ("4.4.7", "delayed", None),
    ],
)
def test_c9_soft_and_policy_bounces_leave_the_contact_valid(store, sent, source_factory, status, diagnostic, alert_kind):
    raw = dsn(sent["hans@mueller.de"], "hans@mueller.de", status, diagnostic)
    if status.startswith("4"):
        raw = raw.replace(b"Action: failed", b"Action: delayed")
    deliver(source_factory, store, raw)
    report = do_import(store, source_factory)
    assert report.effects.invalidated == 0
    (contact,) = rows(store, ContactRow, ContactRow.email == "hans@mueller.de")
    assert contact["valid"] is True
    assert [a["kind"] for a in rows(store, AlertRow)] == ([alert_kind] if alert_kind else [])


def test_auto_reply_is_stored_and_pauses_nothing(store, sent, source_factory):
    deliver(
        source_factory, store, reply(sent["jean@cafeduport.fr"], "jean@cafeduport.fr", "Absent", Auto_Submitted="auto-replied")
    )
    report = do_import(store, source_factory)
    assert report.effects.by_kind == {"auto_reply": 1} and report.effects.reply_todos == 0
    assert rows(store, TodoRow, TodoRow.kind == "reply") == []


# --- once, and never blocked -----------------------------------------------------------------------


def test_a_message_is_imported_once_and_a_rerun_imports_nothing(store, sent, source_factory):
    deliver(source_factory, store, reply(sent["paul@martin.fr"], "paul@martin.fr"))
    assert do_import(store, source_factory).imported == 1
    again = do_import(store, source_factory)
    assert again.imported == 0 and len(rows(store, InboxMessageRow)) == 1
    # The same bytes delivered again (a copy, or a rescan) are recognised by Message-ID + digest.
    deliver(source_factory, store, reply(sent["paul@martin.fr"], "paul@martin.fr"))
    third = do_import(store, source_factory)
    assert third.imported == 0 and third.folders[0].duplicates == 1
    assert len(rows(store, TodoRow, TodoRow.kind == "reply")) == 1


def test_an_unparseable_message_is_quarantined_with_its_bytes_and_blocks_nothing(store, sent, source_factory):
    deliver(source_factory, store, b"\x00\x01 this is not an email at all \xff")
    deliver(source_factory, store, reply(sent["paul@martin.fr"], "paul@martin.fr"))
    report = do_import(store, source_factory)
    assert report.effects.quarantined == 1 and report.effects.linked == 1 and report.ok
    (q,) = rows(store, InboxMessageRow, InboxMessageRow.status == "quarantined")
    assert q["raw"] == b"\x00\x01 this is not an email at all \xff" and q["reason"]
    assert [a["kind"] for a in rows(store, AlertRow)] == ["quarantined"]


def test_a_crash_mid_import_loses_nothing_and_imports_nothing_twice(store, sent, source_factory, monkeypatch):
    for hours in range(1, 6):
        deliver(source_factory, store, reply(None, "paul@martin.fr", f"message {hours}", hours=hours))
    import dunningops.inbox.importer as importer

    real_act, calls = importer.act, []

    def failing_act(session, config, items, *, at):
        calls.append(len(items))
        if len(calls) == 2:
            raise RuntimeError("the machine lost power")
        return real_act(session, config, items, at=at)

    monkeypatch.setattr(importer, "act", failing_act)
    with pytest.raises(RuntimeError):
        do_import(store, source_factory, batch_size=2)
    assert len(rows(store, InboxMessageRow)) == 2  # the first batch committed, the second rolled back whole
    monkeypatch.setattr(importer, "act", real_act)
    report = do_import(store, source_factory, batch_size=2)
    assert report.imported == 3 and len(rows(store, InboxMessageRow)) == 5
    assert len({r["dedupe_key"] for r in rows(store, InboxMessageRow)}) == 5


# --- R8: people re-link and delete ------------------------------------------------------------------


def test_r8_relink_moves_the_reply_todo_and_delete_releases_it(store, sent, source_factory):
    deliver(source_factory, store, reply(sent["paul@martin.fr"], "paul@martin.fr"))
    do_import(store, source_factory)
    (msg,) = rows(store, InboxMessageRow)
    (old_todo,) = rows(store, TodoRow, TodoRow.kind == "reply")
    with store.session() as s:
        notes = people.relink(s, msg["id"], "C3", at=LATER, by="bob")
    assert any("dismissed" in n for n in notes)
    todos = {t["customer_id"]: t for t in rows(store, TodoRow, TodoRow.kind == "reply")}
    (c1,) = rows(store, CustomerRow, CustomerRow.external_id == "C1")
    (c3,) = rows(store, CustomerRow, CustomerRow.external_id == "C3")
    assert todos[c1["id"]]["status"] == "dismissed" and todos[c1["id"]]["id"] == old_todo["id"]
    assert todos[c3["id"]]["status"] == "open" and todos[c3["id"]]["payload"]["inbox_message_id"] == msg["id"]
    # C1's plan resumes; C3's waits for its reply to-do.
    assert all("reply to-do" not in (d["reason"] or "") for d in decisions_for(store, "C1"))
    assert any("reply to-do" in (d["reason"] or "") for d in decisions_for(store, "C3"))
    with store.session() as s:
        people.delete(s, msg["id"], at=LATER, by="bob")
    assert rows(store, TodoRow, TodoRow.customer_id == c3["id"])[0]["status"] == "dismissed"
    (deleted,) = rows(store, InboxMessageRow)
    assert deleted["status"] == "deleted" and deleted["text"] is None
    assert do_import(store, source_factory).imported == 0  # never imported again


# --- after import: flag or move only what was taken -------------------------------------------------


def test_after_import_move_moves_only_the_linked_messages(store, sent, tmp_path, inbox_dir):
    def factory(config):
        settings = Inbox(kind="maildir", path=str(inbox_dir), after_import="move", move_to="Traite")
        return open_source(settings, tmp_path, {})

    from dunningops.store.schema import SettingsRow

    with store.session() as s:
        data = dict(s.get(SettingsRow, "settings").data)
        data["inbox"] = {"kind": "maildir", "path": str(inbox_dir), "after_import": "move", "move_to": "Traite"}
        s.execute(update(SettingsRow).values(data=data))
    deliver(factory, store, reply(sent["paul@martin.fr"], "paul@martin.fr"))
    deliver(factory, store, reply(None, "stranger@nowhere.fr", "?", hours=2))
    report = do_import(store, factory)
    assert report.handled == {"moved": 1}
    assert len(list((inbox_dir / ".Traite" / "cur").iterdir()) + list((inbox_dir / ".Traite" / "new").iterdir())) == 1
    left = list((inbox_dir / "new").iterdir()) + list((inbox_dir / "cur").iterdir())
    assert len(left) == 1 and b"stranger@nowhere.fr" in left[0].read_bytes()


def test_r7_a_reply_to_another_organisations_message_is_not_taken_by_its_sender(store, sent, source_factory):
    other = "<" + "a" * 32 + ".0badf00d@acme.fr>"  # the shape of a Message-ID another store created
    raw = reply(None, "paul@martin.fr", "Pour l'autre société", hours=1, In_Reply_To=other)
    deliver(source_factory, store, raw)
    # A reference to mail nobody here knows, not made by this program: the sender decides (R5(b)).
    deliver(
        source_factory, store, reply(None, "paul@martin.fr", "Réponse à un collègue", hours=2, In_Reply_To="<x1@mail.gmail.com>")
    )
    report = do_import(store, source_factory)
    assert report.effects.ignored == 1 and report.effects.linked == 1
    (ignored,) = rows(store, InboxMessageRow, InboxMessageRow.status == "ignored")
    assert "another organisation" in ignored["reason"] and ignored["text"] is None
    (linked,) = rows(store, InboxMessageRow, InboxMessageRow.status == "linked")
    assert linked["match_by"] == "sender"


def test_r1_r4_a_member_answers_the_reply_from_its_todo_in_the_same_thread(store, sent, source_factory, tmp_path):
    from dunningops.dunning.manual import send_todo

    deliver(source_factory, store, reply(sent["paul@martin.fr"], "Paul Martin <paul@martin.fr>"))
    do_import(store, source_factory)
    (todo,) = rows(store, TodoRow, TodoRow.kind == "reply")
    outbox = tmp_path / "answers"
    line = send_todo(
        store,
        todo["id"],
        at=LATER,
        sender=None,
        member="bob",
        transport_factory=lambda c: MaildirTransport(outbox),
        text="Bonjour,\n\nMerci, nous avons bien reçu votre virement.\n",
    )
    assert "to paul@martin.fr" in line and "Bob Durand" in line
    (answer,) = [p.read_bytes() for p in (outbox / "new").iterdir()]
    assert b"In-Reply-To: <reply-1.paul@martin.fr>" in answer and b"References: <reply-1.paul@martin.fr>" in answer
    import email as stdlib_email
    import email.policy

    subject = stdlib_email.message_from_bytes(answer, policy=email.policy.default)["Subject"]
    assert subject == "RE: " + sent["paul@martin.fr"].subject  # their "RE: …" is not doubled
    (closed,) = rows(store, TodoRow, TodoRow.id == todo["id"])
    assert closed["status"] == "sent" and closed["closed_by"] == "bob"
    (recorded,) = rows(store, MessageRow, MessageRow.todo_id == todo["id"])
    assert recorded["kind"] == "manual" and recorded["performed_by"] == "bob" and recorded["status"] == "sent"
    # R4: sent, the reply to-do no longer holds the customer's plan.
    assert all("reply to-do" not in (d["reason"] or "") for d in decisions_for(store, "C1"))


def test_c9_a_spam_complaint_raises_its_own_alert_and_leaves_the_contact_valid(store, sent, source_factory):
    corpus = (Path(__file__).with_name("mail") / "complaint-arf-outlook.eml").read_bytes()
    ours = sent["jean@cafeduport.fr"].message_id.encode()
    raw = corpus.replace(b"<fa5b9bc1104843bcb2349fcd59f180b9@ateliers-durand.fr>", ours).replace(
        b"roussel.agence@outlook.fr", b"jean@cafeduport.fr"
    )
    deliver(source_factory, store, raw)
    report = do_import(store, source_factory)
    assert report.effects.by_kind == {"complaint": 1} and report.effects.linked == 1
    (msg,) = rows(store, InboxMessageRow)
    assert msg["match_by"] == "bounce_original" and msg["details"]["complaint"]["feedback_type"] == "abuse"
    (alert,) = rows(store, AlertRow)
    assert alert["kind"] == "complaint" and alert["contact_email"] == "jean@cafeduport.fr"
    (contact,) = rows(store, ContactRow, ContactRow.email == "jean@cafeduport.fr")
    assert contact["valid"] is True


def test_two_import_cycles_at_once_the_second_waits_then_stops_importing_nothing(store, sent, source_factory):
    from dunningops.errors import LockError
    from dunningops.store.lock import import_cycle_lock

    deliver(source_factory, store, reply(sent["paul@martin.fr"], "paul@martin.fr"))
    with import_cycle_lock(store), pytest.raises(LockError, match="another import cycle is running"):
        do_import(store, source_factory, lock_timeout_s=0.2)
    assert rows(store, InboxMessageRow) == []
    assert do_import(store, source_factory).imported == 1  # once the first is done, the next run imports it
