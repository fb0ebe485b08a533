"""Alerts (C9) on a real store (SQLite and PostgreSQL): recorded, listed, announced by email through a
real local SMTP server and on a local Slack stand-in (http.server), acknowledged; the CLI commands."""

from __future__ import annotations

import json
import re
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import select, update

from cycle_helpers import paris, setup_store
from dunningops.alerts import store as alerts
from dunningops.alerts.channels import announce, slack_text
from dunningops.alerts.events import ALERT_KINDS, AlertEvent
from dunningops.errors import NotFoundError
from dunningops.spec.models import Alerts
from dunningops.store import open_store
from dunningops.store.schema import AlertRow, ContactRow, CustomerRow, MessageRow
from dunningops.transport.maildir import MaildirTransport
from dunningops.transport.smtp import SmtpTransport

LEDGER = dict(
    customers="C1,Boulangerie Martin SARL,FR,fr_FR,EUR,bob,\nC2,Müller GmbH,DE,de_DE,EUR,,\n",
    contacts="C1,paul@martin.fr,Paul Martin,,,payer,true\nC2,hans@mueller.de,Hans Müller,,,payer,true\n",
    invoices="I1,C1,FA-1,2026-11-01,2026-12-07,1200.00,,EUR,,\nI2,C2,FA-2,2026-11-01,2026-12-07,80.00,,EUR,,\n",
)

AT = datetime(2026, 12, 4, 9, 15, tzinfo=UTC)
TEAM = "team@acme.fr"
SLACK_ENV = "ACME_SLACK_WEBHOOK"
ALERTS_YAML = (
    "  alerts:\n"
    "    bounce: [in_app, email, slack]\n"
    "    complaint: [in_app, slack]\n"
    "    promise_broken: [email]\n"
    f"    email_to: [{TEAM}]\n"
    f"    slack_webhook_env: {SLACK_ENV}\n"
)


def with_alerts(config: Path) -> Path:
    """The v1 config with alerts by email and on Slack."""
    path = config / "dunningops.yaml"
    text = path.read_text()
    path.write_text(
        text.replace("  portal: {notifications_alias: billing}\n", "  portal: {notifications_alias: billing}\n" + ALERTS_YAML)
    )
    return config


@pytest.fixture
def store(database_url: str, v1: Path, tmp_path: Path):
    s = open_store(database_url)
    setup_store(s, with_alerts(v1), tmp_path, **LEDGER)
    yield s
    s.dispose()


def settings(store):
    from dunningops.dunning.runconfig import RunConfig

    with store.session() as session:
        return RunConfig.from_store(session).settings


def customer_id(store, external_id: str) -> int:
    with store.session() as session:
        return session.scalar(select(CustomerRow.id).where(CustomerRow.external_id == external_id))


def bounce(store, email: str = "hans@mueller.de", customer: str = "C2") -> AlertEvent:
    return AlertEvent(
        "bounce",
        f"email to {email} bounced (5.1.1): the contact is marked invalid",
        customer_id(store, customer),
        email,
        details={"status": "5.1.1", "diagnostic": "550 5.1.1 User unknown", "category": "mailbox", "empty": None},
    )


def record(store, *events: AlertEvent, at: datetime = AT) -> list[int]:
    with store.session() as session:
        return alerts.record(session, list(events), at=at)


def channels(store, alert_id: int) -> dict[str, str]:
    with store.session() as session:
        return session.scalar(select(AlertRow.channels).where(AlertRow.id == alert_id))


def smtp(server):
    return SmtpTransport(server.host, server.port, security="none", pool_size=1, max_attempts=1, backoff_base=0.01, timeout=10)


def do_announce(store, ids, *, transport=None, env=None, **kw):
    s = kw.pop("settings", None) or settings(store)
    return announce(store, ids, settings=s, env=env or {}, transport=transport, at=AT, domain="acme.fr", **kw)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # nobody listens there once closed


# --- settings -------------------------------------------------------------------------------


