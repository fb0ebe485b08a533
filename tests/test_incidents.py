"""T8: customer incidents through the CLI and the engine, on SQLite and PostgreSQL: open, close, list,
show and import them; an open dispute holds its invoice's dunning through a real send cycle; the
opening and closing notifications reach a real SMTP server (aiosmtpd) at most once; customers and
invoices filtered by their incidents' rating status."""

from __future__ import annotations

import json
import os
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

import smtp_fixtures
from cycle_helpers import paris, setup_store
from dunningops import signing
from dunningops.dunning.cycle import run_send
from dunningops.incidents import notices
from dunningops.incidents.incidents import close_incident, open_incident
from dunningops.store import open_store
from dunningops.store.meta import signing_key
from dunningops.store.schema import IncidentRow, InvoiceRow, MessageRow, PauseRow
from dunningops.transport.maildir import MaildirTransport
from dunningops.transport.smtp import SmtpTransport

make_faulty_smtp_server = smtp_fixtures.make_faulty_smtp_server
EXAMPLE = Path(__file__).resolve().parent.parent / "config" / "templates"
NOTIFICATIONS = """\
  notifications:
    incident_opened: {enabled: true, template: incident-opened, from: alias.billing, to: [payer]}
    incident_closed: {enabled: true, template: incident-closed, from: alias.billing, to: [payer]}
"""
TEMPLATES = """\
plans:
  - id: per_invoice
    name: Per invoice
    level: invoice
    assign: {where: {currency: [CHF]}}
    min_contact_delay: 2d
    steps:
      - {id: courtesy, at: -3d, action: email, send: auto, from: alias.billing, to: [payer], template: statement}
templates:
  - id: statement
    name: Statement
    locales:
      fr: {subject: "Factures", body: statement.fr.txt}
  - id: incident-opened
    name: Incident ouvert
    locales:
      fr: {subject: "Nous avons bien noté votre demande ({{ incident.reference }})", body: incident-opened.fr.txt.j2}
      en: {subject: "We have logged your request ({{ incident.reference }})", body: incident-opened.en.txt.j2}
  - id: incident-closed
    name: Incident clos
    locales:
      fr: {subject: "Votre demande {{ incident.reference }} est traitée", body: incident-closed.fr.txt.j2}
      en: {subject: "Your request {{ incident.reference }} has been resolved", body: incident-closed.en.txt.j2}
"""
LEDGER = dict(
    customers=(
        "C1,Boulangerie Martin SARL,FR,fr_FR,EUR,bob,\n"
        "C2,Müller GmbH,DE,de_DE,EUR,,\n"
        "C3,Café du Port,FR,fr_FR,EUR,,\n"  # no contact: nobody can be written to
        "C4,Smith & Sons Ltd,GB,en_GB,EUR,,\n"
        "S1,Schmid AG,CH,fr_CH,CHF,,\n"  # the invoice-level plan
    ),
    contacts=(
        "C1,paul@martin.fr,Paul Martin,,,payer,true\n"
        "C2,hans@mueller.de,Hans Müller,,,,true\n"
        "C4,jane@smith.co.uk,Jane Smith,,,payer,true\n"
        "S1,urs@schmid.ch,Urs Schmid,,,payer,true\n"
    ),
    invoices=(
        "I1,C1,FA-1,2026-11-01,2026-12-07,1200.00,,EUR,,\n"
        "I2,C1,FA-2,2026-11-02,2026-12-08,300.00,,EUR,,\n"
        "I3,C2,FA-3,2026-11-01,2026-12-07,80.00,,EUR,,\n"
        "I4,C4,FA-4,2026-11-01,2026-12-07,45.00,,EUR,,\n"
        "S1-A,S1,CH-1,2026-11-01,2026-12-10,10.00,,CHF,,\n"
        "S1-B,S1,CH-2,2026-11-01,2026-12-10,20.00,,CHF,,\n"
    ),
)
OPENED = "2026-11-23T09:00:00+00:00"
CLOSED = "2026-11-25T10:00:00+00:00"
TOKEN = re.compile(r"/l/r/[A-Za-z0-9_.\-]+")


