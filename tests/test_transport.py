"""The transport package: MIME bytes, the maildir, and SMTP against a real aiosmtpd server.

SMTP tests talk to ``smtp_fixtures.SmtpSink`` (aiosmtpd on 127.0.0.1), told to
answer some recipients or messages with 4xx/5xx, so retries, failures and
dropped connections go through a real SMTP dialogue.
"""

from __future__ import annotations

import email
import email.policy
import logging
import mailbox
import re
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest
import smtp_fixtures
from smtp_fixtures import SmtpSink, client_ssl_context, free_port

from dunningops.spec.models import Transport as TransportSettings
from dunningops.transport import (
    Address,
    MaildirTransport,
    OutgoingMessage,
    SendResult,
    SmtpTransport,
    TransportError,
    new_message_id,
    open_transport,
    recipients,
    to_bytes,
)
from dunningops.transport.base import Secret
from dunningops.transport.pool import WorkerPool

# The fixtures, also here so that this module runs before conftest.py registers them.
smtp_server = smtp_fixtures.smtp_server
make_smtp_server = smtp_fixtures.make_smtp_server

SENDER = Address("relances@acme.fr", "Société Générale – Service Comptabilité et Recouvrement")
SUBJECT = "Échéance dépassée – 1 200,00 € (facture F-2026-0042)"
TEXT = "Bonjour Zoë,\n\nÉchéance dépassée – 1 200,00 €\n.une ligne qui commence par un point\nMerci.\n"
HTML = "<p>Bonjour Zoë,</p>\n<p>Échéance dépassée – <b>1 200,00 €</b></p>\n"


def message(to: str | list[str] = "client@example.fr", **fields) -> OutgoingMessage:
    addresses = [to] if isinstance(to, str) else to
    defaults = {
        "message_id": new_message_id("acme.fr"), "from_": SENDER, "to": [Address(a) for a in addresses],
        "subject": SUBJECT, "text": TEXT, "html": HTML,
    }
    return OutgoingMessage(**{**defaults, **fields})


def _fields(msg: OutgoingMessage) -> dict:
    return {name: getattr(msg, name) for name in OutgoingMessage.__dataclass_fields__}


def replace(msg: OutgoingMessage, **changes) -> OutgoingMessage:
    return OutgoingMessage(**{**_fields(msg), **changes})


