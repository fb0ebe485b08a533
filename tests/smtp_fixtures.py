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
* ``make_faulty_smtp_server(fault, times=...)``: starts ``FaultySmtpServer``s,
  a hand-written server that misbehaves where aiosmtpd cannot (drops the
  connection after the whole message, answers late or with garbage,
  refuses logins), counting what it received per Message-ID.

A server that cannot start FAILS the test, never skips it; without aiosmtpd
installed, the tests skip, except under ``CI=true`` where they fail.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import email
import email.policy
import functools
import re
import shutil
import socket
import ssl
import struct
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


# --- a server that misbehaves on purpose ----------------------------------------------------

Fault = Literal[
    "drop_after_data",   # takes the whole message, then closes without answering the final "."
    "reset_after_data",  # the same, with a TCP reset
    "late_reply",        # answers the final "." after ``delay`` seconds (past the client's timeout)
    "garbage_reply",     # answers the final "." with a line that is no SMTP reply
    "drop_at_data",      # closes as soon as the DATA command arrives (before 354)
    "refuse_auth",       # 535 to every AUTH
    "tempfail_at_dot",   # 451 at the final "."
    "refuse_at_dot",     # 554 at the final "."
    "tempfail_at_rcpt",  # 451 at RCPT
    "drop_at_rcpt",      # closes the connection when RCPT arrives
    "tempfail_at_mail",  # 451 at MAIL
    "refuse_at_mail",    # 550 at MAIL
    "closing_at_rcpt",   # 421 at RCPT, then closes
]
_MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*(<[^>\r\n]*>)", re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True)
class Delivery:
    """One DATA payload as the fault server read it (un-stuffed).

    ``complete``: the final "." arrived. ``reply``: the code it answered the
    final "." with, None when it answered nothing (dropped, reset, or the
    answer came after the client had given up: see ``late_reply``).
    """

    connection: int
    message_id: str | None
    rcpt_tos: list[str]
    data: bytes
    complete: bool
    reply: int | None