def configure(config: Path, *, smtp_port: int | None = None, public_url: str | None = None) -> Path:
    """v1 with the incident notifications (the example's templates), an invoice-level plan and, if given, SMTP
    and the public links' address (https: the console's cookies are then Secure)."""
    path = config / "dunningops.yaml"
    settings = NOTIFICATIONS + (f'  daemon: {{public_url: "{public_url}"}}\n' if public_url else "")
    portal = "  portal: {notifications_alias: billing}\n"
    text = path.read_text().replace(portal, portal + settings)
    if smtp_port is not None:
        text = text.replace(
            "    caps: {per_day: 300, per_month: 1000}\n",
            "    caps: {per_day: 300, per_month: 1000}\n"
            f"    transport: {{kind: smtp, host: 127.0.0.1, port: {smtp_port}, security: none, timeout_seconds: 3}}\n",
        )
    path.write_text(text)
    (config / "incidents.yaml").write_text(TEMPLATES)
    (config / "statement.fr.txt").write_text("{% for invoice in invoices %}{{ invoice.number }} {% endfor %}\n")
    for name in ("incident-opened", "incident-closed"):
        for lang in ("fr", "en"):
            shutil.copy(EXAMPLE / f"{name}.{lang}.txt.j2", config / f"{name}.{lang}.txt.j2")
    return config


def smtp(server):
    return lambda config: SmtpTransport(server.host, server.port, security="none", pool_size=1, max_attempts=1,
                                        backoff_base=0.01, timeout=5, local_hostname="client.test")


@pytest.fixture
def world(database_url: str, v1: Path, tmp_path: Path, smtp_server):
    config = configure(v1, smtp_port=smtp_server.port, public_url="https://relances.acme.fr")
    store = open_store(database_url)
    setup_store(store, config, tmp_path, **LEDGER)
    yield store, config, database_url
    store.dispose()


@pytest.fixture
def cli(run, world):
    """The CLI on the world's store: cli("incident", "list") → click Result."""
    _, config, url = world

    def _cli(*args: str, input: str | None = None):
        return run(*args, "--config", config, "--database-url", url, input=input)

    return _cli


def _incident(store, reference: str) -> dict:
    with store.session() as s:
        return dict(s.execute(select(IncidentRow.__table__).where(IncidentRow.reference == reference)).mappings().one())


def _notifications(store) -> list[dict]:
    with store.session() as s:
        rows = s.execute(select(MessageRow.__table__).where(MessageRow.kind == "notification").order_by(MessageRow.id))
        return [dict(r) for r in rows.mappings()]


def _email(received) -> str:
    msg = received.message()
    return f"Subject: {msg['Subject']}\nTo: {msg['To']}\n\n{msg.get_body(('plain',)).get_content()}"


def _masked(text: str) -> str:
    return TOKEN.sub("/l/r/<token>", text)


# --- open, close, list, show through the CLI ---------------------------------------------------


def test_t8_open_list_show_close_through_the_cli(cli, world, smtp_server, snapshot):
    opened = cli("incident", "open", "--customer", "C1", "--invoice", "FA-1", "--actor", "alice", "--at", OPENED,
                 "--observations", "Le client conteste la facture : livraison incomplète (2 palettes sur 3).")
    assert opened.exit_code == 0, opened.output
    other = cli("incident", "open", "--customer", "C4", "--kind", "other", "--actor", "bob@acme.fr", "--at", OPENED,
                "--observations", "Asks for a copy of the contract.\nBy post, please.")
    assert other.exit_code == 0, other.output
    listed = cli("incident", "list")
    shown = cli("incident", "show", "INC-0001")
    closed = cli("incident", "close", "INC-0001", "--note", "Avoir émis pour la palette manquante.", "--actor", "alice",
                 "--at", CLOSED)
    assert closed.exit_code == 0, closed.output
    shown_closed = cli("incident", "show", "INC-0001")
    open_only = cli("incident", "list", "--state", "open")
    assert opened.stdout + other.stdout == snapshot(name="open")
    assert listed.stdout == snapshot(name="list")
    assert _masked(shown.stdout) == snapshot(name="show")
    assert closed.stdout == snapshot(name="close")
    assert _masked(shown_closed.stdout) == snapshot(name="show_closed")
    assert [line.split()[0] for line in open_only.stdout.splitlines()[1:]] == ["INC-0002"]
    # The customers' picture names its incidents.
    customer = cli("customers", "show", "C1")
    assert "Incidents, newest first:" in customer.stdout and "INC-0001   dispute  closed  FA-1" in customer.stdout
    assert len(smtp_server.received) == 3