def parse(data: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(data, policy=email.policy.default)  # type: ignore[return-value]


def lf(text: str) -> str:
    # The wire form has CRLF line breaks, and the parser hands them back as they are.
    return text.replace("\r\n", "\n")


def smtp(sink: SmtpSink, **options) -> SmtpTransport:
    options = {"security": "none", "pool_size": 4, "backoff_base": 0.01, "timeout": 10, **options}
    return SmtpTransport(sink.host, sink.port, **options)


# --- MIME -------------------------------------------------------------------------------------


def test_to_bytes_round_trips_non_ascii_headers_and_both_parts():
    msg = replace(
        message(), to=[Address("zoe@example.fr", 'Zoë "Z" Ünal'), Address("jean@example.fr", "Jean Dupont")],
        cc=[Address("cc@example.fr", "Dupont, Jean")], bcc=[Address("secret@example.fr", "Caché")],
        reply_to=Address("compta@acme.fr", "Réponses à la compta"), headers={"Auto-Submitted": "auto-generated"},
    )
    data = to_bytes(msg)
    assert data.isascii() and b"\r\n" in data and b"\n" not in data.replace(b"\r\n", b"")
    parsed = parse(data)
    assert parsed.defects == []
    assert str(parsed["Subject"]) == SUBJECT
    assert parsed["From"].addresses[0].display_name == SENDER.name
    assert parsed["From"].addresses[0].addr_spec == SENDER.email
    assert [(a.display_name, a.addr_spec) for a in parsed["To"].addresses] == [
        ('Zoë "Z" Ünal', "zoe@example.fr"), ("Jean Dupont", "jean@example.fr")]
    assert [(a.display_name, a.addr_spec) for a in parsed["Cc"].addresses] == [("Dupont, Jean", "cc@example.fr")]
    assert parsed["Reply-To"].addresses[0].display_name == "Réponses à la compta"
    assert parsed["Message-ID"] == msg.message_id
    assert parsed["Auto-Submitted"] == "auto-generated"
    assert parsed["MIME-Version"] == "1.0"
    assert parsed["Date"].datetime is not None
    # Bcc is envelope only.
    assert parsed["Bcc"] is None and b"secret@example.fr" not in data and "Cach" not in data.decode()
    assert parsed.get_content_type() == "multipart/alternative"
    assert lf(parsed.get_body(("plain",)).get_content()) == TEXT
    assert lf(parsed.get_body(("html",)).get_content()) == HTML
    for part in parsed.iter_parts():
        assert part.get_content_charset() == "utf-8"
        assert part["Content-Transfer-Encoding"] == "quoted-printable"



def test_to_bytes_without_html_is_a_single_text_part():
    parsed = parse(to_bytes(message(html=None)))
    assert parsed.get_content_type() == "text/plain"
    assert not parsed.is_multipart()
    assert lf(parsed.get_content()) == TEXT


def test_to_bytes_lines_stay_short_and_long_values_fold():
    long_name = "Établissements Dupont & Fils – Direction Administrative et Financière du Groupe"
    many = [Address(f"contact{i}@client-{i}.example.fr", f"Contact n°{i} {long_name}") for i in range(12)]
    msg = replace(message(), to=many, subject=SUBJECT * 4, text="mot " * 500)
    data = to_bytes(msg)
    header, _, _ = data.partition(b"\r\n\r\n")
    assert max(len(line) for line in data.split(b"\r\n")) <= 998  # RFC 5322 2.1.1 MUST
    # Only an encoded name longer than one encoded word may pass 78 (the SHOULD).
    assert all(len(line) <= 78 for line in header.split(b"\r\n") if b"=?utf-8?b?" not in line)
    parsed = parse(data)
    assert str(parsed["Subject"]) == SUBJECT * 4
    assert [(a.display_name, a.addr_spec) for a in parsed["To"].addresses] == [(a.name, a.email) for a in many]
    assert lf(parsed.get_body(("plain",)).get_content()) == "mot " * 500


def test_to_bytes_neutralises_header_injection():
    msg = replace(message(), subject="Relance\r\nBcc: victim@example.com", to=[Address("a@example.fr", "Eve\nX-Evil: 1")],
                  headers={"X-Dunningops-Customer": "C1\r\nX-Evil: 2"})
    parsed = parse(to_bytes(msg))
    assert parsed["Bcc"] is None and parsed["X-Evil"] is None
    assert str(parsed["Subject"]) == "Relance  Bcc: victim@example.com"


@pytest.mark.parametrize("change, problem", [
    ({"to": [Address("not an address")]}, "not an email address"),
    ({"to": [Address("josé@exemple.fr")]}, "SMTPUTF8"),
    ({"message_id": "no-brackets@acme.fr"}, "Message-ID"),
    ({"headers": {"Subject": "again"}}, "set from the message's fields"),
    ({"headers": {"Bad Name": "x"}}, "not a header name"),
    ({"to": [], "cc": [], "bcc": []}, "at least one recipient"),
])
def test_to_bytes_refuses_what_it_cannot_write(change, problem):
    with pytest.raises(ValueError, match=problem):
        to_bytes(replace(message(), **change))


def test_bcc_only_message_gets_an_empty_group_for_to():
    parsed = parse(to_bytes(replace(message(), to=[], bcc=[Address("b@example.fr")])))
    assert str(parsed["To"]) == "undisclosed-recipients:;"


def test_given_date_is_written():
    at = datetime(2026, 11, 23, 8, 30, tzinfo=UTC)
    assert parse(to_bytes(replace(message(), date=at)))["Date"].datetime == at


def test_new_message_id_is_rfc5322_and_unique():
    ids = {new_message_id("acme.fr") for _ in range(10_000)}
    assert len(ids) == 10_000
    assert all(re.fullmatch(r"<[0-9a-f]{32}@acme\.fr>", i) for i in ids)
    with pytest.raises(ValueError):
        new_message_id("acme.fr>\r\nX: y")


def test_recipients_are_to_cc_bcc_each_once():
    msg = replace(message(), to=[Address("a@x.fr"), Address("b@x.fr")], cc=[Address("A@x.fr"), Address("c@x.fr")],
                  bcc=[Address("d@x.fr")])
    assert recipients(msg) == ["a@x.fr", "b@x.fr", "c@x.fr", "d@x.fr"]


# --- maildir ----------------------------------------------------------------------------------


def test_maildir_writes_readable_files(tmp_path: Path):
    transport = MaildirTransport(tmp_path / "mail")
    msgs = [message(f"c{i}@example.fr", bcc=[Address("audit@acme.fr")]) for i in range(20)]
    results = transport.send(msgs)
    transport.close()
    assert [r.status for r in results] == ["sent"] * 20
    assert [r.message_id for r in results] == [m.message_id for m in msgs]
    assert {p.name for p in (tmp_path / "mail").iterdir()} == {"cur", "new", "tmp"}
    assert list((tmp_path / "mail" / "tmp").iterdir()) == []
    box = mailbox.Maildir(tmp_path / "mail", create=False)
    read = {m["Message-ID"]: m for m in (parse(box.get_bytes(key)) for key in box.iterkeys())}
    assert set(read) == {m.message_id for m in msgs}
    first = read[msgs[0].message_id]
    assert str(first["Subject"]) == SUBJECT
    assert lf(first.get_body(("plain",)).get_content()) == TEXT
    assert lf(first.get_body(("html",)).get_content()) == HTML
    # What a local delivery agent adds: the envelope (Bcc included there, never in the headers).
    assert first["Return-Path"] == "<relances@acme.fr>"
    assert first["X-Envelope-To"] == "c0@example.fr, audit@acme.fr"
    assert first["Bcc"] is None


def test_maildir_fails_only_the_message_it_cannot_write(tmp_path: Path):
    transport = MaildirTransport(tmp_path / "mail")
    results = transport.send([message(), replace(message(), to=[Address("broken")]), message()])
    assert [r.status for r in results] == ["sent", "failed", "sent"]
    assert results[1].code is None and "not an email address" in results[1].detail


def test_maildir_folder_that_cannot_be_written_is_fatal(tmp_path: Path):
    transport = MaildirTransport(tmp_path / "mail")
    assert transport.fatal is None
    (tmp_path / "mail" / "tmp").rmdir()
    (tmp_path / "mail" / "tmp").write_text("not a folder")  # (as root, a chmod would not stop the writes)
    results = transport.send([message(), message()])
    assert [r.status for r in results] == ["deferred", "deferred"]  # nothing written: safe to send later
    assert isinstance(transport.fatal, TransportError)
    assert str(tmp_path / "mail") in str(transport.fatal) and "permissions" in str(transport.fatal)
    assert transport.send([message()])[0].status == "deferred"
    assert list((tmp_path / "mail" / "new").iterdir()) == []


def test_open_transport_maildir_is_relative_to_the_base_dir(tmp_path: Path):
    transport = open_transport(TransportSettings(), tmp_path, env={})
    assert isinstance(transport, MaildirTransport)
    assert transport.path == tmp_path / ".dunningops" / "maildir"


# --- SMTP against aiosmtpd --------------------------------------------------------------------


def test_batch_over_a_pool_arrives_complete_with_envelopes(smtp_server: SmtpSink):
    msgs = [message(f"client{i}@example.fr", cc=[Address(f"cc{i}@example.fr")], bcc=[Address("audit@acme.fr")],
                    subject=f"{SUBJECT} #{i}") for i in range(50)]
    with smtp(smtp_server, pool_size=4) as transport:
        results = transport.send(msgs)
    assert [r.message_id for r in results] == [m.message_id for m in msgs]  # input order
    assert all(r.status == "sent" and r.code == 250 and r.permanent_recipients == [] for r in results)
    received = smtp_server.by_message_id()
    assert set(received) == {m.message_id for m in msgs}
    for i, msg in enumerate(msgs):
        got = received[msg.message_id]
        assert got.mail_from == "relances@acme.fr"
        assert got.rcpt_tos == [f"client{i}@example.fr", f"cc{i}@example.fr", "audit@acme.fr"]
        parsed = got.message()
        assert parsed["Bcc"] is None and b"audit@acme.fr" not in got.data
        assert str(parsed["Subject"]) == f"{SUBJECT} #{i}"
        assert lf(parsed.get_body(("plain",)).get_content()) == TEXT
    assert smtp_server.connections <= 4  # connections are reused, not one per message


def test_prebuilt_bytes_arrive_unchanged(smtp_server: SmtpSink):
    msg = message(date=datetime(2026, 11, 23, 8, 30, tzinfo=UTC))
    with smtp(smtp_server) as transport:
        assert transport.send([msg])[0].status == "sent"
    # smtplib dot-stuffs on the wire and the server un-stuffs: the bytes are ours, byte for byte.
    assert smtp_server.received[0].data == to_bytes(msg)


def test_return_path_is_the_envelope_sender(smtp_server: SmtpSink):
    with smtp(smtp_server) as transport:
        transport.send([message(return_path="bounces+c1@acme.fr")])
    assert smtp_server.received[0].mail_from == "bounces+c1@acme.fr"


def test_temporary_451_is_retried_then_sent(smtp_server: SmtpSink):
    smtp_server.reply_to_recipient("busy@example.fr", "451 4.3.0 Try again later", times=2)
    with smtp(smtp_server, max_attempts=3) as transport:
        [result] = transport.send([message("busy@example.fr")])
    assert (result.status, result.code) == ("sent", 250)
    assert [r.rcpt_tos for r in smtp_server.received] == [["busy@example.fr"]]


def test_temporary_failure_that_lasts_is_deferred(smtp_server: SmtpSink):
    smtp_server.reply_to_data("still-busy", "452 4.3.1 Insufficient system storage")
    with smtp(smtp_server, max_attempts=3) as transport:
        results = transport.send([message(subject="still-busy"), message()])
    assert (results[0].status, results[0].code) == ("deferred", 452)
    assert "after 3 attempts" in results[0].detail and "Insufficient system storage" in results[0].detail
    assert results[1].status == "sent"


def test_421_at_mail_from_reconnects_and_sends(smtp_server: SmtpSink):
    smtp_server.reply_to_sender("relances@acme.fr", "421 4.3.2 Service shutting down", times=1)
    with smtp(smtp_server, pool_size=1) as transport:
        [result] = transport.send([message()])
    assert result.status == "sent"
    assert len(smtp_server.received) == 1


def test_c9_permanent_550_fails_with_the_code_and_names_the_recipient(smtp_server: SmtpSink):
    smtp_server.reply_to_recipient("bounce@example.fr", "550 5.1.1 No such user")
    with smtp(smtp_server) as transport:
        [result] = transport.send([message("bounce@example.fr")])
    assert (result.status, result.code) == ("failed", 550)
    assert result.permanent_recipients == ["bounce@example.fr"]
    assert "5.1.1 No such user" in result.detail
    assert smtp_server.received == []


def test_c9_partial_refusal_sends_to_the_others(smtp_server: SmtpSink):
    smtp_server.reply_to_recipient("bounce@example.fr", "550 5.1.1 No such user")
    with smtp(smtp_server) as transport:
        [result] = transport.send([message(["ok@example.fr", "bounce@example.fr"], cc=[Address("cc@example.fr")])])
    assert result.status == "sent"
    assert result.permanent_recipients == ["bounce@example.fr"]
    assert result.code == 550 and "bounce@example.fr" in result.detail
    assert [r.rcpt_tos for r in smtp_server.received] == [["ok@example.fr", "cc@example.fr"]]


@pytest.mark.parametrize("reply", ["550 5.7.1 Relaying denied", "554 5.7.1 Client host rejected: Access denied",
                                   "550 5.4.1 Recipient address rejected: Access denied"])
def test_c9_policy_refusal_at_rcpt_fails_without_blaming_the_address(smtp_server: SmtpSink, reply):
    # Our relay setup is wrong, not the contact's address: failed, but not a permanent recipient.
    smtp_server.reply_to_recipient("good@example.fr", reply)
    with smtp(smtp_server) as transport:
        [result] = transport.send([message("good@example.fr")])
    assert (result.status, result.code, result.permanent_recipients) == ("failed", int(reply[:3]), [])
    assert reply[4:] in result.detail
    assert smtp_server.received == []


def test_c9_only_address_refusals_are_permanent_recipients(smtp_server: SmtpSink):
    smtp_server.reply_to_recipient("gone@example.fr", "550 5.1.1 No such user")
    smtp_server.reply_to_recipient("full@example.fr", "552 5.2.2 Mailbox full")
    smtp_server.reply_to_recipient("old@example.fr", "550 Requested action not taken: mailbox unavailable")
    smtp_server.reply_to_recipient("policy@example.fr", "550 5.7.1 Relaying denied")
    to = ["ok@example.fr", "gone@example.fr", "full@example.fr", "old@example.fr", "policy@example.fr"]
    with smtp(smtp_server) as transport:
        [result] = transport.send([message(to)])
    assert result.status == "sent"
    # 5.1.x and 5.2.x blame the address; so does a 5xx without an enhanced code (as ever).
    assert result.permanent_recipients == ["gone@example.fr", "full@example.fr", "old@example.fr"]
    assert "policy@example.fr" in result.detail
    assert [r.rcpt_tos for r in smtp_server.received] == [["ok@example.fr"]]


def test_partial_temporary_refusal_is_retried_for_that_recipient_only(smtp_server: SmtpSink):
    smtp_server.reply_to_recipient("busy@example.fr", "450 4.2.1 Mailbox busy", times=1)
    with smtp(smtp_server) as transport:
        [result] = transport.send([message(["ok@example.fr", "busy@example.fr"])])
    assert (result.status, result.permanent_recipients) == ("sent", [])
    # Two transactions, the second for the recipient that was busy: nobody gets it twice.
    assert [r.rcpt_tos for r in smtp_server.received] == [["ok@example.fr"], ["busy@example.fr"]]


def test_content_rejected_at_data_fails_without_blaming_recipients(smtp_server: SmtpSink):
    smtp_server.reply_to_data("spammy", "554 5.7.1 Message rejected as spam")
    with smtp(smtp_server) as transport:
        [result] = transport.send([message(subject="spammy")])
    assert (result.status, result.code, result.permanent_recipients) == ("failed", 554, [])
    assert "refused at DATA" in result.detail


def test_dropped_connections_are_reopened(smtp_server: SmtpSink):
    with smtp(smtp_server, pool_size=3, max_attempts=1) as transport:
        first = transport.send([message(f"a{i}@example.fr") for i in range(9)])
        opened = smtp_server.connections
        smtp_server.drop_connections()  # the server closes every idle pooled connection
        second = transport.send([message(f"b{i}@example.fr") for i in range(9)])
        smtp_server.restart()  # and now the whole server went away and came back
        third = transport.send([message(f"c{i}@example.fr") for i in range(9)])
    assert [r.status for r in first + second + third] == ["sent"] * 27
    assert len(smtp_server.received) == 27
    assert smtp_server.connections > opened  # new connections were opened for the later batches


def test_unreachable_server_defers_the_batch_quickly():
    port = free_port()  # nothing listens there
    transport = SmtpTransport("127.0.0.1", port, security="none", pool_size=2, max_attempts=2, backoff_base=0.01, timeout=2)
    with transport:
        results = transport.send([message(f"c{i}@example.fr") for i in range(40)])
    assert {r.status for r in results} == {"deferred"}
    assert all(f"127.0.0.1:{port}" in r.detail for r in results)


def test_worker_pool_keeps_order_and_reports_a_worker_bug():
    seen: list[list[tuple[int, int | None]]] = []  # per worker: (job, the job it was told comes next)

    class Doubler:
        def __init__(self) -> None:
            seen.append(mine := [])
            self.mine = mine

        def run(self, job: int, after: int | None = None) -> int:
            self.mine.append((job, after))
            if job < 0:
                raise RuntimeError("bug")
            return job * 2

        def close(self) -> None:
            pass

    pool: WorkerPool[int, int] = WorkerPool(3, Doubler)
    assert pool.map(range(100)) == [j * 2 for j in range(100)]
    # A job announced as next is the very job that worker runs next, and every job runs once.
    for runs in seen:
        for (_, after), (following, _) in zip(runs, runs[1:]):
            assert after is None or after == following
        assert not runs or runs[-1][1] is None  # nothing announced that was not run
    assert sorted(job for runs in seen for job, _ in runs) == list(range(100))
    with pytest.raises(RuntimeError, match="bug"):
        pool.map([1, 2, -1, 3])
    assert pool.map([1, 2]) == [2, 4]  # still usable afterwards
    pool.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("worker-")]