def test_c9_every_alert_kind_has_its_channels_in_app_by_default():
    assert Alerts.kinds() == ALERT_KINDS
    defaults = Alerts()
    assert all(defaults.channels_for(kind) == ["in_app"] for kind in ALERT_KINDS)
    assert Alerts(complaint=["slack"], slack_webhook_env="HOOK").channels_for("complaint") == ["slack"]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"complaint": ["email"]}, "complaint alerts by email need `email_to`"),
        ({"promise_broken": ["slack"]}, "promise broken alerts on Slack need `slack_webhook_env`"),
        ({"bounce": ["in_app", "email"]}, "bounce alerts by email need `email_to`"),
    ],
)
def test_c9_a_channel_needs_its_target_for_every_kind(fields, message):
    with pytest.raises(ValidationError, match=re.escape(message)):
        Alerts(**fields)


# --- the in-app list ------------------------------------------------------------------------


def test_c9_recorded_alerts_are_listed_newest_first_and_acknowledged(store):
    quarantined = AlertEvent("quarantined", "an incoming email could not be read: no headers", details={"key": "k1"})
    first, second = record(store, bounce(store), quarantined)
    assert channels(store, first) == {"in_app": "shown", "email": "pending", "slack": "pending"}
    assert channels(store, second) == {"in_app": "shown"}  # quarantined: the list only (the default)
    with store.session() as session:
        page = alerts.list_alerts(session)
        assert (page.total, [r["id"] for r in page]) == (2, [second, first])
        assert page[1]["customer"] == "C2" and page[1]["customer_name"] == "Müller GmbH"
        assert [r["id"] for r in alerts.list_alerts(session, kind="bounce")] == [first]
        assert [r["id"] for r in alerts.list_alerts(session, customer_external_id="C2")] == [first]
        one = alerts.list_alerts(session, limit=1, offset=1)
        assert (one.total, len(one), one.remaining) == (2, 1, 0)
        shown = alerts.get(session, first)
        assert shown["details"]["diagnostic"] == "550 5.1.1 User unknown" and shown["acked_at"] is None
    with store.session() as session:
        assert alerts.ack(session, [first], by="alice", at=AT + timedelta(hours=1)) == 1
    with store.session() as session:
        # Already acknowledged: who and when stay.
        assert alerts.ack(session, [first, second], by="bob", at=AT + timedelta(hours=2)) == 1
    with store.session() as session:
        assert alerts.list_alerts(session).total == 0
        done = alerts.list_alerts(session, acked=True)
        by_id = {r["id"]: r for r in done}
        assert by_id[first]["acked_by"] == "alice" and by_id[first]["acked_at"] == AT + timedelta(hours=1)
        assert by_id[second]["acked_by"] == "bob"
        assert alerts.list_alerts(session, acked=None).total == 2


def test_c9_acknowledging_unknown_alerts_names_them_and_changes_nothing(store):
    (known,) = record(store, bounce(store))
    with pytest.raises(NotFoundError, match=r"no alerts #998, #999"), store.session() as session:
        alerts.ack(session, [999, known, 998], by=None, at=AT)
    with store.session() as session:
        assert alerts.get(session, known)["acked_at"] is None
        with pytest.raises(NotFoundError, match=r"no alert #7$"):
            alerts.get(session, 7)
        assert alerts.ack_all(session, by="alice", at=AT) == 1


def test_c9_title_kept_on_one_line(store):
    (alert_id,) = record(store, AlertEvent("complaint", "spam\r\nBcc: evil@x.test\n" + "x" * 600))
    with store.session() as session:
        title = alerts.get(session, alert_id)["title"]
    assert "\n" not in title and "\r" not in title and len(title) == alerts.MAX_TITLE


# --- announcing -----------------------------------------------------------------------------