def test_t8_the_notifications_quote_the_observations_and_the_closing_one_carries_the_rating_link(cli, world, smtp_server,
                                                                                                  snapshot):
    store, _, _ = world
    for customer, text in (("C1", "Facture FA-1 contestée :\nla remise de 5 % n'a pas été appliquée."),
                           ("C4", "Invoice FA-4 disputed:\nthe 5% discount is missing.")):
        invoice = "FA-1" if customer == "C1" else "FA-4"
        result = cli("incident", "open", "--customer", customer, "--invoice", invoice, "--observations", text,
                     "--actor", "alice", "--at", OPENED)
        assert result.exit_code == 0, result.output
    for ref in ("INC-0001", "INC-0002"):
        assert cli("incident", "close", ref, "--actor", "alice", "--at", CLOSED).exit_code == 0
    emails = [_email(r) for r in smtp_server.received]
    assert [r.rcpt_tos for r in smtp_server.received] == [["paul@martin.fr"], ["jane@smith.co.uk"]] * 2
    assert "la remise de 5 % n'a pas été appliquée." in emails[0] and "the 5% discount is missing." in emails[1]
    assert "/l/r/" not in emails[0] + emails[1]  # the opening templates carry no rating widget
    # @widgetvaluation@: a signed link to the daemon's rating page for this incident, valid 30 days.
    with store.session() as s:
        key = signing_key(s)
    for email, ref in ((emails[2], "INC-0001"), (emails[3], "INC-0002")):
        (link,) = re.findall(r"https://relances\.acme\.fr/l/r/(\S+)", email)
        assert signing.verify(key, "rating", link, datetime(2026, 12, 20, tzinfo=UTC)) == str(_incident(store, ref)["id"])
    assert [_masked(e) for e in emails] == snapshot(name="emails_fr_en")
    for m in _notifications(store):
        assert (m["status"], m["from_address"], m["template_id"]) == ("sent", "billing@acme.fr", m["template_id"])
    assert [_incident(store, r)["opened_message_id"] is not None for r in ("INC-0001", "INC-0002")] == [True, True]


def test_t8_help_of_every_incident_command(run, snapshot):
    for command in ("open", "close", "list", "show", "import", "notify"):
        result = run("incident", command, "--help")
        assert result.exit_code == 0
        assert result.stdout == snapshot(name=command)
    group = run("incident", "--help")
    assert group.exit_code == 0 and group.stdout == snapshot(name="group")


def test_t8_json_output(cli, world):
    opened = json.loads(cli("incident", "open", "--customer", "C1", "--invoice", "I1", "--reference", "TCK-7",
                            "--observations", "Dispute", "--actor", "alice", "--at", OPENED, "--format", "json").stdout)
    assert (opened["reference"], opened["customer"], opened["invoice"], opened["state"], opened["holding"]) == (
        "TCK-7", "C1", "FA-1", "open", True)
    assert opened["notification"]["status"] == "sent" and opened["notification"]["to"] == ["paul@martin.fr"]
    listed = json.loads(cli("incident", "list", "--format", "json").stdout)
    assert (listed["total"], [i["reference"] for i in listed["incidents"]]) == (1, ["TCK-7"])
    closed = json.loads(cli("incident", "close", "TCK-7", "--no-notify", "--at", CLOSED, "--format", "json").stdout)
    assert closed["state"] == "closed" and closed["resumed"] is True and closed["notification"]["status"] == "off"
    shown = json.loads(cli("incident", "show", "TCK-7", "--format", "json").stdout)
    assert [m["event"] for m in shown["messages"]] == ["opened"] and shown["notify_closed"] is False
    # A generated reference goes on from the highest INC- number, whatever the others are called.
    again = json.loads(cli("incident", "open", "--customer", "C2", "--kind", "other", "--observations", "x",
                           "--format", "json").stdout)
    assert again["reference"] == "INC-0001" and again["opened_by"] == os.environ["DUNNINGOPS_ACTOR"]