# --- settings, secrets, TLS ---------------------------------------------------------------------

PASSWORD = "s3cr3t-Pa55word"


def smtp_settings(port: int, **fields) -> TransportSettings:
    return TransportSettings(kind="smtp", host="127.0.0.1", port=port, security="none",
                             username_env="SMTP_USER", password_env="SMTP_PASSWORD", timeout_seconds=10, **fields)


def test_open_transport_logs_in_with_credentials_from_the_environment(make_smtp_server):
    sink = make_smtp_server(auth={"dunning": PASSWORD})
    transport = open_transport(smtp_settings(sink.port), Path("."), env={"SMTP_USER": "dunning", "SMTP_PASSWORD": PASSWORD})
    with transport:
        assert [r.status for r in transport.send([message(), message()])] == ["sent", "sent"]
    assert sink.logins and all(ok for _, ok in sink.logins)
    assert PASSWORD not in repr(transport)


@pytest.mark.parametrize("env, variable, state", [
    ({"SMTP_USER": "dunning"}, "SMTP_PASSWORD", "is not set"),
    ({"SMTP_PASSWORD": PASSWORD}, "SMTP_USER", "is not set"),
    ({"SMTP_USER": "dunning", "SMTP_PASSWORD": ""}, "SMTP_PASSWORD", "is empty"),
])
def test_missing_credential_variable_is_named_never_its_value(env, variable, state):
    with pytest.raises(TransportError) as error:
        open_transport(smtp_settings(2525), Path("."), env=env)
    assert variable in str(error.value) and state in str(error.value)
    assert "dunning" not in str(error.value) and PASSWORD not in str(error.value)


