"""At most once: SMTP failures against a server that misbehaves on purpose (``FaultySmtpServer``).

Each test counts what the server received per Message-ID: a customer must
never get the same reminder twice. Once DATA is written, a failure without a
clear answer is ``unknown`` and never retried; a clear refusal before or at
the end of DATA is retried with the same bytes; a configuration problem sets
``transport.fatal`` and defers everything without trying each message.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

import smtp_fixtures
from dunningops.errors import UnavailableError
from dunningops.transport import Address, OutgoingMessage, SmtpTransport, TransportError, new_message_id, to_bytes
from smtp_fixtures import FaultySmtpServer



@pytest.fixture(params=[False, True], ids=["one-command-at-a-time", "pipelining"])
def make_faulty_smtp_server(request):
    # Every test runs against a server without PIPELINING and one with it (RFC 2920), where
    # MAIL and its RCPTs go out in one write: the same outcomes, the same "never twice".
    with smtp_fixtures.faulty_servers(pipelining=request.param) as make:
        yield make

PASSWORD = "n0t-the-Right-0ne"


def message(to: str = "client@example.fr", **fields) -> OutgoingMessage:
    defaults = {
        "message_id": new_message_id("acme.fr"), "from_": Address("relances@acme.fr", "Recouvrement"),
        "to": [Address(to)], "subject": "Relance : facture F-2026-0042", "text": "Bonjour,\n.\nMerci.\n",
    }
    return OutgoingMessage(**{**defaults, **fields})


def smtp(server: FaultySmtpServer, **options) -> SmtpTransport:
    # Short timeouts and backoff: each test runs in about a second at most.
    options = {"security": "none", "pool_size": 1, "max_attempts": 3, "backoff_base": 0.01, "timeout": 5,
               "local_hostname": "client.test", **options}
    return SmtpTransport(server.host, server.port, **options)


# --- no clear answer once the message was handed over: unknown, never retried ---------------


def test_at_most_once_drop_after_data_is_unknown_never_retried(make_faulty_smtp_server):
    server = make_faulty_smtp_server("drop_after_data")
    msg = message()
    with smtp(server) as transport:
        [result] = transport.send([msg])
    assert result.status == "unknown" and result.permanent_recipients == []
    assert f"no answer from 127.0.0.1:{server.port} once the message was sent" in result.detail
    assert server.received(msg.message_id) == 1
    assert len(server.deliveries) == 1  # not one payload more: no retry, on this connection or another
    assert server.connections == 1


@pytest.mark.parametrize("fault", ["drop_after_data", "reset_after_data", "garbage_reply"])
def test_at_most_once_no_clear_answer_after_the_message_is_unknown(make_faulty_smtp_server, fault):
    server = make_faulty_smtp_server(fault, times=1)
    first, second = message("a@example.fr"), message("b@example.fr")
    with smtp(server) as transport:
        results = transport.send([first, second])
    assert [r.status for r in results] == ["unknown", "sent"]
    assert server.received(first.message_id) == 1  # never twice
    assert server.received(second.message_id) == 1  # the next message goes out on a fresh connection
    assert server.connections == 2


def test_at_most_once_late_answer_to_the_final_dot_is_unknown(make_faulty_smtp_server):
    server = make_faulty_smtp_server("late_reply", times=1, delay=2.5)
    late, after = message("a@example.fr"), message("b@example.fr")
    started = time.monotonic()
    with smtp(server, timeout=1) as transport:
        [result] = transport.send([late])
        assert time.monotonic() - started < 2.4  # gave up at the timeout, did not wait for the answer
        [next_one] = transport.send([after])
    assert result.status == "unknown" and result.code is None
    assert "timed out" in result.detail
    assert server.received(late.message_id) == 1
    assert len(server.payloads(late.message_id)) == 1  # not sent again when the next batch came
    assert next_one.status == "sent" and server.received(after.message_id) == 1


def test_at_most_once_drop_right_after_the_data_command_is_unknown(make_faulty_smtp_server):
    # From the moment DATA is written the message counts as handed over, even if the
    # server vanished before its 354: unknown, not retried (the rule errs on the side of once).
    server = make_faulty_smtp_server("drop_at_data", times=1)
    msg = message()
    with smtp(server) as transport:
        [result] = transport.send([msg])
    assert result.status == "unknown"
    assert "lost at DATA" in result.detail
    assert server.received(msg.message_id) == 0 and server.connections == 1


# --- a clear refusal, or a drop before DATA: safe to retry -----------------------------------


def test_at_most_once_4xx_at_the_final_dot_is_retried_with_the_same_bytes(make_faulty_smtp_server):
    server = make_faulty_smtp_server("tempfail_at_dot", times=1)
    # A date of its own: without one the Date header is the second the bytes were built, and the
    # to_bytes below may fall in the next second.
    msg = message(date=datetime(2026, 11, 19, 8, 30, tzinfo=UTC))
    with smtp(server) as transport:
        [result] = transport.send([msg])
    assert (result.status, result.code) == ("sent", 250)
    tries = server.payloads(msg.message_id)
    assert [(d.complete, d.reply) for d in tries] == [(True, 451), (True, 250)]  # accepted once
    # The same bytes both times: same Message-ID, same Date, byte for byte what to_bytes built.
    assert tries[0].data == tries[1].data == to_bytes(msg)


def test_at_most_once_4xx_at_rcpt_is_retried_then_sent_once(make_faulty_smtp_server):
    server = make_faulty_smtp_server("tempfail_at_rcpt", times=1)
    msg = message()
    with smtp(server) as transport:
        [result] = transport.send([msg])
    assert result.status == "sent"
    assert server.received(msg.message_id) == 1
    # The refused transaction was reset before the retry on the same connection.
    assert server.commands[0][:5] == ["EHLO", "MAIL", "RCPT", "RSET", "MAIL"]


def test_at_most_once_drop_during_rcpt_is_retried_then_sent_once(make_faulty_smtp_server):
    server = make_faulty_smtp_server("drop_at_rcpt", times=1)
    msg = message()
    with smtp(server) as transport:
        [result] = transport.send([msg])
    assert result.status == "sent"
    assert server.received(msg.message_id) == 1
    assert server.connections == 2  # the retry needed a new connection


def test_4xx_at_the_final_dot_that_lasts_is_deferred_and_never_delivered(make_faulty_smtp_server):
    server = make_faulty_smtp_server("tempfail_at_dot")
    msg = message()
    with smtp(server, max_attempts=2) as transport:
        [result] = transport.send([msg])
    assert (result.status, result.code) == ("deferred", 451)
    assert "after 2 attempts" in result.detail
    assert [d.reply for d in server.payloads(msg.message_id)] == [451, 451]  # refused each time: nobody got it


def test_reused_connection_is_reset_after_a_refusal(make_faulty_smtp_server):
    server = make_faulty_smtp_server(refuse={"gone@example.fr": "550 5.1.1 No such user"})
    bounced, good = message("gone@example.fr"), message("ok@example.fr")
    with smtp(server) as transport:
        results = transport.send([bounced, good])
    assert [r.status for r in results] == ["failed", "sent"]
    assert results[0].permanent_recipients == ["gone@example.fr"]  # C9
    assert server.connections == 1
    assert server.commands[0] == ["EHLO", "MAIL", "RCPT", "RSET", "MAIL", "RCPT", "DATA", "QUIT"]


def test_idle_pooled_connection_dropped_is_a_free_reconnect(make_faulty_smtp_server):
    server = make_faulty_smtp_server()
    first, second = message("a@example.fr"), message("b@example.fr")
    with smtp(server, max_attempts=1) as transport:
        assert transport.send([first])[0].status == "sent"
        server.drop_connections()  # the server closes the idle connection
        # Dropped before DATA, on a connection that had been idle: reopened without spending the one attempt.
        assert transport.send([second])[0].status == "sent"
    assert server.received(first.message_id) == server.received(second.message_id) == 1


# --- MAIL and RCPT answered in one go (PIPELINING): each answer read in its place -------------


def test_refused_sender_fails_and_the_connection_carries_the_next_message(make_faulty_smtp_server):
    server = make_faulty_smtp_server("refuse_at_mail", times=1)
    refused, after = message("a@example.fr"), message("b@example.fr")
    with smtp(server) as transport:
        results = transport.send([refused, after])
    assert [(r.status, r.code) for r in results] == [("failed", 550), ("sent", 250)]
    assert "refused at MAIL FROM <relances@acme.fr>: 5.7.1 Sender refused" in results[0].detail
    assert server.received(refused.message_id) == 0 and server.received(after.message_id) == 1
    # With PIPELINING the RCPT went out with the MAIL and was answered (503) before the RSET, so
    # the next message's answers are its own; without it nothing followed the refused MAIL.
    rcpt = ["RCPT"] if server.pipelining else []
    assert server.commands[0] == ["EHLO", "MAIL", *rcpt, "RSET", "MAIL", "RCPT", "DATA", "QUIT"]
    assert server.connections == 1


@pytest.mark.parametrize(("fault", "connections"), [("tempfail_at_mail", 1), ("closing_at_rcpt", 2)])
def test_4xx_at_mail_or_421_at_rcpt_is_retried_then_sent_once(make_faulty_smtp_server, fault, connections):
    # 451 at MAIL: again on the same connection; 421 at RCPT (the server closes): on a new one.
    server = make_faulty_smtp_server(fault, times=1)
    msg = message()
    with smtp(server) as transport:
        [result] = transport.send([msg])
    assert result.status == "sent"
    assert server.received(msg.message_id) == 1
    assert server.connections == connections


def test_several_recipients_each_answer_read_in_its_place(make_faulty_smtp_server):
    server = make_faulty_smtp_server(refuse={"gone@example.fr": "550 5.1.1 No such user"})
    msg = message(to="a@example.fr", cc=[Address("gone@example.fr"), Address("b@example.fr")])
    with smtp(server) as transport:
        [result] = transport.send([msg])
        [next_one] = transport.send([message("c@example.fr")])
    assert result.status == "sent" and result.permanent_recipients == ["gone@example.fr"]  # C9
    [delivery] = server.payloads(msg.message_id)
    assert delivery.rcpt_tos == ["a@example.fr", "b@example.fr"] and delivery.complete
    assert next_one.status == "sent" and server.connections == 1


def test_pipelining_sends_mail_and_rcpt_in_one_write(make_faulty_smtp_server, recorded_writes):
    # What PIPELINING changes on the wire, seen from a socket that records each write.
    server = make_faulty_smtp_server()
    msg = message(to="a@example.fr", cc=[Address("b@example.fr")])
    with smtp(server) as transport:
        [result] = transport.send([msg])
    assert result.status == "sent"
    writes = recorded_writes
    envelope = [w.upper() for w in writes if w.upper().startswith((b"MAIL", b"RCPT"))]
    if server.pipelining:
        size = len(to_bytes_of(server, msg))
        assert envelope == [b"MAIL FROM:<RELANCES@ACME.FR> SIZE=%d\r\nRCPT TO:<A@EXAMPLE.FR>\r\nRCPT TO:<B@EXAMPLE.FR>\r\n" % size]
    else:
        assert [w.split(b":")[0] for w in envelope] == [b"MAIL FROM", b"RCPT TO", b"RCPT TO"]
    assert b"DATA\r\n" in [w.upper() for w in writes]  # DATA on its own, only once the recipients were answered


@pytest.fixture
def recorded_writes():
    """Every ``socket.sendall`` of the test, in order (what went on the wire, write by write)."""
    import socket as socket_module

    writes: list[bytes] = []
    real = socket_module.socket.sendall

    def recording(sock, data, *args):
        writes.append(bytes(data))
        return real(sock, data, *args)

    socket_module.socket.sendall = recording
    try:
        yield writes
    finally:
        socket_module.socket.sendall = real


def test_the_next_envelope_goes_with_the_end_of_the_message(make_faulty_smtp_server, recorded_writes):
    server = make_faulty_smtp_server()
    first, second, third = message("a@example.fr"), message("b@example.fr"), message("c@example.fr")
    with smtp(server) as transport:
        assert [r.status for r in transport.send([first, second, third])] == ["sent", "sent", "sent"]
    assert [server.received(m.message_id) for m in (first, second, third)] == [1, 1, 1]
    ends = [w for w in recorded_writes if b"\r\n.\r\n" in w]
    assert len(ends) == 3
    if server.pipelining:
        # The final "." of one message, then at once the next one's MAIL and RCPT (RFC 2920), never its DATA.
        assert ends[0].endswith(b"\r\n.\r\nMAIL FROM:<relances@acme.fr> SIZE=%d\r\nRCPT TO:<b@example.fr>\r\n"
                                % len(to_bytes_of(server, second)))
        assert ends[1].upper().endswith(b"RCPT TO:<C@EXAMPLE.FR>\r\n")
        assert ends[2].endswith(b"\r\n.\r\n")  # the last of the batch: nothing follows
    else:
        assert all(w.endswith(b"\r\n.\r\n") for w in ends)
    assert server.commands[0] == ["EHLO", *["MAIL", "RCPT", "DATA"] * 3, "QUIT"]
    assert server.connections == 1


@pytest.mark.parametrize("fault", ["drop_after_data", "reset_after_data", "garbage_reply", "late_reply"])
def test_no_answer_to_a_message_whose_end_carried_the_next_envelope(make_faulty_smtp_server, fault):
    # The first message is unknown (never retried); the envelope sent with its end went with the
    # connection: the second starts again on a new one and arrives once.
    server = make_faulty_smtp_server(fault, times=1, delay=1.5)
    first, second = message("a@example.fr"), message("b@example.fr")
    with smtp(server, timeout=1) as transport:
        results = transport.send([first, second])
    assert [r.status for r in results] == ["unknown", "sent"]
    assert server.received(first.message_id) == 1 and len(server.payloads(first.message_id)) == 1
    assert server.received(second.message_id) == 1 and len(server.payloads(second.message_id)) == 1
    assert server.connections == 2


@pytest.mark.parametrize(("fault", "first_status"), [("tempfail_at_dot", "sent"), ("refuse_at_dot", "failed")])
def test_a_refused_message_end_that_carried_the_next_envelope(make_faulty_smtp_server, fault, first_status):
    # 451 (tried again, same bytes) or 554 (failed) at the first message's end, with the second's
    # envelope already sent: its answers are read, RSET ends its transaction, and it is sent afresh.
    server = make_faulty_smtp_server(fault, times=1)
    first, second = message("a@example.fr"), message("b@example.fr")
    with smtp(server) as transport:
        results = transport.send([first, second])
    assert [r.status for r in results] == [first_status, "sent"]
    assert server.received(first.message_id) == (2 if first_status == "sent" else 1)
    assert [d.reply for d in server.payloads(first.message_id)] == ([451, 250] if first_status == "sent" else [554])
    assert server.received(second.message_id) == 1 and len(server.payloads(second.message_id)) == 1
    assert server.connections == 1
    if server.pipelining:
        assert server.commands[0][:7] == ["EHLO", "MAIL", "RCPT", "DATA", "MAIL", "RCPT", "RSET"]


def test_a_next_message_that_cannot_be_written_is_not_announced(make_faulty_smtp_server):
    server = make_faulty_smtp_server()
    good, bad = message("a@example.fr"), message("b@example.fr", headers={"Bad Header": "x"})
    with smtp(server) as transport:
        results = transport.send([good, bad, message("c@example.fr")])
    assert [r.status for r in results] == ["sent", "failed", "sent"]
    assert results[1].code is None and "cannot write this message" in results[1].detail
    assert server.commands[0] == ["EHLO", *["MAIL", "RCPT", "DATA"] * 2, "QUIT"]


def to_bytes_of(server: FaultySmtpServer, msg: OutgoingMessage) -> bytes:
    [delivery] = server.payloads(msg.message_id)
    return delivery.data


# --- configuration: fatal, everything deferred, not one login per message --------------------


def test_refused_login_is_fatal_and_defers_everything_without_a_login_per_message(make_faulty_smtp_server):
    server = make_faulty_smtp_server("refuse_auth")
    msgs = [message(f"c{i}@example.fr") for i in range(30)]
    with smtp(server, pool_size=4, username="dunning", password=PASSWORD) as transport:
        assert transport.fatal is None
        results = transport.send(msgs)
        fatal = transport.fatal
        assert {r.status for r in results} == {"deferred"}
        assert results[0].code == 535
        assert isinstance(fatal, TransportError) and isinstance(fatal, UnavailableError)
        assert str(fatal).startswith(f"the SMTP server 127.0.0.1:{server.port} refused the login: 535 5.7.8")
        assert "username_env" in str(fatal) and PASSWORD not in str(fatal)
        assert 1 <= server.logins <= 2
        # Later batches do not try again, and report the same error.
        assert {r.status for r in transport.send([message()])} == {"deferred"}
        assert transport.fatal is fatal
    assert server.logins <= 2
    assert server.deliveries == []


def test_auth_required_but_not_configured_is_fatal(make_faulty_smtp_server):
    server = make_faulty_smtp_server(auth=True)
    with smtp(server, pool_size=2) as transport:
        results = transport.send([message(f"c{i}@example.fr") for i in range(10)])
    assert {(r.status, r.code) for r in results} == {("deferred", 530)}
    assert transport.fatal is not None and "requires AUTH" in str(transport.fatal)
    assert "set username_env and password_env" in str(transport.fatal)
    assert server.deliveries == []


def test_server_down_is_deferred_but_not_fatal():
    # Not a configuration problem: the next run may find the server back.
    transport = SmtpTransport("127.0.0.1", smtp_fixtures.free_port(), security="none", pool_size=1,
                              max_attempts=1, timeout=2)
    with transport:
        assert transport.send([message()])[0].status == "deferred"
        assert transport.fatal is None


# --- what follows the 354 -----------------------------------------------------------------


@pytest.mark.parametrize("payload", [
    b"", b".", b"..\r\n", b".starts\r\nwith a dot", b"a\r\n.b\r\n..c\r\n.\r\n", b"no dot\r\n",
    b"x\n.bare LF\n", b"=2E\r\n.=\r\n", b"end.\r\n.",
])
def test_wire_form_is_what_smtplib_data_sends(payload):
    import re

    from dunningops.transport.smtp_session import wire_form

    # smtplib.SMTP.data (on bytes): every line's leading dot doubled, then CRLF "." CRLF (a CRLF added when missing).
    expected = re.sub(rb"(?m)^\.", b"..", payload)
    expected += b"" if expected.endswith(b"\r\n") else b"\r\n"
    assert wire_form(payload) == expected + b".\r\n"
