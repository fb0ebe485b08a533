"""A real Dovecot IMAP server for the tests of the mail sources and the import cycle.

Fixtures (register in conftest.py with
``from imap_fixtures import dovecot, dovecot_tls, imap_mailbox  # noqa: E402,F401``):

* ``dovecot``: one ``DovecotServer`` for the whole run, started only if a
  selected test needs it. Without Dovecot installed, or when it does not start,
  the tests FAIL, as for PostgreSQL: a missing server must not turn into a
  green run.
* ``dovecot_tls``: the same with TLS (STARTTLS, and implicit TLS on
  ``ssl_port``), its certificate trusted by ``smtp_fixtures.client_ssl_context()``.
* ``imap_mailbox``: a user of its own for each test (any user name logs in
  with the password ``secret``), so tests never see each other's mail. It
  appends messages, reads flags back, and gives the ``Inbox`` settings and the
  environment that ``open_source`` needs to read it.
"""

from __future__ import annotations

import itertools
import os
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest

from dunningops.spec.models import Inbox
from servers import DOVECOT_INSTALL_HINT, DovecotServer, DovecotServerError, appenduid, find_dovecot

USER_ENV, PASSWORD_ENV = "TEST_IMAP_USER", "TEST_IMAP_PASSWORD"


@pytest.fixture(scope="session")
def dovecot() -> Iterator[DovecotServer]:
    try:
        find_dovecot()
    except DovecotServerError as exc:
        # As for PostgreSQL: a missing server fails, never skips (a skipped import test is no pass).
        pytest.fail(
            f"Dovecot is missing: {exc} ({DOVECOT_INSTALL_HINT}, or `bash scripts/install-deps.sh` as root)", pytrace=False
        )
    server = DovecotServer()
    try:
        server.start()
    except (DovecotServerError, OSError) as exc:
        pytest.fail(f"could not start Dovecot for the tests: {exc}", pytrace=False)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def dovecot_tls(dovecot: DovecotServer) -> Iterator[DovecotServer]:
    """A second Dovecot with TLS: STARTTLS on ``port``, TLS from the start on ``ssl_port``.

    Its certificate is the test suite's self-signed one for 127.0.0.1
    (``smtp_fixtures.certificate_files``): ``smtp_fixtures.client_ssl_context()``
    trusts it, a default context does not. (Taking ``dovecot`` first gives it
    the same skip-or-fail rule when Dovecot is missing.)
    """
    from smtp_fixtures import certificate_files

    server = DovecotServer(tls=certificate_files())
    try:
        server.start()
    except (DovecotServerError, OSError, subprocess.CalledProcessError) as exc:
        pytest.fail(f"could not start Dovecot with TLS for the tests: {exc}", pytrace=False)
    yield server
    server.stop()


# User names must be unique within the server for the whole run; the pid keeps parallel runs apart.
_users = itertools.count(1)


@dataclass
class ImapMailbox:
    """One test's own IMAP account on the shared Dovecot."""

    server: DovecotServer
    user: str

    @property
    def host(self) -> str:
        return self.server.host

    @property
    def port(self) -> int:
        assert self.server.port is not None
        return self.server.port

    @property
    def password(self) -> str:
        return self.server.password

    @property
    def env(self) -> dict[str, str]:
        """The environment ``open_source`` reads the login from (with ``settings()``)."""
        return {USER_ENV: self.user, PASSWORD_ENV: self.password}

    def settings(self, **overrides: Any) -> Inbox:
        """The ``Inbox`` settings of this mailbox (plain IMAP on the loopback), with ``overrides``."""
        values: dict[str, Any] = {
            "kind": "imap",
            "host": self.host,
            "port": self.port,
            "security": "none",
            "username_env": USER_ENV,
            "password_env": PASSWORD_ENV,
            "timeout_seconds": 10,
        }
        values.update(overrides)
        return Inbox(**values)

    def connect(self):
        """A logged-in ``IMAPClient`` (use ``with``)."""
        return self.server.connect(self.user)

    def append(self, raw: bytes, folder: str = "INBOX", flags: Sequence[str] = (), msg_time: datetime | None = None) -> int:
        """Deliver one message by APPEND (creating the folder) and return its UID; ``msg_time``: its INTERNALDATE."""
        return self.server.append(self.user, folder, raw, flags=tuple(flags), msg_time=msg_time)

    def append_many(self, messages: Sequence[bytes], folder: str = "INBOX") -> list[int]:
        """Deliver several messages over one connection; their UIDs in order."""
        with self.connect() as client:
            if folder.upper() != "INBOX" and not client.folder_exists(folder):
                client.create_folder(folder)
            return [appenduid(client.append(folder, raw)) for raw in messages]

    def create_folder(self, folder: str) -> None:
        self.server.create_folder(self.user, folder)

    def flags(self, folder: str = "INBOX") -> dict[int, set[str]]:
        """UID -> flags of every message in ``folder`` (read-only: reading them changes nothing)."""
        with self.connect() as client:
            client.select_folder(folder, readonly=True)
            uids = client.search("ALL")
            found = client.fetch(uids, ["FLAGS"]) if uids else {}
        return {uid: {f.decode() for f in data[b"FLAGS"]} - {"\\Recent"} for uid, data in found.items()}

    def uids(self, folder: str = "INBOX") -> list[int]:
        with self.connect() as client:
            client.select_folder(folder, readonly=True)
            return sorted(client.search("ALL"))

    def bodies(self, folder: str = "INBOX") -> dict[int, bytes]:
        with self.connect() as client:
            client.select_folder(folder, readonly=True)
            uids = client.search("ALL")
            found = client.fetch(uids, ["BODY.PEEK[]"]) if uids else {}
        return {uid: data[b"BODY[]"] for uid, data in found.items()}

    def uidvalidity(self, folder: str = "INBOX") -> int:
        return self.server.uidvalidity(self.user, folder)

    def set_uidvalidity(self, folder: str = "INBOX", value: int | None = None) -> int:
        return self.server.set_uidvalidity(self.user, folder, value)


@pytest.fixture
def imap_mailbox(dovecot: DovecotServer) -> ImapMailbox:
    """A fresh, empty IMAP account of this test's own on the run's Dovecot."""
    return ImapMailbox(dovecot, f"t{os.getpid()}u{next(_users)}")