def test_password_in_clear_text_only_over_loopback():
    settings = smtp_settings(2525).model_copy(update={"host": "smtp.example.com"})
    with pytest.raises(TransportError, match="without encryption"):
        open_transport(settings, Path("."), env={"SMTP_USER": "dunning", "SMTP_PASSWORD": PASSWORD})


def test_refused_login_defers_without_leaking_the_password(make_smtp_server, caplog, capsys):
    caplog.set_level(logging.DEBUG, logger="dunningops")
    sink = make_smtp_server(auth={"dunning": "the-right-one"})
    transport = open_transport(smtp_settings(sink.port), Path("."), env={"SMTP_USER": "dunning", "SMTP_PASSWORD": PASSWORD})
    results = transport.send([message(f"c{i}@example.fr") for i in range(30)])
    assert {r.status for r in results} == {"deferred"}
    assert results[0].code == 535 and "refused the login" in results[0].detail
    # Until a login works, connections open one at a time: one refused login, not one per connection.
    assert 1 <= len(sink.logins) <= 2
    assert transport.fatal is not None and "refused the login" in str(transport.fatal)
    everything = (caplog.text + "".join(r.detail for r in results) + repr(results) + str(transport.fatal)
                  + "".join(capsys.readouterr()))
    assert "refused the login" in caplog.text
    assert PASSWORD not in everything
    # A wrong password will not get better: the next batch does not try again.
    logins = len(sink.logins)
    assert {r.status for r in transport.send([message()])} == {"deferred"}
    assert len(sink.logins) == logins
    transport.close()
    assert repr(Secret(PASSWORD)) == "Secret('***')"