def test_c9_bounce_alert_emailed_to_the_team_and_posted_to_slack_once(store, smtp_server, slack_webhook):
    (alert_id,) = record(store, bounce(store))
    env = {SLACK_ENV: slack_webhook.url}
    transport = smtp(smtp_server)
    try:
        report = do_announce(store, [alert_id], transport=transport, env=env)
        assert report.counts == {"in_app": 1, "email": 1, "slack": 1} and report.ok, report.problems

        (received,) = smtp_server.received
        email = received.message()
        assert received.rcpt_tos == [TEAM] and received.mail_from == "reminders@mail.dunningops.local"
        assert email["Subject"] == "[Acme SAS] Bounce: email to hans@mueller.de bounced (5.1.1): the contact is marked invalid"
        assert email["Auto-Submitted"] == "auto-generated" and email["X-Dunningops-Alert"] == str(alert_id)
        body = email.get_content()
        assert "Customer:  C2 (Müller GmbH)" in body and "diagnostic: 550 5.1.1 User unknown" in body
        assert "empty" not in body  # details without a value are left out

        (posted,) = slack_webhook.received
        assert posted.method == "POST" and posted.path.startswith("/services/")
        assert posted.headers["content-type"].startswith("application/json")
        assert set(posted.json) == {"text"}
        text = posted.json["text"]
        assert text.startswith("*Bounce: email to hans@mueller.de bounced (5.1.1)")
        assert "Customer: C2 (Müller GmbH)" in text and "Contact: hans@mueller.de" in text

        assert channels(store, alert_id) == {"in_app": "shown", "email": "sent", "slack": "sent"}
        with store.session() as session:
            (message,) = session.scalars(select(MessageRow).where(MessageRow.kind == "alert")).all()
            # To the team, about no customer: neither the caps, the minimum delay nor C9's refused-recipient rule see it.
            assert message.status == "sent" and message.customer_id is None and message.to_addresses == [TEAM]
            assert alerts.pending(session) == []

        again = do_announce(store, [alert_id], transport=transport, env=env)
        assert again.counts == {"in_app": 1} and again.ok
        assert len(smtp_server.received) == 1 and len(slack_webhook.received) == 1
    finally:
        transport.close()


def test_c9_only_the_kinds_channels_are_used(store, tmp_path: Path, slack_webhook):
    complaint = AlertEvent("complaint", "paul@martin.fr reported our email as spam", customer_id(store, "C1"), "paul@martin.fr")
    promise = AlertEvent("promise_broken", "C1 promised to pay by 2026-12-01", customer_id(store, "C1"))
    complaint_id, promise_id = record(store, complaint, promise)
    assert channels(store, complaint_id) == {"in_app": "shown", "slack": "pending"}
    assert channels(store, promise_id) == {"email": "pending"}  # not in the in-app list's "shown"
    outbox = MaildirTransport(tmp_path / "alerts-out")
    report = do_announce(store, [complaint_id, promise_id], transport=outbox, env={SLACK_ENV: slack_webhook.url})
    assert report.counts == {"in_app": 1, "email": 1, "slack": 1}
    assert ["reported our email as spam" in t for t in slack_webhook.texts()] == [True]
    (mail,) = (tmp_path / "alerts-out" / "new").iterdir()
    assert "Promise broken: C1 promised to pay" in mail.read_text()


def test_c9_slack_answering_500_is_recorded_and_does_not_raise(store, tmp_path: Path, slack_webhook):
    first, second = record(store, bounce(store), bounce(store, "paul@martin.fr", "C1"))
    slack_webhook.respond(500, "internal_error")
    report = do_announce(store, [first, second], env={SLACK_ENV: slack_webhook.url}, transport=MaildirTransport(tmp_path / "out"))
    assert channels(store, first)["slack"] == "failed: HTTP 500 internal_error"
    assert channels(store, second)["slack"] == "sent"  # an answer, even a bad one, is no reason to stop
    assert report.failed.get("slack") == 1 and report.counts["slack"] == 1
    assert any("HTTP 500" in p for p in report.problems)
    assert all(slack_webhook.url not in p for p in report.problems)


