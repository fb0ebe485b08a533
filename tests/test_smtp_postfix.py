"""Sending to Postfix's own ``smtp-sink``: a real server that offers PIPELINING, so the envelopes go
in groups (MAIL with its RCPTs, and the next message's with a message's final "."), as they will to a
production Postfix. Every message must arrive once, with its recipients, whatever the mix.

``smtp-sink -d`` writes each mail transaction to a file of its own (envelope first), which is what
the tests read back. smtp-sink comes with Postfix (``scripts/install-deps.sh``); without it the
tests fail, never skip.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path

import pytest

from dunningops.transport import Address, OutgoingMessage, SmtpTransport, new_message_id
from smtp_fixtures import free_port

SINK = shutil.which("smtp-sink") or "/usr/sbin/smtp-sink"
_MESSAGE_ID = re.compile(r"^Message-ID: (<[^>]+>)$", re.MULTILINE)
_RCPT = re.compile(r"^X-Rcpt-Args: <([^>]*)>", re.MULTILINE)


class PostfixSink:
    def __init__(self, port: int, dump: Path):
        self.port, self.dump = port, dump

    def transactions(self) -> list[tuple[str, list[str]]]:
        """(Message-ID, envelope recipients) of every transaction the sink completed."""
        found = []
        for path in sorted(self.dump.iterdir()):
            text = path.read_text(encoding="utf-8", errors="replace")
            message_id = _MESSAGE_ID.search(text)
            found.append((message_id.group(1) if message_id else "", _RCPT.findall(text)))
        return found

    def wait_for(self, count: int, timeout: float = 10.0) -> None:
        # The sink writes its file after answering the final ".": give it a moment to finish.
        deadline = time.monotonic() + timeout
        while len(list(self.dump.iterdir())) < count and time.monotonic() < deadline:
            time.sleep(0.05)


@pytest.fixture
def postfix_sink():
    if not os.access(SINK, os.X_OK):
        pytest.fail(f"{SINK} not found: install postfix (bash scripts/install-deps.sh)", pytrace=False)
    # Not under pytest's tmp_path (mode 0700): smtp-sink drops to nobody when started as root.
    dump = Path(tempfile.mkdtemp(prefix="dunningops-sink-"))
    dump.chmod(0o777)
    port = free_port()
    argv = [SINK, *(["-u", "nobody"] if os.geteuid() == 0 else []), "-d", f"{dump}/%M.", f"127.0.0.1:{port}", "100"]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while True:
            if proc.poll() is not None:
                pytest.fail(f"smtp-sink exited {proc.returncode}: {proc.stderr.read().decode(errors='replace')}", pytrace=False)
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail("smtp-sink did not accept connections within 10 s", pytrace=False)
                time.sleep(0.05)
        yield PostfixSink(port, dump)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(dump, ignore_errors=True)


def _message(n: int) -> OutgoingMessage:
    to = [Address(f"client{n}@example.fr", f"Client {n}")]
    # Every fifth has a second recipient; every seventh an address literal (no pipelining for it: its
    # envelope goes through smtplib's own MAIL and RCPT).
    cc = [Address(f"compta{n}@example.fr")] if n % 5 == 0 else []
    if n % 7 == 0:
        to = [Address(f"client{n}@[192.0.2.{n % 250}]")]
    return OutgoingMessage(
        message_id=new_message_id("acme.fr"), from_=Address("relances@acme.fr", "Recouvrement"), to=to, cc=cc,
        subject=f"Relance n°{n}", text=f"Bonjour,\n.\nFacture F-{n} : à régler.\n",
    )


def test_every_message_arrives_once_through_a_pipelining_server(postfix_sink):
    messages = [_message(n) for n in range(1, 301)]
    with SmtpTransport("127.0.0.1", postfix_sink.port, security="none", pool_size=4, local_hostname="client.test") as transport:
        results = []
        for first in range(0, len(messages), 100):  # batches, as the send cycle sends them
            results += transport.send(messages[first:first + 100])
    assert [r.status for r in results] == ["sent"] * len(messages)
    postfix_sink.wait_for(len(messages))
    got = postfix_sink.transactions()
    counts = Counter(message_id for message_id, _ in got)
    assert counts == Counter({m.message_id: 1 for m in messages})  # each once: never twice, none lost
    wanted = {m.message_id: sorted(a.email for a in [*m.to, *m.cc]) for m in messages}
    assert all(sorted(rcpts) == wanted[message_id] for message_id, rcpts in got)


def test_the_sink_offers_pipelining(postfix_sink):
    # What makes the test above exercise the grouped envelopes, not the one-command-at-a-time path.
    import smtplib

    with smtplib.SMTP("127.0.0.1", postfix_sink.port, local_hostname="client.test") as smtp:
        smtp.ehlo()
        assert smtp.has_extn("pipelining")
