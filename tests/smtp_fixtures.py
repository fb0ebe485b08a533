"""A real SMTP server for tests: aiosmtpd on 127.0.0.1, recording what it receives.

``SmtpSink`` runs ``aiosmtpd.controller.Controller`` in its thread, on a free
loopback port, and records each accepted message (envelope sender,
recipients, raw bytes). It can be told to answer chosen senders, recipients
or messages with a given reply, always or the first N times, so retries and
failures are tested against a real SMTP dialogue; ``drop_connections()``
closes every open session from the server side and ``restart()`` stops and
starts it again on the same port. It can require AUTH and speak STARTTLS or
implicit TLS (with a throwaway self-signed certificate).

aiosmtpd is ~10× slower than Postfix ``smtp-sink``: fine for correctness,
never a benchmark's sink (shared/design/servers.md).

Fixtures (register in conftest.py with
``from smtp_fixtures import make_smtp_server, smtp_server  # noqa: F401``):

* ``smtp_server``: a started plain ``SmtpSink``, stopped after the test.
* ``make_smtp_server(**options)``: starts sinks with options (``auth=``,
  ``tls=``), all stopped after the test.

A server that cannot start FAILS the test, never skips it; without aiosmtpd
installed, the tests skip, except under ``CI=true`` where they fail.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import email
import email.policy
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Literal

import pytest

HOST = "127.0.0.1"


@dataclass(frozen=True)
class Received:
    """One accepted message, as the server saw it."""

    mail_from: str
    rcpt_tos: list[str]
    data: bytes

    def message(self) -> EmailMessage:
        return email.message_from_bytes(self.data, policy=email.policy.default)  # type: ignore[return-value]


@dataclass
class _Rule:
    stage: Literal["MAIL", "RCPT", "DATA"]
    match: str  # an address (MAIL, RCPT) or a substring of the message (DATA)
    reply: str
    times: int | None  # None: every time
    hits: int = 0

    def applies(self, value: str) -> bool:
        if self.times is not None and self.hits >= self.times:
            return False
        if self.stage == "DATA":
            found = self.match in value
        else:
            found = self.match.lower() == value.lower()
        if found:
            self.hits += 1
        return found


class _Handler:
    """aiosmtpd handler hooks: apply the rules, record what is accepted."""

    def __init__(self, sink: SmtpSink):
        self.sink = sink

    def _reply(self, stage: str, value: str) -> str | None:
        with self.sink._lock:
            for rule in self.sink._rules:
                if rule.stage == stage and rule.applies(value):
                    return rule.reply
        return None

    async def handle_MAIL(self, server, session, envelope, address, mail_options):
        if self.sink.auth is not None and not session.authenticated:
            return "530 5.7.0 Authentication required"
        if (reply := self._reply("MAIL", address)) is not None:
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if (reply := self._reply("RCPT", address)) is not None:
            return reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        data: bytes = envelope.original_content or envelope.content
        if (reply := self._reply("DATA", data.decode("utf-8", "replace"))) is not None:
            return reply
        with self.sink._lock:
            self.sink.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), data))
        return "250 OK: queued"


class SmtpSink:
    """aiosmtpd on 127.0.0.1 that records messages and answers as told.

    Args:
        auth: ``{username: password}``: AUTH (PLAIN, LOGIN) required before MAIL.
        tls: ``"starttls"`` (offered and required) or ``"ssl"`` (TLS from the first byte).
    """

    def __init__(self, *, auth: dict[str, str] | None = None, tls: Literal["starttls", "ssl"] | None = None):
        self.auth = auth
        self.tls = tls
        self.host = HOST
        self.port = 0
        self.received: list[Received] = []
        self.logins: list[tuple[str, bool]] = []  # (username, succeeded): never the password
        self.connections = 0  # client connections accepted so far
        self._rules: list[_Rule] = []
        self._lock = threading.Lock()
        self._sessions: weakref.WeakSet[Any] = weakref.WeakSet()
        self._controller: Any = None

    # --- telling it what to answer ----------------------------------------------------

    def reply_to_recipient(self, address: str, reply: str, times: int | None = None) -> None:
        """Answer ``RCPT TO:<address>`` with ``reply`` (e.g. "550 5.1.1 No such user")."""
        self._add(_Rule("RCPT", address, reply, times))

    def reply_to_sender(self, address: str, reply: str, times: int | None = None) -> None:
        """Answer ``MAIL FROM:<address>`` with ``reply``."""
        self._add(_Rule("MAIL", address, reply, times))

    def reply_to_data(self, containing: str, reply: str, times: int | None = None) -> None:
        """Answer the end of DATA with ``reply`` for messages containing ``containing``."""
        self._add(_Rule("DATA", containing, reply, times))

    def _add(self, rule: _Rule) -> None:
        with self._lock:
            self._rules.append(rule)

    # --- reading back -----------------------------------------------------------------

    def messages(self) -> list[EmailMessage]:
        with self._lock:
            return [r.message() for r in self.received]

    def by_message_id(self) -> dict[str, Received]:
        with self._lock:
            return {r.message()["Message-ID"]: r for r in self.received}

    # --- life cycle -------------------------------------------------------------------

    def start(self) -> SmtpSink:
        from aiosmtpd.controller import Controller

        sink = self

        class _Controller(Controller):
            def factory(self):  # one SMTP protocol object per connection
                server = super().factory()
                with sink._lock:
                    sink._sessions.add(server)
                    sink.connections += 1
                return server

        kwargs: dict[str, Any] = {"server_hostname": "sink.test"}  # no getfqdn() name lookup
        if self.auth is not None:
            # AUTH is offered without TLS too (loopback tests); the handler requires it before MAIL,
            # since aiosmtpd's own auth_required warns on every connection when TLS is optional.
            kwargs.update(authenticator=self._authenticate, auth_require_tls=False)
        if self.tls == "starttls":
            kwargs.update(tls_context=server_ssl_context(), require_starttls=True)
        elif self.tls == "ssl":
            kwargs.update(ssl_context=server_ssl_context())
        last_error: Exception | None = None
        # Keep the port of a restart; else pick a free one, again if another process took it meanwhile.
        for _ in range(5):
            port = self.port or free_port()
            controller = _Controller(_Handler(self), hostname=HOST, port=port, ready_timeout=10, **kwargs)
            try:
                controller.start()
            except Exception as exc:  # noqa: BLE001 - reported below with the last cause
                last_error = exc
                with contextlib.suppress(Exception):
                    controller.stop(no_assert=True)
                if self.port:
                    time.sleep(0.2)
                continue
            self.port, self._controller = port, controller
            with self._lock:
                self.connections -= 1  # the controller's own readiness probe is not a client
            return self
        raise RuntimeError(f"aiosmtpd did not start on {HOST}: {last_error!r}")

    def stop(self) -> None:
        if self._controller is not None:
            self.drop_connections()
            self._controller.stop()
            self._controller = None

    def restart(self) -> None:
        """Stop (closing every session) and start again on the same port."""
        self.stop()
        self.start()

    def drop_connections(self) -> None:
        """Close every open session from the server side, without a reply (a dropped connection)."""
        controller = self._controller
        if controller is None:
            return

        async def close_all() -> None:
            for server in list(self._sessions):
                if server.transport is not None:
                    server.transport.abort()

        asyncio.run_coroutine_threadsafe(close_all(), controller.loop).result(timeout=10)

    def _authenticate(self, server, session, envelope, mechanism, auth_data):
        from aiosmtpd.smtp import AuthResult

        username = auth_data.login.decode()
        ok = self.auth is not None and self.auth.get(username) == auth_data.password.decode()
        with self._lock:
            self.logins.append((username, ok))
        # handled=False: aiosmtpd then answers 535 itself (handled=True would leave the client waiting).
        return AuthResult(success=ok, handled=False)


# --- TLS material -------------------------------------------------------------------

_cert_dir: Path | None = None


def certificate_files() -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (made once per process with openssl): (cert, key)."""
    global _cert_dir
    if _cert_dir is None:
        directory = Path(tempfile.mkdtemp(prefix="dunningops-tls-"))
        atexit.register(shutil.rmtree, directory, True)
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", str(directory / "key.pem"), "-out", str(directory / "cert.pem"), "-days", "2",
             "-subj", f"/CN={HOST}", "-addext", f"subjectAltName=IP:{HOST}"],
            check=True, capture_output=True,
        )
        _cert_dir = directory
    return _cert_dir / "cert.pem", _cert_dir / "key.pem"