@pytest.mark.parametrize(
    ("env", "outcome"),
    [
        ({}, f"failed: the environment variable {SLACK_ENV} (the Slack webhook URL) is not set"),
        ({SLACK_ENV: ""}, f"failed: the environment variable {SLACK_ENV} (the Slack webhook URL) is empty"),
        ({SLACK_ENV: "ftp://hooks.example/services/T/B/SECRET"}, f"failed: the Slack webhook URL in {SLACK_ENV} must start with"),
        ({SLACK_ENV: "hooks.slack.com/services/T/B/SECRET"}, f"failed: the Slack webhook URL in {SLACK_ENV} must start with"),
    ],
)
def test_c9_slack_without_a_usable_webhook_url_is_recorded_naming_the_variable(store, tmp_path: Path, env, outcome):
    (alert_id,) = record(store, bounce(store))
    report = do_announce(store, [alert_id], env=env, transport=MaildirTransport(tmp_path / "out"))
    assert channels(store, alert_id)["slack"].startswith(outcome)
    assert channels(store, alert_id)["email"] == "sent"  # the other channel goes on
    assert report.failed == {"slack": 1}
    assert all("SECRET" not in p for p in report.problems) and "SECRET" not in json.dumps(channels(store, alert_id))


def test_c9_slack_unreachable_is_tried_once_per_run(store, tmp_path: Path):
    ids = record(store, *(bounce(store) for _ in range(3)))
    url = f"http://127.0.0.1:{closed_port()}/services/T/B/SECRET"
    report = do_announce(store, ids, env={SLACK_ENV: url}, transport=MaildirTransport(tmp_path / "out"))
    outcomes = [channels(store, i)["slack"] for i in ids]
    assert outcomes[0].startswith("failed: could not connect (")
    # The others would wait the same: not tried in this run, left pending for a later one.
    assert outcomes[1:] == ["pending"] * 2
    assert report.failed == {"slack": 1} and report.waiting == {"slack": 2} and report.counts["email"] == 3
    assert "not tried yet: 2 slack" in report.line()
    assert all("SECRET" not in p for p in report.problems + outcomes)
    with store.session() as session:
        assert alerts.pending(session) == ids[1:]


def test_c9_slack_without_answer_in_time_is_unknown(store, slack_webhook):
    (alert_id,) = record(store, bounce(store))
    slack_webhook.respond(200, "ok", delay=1.5)
    report = do_announce(store, [alert_id], env={SLACK_ENV: slack_webhook.url}, transport=None, timeout_s=0.3)
    assert channels(store, alert_id)["slack"] == "unknown: no answer within 0.3 s (it may have been posted)"
    assert report.failed == {"slack": 1}
    # No transport: the email waits, and says so; announcing it later is safe.
    assert channels(store, alert_id)["email"] == "pending" and report.waiting == {"email": 1}
    assert any("no transport" in p for p in report.problems)
    with store.session() as session:
        assert alerts.pending(session) == [alert_id]


def test_c9_email_refused_is_recorded_and_the_contacts_are_untouched(store, smtp_server):
    smtp_server.reply_to_recipient(TEAM, "550 5.1.1 No such user")
    (alert_id,) = record(store, bounce(store))
    transport = smtp(smtp_server)
    try:
        report = do_announce(store, [alert_id], transport=transport, settings=_without_slack(settings(store)))
    finally:
        transport.close()
    assert channels(store, alert_id)["email"].startswith("failed: 550")
    assert channels(store, alert_id)["slack"] == "skipped: no longer configured"
    assert report.failed == {"email": 1}
    with store.session() as session:
        assert all(session.scalars(select(ContactRow.valid)))


def test_c9_several_alerts_go_out_in_one_digest_email(store, smtp_server):
    ids = record(store, bounce(store), bounce(store, "paul@martin.fr", "C1"))
    transport = smtp(smtp_server)
    try:
        report = do_announce(store, ids, transport=transport, settings=_without_slack(settings(store)))
    finally:
        transport.close()
    (email,) = smtp_server.messages()
    assert email["Subject"].endswith("2 alerts: 2 bounce") and email["X-Dunningops-Alert"] == ",".join(map(str, ids))
    body = email.get_content()
    assert "hans@mueller.de" in body and "paul@martin.fr" in body
    assert [channels(store, i)["email"] for i in ids] == ["sent", "sent"] and report.counts["email"] == 2
    # At most once: announcing again sends nothing.
    do_announce(store, ids, transport=smtp(smtp_server), settings=_without_slack(settings(store)))
    assert len(smtp_server.messages()) == 1