def test_t8_errors_are_one_line_and_open_nothing(cli, world):
    store, _, _ = world
    cases = [
        (("--customer", "C9", "--observations", "x"), "Error: no customer 'C9'\n"),
        (("--customer", "C1", "--invoice", "FA-9", "--observations", "x"),
         "Error: no invoice 'FA-9' of customer C1 (neither an external id nor a number)\n"),
        (("--customer", "C1", "--invoice", "I3", "--observations", "x"), "Error: invoice I3 is customer C2's, not C1's\n"),
        (("--customer", "C1", "--observations", "   "),
         "Error: the incident's observations are empty: describe what it is about\n"),
        (("--customer", "C1", "--observations", "x" * 10_001),
         "Error: the incident's observations are 10,001 characters long; at most 10,000\n"),
        (("--customer", "C1", "--observations", "x", "--reference", "bad ref"),
         "Error: incident reference 'bad ref': 1 to 64 letters, digits and . _ / - (starting with a letter or digit)\n"),
    ]
    for args, error in cases:
        result = cli("incident", "open", *args)
        assert (result.exit_code, result.stderr) == (1, error), result.output
    with store.session() as s:
        assert s.scalar(select(func.count()).select_from(IncidentRow)) == 0
    assert cli("incident", "open", "--customer", "C1", "--observations", "x", "--reference", "R1").exit_code == 0
    taken = cli("incident", "open", "--customer", "C1", "--observations", "y", "--reference", "R1")
    assert (taken.exit_code, taken.stderr) == (1, "Error: incident R1 exists already: give another reference\n")
    assert cli("incident", "close", "R1", "--at", CLOSED).exit_code == 0
    twice = cli("incident", "close", "R1")
    assert (twice.exit_code, twice.stderr) == (1, "Error: incident R1 is closed already (since 2026-11-25 10:00 UTC)\n")
    missing = cli("incident", "close", "R2")
    assert (missing.exit_code, missing.stderr) == (1, "Error: no incident 'R2'\n")
    both = cli("incident", "open", "--customer", "C1")
    assert both.exit_code == 1 and "--observations TEXT or --observations-file FILE" in both.stderr


def test_t8_observations_from_a_file(cli, world, tmp_path):
    store, _, _ = world
    path = tmp_path / "obs.txt"
    path.write_text("Ligne 1\nLigne 2 — accentuée\n", encoding="utf-8")
    result = cli("incident", "open", "--customer", "C1", "--observations-file", path, "--no-notify")
    assert result.exit_code == 0, result.output
    assert _incident(store, "INC-0001")["observations"] == "Ligne 1\nLigne 2 — accentuée"
    assert result.stdout.endswith("No opening notification: turned off for this incident.\n")


def test_t8_nobody_to_write_to_still_opens_and_closes_and_says_why(cli, world, smtp_server):
    store, _, _ = world
    opened = cli("incident", "open", "--customer", "C3", "--kind", "other", "--observations", "Demande de RIB")
    assert opened.exit_code == 0, opened.output
    assert opened.stdout.splitlines()[-1].startswith("The opening notification was not sent: ")
    assert "contact" in opened.stdout.splitlines()[-1]
    closed = cli("incident", "close", "INC-0001", "--at", CLOSED)
    assert closed.exit_code == 0 and closed.stdout.splitlines()[-1].startswith("The closing notification was not sent: ")
    assert _incident(store, "INC-0001")["state"] == "closed" and smtp_server.received == []


# --- the override flags ------------------------------------------------------------------------


def test_t8_per_incident_overrides_beat_the_settings(world, smtp_server, v1: Path):
    store, _, _ = world
    factory = smtp(smtp_server)
    at = datetime.fromisoformat(OPENED)
    quiet = open_incident(store, customer="C1", invoice="FA-1", observations="x", notify=False, actor="alice", at=at,
                          transport_factory=factory)
    assert quiet["notification"]["status"] == "off" and _incident(store, quiet["reference"])["notify_opened"] is False
    closed = close_incident(store, quiet["reference"], notify=True, actor="alice", at=at, transport_factory=factory)
    assert closed["notification"]["status"] == "sent"
    assert [(r.rcpt_tos, r.message()["Subject"]) for r in smtp_server.received] == [
        (["paul@martin.fr"], f"Votre demande {quiet['reference']} est traitée")]
    # Off by default in the settings: nothing, unless the incident asks for it.
    with store.session() as s:
        from dunningops.store.schema import SettingsRow

        data = s.scalar(select(SettingsRow.data))
        data = {**data, "notifications": {**data["notifications"],
                                          "incident_opened": {**data["notifications"]["incident_opened"], "enabled": False}}}
        s.execute(update(SettingsRow).values(data=data))
    off = open_incident(store, customer="C2", observations="x", kind="other", actor="alice", at=at, transport_factory=factory)
    assert off["notification"] == {"event": "opened", "status": "off", "reason": "off by default in the settings", "to": [],
                                   "message_id": None}
    on = open_incident(store, customer="C2", observations="x", kind="other", notify=True, actor="alice", at=at,
                       transport_factory=factory)
    assert on["notification"]["status"] == "sent" and on["notification"]["to"] == ["hans@mueller.de"]  # the primary (C6)
    assert len(smtp_server.received) == 2


