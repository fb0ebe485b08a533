"""T7: the unpaid-invoice notification (`dunningops notify debtors`), on SQLite and PostgreSQL,
sent to the real local SMTP server (aiosmtpd) or to the fault-injecting one.

The store holds the example config (config/) and a small ledger, on Tuesday 24 November 2026:
  C1 (fr)  two payers; FA-0101 overdue 24 days (with its document), FA-0102 overdue 10 days,
           FA-0105 not due yet
  C2 (en)  a primary contact without functions (C6: the primary then); FA-0103 overdue 14 days
  C3       no contact at all                           C4  its only contact marked invalid (C9)
  C5       paused (promise to pay)                      C6  FA-0106 disputed (paused), FA-0107 overdue
  C7       its only overdue invoice disputed            C8  FA-0108 overdue 3 days only
"""

from __future__ import annotations

import json
import os
import pty
import re
import shutil
import subprocess
import sys
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from sqlalchemy import select, update

import smtp_fixtures
from cycle_helpers import paris
from dunningops.dunning.pauses import pause_customer, pause_invoice
from dunningops.dunning.runconfig import RunConfig
from dunningops.errors import ConflictError, NotFoundError, PermissionDeniedError
from dunningops.ledger.importer import import_file
from dunningops.notify import debtors
from dunningops.reconcile.apply import apply_config
from dunningops.spec import load_config
from dunningops.store import open_store
from dunningops.store.schema import AliasRow, CustomerRow, MessageRow
from dunningops.transport.smtp import SmtpTransport

make_faulty_smtp_server = smtp_fixtures.make_faulty_smtp_server

REPO = Path(__file__).resolve().parent.parent
APPLIED = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
AT = paris(2026, 11, 24, 9, 0)  # a Tuesday
AT_ISO = "2026-11-24T09:00:00+01:00"

CUSTOMERS = """external_id,name,country,locale,currency,account_manager,plan
C1,Boulangerie Martin SARL,FR,fr_FR,EUR,,
C2,Smith & Sons Ltd,GB,en_GB,EUR,,
C3,Sans Contact SA,FR,fr_FR,EUR,,
C4,Adresse Invalide SARL,FR,fr_FR,EUR,,
C5,Promesse SAS,FR,fr_FR,EUR,,
C6,Litige Partiel SA,FR,fr_FR,EUR,,
C7,Litige Total SA,FR,fr_FR,EUR,,
C8,Presque à Temps SARL,FR,fr_FR,EUR,,
"""
CONTACTS = """customer_external_id,email,name,phone,job,functions,primary,valid
C1,paul@martin.fr,Paul Martin,,,payer,true,
C1,anne@martin.fr,Anne Martin,,,payer,false,
C2,john@smith.co.uk,John Smith,,,,true,
C4,old@invalide.fr,Old Address,,,,true,false
C5,compta@promesse.fr,,,,,true,
C6,compta@litige-partiel.fr,,,,,true,
C7,compta@litige-total.fr,,,,,true,
C8,compta@presque.fr,,,,,true,
"""
INVOICES = """external_id,customer_external_id,number,issue_date,due_date,amount,outstanding,currency,document_url,status
I1,C1,FA-2026-0101,2026-10-01,2026-10-31,1200.00,,EUR,https://docs.ateliers-durand.fr/FA-2026-0101.pdf,
I2,C1,FA-2026-0102,2026-10-15,2026-11-14,300.50,,EUR,,
I5,C1,FA-2026-0105,2026-11-15,2026-12-15,99.00,,EUR,,
I3,C2,FA-2026-0103,2026-10-11,2026-11-10,80.00,,EUR,https://docs.ateliers-durand.fr/FA-2026-0103.pdf,
I4,C3,FA-2026-0104,2026-10-11,2026-11-10,80.00,,EUR,,
I9,C4,FA-2026-0109,2026-10-11,2026-11-10,45.00,,EUR,,
I10,C5,FA-2026-0110,2026-10-11,2026-11-10,450.00,,EUR,,
I6,C6,FA-2026-0106,2026-10-11,2026-11-10,600.00,,EUR,,
I7,C6,FA-2026-0107,2026-10-11,2026-11-12,70.00,,EUR,,
I8,C7,FA-2026-0108,2026-10-11,2026-11-10,20.00,,EUR,,
I11,C8,FA-2026-0111,2026-10-21,2026-11-21,33.00,,EUR,,
"""
COVERED = ["C1", "C2", "C3", "C4", "C6", "C8"]  # by default: C5 paused, C7's only invoice paused