def test_server_requiring_auth_without_credentials_defers(make_smtp_server):
    sink = make_smtp_server(auth={"dunning": PASSWORD})
    with smtp(sink) as transport:
        results = transport.send([message(f"c{i}@example.fr") for i in range(10)])
    # A configuration problem, not a bounce: nothing is "failed", no contact is blamed (C9).
    assert {(r.status, r.code) for r in results} == {("deferred", 530)}
    assert "requires AUTH" in results[0].detail
    assert transport.fatal is not None and "requires AUTH" in str(transport.fatal)


def test_starttls_verifies_the_certificate(make_smtp_server):
    sink = make_smtp_server(tls="starttls")
    with smtp(sink, security="starttls", ssl_context=client_ssl_context()) as transport:
        assert transport.send([message()])[0].status == "sent"
    # Without our test CA the self-signed certificate is refused (smtplib alone would not check it).
    with smtp(sink, security="starttls") as transport:
        [result] = transport.send([message()])
    assert result.status == "deferred" and "certificate verify failed" in result.detail
    assert transport.fatal is not None and "certificate verify failed" in str(transport.fatal)
    assert len(sink.received) == 1


def test_implicit_tls(make_smtp_server):
    sink = make_smtp_server(tls="ssl")
    with smtp(sink, security="ssl", ssl_context=client_ssl_context()) as transport:
        results = transport.send([message(f"c{i}@example.fr") for i in range(5)])
    assert [r.status for r in results] == ["sent"] * 5
    assert len(sink.received) == 5