# --- at most once --------------------------------------------------------------------------------


def test_t8_a_notification_whose_fate_is_unknown_is_never_sent_again(world, make_faulty_smtp_server, run):
    store, config, url = world
    server = make_faulty_smtp_server("drop_after_data", times=1)
    factory = lambda c: SmtpTransport("127.0.0.1", server.port, security="none", pool_size=1, max_attempts=1,
                                      backoff_base=0.01, timeout=5)
    at = datetime.fromisoformat(OPENED)
    opened = open_incident(store, customer="C1", invoice="FA-1", observations="x", actor="alice", at=at,
                           transport_factory=factory)
    assert opened["notification"]["status"] == "unknown"
    (message,) = _notifications(store)
    assert message["status"] == "unknown" and _incident(store, "INC-0001")["opened_message_id"] == message["id"]
    # Retried, by the engine and by `incident notify`: the server still got it once.
    (again,) = notices.send_owed(store, "INC-0001", at=at, transport_factory=factory)
    assert again.status == "already" and again.message_id == message["id"]
    retried = run("incident", "notify", "INC-0001", "--config", config, "--database-url", url)
    assert retried.exit_code == 0 and "it is not sent again" in retried.stdout
    assert len(server.payloads(message["message_id"])) == 1 and len(_notifications(store)) == 1


def test_t8_a_notification_left_sending_by_a_crash_is_not_sent_again(world, smtp_server):
    store, _, _ = world
    at = datetime.fromisoformat(OPENED)

    class Crash(Exception):
        pass

    class Crashing:
        fatal = None

        def send(self, messages):
            raise Crash  # the process "dies" once the message is recorded `sending`

        def close(self):
            pass

    with pytest.raises(Crash):
        open_incident(store, customer="C1", observations="x", kind="other", actor="alice", at=at,
                      transport_factory=lambda c: Crashing())
    (message,) = _notifications(store)
    assert message["status"] == "sending" and _incident(store, "INC-0001")["opened_message_id"] == message["id"]
    (again,) = notices.send_owed(store, "INC-0001", at=at, transport_factory=smtp(smtp_server))
    assert again.status == "already" and smtp_server.received == [] and len(_notifications(store)) == 1


def test_t8_an_incident_committed_before_its_notification_gets_it_once_later(world, smtp_server):
    """`incident close` interrupted after the closing was committed: `incident notify` sends what is owed, once."""
    store, _, _ = world
    at = datetime.fromisoformat(OPENED)
    opened = open_incident(store, customer="C1", observations="x", kind="other", actor="alice", at=at, transport_factory=None)
    assert opened["notification"]["status"] == "not_sent"
    close_incident(store, opened["reference"], actor="alice", at=at, transport_factory=None)
    first = notices.send_owed(store, opened["reference"], at=at, transport_factory=smtp(smtp_server))
    assert [(r.event, r.status) for r in first] == [("opened", "sent"), ("closed", "sent")]
    second = notices.send_owed(store, opened["reference"], at=at, transport_factory=smtp(smtp_server))
    assert [(r.event, r.status) for r in second] == [("opened", "already"), ("closed", "already")]
    assert len(smtp_server.received) == 2


def test_t8_a_deferred_notification_is_sent_again_with_its_message_id(world, smtp_server):
    store, _, _ = world
    at = datetime.fromisoformat(OPENED)
    smtp_server.reply_to_recipient("paul@martin.fr", "451 4.3.0 Try again later", times=1)
    opened = open_incident(store, customer="C1", observations="x", kind="other", actor="alice", at=at,
                           transport_factory=smtp(smtp_server))
    assert opened["notification"]["status"] == "deferred" and smtp_server.received == []
    (deferred,) = _notifications(store)
    (again,) = notices.send_owed(store, "INC-0001", at=at, transport_factory=smtp(smtp_server))
    assert (again.status, again.message_id) == ("sent", deferred["id"])
    assert [r.message()["Message-ID"] for r in smtp_server.received] == [deferred["message_id"]]
    (again,) = notices.send_owed(store, "INC-0001", at=at, transport_factory=smtp(smtp_server))
    assert again.status == "already" and len(smtp_server.received) == 1


# --- the dispute holds its invoice's dunning ------------------------------------------------------