def config_copy(tmp_path: Path, port: int | None = None, **edits: str) -> Path:
    """The example config, sending by SMTP to ``port`` on loopback; ``edits`` replace text in dunningops.yaml."""
    target = tmp_path / "config"
    shutil.copytree(REPO / "config", target)
    main = target / "dunningops.yaml"
    text = main.read_text()
    if port is not None:
        smtp = f"transport: {{kind: smtp, host: 127.0.0.1, port: {port}, security: none, timeout_seconds: 5}}"
        text, n = re.subn(r"transport:\n\s+kind: maildir\n\s+path: \.dunningops/maildir", smtp, text)
        assert n == 1
    for old, new in edits.items():
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    main.write_text(text)
    return target


def setup(url: str, config: Path, tmp_path: Path) -> None:
    store = open_store(url)
    try:
        apply_config(store, load_config(config), now=APPLIED, actor="claire", git_commit=None)
        with store.session() as s:  # A3: the billing alias is verified, so its signature is used
            s.execute(update(AliasRow).where(AliasRow.id == "billing").values(verified=True))
        for kind, body in (("customers", CUSTOMERS), ("contacts", CONTACTS), ("invoices", INVOICES)):
            path = tmp_path / f"{kind}.csv"
            path.write_text(body)
            import_file(store, kind, path, now=APPLIED)
        with store.session() as s:
            pause_customer(s, "C5", until=date(2026, 12, 15), reason="promise", by="claire", now=APPLIED)
            pause_invoice(s, "I6", until=date(2027, 1, 31), reason="dispute", by="claire", now=APPLIED)
            pause_invoice(s, "I8", until=date(2027, 1, 31), reason="dispute", by="claire", now=APPLIED)
    finally:
        store.dispose()


@pytest.fixture
def store(database_url: str, tmp_path: Path):
    setup(database_url, config_copy(tmp_path), tmp_path)
    s = open_store(database_url)
    yield s
    s.dispose()


def smtp_factory(server, max_attempts: int = 1):
    return lambda config: SmtpTransport(server.host, server.port, security="none", pool_size=1,
                                        max_attempts=max_attempts, backoff_base=0.01, timeout=5)


def last_notified(store) -> dict[str, datetime | None]:
    with store.session() as s:
        return dict(s.execute(select(CustomerRow.external_id, CustomerRow.last_notified_at)).all())


def notifications(store) -> list[MessageRow]:
    with store.session() as s:
        return list(s.scalars(select(MessageRow).where(MessageRow.kind == "notification").order_by(MessageRow.id)))


def send(store, server, at=AT, actor="karim", **filters):
    return debtors.notify(store, at=at, filters=debtors.Filters(**filters), actor=actor,
                          transport_factory=smtp_factory(server))


# --- the selection ----------------------------------------------------------------------------


