"""MAIL FROM / RCPT TO written without smtplib's address parsing say exactly what smtplib says.

``smtp_session.envelope_command`` skips ``smtplib.quoteaddr`` (``email.utils.parseaddr``, slow)
for plain dot-atom addresses; for every address, the command line must be the one
``SMTP.mail`` / ``SMTP.rcpt`` would write. A recording ``SMTP`` (no socket: the line written
is pure logic) compares them; the real exchange is covered by test_transport.py and
test_smtp_faults.py against real servers.
"""

from __future__ import annotations

import random
import smtplib
import string

import pytest

from dunningops.transport.smtp_session import _PLAIN_ADDRESS, envelope_command


class _Recording(smtplib.SMTP):
    def __init__(self, esmtp: bool):
        super().__init__()  # no host: nothing is connected
        self.does_esmtp = esmtp
        self.lines: list[tuple[str, str]] = []

    def putcmd(self, cmd: str, args: str = "") -> None:
        self.lines.append((cmd, args))

    def getreply(self) -> tuple[int, bytes]:
        return 250, b"2.1.0 Ok"


ADDRESSES = [
    "julie.martin@boulangerie-martin.fr", "A.B+tag@Example.COM", "o'brien@x.ie", "x_y-z@sub.do-main.example",
    "!#$%&'*+/=?^_`{|}~-@x.y", "a@b", "",  # the null sender
    "user@[192.0.2.1]", '"quoted local"@x.fr', "a..b@x.fr", ".a@x.fr", "a.@x.fr", "a@-x.fr", "a@x..fr", "a@x.fr.",
    "Julie <j@x.fr>", "<j@x.fr>", "j@x.fr ", " j@x.fr", "j@x.fr (comment)", "a@b@c", "a b@x.fr", "jé@x.fr",
]


@pytest.mark.parametrize("esmtp", [True, False])
@pytest.mark.parametrize("address", ADDRESSES)
@pytest.mark.parametrize(("verb", "options"), [("mail", ()), ("mail", ("SIZE=1234",)), ("rcpt", ())])
def test_envelope_command_writes_what_smtplib_writes(address, verb, options, esmtp):
    ours, theirs = _Recording(esmtp), _Recording(esmtp)
    assert envelope_command(ours, verb, address, options) == (250, b"2.1.0 Ok")
    (theirs.mail if verb == "mail" else theirs.rcpt)(address, options)
    assert ours.lines == theirs.lines


def test_every_plain_address_is_quoted_as_smtplib_quotes_it():
    rng = random.Random(5)
    atext = string.ascii_letters + string.digits + "!#$%&'*+/=?^_`{|}~-"
    host = string.ascii_letters + string.digits + "-"
    checked = 0
    for _ in range(5000):
        local = ".".join("".join(rng.choice(atext) for _ in range(rng.randint(1, 6))) for _ in range(rng.randint(1, 3)))
        domain = ".".join("".join(rng.choice(host) for _ in range(rng.randint(1, 6))) for _ in range(rng.randint(1, 3)))
        address = f"{local}@{domain}"
        assert _PLAIN_ADDRESS.fullmatch(address)
        assert smtplib.quoteaddr(address) == f"<{address}>", address
        checked += 1
    assert checked == 5000
