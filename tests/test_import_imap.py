"""The import cycle against a real Dovecot IMAP server: end to end from a real SMTP send, UIDVALIDITY
changes, and two organisations sharing one mailbox (R7)."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from cycle_helpers import paris, setup_store
from dunningops.dunning.cycle import run_send
from dunningops.inbox.importer import run_import
from dunningops.store import open_store
from dunningops.store.schema import AlertRow, ContactRow, InboxMessageRow, MessageRow, TodoRow
from dunningops.transport.maildir import MaildirTransport
from dunningops.transport.smtp import SmtpTransport
from dunningops.transport.sources import open_source
from test_import_cycle import LEDGER, dsn, reply

SENT_AT = paris(2026, 12, 4)
SLACK_ENV = "ACME_SLACK_WEBHOOK"


def configure(config: Path, inbox_yaml: str, extra: str = "") -> Path:
    path = config / "dunningops.yaml"
    path.write_text(path.read_text().replace("  replies: {manage: true}\n", "  replies: {manage: true}\n" + inbox_yaml + extra))
    return config


def imap_settings_yaml(mailbox, **more: str) -> str:
    lines = [
        "  inbox:",
        "    kind: imap",
        f"    host: {mailbox.host}",
        f"    port: {mailbox.port}",
        "    security: none",
        "    username_env: TEST_IMAP_USER",
        "    password_env: TEST_IMAP_PASSWORD",
    ] + [f"    {k}: {v}" for k, v in more.items()]
    return "\n".join(lines) + "\n"


def sources(env):
    def factory(config):
        return open_source(config.settings.inbox, Path("/"), env)

    return factory


def rows(store, table, *where):
    with store.session() as s:
        return [dict(r) for r in s.execute(select(table.__table__).where(*where)).mappings()]


@pytest.fixture
def store(database_url: str, v1: Path, tmp_path: Path, imap_mailbox, slack_webhook):
    alerts = f"  alerts:\n    bounce: [in_app, slack]\n    slack_webhook_env: {SLACK_ENV}\n"
    s = open_store(database_url)
    setup_store(s, configure(v1, imap_settings_yaml(imap_mailbox), alerts), tmp_path, **LEDGER)
    yield s
    s.dispose()


def test_end_to_end_smtp_send_reply_and_bounce_in_dovecot_import_then_the_next_cycle_skips(
    store, smtp_server, imap_mailbox, slack_webhook
):
    transport = lambda c: SmtpTransport(smtp_server.host, smtp_server.port, security="none", pool_size=1, timeout=10)  # noqa: E731
    first = run_send(store, at=SENT_AT, transport_factory=transport)
    assert first.sent == 3
    received = smtp_server.by_message_id()
    with store.session() as s:
        sent = {m.to_addresses[0]: m for m in s.scalars(select(MessageRow).where(MessageRow.kind == "reminder"))}
    # What really went over SMTP is what the customers answer.
    assert sent["paul@martin.fr"].message_id in received and sent["hans@mueller.de"].message_id in received
    imap_mailbox.append(reply(sent["paul@martin.fr"], "Paul Martin <paul@martin.fr>"))
    imap_mailbox.append(dsn(sent["hans@mueller.de"], "hans@mueller.de"))

    env = {**imap_mailbox.env, SLACK_ENV: slack_webhook.url}
    report = run_import(store, sources(env), at=SENT_AT + timedelta(hours=2), env=env)
    assert report.ok and report.imported == 2 and report.effects.linked == 2
    assert report.effects.reply_todos == 1 and report.effects.invalidated == 1
    # The alert reached the Slack stand-in as a real HTTP POST.
    assert len(slack_webhook.texts()) == 1 and "hans@mueller.de" in slack_webhook.texts()[0]
    (alert,) = rows(store, AlertRow)
    assert alert["channels"]["slack"] not in ("pending", "sending") and alert["channels"]["in_app"] == "shown"

    # The next send cycle: C1 waits for its reply to-do, and nothing goes to the dead address.
    later = run_send(store, at=paris(2026, 12, 14), transport_factory=transport, dry_run=True)
    c1 = [d.row() for d in later.decisions if d.row()["customer"] == "C1"]
    assert c1 and all(d["outcome"] == "skip" and "reply to-do" in d["reason"] for d in c1)
    (hans,) = rows(store, ContactRow, ContactRow.email == "hans@mueller.de")
    assert hans["valid"] is False
    real = run_send(store, at=paris(2026, 12, 14), transport_factory=transport)
    assert real.ok
    with store.session() as s:
        after = s.scalars(select(MessageRow).where(MessageRow.created_at > SENT_AT + timedelta(hours=1))).all()
    assert all("hans@mueller.de" not in m.to_addresses and m.customer_id != sent["paul@martin.fr"].customer_id for m in after)

    # A re-run imports nothing (the server answers UID n+1:* with the last message; it is left out).
    again = run_import(store, sources(env), at=SENT_AT + timedelta(hours=3), env=env)
    assert again.imported == 0 and len(rows(store, InboxMessageRow)) == 2
    assert len(slack_webhook.texts()) == 1  # and no alert is announced twice


def test_a_uidvalidity_change_rescans_and_imports_only_what_is_new(store, imap_mailbox):
    imap_mailbox.append(reply(None, "paul@martin.fr", "premier", hours=1))
    env = imap_mailbox.env
    assert run_import(store, sources(env), at=SENT_AT + timedelta(hours=2)).imported == 1
    imap_mailbox.set_uidvalidity()
    imap_mailbox.append(reply(None, "paul@martin.fr", "second", hours=2))
    report = run_import(store, sources(env), at=SENT_AT + timedelta(hours=3))
    (folder,) = report.folders
    assert folder.rescanned and folder.read == 2 and folder.duplicates == 1 and report.imported == 1
    assert len(rows(store, InboxMessageRow)) == 2
    assert len(rows(store, TodoRow, TodoRow.kind == "reply")) == 1


# --- R7: two organisations, one shared mailbox -----------------------------------------------------


@pytest.fixture
def two_orgs(v1: Path, tmp_path: Path, sqlite_url: str, imap_mailbox):
    """Acme and Bravo, two stores, both with the customer contact shared@client.fr, reading one mailbox."""
    bravo_config = Path(shutil.copytree(v1, tmp_path / "bravo"))
    bravo_yaml = bravo_config / "dunningops.yaml"
    bravo_yaml.write_text(bravo_yaml.read_text().replace("acme.fr", "bravo.fr").replace("Acme", "Bravo"))
    ledger = dict(
        customers="K1,Client Partagé SA,FR,fr_FR,EUR,,\n",
        contacts="K1,shared@client.fr,Comptabilité,,,payer,true\n",
        invoices="F1,K1,FA-1,2026-11-01,2026-12-07,100.00,,EUR,,\n",
    )
    stores = {}
    for name, config, accept in (("acme", v1, "billing@acme.fr"), ("bravo", bravo_config, "billing@bravo.fr")):
        configure(config, imap_settings_yaml(imap_mailbox, after_import="move", move_to=f"Done-{name}", accept_to=f"[{accept}]"))
        store = open_store(sqlite_url.replace("state.db", f"{name}.db"))
        (tmp_path / name).mkdir(exist_ok=True)
        setup_store(store, config, tmp_path / name, **ledger)
        run_send(store, at=SENT_AT, transport_factory=lambda c, n=name: MaildirTransport(tmp_path / f"out-{n}"))
        stores[name] = store
    yield stores
    for store in stores.values():
        store.dispose()


def test_r7_two_organisations_sharing_a_mailbox_never_take_each_others_replies(two_orgs, imap_mailbox):
    acme, bravo = two_orgs["acme"], two_orgs["bravo"]
    sent = {}
    for name, store in two_orgs.items():
        with store.session() as s:
            sent[name] = s.scalars(select(MessageRow).where(MessageRow.kind == "reminder")).one()
    assert sent["acme"].message_id != sent["bravo"].message_id
    # The same person answers each organisation's reminder, and writes once more to Bravo without references.
    imap_mailbox.append(reply(sent["acme"], "shared@client.fr", "Réponse à Acme", hours=1))
    imap_mailbox.append(reply(sent["bravo"], "shared@client.fr", "Réponse à Bravo", hours=2))
    loose = reply(None, "shared@client.fr", "Nouvelle question pour Bravo", hours=3).replace(
        b"To: billing@acme.fr", b"To: billing@bravo.fr"
    )
    imap_mailbox.append(loose)
    env = imap_mailbox.env

    a = run_import(acme, sources(env), at=SENT_AT + timedelta(hours=4))
    assert a.effects.linked == 1 and a.effects.ignored == 2 and a.handled == {"moved": 1}
    (acme_reply,) = rows(acme, InboxMessageRow, InboxMessageRow.status == "linked")
    assert "Réponse à Acme" in acme_reply["reply_text"]
    # Of the other organisation's mail, Acme keeps only the envelope, and says why it left it.
    ignored = rows(acme, InboxMessageRow, InboxMessageRow.status == "ignored")
    assert all(r["text"] is None and r["reply_text"] is None for r in ignored)
    assert len(ignored) == 2 and all(r["reason"].startswith(("answers", "not addressed")) for r in ignored)
    # Acme moved only its own message: Bravo's two are still in the shared INBOX.
    assert len(imap_mailbox.uids("INBOX")) == 2 and len(imap_mailbox.uids("Done-acme")) == 1

    b = run_import(bravo, sources(env), at=SENT_AT + timedelta(hours=5))
    assert b.effects.linked == 2 and b.effects.ignored == 0 and b.handled == {"moved": 2}
    texts = sorted(r["reply_text"] for r in rows(bravo, InboxMessageRow, InboxMessageRow.status == "linked"))
    assert any("Réponse à Bravo" in t for t in texts) and any("Nouvelle question" in t for t in texts)
    assert (
        imap_mailbox.uids("INBOX") == []
        and len(imap_mailbox.uids("Done-bravo")) == 2
        and len(imap_mailbox.uids("Done-acme")) == 1
    )
    # One reply to-do in each organisation, each for its own customer.
    assert len(rows(acme, TodoRow, TodoRow.kind == "reply")) == 1 and len(rows(bravo, TodoRow, TodoRow.kind == "reply")) == 1