def test_t7_selection_overdue_pauses_and_named_customers(store):
    with store.session() as s:
        config = RunConfig.from_store(s)
        default = debtors.select(s, config, at=AT)
        assert [t.external_id for t in default.targets] == COVERED
        lines = {t.external_id: [line.number for line in t.lines] for t in default.targets}
        assert lines["C1"] == ["FA-2026-0101", "FA-2026-0102"]  # not FA-0105, not due yet
        assert lines["C6"] == ["FA-2026-0107"]  # the disputed FA-0106 is left out of the list
        assert default.left_out == []  # customers not named are left out silently
        assert [t.external_id for t in debtors.select(s, config, at=AT, overdue_min=5).targets] == COVERED[:-1]
        assert [t.external_id for t in debtors.select(s, config, at=AT, overdue_min=20).targets] == ["C1"]
        assert [line.number for line in debtors.select(s, config, at=AT, overdue_min=20).targets[0].lines] == ["FA-2026-0101"]
        named = debtors.select(s, config, at=AT, customers=["C5", "C1", "C7"], overdue_min=5)
        assert [t.external_id for t in named.targets] == ["C1"]
        assert [(x.customer["external_id"], x.reason) for x in named.left_out] == [
            ("C5", "paused until 2026-12-15 (promise to pay)"),
            ("C7", "no open, unpaused invoice is 5 days or more overdue"),
        ]
        with pytest.raises(NotFoundError, match=r"^no customer 'C98', 'C99'$"):
            debtors.select(s, config, at=AT, customers=["C1", "C99", "C98"])


def test_t7_nobody_to_write_to_is_skipped_with_the_reason(store):
    with store.session() as s:
        config = RunConfig.from_store(s)
        summary = debtors.summarise(s, config, debtors.select(s, config, at=AT), at=AT)
    assert [r.customer["external_id"] for r in summary.ready] == ["C1", "C2", "C6", "C8"]
    reasons = {x.customer["external_id"]: x.reason for x in summary.skipped}
    assert reasons["C3"] == "the customer has no contact"
    assert reasons["C4"].startswith("the primary contact old@invalide.fr was marked invalid")  # C9: never an invalid contact
    # C6: the payers of C1; C2 has no payer, so its primary contact.
    to = {r.customer["external_id"]: [c.email for c in r.recipients.to] for r in summary.ready}
    assert to["C1"] == ["paul@martin.fr", "anne@martin.fr"] and to["C2"] == ["john@smith.co.uk"]
    assert (summary.invoices, summary.recipients, summary.totals) == (5, 5, {"EUR": 150050 + 8000 + 7000 + 3300})
    assert summary.room == 300 and summary.over_caps() is None


def test_t7_off_by_default_covers_only_the_customers_named(run, database_url, tmp_path):
    debtor = "enabled: {}\n      template: unpaid-invoices"
    config = config_copy(tmp_path, **{debtor.format("true"): debtor.format("false")})
    setup(database_url, config, tmp_path)
    store = open_store(database_url)
    try:
        with store.session() as s:
            off = RunConfig.from_store(s)
            assert debtors.select(s, off, at=AT).targets == []
            assert [t.external_id for t in debtors.select(s, off, at=AT, customers=["C2"]).targets] == ["C2"]
    finally:
        store.dispose()
    nobody = run("notify", "debtors", "--dry-run", "--at", AT_ISO, "--config", config, "--database-url", database_url)
    assert nobody.exit_code == 0
    assert nobody.stdout == (
        "Unpaid-invoice notification (invoices at least 1 day overdue):\n"
        "0 customers, 0 invoices, 0 recipients (nothing due); 0 customers skipped; caps: 300 left today.\n"
        "The notification is off by default: only the customers named with --customer are notified.\n"
        "Dry run: nothing was sent.\n"
    )
    named = run("notify", "debtors", "--dry-run", "--customer", "C2", "--at", AT_ISO, "--config", config,
                "--database-url", database_url)
    assert "1 customer, 1 invoice, 1 recipient" in named.stdout and "\nC2  " in named.stdout