def test_t8_an_open_dispute_pauses_its_invoice_until_closed_through_real_send_cycles(world, cli, tmp_path):
    store, _, _ = world
    folder = tmp_path / "sent"

    def send(at, dry_run=False):
        return run_send(store, at=at, transport_factory=lambda c: MaildirTransport(folder), dry_run=dry_run)

    def reminded() -> list[tuple[str, list[int]]]:
        with store.session() as s:
            rows = s.execute(select(MessageRow.to_addresses, MessageRow.invoice_ids).where(MessageRow.kind == "reminder"))
            return sorted((r.to_addresses[0], sorted(r.invoice_ids)) for r in rows if r.to_addresses[0] == "urs@schmid.ch")

    with store.session() as s:
        ids = dict(s.execute(select(InvoiceRow.number, InvoiceRow.id)).all())
    assert cli("incident", "open", "--customer", "S1", "--invoice", "CH-1", "--observations", "Montant contesté",
               "--at", OPENED, "--no-notify").exit_code == 0
    preview = send(paris(2026, 12, 7), dry_run=True)
    (waits,) = [d for d in preview.decisions if d.anchor_invoice_id == ids["CH-1"]]
    assert waits.outcome == "skip" and waits.reason == "invoice paused (dispute: until the incident INC-0001 is closed)"
    send(paris(2026, 12, 7))
    assert reminded() == [("urs@schmid.ch", [ids["CH-2"]])]  # the disputed invoice is not reminded
    shown = cli("customers", "show", "S1").stdout
    assert "CH-1    2026-12-10" in shown and "(dispute: until the incident INC-0001 is closed)" in shown
    assert "its incident is closed" in shown and "incident INC-0001" in shown and "2199" not in shown
    closed = cli("incident", "close", "INC-0001", "--at", "2026-12-07T12:00:00+00:00", "--no-notify")
    assert "The dunning of invoice CH-1 goes on" in closed.stdout
    send(paris(2026, 12, 9))  # after the plan's two days between contacts
    assert reminded() == [("urs@schmid.ch", [ids["CH-1"]]), ("urs@schmid.ch", [ids["CH-2"]])]
    with store.session() as s:
        (pause,) = s.execute(select(PauseRow.reason, PauseRow.ended_how, PauseRow.note)).all()
    assert tuple(pause) == ("dispute", "resumed", "incident INC-0001")


def test_t8_two_open_disputes_of_one_invoice_hold_it_until_both_are_closed(world):
    store, _, _ = world
    at = datetime.fromisoformat(OPENED)
    for _ in range(2):
        open_incident(store, customer="S1", invoice="S1-A", observations="x", notify=False, actor="alice", at=at)
    open_incident(store, customer="S1", invoice="S1-A", kind="other", observations="not a dispute", notify=False,
                  actor="alice", at=at)

    def invoice():
        with store.session() as s:
            return tuple(s.execute(select(InvoiceRow.paused, InvoiceRow.paused_until, InvoiceRow.pause_reason)
                                   .where(InvoiceRow.external_id == "S1-A")).one())

    assert invoice() == (True, None, "dispute: until the incidents INC-0001 and INC-0002 are closed")
    first = close_incident(store, "INC-0001", notify=False, actor="alice", at=at)
    assert first["resumed"] is False and invoice() == (True, None, "dispute: until the incident INC-0002 is closed")
    second = close_incident(store, "INC-0002", notify=False, actor="alice", at=at)
    assert second["resumed"] is True and invoice() == (False, None, None)
    with store.session() as s:
        assert s.scalar(select(func.count()).select_from(PauseRow)) == 1  # one hold for both, ended once


def test_t8_a_pause_set_by_a_person_meanwhile_is_left_alone_when_the_dispute_closes(world, cli):
    store, _, _ = world
    at = datetime.fromisoformat(OPENED)
    open_incident(store, customer="S1", invoice="S1-A", observations="x", notify=False, actor="alice", at=at)
    replaced = cli("invoices", "pause", "CH-1", "--until", "2026-12-31", "--reason", "promise")
    assert "(replaces the pause until its incident is closed, dispute)" in replaced.stdout
    assert close_incident(store, "INC-0001", notify=False, actor="alice", at=at)["resumed"] is False
    with store.session() as s:
        assert tuple(s.execute(select(InvoiceRow.paused, InvoiceRow.pause_reason).where(InvoiceRow.external_id == "S1-A"))
                     .one()) == (True, "promise to pay")