def test_c9_a_transport_that_cannot_send_leaves_the_other_alert_emails_pending(store, make_smtp_server, monkeypatch):
    import dunningops.alerts.by_email as by_email

    monkeypatch.setattr(by_email, "DIGEST_SIZE", 1)  # one email per alert: the second waits
    server = make_smtp_server(auth={"user": "secret"})  # a login required, none configured: the transport is unusable
    ids = record(store, bounce(store), bounce(store, "paul@martin.fr", "C1"))
    transport = smtp(server)
    try:
        report = do_announce(store, ids, transport=transport, settings=_without_slack(settings(store)))
    finally:
        transport.close()
    assert [channels(store, i)["email"] for i in ids] == ["deferred", "pending"]
    assert report.failed == {"email": 1} and report.waiting == {"email": 1} and server.received == []
    with store.session() as session:
        assert alerts.pending(session) == ids[1:]


def _without_slack(s):
    a = s.alerts
    return s.model_copy(update={"alerts": a.model_copy(update={"bounce": ["in_app", "email"], "complaint": ["in_app"]})})


def test_c9_an_alert_being_announced_elsewhere_is_never_sent_again(store, smtp_server, slack_webhook):
    (alert_id,) = record(store, bounce(store))
    # A process that claimed both channels and died before recording what became of them.
    with store.session() as session:
        session.execute(
            update(AlertRow)
            .where(AlertRow.id == alert_id)
            .values(channels={"in_app": "shown", "email": "sending", "slack": "sending"})
        )
    transport = smtp(smtp_server)
    try:
        report = do_announce(store, [alert_id], transport=transport, env={SLACK_ENV: slack_webhook.url})
    finally:
        transport.close()
    assert report.counts == {"in_app": 1} and report.ok
    assert smtp_server.received == [] and slack_webhook.received == []
    with store.session() as session:
        assert alerts.pending(session) == []


def test_c9_pending_alerts_are_announced_later_exactly_once(store, tmp_path: Path, slack_webhook):
    ids = record(store, bounce(store), AlertEvent("quarantined", "unreadable"))
    with store.session() as session:
        assert alerts.pending(session) == ids[:1]  # the quarantined one goes to the list only
        alerts.ack(session, [ids[0]], by="alice", at=AT)
        assert alerts.pending(session) == []  # acknowledged: no one needs telling any more
        session.execute(update(AlertRow).where(AlertRow.id == ids[0]).values(acked_at=None, acked_by=None))
    with store.session() as session:
        waiting = alerts.pending(session)
    out = MaildirTransport(tmp_path / "out")
    first = do_announce(store, waiting, transport=out, env={SLACK_ENV: slack_webhook.url})
    second = do_announce(store, waiting, transport=out, env={SLACK_ENV: slack_webhook.url})
    assert first.counts == {"in_app": 1, "email": 1, "slack": 1} and second.counts == {"in_app": 1}
    assert len(list((tmp_path / "out" / "new").iterdir())) == 1 and len(slack_webhook.received) == 1


def test_c9_slack_message_escapes_and_stays_short(snapshot):
    row = {
        "id": 12,
        "kind": "sending_refused",
        "title": "the mail server of <hans@mueller.de> refused our email (5.7.1) & more",
        "customer": "C2",
        "customer_name": "Müller & Söhne GmbH",
        "contact_email": "hans@mueller.de",
        "details": {"diagnostic": "550 5.7.1 " + "blocked " * 50, "empty": None, **{f"k{i}": i for i in range(1, 8)}},
    }
    text = slack_text(row)
    assert "&lt;hans@mueller.de&gt;" in text and "Müller &amp; Söhne" in text
    assert "k4: 4" in text and "k5" not in text and "empty" not in text and len(text) < 600
    assert text == snapshot


# --- the commands ---------------------------------------------------------------------------