def test_t7_summary_snapshot_and_json(run, database_url, tmp_path, snapshot):
    config = config_copy(tmp_path)
    setup(database_url, config, tmp_path)
    dry = run("notify", "debtors", "--dry-run", "--at", AT_ISO, "--config", config, "--database-url", database_url)
    assert dry.exit_code == 0, dry.output
    assert dry.stdout == snapshot(name="dry-run")
    assert dry.stdout.startswith("Unpaid-invoice notification (invoices at least 1 day overdue):\n"
                                 "4 customers, 5 invoices, 5 recipients (1 683.50 EUR); 2 customers skipped; "
                                 "caps: 300 left today.\n")
    named = run("notify", "debtors", "--dry-run", "--customer", "C5", "--customer", "C2", "--since-last-notification", "7",
                "--at", AT_ISO, "--config", config, "--database-url", database_url)
    assert named.stdout == snapshot(name="dry-run-named")
    as_json = run("notify", "debtors", "--dry-run", "--format", "json", "--at", AT_ISO, "--config", config,
                  "--database-url", database_url)
    data = json.loads(as_json.stdout)
    assert (data["customers"], data["invoices"], data["recipients"], data["totals"]) == (4, 5, 5, {"EUR": "1683.50"})
    assert data["emails"][0]["invoices"] == ["FA-2026-0101", "FA-2026-0102"] and data["outcomes"] == []


def test_t7_help_snapshot(run, snapshot):
    assert run("notify", "debtors", "--help").output == snapshot
    assert run("notify", "--help").output == snapshot(name="group")


# --- sending ----------------------------------------------------------------------------------


def _email(received) -> dict:
    m = received.message()
    return {
        "from": m["From"], "to": m["To"], "cc": m["Cc"], "subject": m["Subject"],
        "text": m.get_body(("plain",)).get_content().replace("\r\n", "\n"),
        "html": m.get_body(("html",)).get_content().replace("\r\n", "\n"),
    }


def test_t7_the_email_lists_each_invoice_with_its_link_in_french_and_english(store, smtp_server, snapshot):
    result = send(store, smtp_server, customers=("C1", "C2"))
    assert [o.status for o in result.outcomes] == ["sent", "sent"]
    by_customer = {r.message()["X-Dunningops-Customer"]: _email(r) for r in smtp_server.received}
    fr, en = by_customer["C1"], by_customer["C2"]
    assert "• FA-2026-0101 – 31 octobre 2026 – 1\u202f200,00\xa0€\n  https://docs.ateliers-durand.fr/FA-2026-0101.pdf" in (
        fr["text"])
    assert "• FA-2026-0102 – 14 novembre 2026 – 300,50\xa0€" in fr["text"] and "FA-2026-0105" not in fr["text"]
    assert '<a href="https://docs.ateliers-durand.fr/FA-2026-0101.pdf">' in fr["html"]
    assert "• FA-2026-0103 – 10 November 2026 – €80.00\n  https://docs.ateliers-durand.fr/FA-2026-0103.pdf" in en["text"]
    assert '<a href="https://docs.ateliers-durand.fr/FA-2026-0103.pdf">' in en["html"]
    assert fr == snapshot(name="fr")
    assert en == snapshot(name="en")
    # The history records it, with the invoices it listed.
    rows = notifications(store)
    assert [(m.template_id, m.language, m.status, len(m.invoice_ids)) for m in rows] == [
        ("unpaid-invoices", "fr", "sent", 2), ("unpaid-invoices", "en", "sent", 1)]


def test_t7_last_notification_recorded_then_since_last_leaves_the_customer_out(store, smtp_server):
    first = send(store, smtp_server, customers=("C1", "C2"))
    assert first.sent and len(smtp_server.received) == 2
    when = last_notified(store)
    assert when["C1"] == AT and when["C2"] == AT and when["C6"] is None
    # Six days later, at least 7 days since the last notification: C1 and C2 are left out.
    later = send(store, smtp_server, at=paris(2026, 11, 30, 9, 0), since_last=7)
    assert [o.letter.tag.customer["external_id"] for o in later.outcomes] == ["C6", "C8"]
    assert len(smtp_server.received) == 4
    # Seven days after (company days), they are covered again.
    again = send(store, smtp_server, at=paris(2026, 12, 1, 9, 0), since_last=7, customers=("C1", "C2", "C6"))
    assert [o.letter.tag.customer["external_id"] for o in again.outcomes] == ["C1", "C2"]
    assert [x.reason for x in again.summary.skipped] == ["last notified on 2026-11-30, less than 7 days ago"]