# --- import from CSV ---------------------------------------------------------------------------

HEADER = "reference,customer_external_id,invoice_external_id,kind,observations,state,opened_at,closed_at\n"
GOOD = HEADER + (
    'T-1,C1,I1,dispute,"Facture contestée, livraison incomplète",open,2026-10-02T09:15:00+02:00,\n'
    "T-2,C2,,other,Demande de duplicata,closed,2026-09-01,2026-09-03T17:00:00Z\n"
    "T-3,C4,I4,,Wrong amount,,2026-10-10,\n"
)


def test_t8_import_a_good_file_twice_changes_nothing_and_sends_nothing(cli, world, tmp_path, smtp_server):
    store, _, _ = world
    path = tmp_path / "incidents.csv"
    path.write_text(GOOD)
    dry = cli("incident", "import", path, "--dry-run")
    assert dry.stdout == ("incidents: would import 3 rows from incidents.csv: 3 added, 0 changed, 0 unchanged, "
                          "2 open disputes pausing an invoice; no notification is sent.\n")
    with store.session() as s:
        assert s.scalar(select(func.count()).select_from(IncidentRow)) == 0
    first = cli("incident", "import", path)
    assert first.stdout == dry.stdout.replace("would import", "imported")
    t1, t2, t3 = (_incident(store, r) for r in ("T-1", "T-2", "T-3"))
    assert (t1["state"], t1["kind"], t1["origin"], t1["opened_at"]) == ("open", "dispute", "import",
                                                                       datetime(2026, 10, 2, 7, 15, tzinfo=UTC))
    assert (t2["state"], t2["closed_at"], t2["notify_opened"], t2["notify_closed"]) == (
        "closed", datetime(2026, 9, 3, 17, 0, tzinfo=UTC), False, False)
    assert t3["kind"] == "dispute" and t3["pause_id"] is not None  # an invoice: a dispute by default
    second = cli("incident", "import", path, "--format", "json")
    assert json.loads(second.stdout) == {"file": "incidents.csv", "rows": 3, "added": 0, "changed": 0, "unchanged": 3,
                                         "closed": 0, "holding": 0, "dry_run": False}
    with store.session() as s:
        assert s.scalar(select(func.count()).select_from(PauseRow)) == 2
    # The other tool closed T-1 since: it is closed here, its hold ends, and nobody is told (history).
    path.write_text(GOOD.replace(",open,2026-10-02T09:15:00+02:00,", ",closed,2026-10-02T09:15:00+02:00,2026-11-02"))
    third = cli("incident", "import", path)
    assert "0 added, 1 changed, 2 unchanged, 1 closed" in third.stdout
    assert _incident(store, "T-1")["state"] == "closed"
    with store.session() as s:
        assert s.scalar(select(InvoiceRow.paused).where(InvoiceRow.external_id == "I1")) is False
    assert smtp_server.received == [] and _notifications(store) == []
    # An imported open incident closed by hand later is told as any other.
    closed = cli("incident", "close", "T-3", "--at", CLOSED)
    assert closed.stdout.endswith("The closing notification was sent to jane@smith.co.uk.\n")


def test_t8_import_a_bad_file_names_each_row_and_column_and_imports_nothing(cli, world, tmp_path):
    store, _, _ = world
    path = tmp_path / "bad.csv"
    path.write_text(HEADER + (
        "T-1,C1,I1,dispute,ok,open,2026-10-02,\n"
        "T-2,C9,,other,x,open,2026-10-02,\n"
        "T-3,C1,I3,dispute,x,open,2026-10-02,\n"
        "T-4,C1,,quarrel,,open,yesterday,\n"
        "T-5,C1,,other,x,closed,2026-10-02,\n"
        "T-1,C1,,other,x,open,2026-10-02,\n"
        "T-6,C1,,other,x,open,2026-10-05,2026-10-01\n"
        "T 7,C1,,other,x,open,2027-10-05,\n"
        "T-8,C1,,other,x,closed,2026-10-05,2026-10-01\n"
    ))
    result = cli("incident", "import", path)
    assert result.exit_code == 1
    assert result.stderr == (
        "Error: 11 errors in 8 of 9 rows; nothing was imported:\n"
        "  bad.csv: row 3, column customer_external_id: no customer 'C9'\n"
        "  bad.csv: row 4, column invoice_external_id: invoice I3 is customer C2's, not C1's\n"
        "  bad.csv: row 5, column kind: 'quarrel': one of dispute, other\n"
        "  bad.csv: row 5, column observations: is empty: describe what the incident is about\n"
        "  bad.csv: row 5, column opened_at: 'yesterday' is not an ISO 8601 timestamp such as 2026-12-01T08:30+01:00"
        " (or a date, YYYY-MM-DD)\n"
        "  bad.csv: row 6, column closed_at: is empty: a closed incident needs the instant it was closed\n"
        "  bad.csv: row 7, column reference: T-1 is on row 2 too\n"
        "  bad.csv: row 8, column closed_at: is given, but the state is open\n"
        "  bad.csv: row 9, column opened_at: 2027-10-05 00:00 UTC is in the future\n"
        "  bad.csv: row 9, column reference: 'T 7' is not a reference: 1 to 64 letters, digits and . _ / -\n"
        "  bad.csv: row 10, column closed_at: is before opened_at\n"
    ), result.stderr
    with store.session() as s:
        assert s.scalar(select(func.count()).select_from(IncidentRow)) == 0
    missing = tmp_path / "missing.csv"
    missing.write_text("reference,customer_external_id\nT-1,C1\n")
    answer = cli("incident", "import", missing)
    assert answer.stderr == "Error: " + str(missing) + ": row 1: missing required column(s): observations, opened_at\n"