@pytest.fixture
def alerts_repo(run, v1: Path, tmp_path: Path, monkeypatch):
    """The v1 config with alerts applied, a small ledger imported, and three alerts recorded."""
    with_alerts(v1)
    url = f"sqlite:///{tmp_path}/state.db"
    s = open_store(url)
    try:
        setup_store(s, v1, tmp_path, **LEDGER)
        record(s, bounce(s), at=AT)
        record(
            s, AlertEvent("complaint", "paul@martin.fr reported our email as spam", customer_id(s, "C1"), "paul@martin.fr"), at=AT
        )
        record(s, AlertEvent("quarantined", "an incoming email could not be read: no headers", details={"key": "k1"}), at=AT)
    finally:
        s.dispose()
    monkeypatch.setenv("DUNNINGOPS_NOW", "2026-12-04T10:00:00+00:00")
    return v1, url


def test_c9_alerts_help(run, snapshot):
    assert run("alerts", "--help").stdout == snapshot(name="alerts --help")
    assert run("alerts", "ack", "--help").stdout == snapshot(name="alerts ack --help")


def test_c9_alerts_list_show_and_ack_from_the_command_line(run, alerts_repo, snapshot):
    config, url = alerts_repo
    where = ("--config", config, "--database-url", url)
    listed = run("alerts", "list", *where)
    assert listed.exit_code == 0, listed.output
    assert listed.stdout == snapshot(name="alerts list")
    as_json = json.loads(run("alerts", "list", "--kind", "bounce", "--format", "json", *where).stdout)
    assert as_json["total"] == 1 and as_json["alerts"][0]["customer"] == "C2"
    assert json.loads(run("alerts", "list", "--customer", "C1", "--format", "json", *where).stdout)["total"] == 1
    paged = run("alerts", "list", "--limit", "1", *where)
    assert "… and 2 more alerts not shown (of 3; use --limit and --offset)." in paged.stderr

    shown = run("alerts", "show", "1", *where)
    assert shown.exit_code == 0
    assert shown.stdout.startswith("#1 bounce at 2026-12-04 09:15 UTC: email to hans@mueller.de bounced")
    assert "Customer: C2 (Müller GmbH)" in shown.stdout and "diagnostic: 550 5.1.1 User unknown" in shown.stdout
    assert "Announced: in_app shown, email pending, slack pending" in shown.stdout
    assert json.loads(run("alerts", "show", "1", "--format", "json", *where).stdout)["details"]["status"] == "5.1.1"
    missing = run("alerts", "show", "42", *where)
    assert missing.exit_code == 1 and missing.stderr == "Error: no alert #42\n"

    acked = run("alerts", "ack", "1", "2", "--by", "alice", *where)
    assert acked.stdout == "2 alerts acknowledged.\n"
    again = run("alerts", "ack", "1", "3", "--as", "bob", *where)
    assert again.stdout == "1 alert acknowledged (1 already were).\n"
    unknown = run("alerts", "ack", "1", "99", *where)
    assert unknown.exit_code == 1 and unknown.stderr == "Error: no alert #99\n"
    assert run("alerts", "list", *where).stdout == "(none)\n"
    everything = run("alerts", "list", "--all", *where)
    assert everything.stdout == snapshot(name="alerts list --all")
    neither = run("alerts", "ack", *where)
    assert neither.exit_code == 1 and "give the ids of the alerts to acknowledge, or --all" in neither.stderr
    assert run("alerts", "ack", "--all", *where).stdout == "0 alerts acknowledged.\n"