def test_t7_failed_and_deferred_put_the_last_notification_back(store, smtp_server):
    smtp_server.reply_to_recipient("john@smith.co.uk", "550 5.1.1 No such user")
    smtp_server.reply_to_recipient("compta@presque.fr", "451 4.3.0 Try again later", times=1)
    result = send(store, smtp_server, customers=("C1", "C2", "C8"))
    assert {o.letter.tag.customer["external_id"]: o.status for o in result.outcomes} == {
        "C1": "sent", "C2": "failed", "C8": "deferred"}
    when = last_notified(store)
    assert when["C1"] == AT and when["C2"] is None and when["C8"] is None  # nothing reached them
    retry = send(store, smtp_server, at=paris(2026, 11, 24, 10, 0), since_last=1, customers=("C1", "C2", "C8"))
    assert [o.letter.tag.customer["external_id"] for o in retry.outcomes] == ["C8"]
    reasons = {x.customer["external_id"]: x.reason for x in retry.summary.skipped}
    assert reasons["C1"].startswith("last notified on 2026-11-24")
    assert reasons["C2"].startswith("the primary contact john@smith.co.uk was marked invalid")  # C9


def test_t6_more_emails_than_the_caps_allow_is_refused_before_asking(run, database_url, tmp_path, smtp_server):
    config = config_copy(tmp_path, smtp_server.port, **{"per_day: 300": "per_day: 3"})
    setup(database_url, config, tmp_path)
    asked = []
    with pytest.raises(ConflictError, match=r"sending 4 emails would pass the sending caps \(3/day, 1000/month; 3 left today\)"):
        store = open_store(database_url)
        try:
            debtors.notify(store, at=AT, filters=debtors.Filters(), actor="karim", transport_factory=smtp_factory(smtp_server),
                           confirm=lambda s: asked.append(s) or True)
        finally:
            store.dispose()
    assert asked == [] and smtp_server.received == []
    cli = run("notify", "debtors", "--yes", "--actor", "karim", "--at", AT_ISO, "--config", config,
              "--database-url", database_url)
    assert cli.exit_code == 1 and cli.stderr.startswith("Error: sending 4 emails would pass the sending caps")
    dry = run("notify", "debtors", "--dry-run", "--at", AT_ISO, "--config", config, "--database-url", database_url)
    assert dry.exit_code == 1 and "caps: 3 left today." in dry.stdout and "would pass the sending caps" in dry.stderr
    assert smtp_server.received == []
    # Within the room, it goes.
    two = run("notify", "debtors", "--yes", "--actor", "karim", "--customer", "C1", "--customer", "C2", "--at", AT_ISO,
              "--config", config, "--database-url", database_url)
    assert two.exit_code == 0 and two.stdout.endswith("2 sent, 0 failed, 0 deferred, 0 unknown.\n")


# --- the confirmation and the permission (T1) ---------------------------------------------------


def test_t7_without_yes_and_without_a_terminal_nothing_is_sent(run, database_url, tmp_path, smtp_server):
    config = config_copy(tmp_path, smtp_server.port)
    setup(database_url, config, tmp_path)
    refused = run("notify", "debtors", "--actor", "karim", "--at", AT_ISO, "--config", config, "--database-url", database_url)
    assert refused.exit_code == 1
    assert refused.stderr == ("Error: no terminal to confirm on: pass --yes to send (or --dry-run to see every email); "
                              "nothing was sent\n")
    assert refused.stdout.startswith("Unpaid-invoice notification")  # the summary first
    store = open_store(database_url)
    try:
        assert smtp_server.received == [] and notifications(store) == [] and set(last_notified(store).values()) == {None}
    finally:
        store.dispose()