class FaultySmtpServer:
    """A small hand-written SMTP server on 127.0.0.1 (one thread per connection) with injected faults.

    Unlike aiosmtpd it misbehaves where a real server or network can: it
    drops the connection after the whole message without answering, answers
    late or with garbage, refuses logins, answers 4xx where asked. Each
    fault applies the first ``times`` times it could (None: always). It
    records every DATA payload (``deliveries``, complete or not), the
    commands of each connection (``commands``, verbs only), the AUTH attempts
    (``logins``) and the connections accepted.

    Args:
        fault: what to do wrong, or None for a well-behaved server.
        times: how many times the fault applies (None: every time).
        delay: the wait before a ``late_reply``.
        auth: offer AUTH PLAIN/LOGIN and require it before MAIL.
        refuse: ``{address: reply}``: answer RCPT TO these addresses with ``reply``, always.
        pipelining: offer PIPELINING (RFC 2920): the client may then send MAIL and its RCPTs in one write.
    """

    def __init__(self, fault: Fault | None = None, *, times: int | None = None, delay: float = 2.5,
                 auth: bool = False, refuse: dict[str, str] | None = None, pipelining: bool = False):
        import socketserver

        self.fault, self.times, self.delay = fault, times, delay
        self.auth = auth or fault == "refuse_auth"
        self.refuse = {k.lower(): v for k, v in (refuse or {}).items()}
        self.pipelining = pipelining
        self.deliveries: list[Delivery] = []
        self.commands: list[list[str]] = []  # per connection, in order
        self.logins = 0
        self._hits = 0
        self._lock = threading.Lock()
        owner = self

        class Handler(socketserver.StreamRequestHandler):
            timeout = 30  # a stuck client never keeps a thread forever

            def handle(self) -> None:
                with contextlib.suppress(OSError):
                    owner._serve(self)

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            block_on_close = False
            allow_reuse_address = True

        self._server = Server((HOST, 0), Handler)
        self.host, self.port = HOST, self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="faulty-smtp", daemon=True)
        self._open: list[socket.socket] = []

    # --- reading back -------------------------------------------------------------------

    @property
    def connections(self) -> int:
        with self._lock:
            return len(self.commands)

    def payloads(self, message_id: str) -> list[Delivery]:
        """Every DATA payload carrying this Message-ID, complete or not."""
        with self._lock:
            return [d for d in self.deliveries if d.message_id == message_id]

    def received(self, message_id: str) -> int:
        """How many times the whole message arrived (the final "." included): what a recipient may have got."""
        return sum(1 for d in self.payloads(message_id) if d.complete)

    # --- life cycle ---------------------------------------------------------------------

    def start(self) -> FaultySmtpServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        with self._lock:
            sockets, self._open = self._open, []
        for sock in sockets:  # threads still waiting on a client (or sleeping on a late reply) end now
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        self._thread.join(timeout=10)

    def drop_connections(self) -> None:
        """Close every open connection from the server side, without a word."""
        with self._lock:
            sockets = list(self._open)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    # --- the dialogue -------------------------------------------------------------------

    def _strikes(self, fault: Fault) -> bool:
        """Does ``fault`` apply now? Counts it when it does."""
        with self._lock:
            if self.fault != fault or (self.times is not None and self._hits >= self.times):
                return False
            self._hits += 1
            return True

    def _serve(self, handler: Any) -> None:
        sock: socket.socket = handler.connection
        rfile, wfile = handler.rfile, handler.wfile
        with self._lock:
            self._open.append(sock)
            self.commands.append(log := [])
            number = len(self.commands)

        def say(*lines: str) -> None:
            wfile.write("".join(f"{line}\r\n" for line in lines).encode())
            wfile.flush()

        def hang_up(reset: bool = False) -> None:
            if reset:  # SO_LINGER 0: close() sends RST instead of FIN
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()
            else:
                sock.shutdown(socket.SHUT_RDWR)

        say("220 faulty.test ESMTP")
        authenticated = not self.auth
        mail_from: str | None = None
        rcpt_tos: list[str] = []
        while line := rfile.readline(4096):
            command = line.rstrip(b"\r\n").decode("ascii", "replace")
            verb, _, argument = command.partition(" ")
            verb = verb.upper()
            log.append(verb)
            if verb == "EHLO":
                features = ["SIZE 10485760", "8BITMIME", *(["PIPELINING"] if self.pipelining else []),
                            *(["AUTH PLAIN LOGIN"] if self.auth else [])]
                say("250-faulty.test", *(f"250-{f}" for f in features), "250 ENHANCEDSTATUSCODES")
            elif verb == "HELO":
                say("250 faulty.test")
            elif verb == "AUTH":
                with self._lock:
                    self.logins += 1
                if self._strikes("refuse_auth"):
                    say("535 5.7.8 Authentication credentials invalid")
                else:
                    authenticated = True
                    say("235 2.7.0 Authentication successful")
            elif verb == "MAIL":
                if not authenticated:
                    say("530 5.7.0 Authentication required")
                    continue
                if self._strikes("tempfail_at_mail"):
                    say("451 4.3.0 Try again later")
                    continue
                if self._strikes("refuse_at_mail"):
                    say("550 5.7.1 Sender refused")
                    continue
                mail_from, rcpt_tos = _angle(argument), []
                say("250 2.1.0 OK")
            elif verb == "RCPT":
                address = _angle(argument)
                if mail_from is None:
                    say("503 5.5.1 MAIL first")
                elif self._strikes("drop_at_rcpt"):
                    return hang_up()
                elif self._strikes("closing_at_rcpt"):
                    say("421 4.3.2 Shutting down")
                    return hang_up()
                elif self._strikes("tempfail_at_rcpt"):
                    say("451 4.3.0 Try again later")
                elif address.lower() in self.refuse:
                    say(self.refuse[address.lower()])
                else:
                    rcpt_tos.append(address)
                    say("250 2.1.5 OK")
            elif verb == "DATA":
                if not rcpt_tos:
                    say("503 5.5.1 RCPT first")
                    continue
                if self._strikes("drop_at_data"):
                    return hang_up()
                say("354 End data with <CR><LF>.<CR><LF>")
                data, complete = self._read_data(rfile)
                record = functools.partial(self._record, number, list(rcpt_tos), data, complete)
                mail_from, rcpt_tos = None, []
                if not complete:
                    record(None)
                    return
                if self._strikes("drop_after_data") or self._strikes("reset_after_data"):
                    record(None)
                    return hang_up(reset=self.fault == "reset_after_data")
                if self._strikes("late_reply"):
                    record(None)  # the client gave up before the answer: for it, no answer came
                    time.sleep(self.delay)
                    say("250 2.0.0 Queued (late)")
                elif self._strikes("garbage_reply"):
                    record(None)
                    say("Hello? Is this thing on?")
                elif self._strikes("tempfail_at_dot"):
                    record(451)
                    say("451 4.3.0 Temporary failure, try again")
                elif self._strikes("refuse_at_dot"):
                    record(554)
                    say("554 5.6.0 Message refused")
                else:
                    record(250)
                    say("250 2.0.0 Queued")
            elif verb == "RSET":
                mail_from, rcpt_tos = None, []
                say("250 2.0.0 OK")
            elif verb == "NOOP":
                say("250 2.0.0 OK")
            elif verb == "QUIT":
                say("221 2.0.0 Bye")
                return
            else:
                say("502 5.5.2 Command not implemented")

    @staticmethod
    def _read_data(rfile: Any) -> tuple[bytes, bool]:
        """The payload up to the final "." (un-stuffed), and whether that "." came."""
        lines: list[bytes] = []
        while line := rfile.readline(65536):
            if line == b".\r\n":
                return b"".join(lines), True
            lines.append(line[1:] if line.startswith(b".") else line)
        return b"".join(lines), False

    def _record(self, connection: int, rcpt_tos: list[str], data: bytes, complete: bool, reply: int | None) -> None:
        found = _MESSAGE_ID.search(data)
        delivery = Delivery(connection, found.group(1).decode() if found else None, rcpt_tos, data, complete, reply)
        with self._lock:
            self.deliveries.append(delivery)


def _angle(argument: str) -> str:
    """The address in "FROM:<a@b> SIZE=123" or "TO:<a@b>"."""
    start, end = argument.find("<"), argument.find(">")
    return argument[start + 1:end] if 0 <= start < end else argument.partition(":")[2].strip()


@contextlib.contextmanager
def faulty_servers(**defaults: Any) -> Iterator[Callable[..., FaultySmtpServer]]:
    """A factory of fault-injecting servers with ``defaults`` for their options; all stopped on leaving."""
    started: list[FaultySmtpServer] = []

    def make(fault: Fault | None = None, **options: Any) -> FaultySmtpServer:
        try:
            server = FaultySmtpServer(fault, **{**defaults, **options}).start()
        except Exception as exc:  # noqa: BLE001 - a server that cannot start fails the test, never skips it
            pytest.fail(f"could not start the fault-injecting SMTP server: {exc!r}", pytrace=False)
        started.append(server)
        return server

    try:
        yield make
    finally:
        for server in started:
            server.stop()


@pytest.fixture
def make_faulty_smtp_server() -> Iterator[Callable[..., FaultySmtpServer]]:
    """Start fault-injecting servers: ``make_faulty_smtp_server("drop_after_data", times=1)``; stopped after the test."""
    with faulty_servers() as make:
        yield make
