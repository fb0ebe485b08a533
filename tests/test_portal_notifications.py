"""A9: payment receipts and failed-payment emails, owed by the ledger import and sent once, from the
portal alias with the company logo, on SQLite and PostgreSQL, against a real SMTP server (aiosmtpd)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from cycle_helpers import paris, setup_store
from dunningops.app import App
from dunningops.dunning.cycle import run_send
from dunningops.ledger.importer import import_file
from dunningops.ledger.issues import LedgerImportError
from dunningops.ledger.items import import_items
from dunningops.notify import portal
from dunningops.reconcile.apply import apply_config
from dunningops.spec import load_config
from dunningops.store import open_store
from dunningops.store.schema import AliasRow, InvoiceRow, MessageRow, PaymentRow
from dunningops.store.schema_notices import PortalNotificationRow
from dunningops.transport.smtp import SmtpTransport
from forecast_helpers import edit, example_config

# Monday 23 November 2026, 09:30 in Paris: the import's instant.
NOW = datetime(2026, 11, 23, 8, 30, tzinfo=UTC)
PORTAL_FROM = "comptabilite@ateliers-durand.fr"
LOGO = "https://www.ateliers-durand.fr/static/logo-ateliers-durand.png"

# Due far ahead: no reminder is due, so what the SMTP server receives is the portal's.
LEDGER = dict(
    customers=(
        "C1,Boulangerie Martin SARL,FR,fr_FR,EUR,,\n"
        "C2,Smith & Sons Ltd,GB,en_GB,EUR,,\n"
        "C3,Sans Contact SAS,FR,fr_FR,EUR,,\n"
    ),
    contacts="C1,paul@martin.fr,Paul Martin,,,payer,true\nC2,jane@smith.example,Jane Smith,,,payer,true\n",
    invoices=(
        "I1,C1,FA-1,2026-11-01,2027-03-01,1200.00,,EUR,,\n"
        "I2,C2,FA-2,2026-11-01,2027-03-01,800.00,,EUR,,\n"
        "I3,C3,FA-3,2026-11-01,2027-03-01,500.00,,EUR,,\n"
        "I4,C1,FA-4,2026-11-01,2027-03-01,300.00,,EUR,,\n"
        "I5,C2,FA-5,2026-11-01,2027-03-01,250.00,,EUR,,\n"
    ),
)
HEADER = "external_id,invoice_external_id,date,amount,kind\n"
PAYMENTS = (
    "P1,I1,2026-11-20,400.00,payment\n"  # a receipt, in French
    "P2,I2,2026-11-22,800.00,\n"  # a receipt in English (kind empty: a payment); it settles FA-2
    "P3,I4,2026-11-21,300.00,failed\n"  # the failed-payment email, in French
    "P4,I1,2026-10-01,100.00,payment\n"  # older than max_age_days (7): history, owes nothing
    "P5,I1,2026-11-22,50.00,credit_note\n"  # a credit note owes nothing
    "P6,I3,2026-11-22,100.00,payment\n"  # C3 has no contact: skipped, with the reason
    "P7,I5,2026-11-22,250.00,failed\n"  # the failed-payment email, in English
)


def _smtp(server):
    return lambda config: SmtpTransport(
        server.host, server.port, security="none", pool_size=2, max_attempts=2, backoff_base=0.01, timeout=10
    )


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return example_config(tmp_path)


def _store(url: str, config: Path, tmp: Path):
    store = open_store(url)
    data = tmp / "ledger"
    data.mkdir(exist_ok=True)
    setup_store(store, config, data, verify=("billing", "portal"), **LEDGER)
    return store


@pytest.fixture
def store(database_url: str, config: Path, tmp_path: Path):
    s = _store(database_url, config, tmp_path)
    yield s
    s.dispose()


def _payments(tmp: Path, body: str = PAYMENTS, name: str = "payments.csv") -> Path:
    path = tmp / name
    path.write_text(HEADER + body)
    return path


def _import(store, tmp: Path, body: str = PAYMENTS, at: datetime = NOW, **kw):
    return import_file(store, "payments", _payments(tmp, body), now=at, **kw)


def _customer_mail(server) -> list:
    """What customers received (not the alias confirmations the setup leaves in the outbox)."""
    return [m for m in server.messages() if m["X-Dunningops-Customer"]]


def _rows(store) -> dict[str, tuple[str, str]]:
    """payment external id → (kind, status) of its portal notification."""
    pn, pay = PortalNotificationRow.__table__, PaymentRow.__table__
    with store.session() as s:
        rows = s.execute(select(pay.c.external_id, pn.c.kind, pn.c.status).join(pay, pay.c.id == pn.c.payment_id))
        return {r.external_id: (r.kind, r.status) for r in rows}


def _outstanding(store) -> dict[str, int]:
    with store.session() as s:
        return dict(s.execute(select(InvoiceRow.external_id, InvoiceRow.outstanding_cents)).all())


def _text(message) -> str:
    return message.get_body(preferencelist=("plain",)).get_content()


def _html(message) -> str:
    return message.get_body(preferencelist=("html",)).get_content()


# --- owed once, sent once -------------------------------------------------------------------


def test_a9_import_sends_one_email_per_new_recent_payment_from_the_portal_alias_with_the_logo(store, smtp_server, tmp_path):
    summary = _import(store, tmp_path)
    assert summary.added == 7 and summary.notices == 5  # P1, P2, P3, P6, P7
    # Owed in the import's transaction, nothing sent yet.
    assert smtp_server.received == []
    report = portal.send_pending(store, at=NOW, transport_factory=_smtp(smtp_server))
    assert report.lines() == [
        "Payment receipts: 2 sent, 1 skipped (customer C3: the customer has no contact).",
        "Failed-payment emails: 2 sent.",
    ]
    mail = {m["To"].addresses[0].addr_spec + " " + m["Subject"]: m for m in _customer_mail(smtp_server)}
    assert len(mail) == 4
    receipt = next(m for k, m in mail.items() if k.startswith("paul@martin.fr Paiement reçu"))
    # A9: from the alias chosen in settings.portal, with the company logo.
    assert receipt["From"].addresses[0].addr_spec == PORTAL_FROM
    assert receipt["From"].addresses[0].display_name == "Ateliers Durand – Espace client"
    assert LOGO in _html(receipt)
    text = _text(receipt)
    for what in ("400,00", "20 novembre 2026", "P1", "FA-1", "650,00"):  # amount, date, reference, invoice, left
        assert what in text, what
    assert _rows(store) == {
        "P1": ("payment_receipt", "sent"),
        "P2": ("payment_receipt", "sent"),
        "P3": ("payment_failed", "sent"),
        "P6": ("payment_receipt", "skipped"),
        "P7": ("payment_failed", "sent"),
    }
    with store.session() as s:
        history = s.execute(select(MessageRow.kind, MessageRow.sender_ref, MessageRow.status)).all()
    assert sorted(h for h in history if h.kind == "notification") == [("notification", "alias.portal", "sent")] * 4


def test_a9_importing_the_same_file_again_sends_nothing_more(store, smtp_server, tmp_path):
    _import(store, tmp_path)
    portal.send_pending(store, at=NOW, transport_factory=_smtp(smtp_server))
    assert len(_customer_mail(smtp_server)) == 4
    again = _import(store, tmp_path, at=NOW.replace(hour=10))
    assert again.added == 0 and again.notices == 0
    report = portal.send_pending(store, at=NOW.replace(hour=10), transport_factory=_smtp(smtp_server))
    assert report.lines() == []
    assert len(_customer_mail(smtp_server)) == 4  # the server got nothing more
    # A corrected payment (rewritten in place) is not a new one either.
    changed = _import(store, tmp_path, PAYMENTS.replace("P1,I1,2026-11-20,400.00", "P1,I1,2026-11-20,410.00"))
    assert changed.changed == 1 and changed.notices == 0


def test_a9_a_failed_payment_reduces_nothing_and_old_payments_and_credit_notes_owe_nothing(store, tmp_path):
    before = _outstanding(store)
    _import(store, tmp_path)
    after = _outstanding(store)
    assert after["I4"] == before["I4"] == 30000 and after["I5"] == before["I5"] == 25000  # failed
    assert after["I1"] == 120000 - 40000 - 10000 - 5000  # payments (old ones too) and the credit note
    assert after["I2"] == 0
    assert "P4" not in _rows(store) and "P5" not in _rows(store)


def test_a9_a_disabled_notification_owes_nothing(database_url, config, tmp_path, smtp_server):
    edit(
        config / "dunningops.yaml",
        "    payment_receipt:\n      enabled: true",
        "    payment_receipt:\n      enabled: false",
    )
    store = _store(database_url, config, tmp_path)
    try:
        assert _import(store, tmp_path).notices == 2
        assert {kind for kind, _ in _rows(store).values()} == {"payment_failed"}
        portal.send_pending(store, at=NOW, transport_factory=_smtp(smtp_server))
        assert len(_customer_mail(smtp_server)) == 2
    finally:
        store.dispose()


def test_a9_without_an_applied_notification_nothing_is_owed(database_url, v1, tmp_path):
    # v1 configures no payment notification: the same file owes nothing.
    store = open_store(database_url)
    try:
        setup_store(store, v1, tmp_path, **LEDGER)
        assert _import(store, tmp_path).notices == 0
        with store.session() as s:
            assert not portal.has_pending(s)
    finally:
        store.dispose()


def test_a9_dry_run_owes_and_sends_nothing(store, smtp_server, tmp_path):
    summary = _import(store, tmp_path, dry_run=True)
    assert summary.notices == 5  # what the real import would owe
    assert _rows(store) == {}
    assert portal.send_pending(store, at=NOW, transport_factory=_smtp(smtp_server)).lines() == []
    assert smtp_server.received == []


def test_a9_a_bad_kind_names_file_row_and_column_and_imports_nothing(store, tmp_path):
    with pytest.raises(LedgerImportError) as error:
        _import(store, tmp_path, PAYMENTS + "P8,I1,2026-11-22,10.00,refund\n")
    assert "payments.csv: row 9, column kind: 'refund' is not a kind (payment, credit_note or failed)" in str(error.value)
    with store.session() as s:
        assert s.scalar(select(func.count()).select_from(PaymentRow)) == 0
    assert _rows(store) == {}


# --- the caps, deferrals, crashes, and two senders at once ----------------------------------------


def test_a9_t6_the_caps_hold_some_back_and_the_next_send_cycle_sends_them(database_url, config, tmp_path, smtp_server):
    edit(config / "dunningops.yaml", "per_day: 300", "per_day: 2")
    store = _store(database_url, config, tmp_path)
    try:
        _import(store, tmp_path)
        report = portal.send_pending(store, at=NOW, transport_factory=_smtp(smtp_server))
        assert report.sent == 2
        # P1 and P2 fill the day; P3 and P7 wait, pending; P6 (nobody to write to) took no room.
        assert [(k, c.sent, c.held, c.skipped) for k, c in sorted(report.kinds.items())] == [
            ("payment_failed", 0, 2, 0),
            ("payment_receipt", 2, 0, 1),
        ]
        assert "held back (sent by the next send cycle)" in " ".join(report.lines())
        assert len(_customer_mail(smtp_server)) == 2
        # The same day, the cycle finds no room: nothing more.
        run_send(store, at=paris(2026, 11, 23, 15), transport_factory=_smtp(smtp_server))
        assert len(_customer_mail(smtp_server)) == 2
        # The next day's cycle sends what was held back, oldest first.
        cycle = run_send(store, at=paris(2026, 11, 24), transport_factory=_smtp(smtp_server))
        assert cycle.ok
        assert len(_customer_mail(smtp_server)) == 4
        assert sorted((m["kind"], m["status"]) for m in cycle.messages) == [("payment_failed", "sent")] * 2
        assert sorted(status for _, status in _rows(store).values()) == ["sent", "sent", "sent", "sent", "skipped"]
    finally:
        store.dispose()


def test_a9_a_deferred_email_is_sent_again_later_with_the_same_message_id(store, smtp_server, tmp_path):
    smtp_server.reply_to_recipient("jane@smith.example", "451 4.3.0 Try again later", times=4)
    _import(store, tmp_path)
    first = portal.send_pending(store, at=NOW, transport_factory=_smtp(smtp_server))
    assert first.of("payment_receipt").deferred + first.of("payment_failed").deferred == 2
    assert _rows(store)["P2"] == ("payment_receipt", "pending")
    with store.session() as s:
        deferred = dict(
            s.execute(select(MessageRow.id, MessageRow.message_id).where(MessageRow.status == "deferred")).all()
        )
    assert len(deferred) == 2
    second = portal.send_pending(store, at=NOW.replace(hour=9), transport_factory=_smtp(smtp_server))
    assert second.sent == 2
    to_jane = [m["Message-ID"] for m in _customer_mail(smtp_server) if m["To"].addresses[0].addr_spec == "jane@smith.example"]
    assert sorted(to_jane) == sorted(deferred.values())  # the same messages, not new ones
    with store.session() as s:
        assert s.scalar(select(func.count()).select_from(MessageRow).where(MessageRow.kind == "notification")) == 4


class _Crash(Exception):
    pass


class _CrashingTransport:
    """Dies after the emails were recorded `sending` and before any outcome (a process killed mid-send)."""

    fatal = None

    def send(self, messages):
        raise _Crash("killed while sending")

    def close(self) -> None:
        pass


def test_a9_a_notification_left_sending_by_a_crash_is_never_sent_again(store, smtp_server, tmp_path):
    _import(store, tmp_path)
    with pytest.raises(_Crash):
        portal.send_pending(store, at=NOW, transport=_CrashingTransport())
    # The receipts were claimed and committed `sending` before the transport died; the rest still waits.
    crashed = {ref for ref, (_, status) in _rows(store).items() if status == "sending"}
    assert crashed == {"P1", "P2"}
    assert {ref for ref, (_, status) in _rows(store).items() if status == "pending"} == {"P3", "P7"}
    report = portal.send_pending(store, at=NOW.replace(hour=9), transport_factory=_smtp(smtp_server))
    assert report.sent == 2
    assert {ref for ref, (_, status) in _rows(store).items() if status == "sent"} == {"P3", "P7"}
    assert all("jane" not in m["To"] or "did not" in m["Subject"] for m in _customer_mail(smtp_server))
    # Once the history says the interrupted emails are unknown (as it does a dead runner's), the next
    # send cycle says so of their notifications too; still nothing sent again.
    with store.session() as s:
        s.execute(update(MessageRow).where(MessageRow.status == "sending").values(status="unknown"))
    run_send(store, at=paris(2026, 11, 23, 15), transport_factory=_smtp(smtp_server))
    assert {ref for ref, (_, s) in _rows(store).items() if s == "unknown"} == crashed
    assert len(_customer_mail(smtp_server)) == 4 - len(crashed)


def test_a9_a_notification_another_process_claimed_first_is_not_sent_twice(store, smtp_server, tmp_path, monkeypatch):
    _import(store, tmp_path)
    real = portal.deliver.prepare

    def prepare_then_lose_one(session, config, notices, **kw):
        out = real(session, config, notices, **kw)
        if any(n.extra["payment"]["reference"] == "P1" for n in notices):
            # Another sender claims P1 between our read and our claim.
            with store.session(write_lock=True) as other:
                other.execute(
                    update(PortalNotificationRow)
                    .where(PortalNotificationRow.id == notices[0].tag.id)
                    .values(status="sending")
                )
        return out

    monkeypatch.setattr(portal.deliver, "prepare", prepare_then_lose_one)
    report = portal.send_pending(store, at=NOW, transport_factory=_smtp(smtp_server))
    assert report.sent == 3
    recipients_subjects = sorted((m["To"].addresses[0].addr_spec, m["Subject"][:10]) for m in _customer_mail(smtp_server))
    assert ("paul@martin.fr", "Paiement r") not in recipients_subjects  # P1: the other sender's
    with store.session() as s:
        assert s.scalar(select(func.count()).select_from(MessageRow).where(MessageRow.kind == "notification")) == 3


# --- the API's upserts share the write path ------------------------------------------------------


def test_a9_the_api_payment_upserts_owe_the_same_once(store, smtp_server):
    items = [
        {"external_id": "P1", "invoice_external_id": "I1", "date": "2026-11-20", "amount": "400.00"},
        {"external_id": "P3", "invoice_external_id": "I4", "date": "2026-11-21", "amount": "300.00", "kind": "failed"},
    ]
    with store.session(write_lock=True) as s:
        assert import_items(s, "payments", items, now=NOW).notices == 2
    with store.session(write_lock=True) as s:
        assert import_items(s, "payments", items, now=NOW).notices == 0
    assert portal.send_pending(store, at=NOW, transport_factory=_smtp(smtp_server)).sent == 2
    assert len(_customer_mail(smtp_server)) == 2


def test_a9_the_api_sends_them_once_the_upsert_committed(database_url, config, tmp_path, smtp_server, live_server):
    import httpx

    from api_helpers import token
    from dunningops.web import create_app

    store = _store(database_url, config, tmp_path)
    store.dispose()
    app = App(config_dir=config, database_url=database_url, env={}, clock=lambda: NOW, transport_factory=_smtp(smtp_server))
    try:
        base = live_server(create_app(app))
        items = [{"external_id": "P1", "invoice_external_id": "I1", "date": "2026-11-20", "amount": "400.00"}]
        headers = {"Authorization": f"Bearer {token(app, member='claire')}"}
        with httpx.Client(base_url=base, headers=headers, timeout=60) as http:
            assert http.post("/api/v1/payments", json=items).status_code == 200
            assert len(_customer_mail(smtp_server)) == 1
            assert http.post("/api/v1/payments", json=items).status_code == 200
        assert len(_customer_mail(smtp_server)) == 1
        assert _rows(app.store) == {"P1": ("payment_receipt", "sent")}
    finally:
        app.close()


# --- the CLI ---------------------------------------------------------------------------------------


def test_a9_ledger_import_says_what_was_sent(run, config, tmp_path, smtp_server, snapshot):
    transport = "    transport:\n      kind: maildir\n      path: .dunningops/maildir"
    edit(
        config / "dunningops.yaml",
        transport,
        f"    transport:\n      kind: smtp\n      host: {smtp_server.host}\n      port: {smtp_server.port}\n      security: none",
    )
    url = f"sqlite:///{tmp_path}/state.db"
    assert run("apply", "--config", config, "--database-url", url, "--auto-approve").exit_code == 0
    store = open_store(url)
    try:
        with store.session() as s:
            s.execute(update(AliasRow).where(AliasRow.id.in_(("billing", "portal"))).values(verified=True))
    finally:
        store.dispose()
    data = tmp_path / "ledger"
    data.mkdir()
    from cycle_helpers import CONTACTS, CUSTOMERS, INVOICES

    for kind, body, header in (
        ("customers", LEDGER["customers"], CUSTOMERS),
        ("contacts", LEDGER["contacts"], CONTACTS),
        ("invoices", LEDGER["invoices"], INVOICES),
    ):
        (data / f"{kind}.csv").write_text(header + body)
        assert run("ledger", "import", kind, data / f"{kind}.csv", "--config", config, "--database-url", url).exit_code == 0
    payments = _payments(data)
    dry = run("ledger", "import", "payments", payments, "--dry-run", "--config", config, "--database-url", url)
    assert smtp_server.received == []
    real = run("ledger", "import", "payments", payments, "--config", config, "--database-url", url)
    again = run("ledger", "import", "payments", payments, "--config", config, "--database-url", url)
    assert real.exit_code == dry.exit_code == again.exit_code == 0
    assert len(_customer_mail(smtp_server)) == 4
    assert {"dry_run": dry.output, "import": real.output, "again": again.output} == snapshot


# --- what customers read ---------------------------------------------------------------------------


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a9_snapshots_of_both_emails_in_french_and_english(store, smtp_server, tmp_path, snapshot):
    _import(store, tmp_path)
    portal.send_pending(store, at=NOW, transport_factory=_smtp(smtp_server))
    emails = {}
    for m in _customer_mail(smtp_server):
        language = "fr" if m["To"].addresses[0].addr_spec == "paul@martin.fr" else "en"
        kind = "failed" if ("abouti" in m["Subject"] or "did not" in m["Subject"]) else "receipt"
        emails[f"{kind}-{language}"] = {
            "from": str(m["From"]),
            "to": str(m["To"]),
            "subject": str(m["Subject"]),
            "text": _text(m),
        }
    assert sorted(emails) == ["failed-en", "failed-fr", "receipt-en", "receipt-fr"]
    assert emails == snapshot


def test_generated_demo_ledger_owes_a_handful_of_receipts_and_one_failed_email(database_url, config, tmp_path):
    from dunningops.ledger.generate import generate_ledger

    store = open_store(database_url)
    try:
        apply_config(store, load_config(config), now=NOW, actor="t", git_commit=None)
        ledger = tmp_path / "demo"
        desired = load_config(config)
        generate_ledger(
            ledger,
            customers=300,
            seed=1,
            members=sorted(desired.members),
            functions=sorted(desired.contact_functions),
            today=date(2026, 11, 23),
        )
        owed = 0
        for kind in ("customers", "contacts", "invoices", "payments"):
            owed += import_file(store, kind, ledger / f"{kind}.csv", now=NOW).notices
        kinds = sorted(kind for kind, _ in _rows(store).values())
        assert owed == len(kinds) == 6
        assert kinds == ["payment_failed"] + ["payment_receipt"] * 5
    finally:
        store.dispose()
