"""The send cycle against a real SMTP server (aiosmtpd on loopback): delivery, C9 bounces at
submission, deferrals retried on the next run."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from cycle_helpers import paris, setup_store
from dunningops.dunning.cycle import run_send
from dunningops.store import open_store
from dunningops.store.schema import ActionRow, AlertRow, ContactRow, MessageRow
from dunningops.transport.smtp import SmtpTransport

LEDGER = dict(
    customers="C1,Boulangerie Martin SARL,FR,fr_FR,EUR,bob,\nC2,Müller GmbH,DE,de_DE,EUR,,\n",
    contacts="C1,paul@martin.fr,Paul Martin,,,payer,true\nC1,anne@martin.fr,Anne,,,payer,false\nC2,hans@mueller.de,Hans Müller,,,,true\n",
    invoices="I1,C1,FA-1,2026-11-01,2026-12-07,1200.00,,EUR,,\nI3,C2,FA-3,2026-11-01,2026-12-07,80.00,,EUR,,\n",
)


@pytest.fixture
def store(database_url: str, v1: Path, tmp_path: Path):
    s = open_store(database_url)
    setup_store(s, v1, tmp_path, **LEDGER)
    yield s
    s.dispose()


def _factory(server):
    return lambda config: SmtpTransport(server.host, server.port, security="none", pool_size=2, max_attempts=2,
                                        backoff_base=0.01, timeout=10)


def _messages(store) -> dict[str, MessageRow]:
    with store.session() as s:
        return {m.to_addresses[0]: m for m in s.scalars(select(MessageRow).where(MessageRow.kind == "reminder"))}


def test_reminders_arrive_over_smtp_with_their_message_id(store, smtp_server):
    report = run_send(store, at=paris(2026, 12, 4), transport_factory=_factory(smtp_server))
    assert report.sent == 2
    received = smtp_server.by_message_id()
    rows = _messages(store)
    # R5 needs the Message-ID recorded for each message actually sent.
    assert set(received) >= {m.message_id for m in rows.values()}
    c1 = received[rows["paul@martin.fr"].message_id]
    assert sorted(c1.rcpt_tos) == ["anne@martin.fr", "paul@martin.fr"]  # C6: every payer
    assert c1.message()["Subject"].startswith("Rappel")


def test_c9_permanent_refusal_marks_the_contact_invalid_and_is_not_resent(store, smtp_server):
    smtp_server.reply_to_recipient("hans@mueller.de", "550 5.1.1 No such user")
    report = run_send(store, at=paris(2026, 12, 4), transport_factory=_factory(smtp_server))
    assert report.failed == 1 and report.sent == 1
    rows = _messages(store)
    assert rows["hans@mueller.de"].status == "failed" and rows["hans@mueller.de"].error.startswith("550")
    with store.session() as s:
        hans = s.scalars(select(ContactRow).where(ContactRow.email == "hans@mueller.de")).one()
        (alert,) = s.scalars(select(AlertRow)).all()
    assert not hans.valid and hans.invalid_reason.startswith("550")
    # C9: the refusal raises an alert, as a bounce read from the inbox does.
    assert alert.kind == "bounce" and alert.contact_email == "hans@mueller.de" and alert.channels["in_app"] == "shown"
    # C11: not re-sent automatically on the next run.
    again = run_send(store, at=paris(2026, 12, 4, 8, 50), transport_factory=_factory(smtp_server))
    assert again.sent == 0 and again.failed == 0


def test_partial_refusal_delivers_to_the_others(store, smtp_server):
    smtp_server.reply_to_recipient("anne@martin.fr", "550 5.1.1 Mailbox unavailable")
    run_send(store, at=paris(2026, 12, 4), transport_factory=_factory(smtp_server))
    rows = _messages(store)
    assert rows["paul@martin.fr"].status == "sent"
    with store.session() as s:
        valid = dict(s.execute(select(ContactRow.email, ContactRow.valid)).all())
    assert valid["anne@martin.fr"] is False and valid["paul@martin.fr"] is True


def test_temporary_failure_is_deferred_then_sent_next_run_with_the_same_message_id(store, smtp_server):
    smtp_server.reply_to_recipient("hans@mueller.de", "451 4.3.0 Try again later", times=2)
    first = run_send(store, at=paris(2026, 12, 4), transport_factory=_factory(smtp_server))
    assert first.deferred == 1
    deferred = _messages(store)["hans@mueller.de"]
    assert deferred.status == "deferred" and deferred.error.startswith("451")
    with store.session() as s:
        assert s.scalar(select(ActionRow.id).join(ContactRow, ContactRow.customer_id == ActionRow.customer_id)
                        .where(ContactRow.email == "hans@mueller.de")) is None  # due again
    second = run_send(store, at=paris(2026, 12, 4, 8, 40), transport_factory=_factory(smtp_server))
    assert second.sent == 1
    with store.session() as s:
        rows = [m for m in s.scalars(select(MessageRow).where(MessageRow.kind == "reminder"))
                if m.to_addresses == ["hans@mueller.de"]]
    # The retry is the same message: one history row, back from deferred to sent, with its Message-ID.
    assert [(m.id, m.message_id, m.status) for m in rows] == [(deferred.id, deferred.message_id, "sent")]
    assert [r.message()["Message-ID"] for r in smtp_server.received if "hans@mueller.de" in r.rcpt_tos] == [deferred.message_id]