def server_ssl_context() -> ssl.SSLContext:
    cert, key = certificate_files()
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


def client_ssl_context() -> ssl.SSLContext:
    """A verifying client context that trusts the test certificate (and nothing else)."""
    cert, _ = certificate_files()
    return ssl.create_default_context(cafile=str(cert))


# --- helpers and fixtures -----------------------------------------------------------


def free_port() -> int:
    """A free TCP port on the loopback interface (bind to port 0, read it back)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _start(**options: Any) -> SmtpSink:
    try:
        import aiosmtpd  # noqa: F401
    except ImportError:
        # A missing server fails the run, never skips it (locally too: `make test` installs it).
        pytest.fail("aiosmtpd is not installed: pip install -e '.[test]'", pytrace=False)
    try:
        return SmtpSink(**options).start()
    except Exception as exc:  # noqa: BLE001 - any start failure fails the test, never skips it
        pytest.fail(f"could not start the aiosmtpd test server: {exc!r}", pytrace=False)


@pytest.fixture
def smtp_server() -> Iterator[SmtpSink]:
    """A plain recording SMTP server on 127.0.0.1, stopped after the test."""
    sink = _start()
    yield sink
    sink.stop()


@pytest.fixture
def make_smtp_server() -> Iterator[Callable[..., SmtpSink]]:
    """Start servers with options: ``make_smtp_server(auth={"u": "p"}, tls="starttls")``."""
    started: list[SmtpSink] = []

    def make(**options: Any) -> SmtpSink:
        sink = _start(**options)
        started.append(sink)
        return sink

    yield make
    for sink in started:
        sink.stop()