def test_t8_import_refuses_to_change_who_an_incident_is_or_to_reopen_it(cli, world, tmp_path):
    path = tmp_path / "incidents.csv"
    path.write_text(GOOD)
    assert cli("incident", "import", path).exit_code == 0
    path.write_text(GOOD.replace("T-1,C1,I1,", "T-1,C1,I2,").replace("2026-09-01,2026-09-03T17:00:00Z", "2026-09-01,")
                    .replace(",closed,2026-09-01,", ",open,2026-09-01,"))
    result = cli("incident", "import", path)
    assert result.exit_code == 1 and result.stderr.splitlines()[1:] == [
        "  incidents.csv: row 2, column invoice_external_id: incident T-1 exists with another invoice_external_id",
        "  incidents.csv: row 3, column state: incident T-2 is closed: it cannot be reopened",
    ]


# --- rating status: customers, invoices, incidents --------------------------------------------------


def test_t8_customers_invoices_and_incidents_by_rating_status(cli, world):
    store, _, _ = world
    at = datetime.fromisoformat(OPENED)
    rated = open_incident(store, customer="C1", invoice="FA-1", observations="x", notify=False, actor="alice", at=at)
    open_incident(store, customer="C1", invoice="FA-2", observations="y", notify=False, actor="alice", at=at)
    open_incident(store, customer="C2", invoice="FA-3", observations="z", notify=False, actor="alice", at=at)
    with store.session() as s:  # the rating page is the daemon's: its columns set as it would
        s.execute(update(IncidentRow).where(IncidentRow.reference == rated["reference"])
                  .values(rating=4, rating_message="Rapide et clair, merci.", rated_at=datetime(2026, 11, 24, 8, tzinfo=UTC)))

    def ids(*args) -> list[str]:
        result = cli(*args, "--format", "json")
        assert result.exit_code == 0, result.output
        data = json.loads(result.stdout)
        key = next(k for k in ("customers", "invoices", "incidents") if k in data)
        return [r["external_id"] if key != "incidents" else r["reference"] for r in data[key]]

    assert ids("customers", "list", "--rating", "rated") == ["C1"]
    assert ids("customers", "list", "--rating", "unrated") == ["C2"]
    assert ids("customers", "list", "--rating", "none") == ["C3", "C4", "S1"]
    assert ids("invoices", "list", "--rating", "rated") == ["I1"]
    assert ids("invoices", "list", "--rating", "unrated") == ["I3", "I2"]  # by due date
    assert ids("invoices", "list", "--rating", "none") == ["I4", "S1-A", "S1-B"]
    assert ids("incident", "list", "--rating", "rated") == ["INC-0001"]
    assert ids("incident", "list", "--rating", "unrated") == ["INC-0003", "INC-0002"]
    assert ids("incident", "list", "--rating", "4", "--rating", "5") == ["INC-0001"]
    table = cli("incident", "list", "--rating", "rated").stdout
    assert "4/5" in table and "Rapide et clair, merci." in table and "2026-11-24 08:00" in table
    invoices = cli("invoices", "list", "--customer", "C1").stdout
    assert "(dispute: until the incident INC-0001 is closed)" in invoices