def test_c9_alerts_announce_catches_up_with_pending_alerts(run, alerts_repo, slack_webhook, monkeypatch):
    config, url = alerts_repo
    where = ("--config", config, "--database-url", url)
    monkeypatch.setenv(SLACK_ENV, slack_webhook.url)
    done = run("alerts", "announce", *where)
    assert done.exit_code == 0, done.output
    assert done.stdout == "Alerts announced: 2 in_app, 1 email, 2 slack.\n"
    assert len(slack_webhook.received) == 2
    # The embedded transport: the alert email is in the maildir beside the config's repo.
    (mail,) = (config.parent / ".dunningops" / "maildir" / "new").iterdir()
    assert "Subject: [Acme SAS] Bounce: email to hans@mueller.de bounced" in mail.read_text()
    assert run("alerts", "announce", *where).stdout == "No alerts wait to be announced.\n"

    # Slack down: recorded, said on stderr, exit 1; never a traceback, never the URL.
    s = open_store(url)
    try:
        record(s, bounce(s), at=AT)
    finally:
        s.dispose()
    slack_webhook.respond(503, "service unavailable")
    failed = run("alerts", "announce", *where)
    assert failed.exit_code == 1
    assert "failed: 1 slack" in failed.stdout and "Error: slack: alert #4: failed: HTTP 503 service unavailable" in failed.stderr
    assert slack_webhook.url not in failed.output


# --- the import cycle end to end ------------------------------------------------------------


def _dsn(sent: MessageRow, recipient: str) -> bytes:
    boundary = "B42"
    text = (
        f"From: MAILER-DAEMON@mx.mueller.de\nTo: {sent.from_address}\nSubject: Undelivered Mail Returned to Sender\n"
        f"Date: Fri, 04 Dec 2026 08:40:00 +0000\nMessage-ID: <dsn-1@mx.mueller.de>\nMIME-Version: 1.0\n"
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"\n\n'
        f"--{boundary}\nContent-Type: text/plain\n\nYour message could not be delivered.\n\n"
        f"--{boundary}\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; mx.mueller.de\n\n"
        f"Final-Recipient: rfc822; {recipient}\nAction: failed\nStatus: 5.1.1\nDiagnostic-Code: smtp; 550 5.1.1 User unknown\n\n"
        f"--{boundary}\nContent-Type: text/rfc822-headers\n\nFrom: {sent.from_address}\nTo: {recipient}\n"
        f"Subject: {sent.subject}\nMessage-ID: {sent.message_id}\n\n--{boundary}--\n"
    )
    return text.replace("\n", "\r\n").encode()


def test_c9_a_bounce_imported_marks_the_contact_invalid_and_is_announced(store, tmp_path: Path, slack_webhook):
    # Imported here, not at the top: the rest of this file does not depend on the import cycle.
    from dunningops.dunning.cycle import run_send
    from dunningops.dunning.runconfig import RunConfig
    from dunningops.inbox.importer import run_import
    from dunningops.transport.sources import open_source

    run_send(store, at=paris(2026, 12, 4), transport_factory=lambda c: MaildirTransport(tmp_path / "reminders"))
    with store.session() as session:
        (reminder,) = [m for m in session.scalars(select(MessageRow)) if m.to_addresses == ["hans@mueller.de"]]

    def source_factory(config):
        inbox = config.settings.inbox.model_copy(update={"kind": "maildir", "path": str(tmp_path / "inbox")})
        return open_source(inbox, tmp_path, {})

    with store.session() as session:
        source = source_factory(RunConfig.from_store(session))
    try:
        source.deliver(_dsn(reminder, "hans@mueller.de"))
    finally:
        source.close()
    report = run_import(
        store,
        source_factory,
        at=paris(2026, 12, 4, 11),
        transport_factory=lambda c: MaildirTransport(tmp_path / "team"),
        env={SLACK_ENV: slack_webhook.url},
    )
    with store.session() as session:
        assert session.scalar(select(ContactRow.valid).where(ContactRow.email == "hans@mueller.de")) is False
        (alert,) = alerts.list_alerts(session)
    assert alert["kind"] == "bounce" and alert["customer"] == "C2"
    assert alert["channels"] == {"in_app": "shown", "email": "sent", "slack": "sent"}
    assert report.announced == {"in_app": 1, "email": 1, "slack": 1}
    (mail,) = (tmp_path / "team" / "new").iterdir()
    assert "hans@mueller.de" in mail.read_text() and f"To: {TEAM}" in mail.read_text()
    assert ["hans@mueller.de" in t for t in slack_webhook.texts()] == [True]