def _on_a_terminal(args: list[str], answer: bytes, env: dict) -> subprocess.CompletedProcess:
    """The real command with its stdin on a pseudo-terminal, answering the question with ``answer``."""
    controller, terminal = pty.openpty()
    try:
        proc = subprocess.Popen([str(Path(sys.executable).with_name("dunningops")), *args], stdin=terminal,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        os.write(controller, answer)
        out, err = proc.communicate(timeout=60)
    finally:
        os.close(controller)
        os.close(terminal)
    return subprocess.CompletedProcess(args, proc.returncode, out.decode(), err.decode())


def test_t7_asks_on_a_terminal_before_sending(database_url, tmp_path, smtp_server):
    config = config_copy(tmp_path, smtp_server.port)
    setup(database_url, config, tmp_path)
    env = {**os.environ, "DUNNINGOPS_NOW": AT_ISO, "DUNNINGOPS_ACTOR": "karim"}
    env.pop("DUNNINGOPS_DATABASE_URL", None)
    args = ["notify", "debtors", "--customer", "C1", "--customer", "C2", "--config", str(config), "--database-url", database_url]
    no = _on_a_terminal(args, b"n\n", env)
    assert no.returncode == 0, no.stderr
    assert "Send 2 emails? [y/N]: " in no.stdout and no.stdout.endswith("Cancelled; nothing was sent.\n")
    assert smtp_server.received == []
    yes = _on_a_terminal(args, b"y\n", env)
    assert yes.returncode == 0, yes.stderr
    assert "C1: sent to paul@martin.fr, anne@martin.fr\nC2: sent to john@smith.co.uk\n2 sent" in yes.stdout
    assert len(smtp_server.received) == 2


def test_t1_sending_needs_the_send_permission_a_dry_run_does_not(run, database_url, tmp_path, smtp_server):
    config = config_copy(tmp_path, smtp_server.port)
    setup(database_url, config, tmp_path)
    common = ("--customer", "C2", "--at", AT_ISO, "--config", config, "--database-url", database_url)
    member = run("notify", "debtors", "--yes", "--actor", "sophie", *common)
    assert member.exit_code == 1 and member.stdout == ""  # refused before anything, even the summary
    assert member.stderr == ("Error: sending the unpaid-invoice notification: sophie has the role member; "
                             "it needs the role owner, admin or collector\n")
    stranger = run("notify", "debtors", "--yes", "--actor", "someone@else.fr", *common)
    assert stranger.exit_code == 1 and "'someone@else.fr' is not a member" in stranger.stderr
    assert smtp_server.received == []
    dry = run("notify", "debtors", "--dry-run", "--actor", "sophie", *common)
    assert dry.exit_code == 0 and "1 customer, 1 invoice, 1 recipient" in dry.stdout
    collector = run("notify", "debtors", "--yes", "--actor", "karim.benali@ateliers-durand.fr", *common)
    assert collector.exit_code == 0, collector.output
    assert collector.stdout.endswith("C2: sent to john@smith.co.uk\n1 sent, 0 failed, 0 deferred, 0 unknown.\n")
    assert len(smtp_server.received) == 1
    with pytest.raises(PermissionDeniedError):
        store = open_store(database_url)
        try:
            send(store, smtp_server, actor=None)
        finally:
            store.dispose()


# --- at most once -------------------------------------------------------------------------------


def test_at_most_once_no_answer_after_data_is_unknown_and_never_sent_again(run, database_url, tmp_path,
                                                                           make_faulty_smtp_server):
    server = make_faulty_smtp_server("drop_after_data", times=1)
    config = config_copy(tmp_path, server.port)
    setup(database_url, config, tmp_path)
    common = ("--yes", "--actor", "karim", "--config", config, "--database-url", database_url)
    first = run("notify", "debtors", "--customer", "C2", "--at", AT_ISO, *common)
    assert first.exit_code == 1
    assert re.search(r"\nC2: unknown to john@smith\.co\.uk \(.*no answer.*it may have arrived: it is not sent again\)\n"
                     r"0 sent, 0 failed, 0 deferred, 1 unknown\.\n$", first.stdout)
    store = open_store(database_url)
    try:
        [row] = notifications(store)
        assert row.status == "unknown" and server.received(row.message_id) == 1
        assert last_notified(store)["C2"] == AT  # it may have arrived: counted as notified
        # Every later run leaves C2 out, with the reason, however the filters select it.
        for at in ("2026-11-24T10:00:00+01:00", "2026-12-15T10:00:00+01:00"):
            again = run("notify", "debtors", "--customer", "C2", "--customer", "C1", "--at", at, *common)
            assert again.exit_code == 0, again.output
            assert re.search(r"skipped C2 \(Smith & Sons Ltd\): the last notification \(<[^>]+>, 2026-11-24 08:00 UTC\) "
                             r"was interrupted or got no clear answer from the server", again.stdout)
            assert "C2: sent" not in again.stdout
        assert server.received(row.message_id) == 1
        assert [m.customer_id for m in notifications(store)].count(row.customer_id) == 1
        # Only when asked again explicitly: a new notification, with a new Message-ID.
        forced = run("notify", "debtors", "--customer", "C2", "--again", "--at", "2026-12-16T10:00:00+01:00", *common)
        assert forced.exit_code == 0 and "C2: sent to john@smith.co.uk" in forced.stdout
        assert server.received(row.message_id) == 1
    finally:
        store.dispose()


class CrashAfterSending:
    """A transport that hands the messages to the real server, then dies before saying so (a killed process)."""

    def __init__(self, inner):
        self.inner = inner

    def send(self, messages):
        self.inner.send(messages)
        raise KeyboardInterrupt("killed")

    def close(self):
        self.inner.close()


def test_at_most_once_a_notification_left_sending_is_never_sent_again(store, smtp_server):
    factory = smtp_factory(smtp_server)
    with pytest.raises(KeyboardInterrupt):
        debtors.notify(store, at=AT, filters=debtors.Filters(customers=("C1",)), actor="karim",
                       transport_factory=lambda config: CrashAfterSending(factory(config)))
    [row] = notifications(store)
    assert row.status == "sending" and len(smtp_server.received) == 1
    assert last_notified(store)["C1"] == AT  # committed with the `sending` row, before the server saw it
    later = send(store, smtp_server, at=paris(2026, 12, 10, 9, 0), customers=("C1", "C2"))
    assert [o.letter.tag.customer["external_id"] for o in later.outcomes] == ["C2"]
    assert "was interrupted or got no clear answer" in later.summary.skipped[0].reason
    assert [r.message()["X-Dunningops-Customer"] for r in smtp_server.received] == ["C1", "C2"]


def test_at_most_once_two_runs_from_one_selection_notify_a_customer_once(store, smtp_server):
    with store.session() as s:
        config = RunConfig.from_store(s)
        first = debtors.summarise(s, config, debtors.select(s, config, at=AT, customers=["C1"]), at=AT)
        second = debtors.summarise(s, config, debtors.select(s, config, at=AT, customers=["C1"]), at=AT)
    assert [o.status for o in debtors.send(store, config, first, at=AT, transport_factory=smtp_factory(smtp_server))] == ["sent"]
    with pytest.raises(ConflictError, match="customer C1: another unpaid-invoice notification was recorded since"):
        debtors.send(store, config, second, at=AT, transport_factory=smtp_factory(smtp_server))
    assert len(smtp_server.received) == 1 and len(notifications(store)) == 1