def test_starttls_missing_on_the_server_is_not_silently_skipped(smtp_server: SmtpSink):
    with smtp(smtp_server, security="starttls", ssl_context=client_ssl_context()) as transport:
        [result] = transport.send([message()])
    assert result.status == "deferred" and "STARTTLS" in result.detail
    assert transport.fatal is not None and "does not offer STARTTLS" in str(transport.fatal)
    assert smtp_server.received == []


@pytest.mark.parametrize("security, port", [("ssl", 465), ("starttls", 587), ("none", 25)])
def test_open_transport_smtp_default_ports(security, port):
    settings = TransportSettings(kind="smtp", host="smtp.example.com", security=security)
    transport = open_transport(settings, Path("."), env={})
    assert isinstance(transport, SmtpTransport) and (transport.port, transport.security) == (port, security)
    transport.close()  # never connected: connections open on the first message


def test_send_result_defaults():
    assert SendResult("<a@b>", "sent") == SendResult("<a@b>", "sent", None, "", [])


def test_unreachable_server_is_not_retried_batch_after_batch():
    """Later batches of the same run defer at once instead of going through the backoff again."""
    port = free_port()  # nothing listens there
    transport = SmtpTransport("127.0.0.1", port, security="none", pool_size=2, max_attempts=2,
                              backoff_base=0.01, backoff_max=3600, timeout=2)
    with transport:
        first = transport.send([message("a@example.fr")])
        attempts = transport._unusable
        second = transport.send([message("b@example.fr")])
        assert attempts is not None and transport._unusable is attempts  # the same problem, not rediscovered
    assert first[0].status == second[0].status == "deferred"


def test_message_ids_random_unique_and_drawn_anew_after_fork():
    """Ids come from a block of os.urandom bytes: each a version-4 UUID, never repeated, and a forked
    child never hands out the ids its parent's block still holds."""
    import os
    import uuid as uuid_module

    from dunningops.transport.message import _OURS

    ids = [new_message_id("mail.example", "0a1b2c3d") for _ in range(3 * 256 + 7)]  # over three blocks
    assert len(set(ids)) == len(ids)
    for mid in ids[:300]:
        assert _OURS.match(mid)
        assert uuid_module.UUID(hex=mid[1:33]).version == 4
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its first ids, to the parent
        os.close(reader)
        os.write(writer, "\n".join(new_message_id("mail.example") for _ in range(10)).encode())
        os._exit(0)
    os.close(writer)
    with os.fdopen(reader) as pipe:
        child = pipe.read().split("\n")
    os.waitpid(pid, 0)
    parent = [new_message_id("mail.example") for _ in range(10)]
    assert len(child) == 10 and not set(child) & set(parent)
