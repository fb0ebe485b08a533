"""SMTP delivery with ``smtplib``: a small pool of reused connections, retries, and honest results.

Each worker thread of the pool owns one connection (``_Session``) and sends
whole messages over it with ``sendmail`` of the prebuilt bytes. What the
server answers becomes a ``SendResult``:

* 2xx: ``sent``; recipients refused with 5xx at RCPT are listed in
  ``permanent_recipients`` (C9: the caller marks those contacts invalid).
* 4xx (421, 450, 451, 452...), a dropped connection, a timeout: retried on
  a fresh connection with exponential backoff, up to ``max_attempts``, then
  ``deferred``.
* 5xx: ``failed`` with the code and the server's text.
* The server cannot be used at all: the rest is ``deferred`` at once instead
  of hammering the server with one bad login per message. Login refused,
  TLS failure, no STARTTLS, AUTH required but not configured: for the
  transport's life (the configuration must change). Unreachable from every
  worker, or a 5xx greeting: for the current batch.

Nothing here reads the configuration or the environment: ``open_transport``
(base.py) does, and hands over the credentials as ``Secret`` values.
"""

from __future__ import annotations

import functools
import logging
import smtplib
import socket
import ssl
import threading
import time
from collections.abc import Sequence
from typing import Literal, Self

from dunningops.transport.base import Secret, SendResult
from dunningops.transport.message import OutgoingMessage, envelope_sender, recipients, to_bytes
from dunningops.transport.pool import WorkerPool

__all__ = ["SmtpTransport"]

log = logging.getLogger(__name__)

Security = Literal["starttls", "ssl", "none"]


@functools.cache
def _local_hostname() -> str:
    # smtplib would call getfqdn() (a name lookup) for every connection: once per process is enough.
    return socket.getfqdn()


def _text(reply: bytes | str) -> str:
    return reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)


class _Unusable(Exception):
    """The server cannot be used (login, TLS, 5xx greeting, down): defer the rest instead of trying each message.

    ``lasting`` problems (credentials, TLS, configuration) hold for the rest
    of the transport's life, so that a wrong password costs a handful of
    failed logins per run, not a handful per batch; the others (the server is
    down or refuses service) are tried again once ``backoff_max`` has passed,
    not with every batch (a run's batches follow each other within seconds:
    retrying each cost minutes of backoff with the server down).
    """

    def __init__(self, code: int | None, detail: str, *, lasting: bool = True):
        super().__init__(detail)
        self.code, self.detail, self.lasting = code, detail, lasting
        self.since = time.monotonic()


class _Temporary(Exception):
    """A connection could not be set up now (refused, timeout, 4xx greeting): worth a retry."""

    def __init__(self, code: int | None, detail: str):
        super().__init__(detail)
        self.code, self.detail = code, detail


class SmtpTransport:
    """Sends through an SMTP server over a pool of reused connections.

    Args:
        host, port: the server.
        security: ``starttls`` (upgrade after EHLO), ``ssl`` (TLS from the
            first byte, port 465) or ``none``.
        username, password: AUTH credentials, or None for no AUTH.
        timeout: seconds for each network operation.
        pool_size: connections (and threads) used at most.
        max_attempts: tries per message before it is ``deferred``.
        backoff_base, backoff_max: the wait before try n+1 is
            ``min(backoff_max, backoff_base * 2 ** (n - 1))`` seconds.
        ssl_context: for certificates other than the system's (tests, private CAs).
        local_hostname: the EHLO name; defaults to this machine's FQDN.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        security: Security = "starttls",
        username: Secret | str | None = None,
        password: Secret | str | None = None,
        timeout: float = 30.0,
        pool_size: int = 4,
        max_attempts: int = 3,
        backoff_base: float = 1.0,
        backoff_max: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
        local_hostname: str | None = None,
    ):
        if security not in ("starttls", "ssl", "none"):
            raise ValueError(f"unknown SMTP security {security!r}")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if (username is None) != (password is None):
            raise ValueError("give both username and password, or neither")
        self.host, self.port, self.security = host, port, security
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.backoff_base, self.backoff_max = backoff_base, backoff_max
        self.local_hostname = local_hostname
        # Kept wrapped: a Secret's repr is masked, so the password never reaches a log or a traceback.
        self._username = username if isinstance(username, Secret | None) else Secret(username)
        self._password = password if isinstance(password, Secret | None) else Secret(password)
        # smtplib's own default context verifies nothing (ssl._create_stdlib_context is the
        # unverified one): without an explicit context, check certificates and host names.
        if ssl_context is None and security != "none":
            ssl_context = ssl.create_default_context()
        self._ssl_context = ssl_context
        self._pool: WorkerPool[OutgoingMessage, SendResult] = WorkerPool(pool_size, self._new_session, name="smtp")
        self._state = threading.Lock()
        self._unusable: _Unusable | None = None
        self._live = 0  # open connections, to tell "this server is down" from "this connection failed"

    def __repr__(self) -> str:
        auth = ", auth" if self._username else ""
        return f"SmtpTransport({self.host}:{self.port}, {self.security}{auth}, pool={self._pool.size})"

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    def send(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        """Send every message; one result each, in order. Never raises for one message's fate."""
        with self._state:
            problem = self._unusable
            if problem is not None and not problem.lasting and time.monotonic() - problem.since >= self.backoff_max:
                self._unusable = None  # long enough: the server may be back
        return self._pool.map(messages)

    def close(self) -> None:
        """QUIT every connection and stop the threads."""
        self._pool.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- for the sessions --------------------------------------------------------------

    def _new_session(self) -> _Session:
        return _Session(self)

    def _backoff(self, attempt: int) -> float:
        return min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1))

    def _mark_unusable(self, problem: _Unusable) -> None:
        with self._state:
            if self._unusable is None:
                log.error("SMTP server %s unusable, deferring the rest of the batch: %s", self.where, problem.detail)
                self._unusable = problem

    def _count_connection(self, delta: int) -> None:
        with self._state:
            self._live += delta

    def _no_connection_open(self) -> bool:
        with self._state:
            return self._live == 0

    def _connect(self) -> smtplib.SMTP:
        """A connection ready for MAIL FROM: greeted, TLS as configured, logged in."""
        hostname = self.local_hostname or _local_hostname()
        try:
            if self.security == "ssl":
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(self.host, self.port, local_hostname=hostname,
                                                      timeout=self.timeout, context=self._ssl_context)
            else:
                smtp = smtplib.SMTP(self.host, self.port, local_hostname=hostname, timeout=self.timeout)
        except smtplib.SMTPConnectError as exc:  # a greeting other than 220
            detail = f"{self.where} greeted with: {_text(exc.smtp_error)}"
            if exc.smtp_code >= 500:
                raise _Unusable(exc.smtp_code, detail, lasting=False) from None
            raise _Temporary(exc.smtp_code, detail) from None
        except ssl.SSLError as exc:
            raise _Unusable(None, f"TLS with {self.where} failed: {exc}") from None
        except OSError as exc:  # refused, unreachable, timeout, name not found
            raise _Temporary(None, f"cannot connect to {self.where}: {exc}") from None
        try:
            smtp.ehlo_or_helo_if_needed()
            if self.security == "starttls":
                smtp.starttls(context=self._ssl_context)
                smtp.ehlo()
            if self._username and self._password:
                self._login(smtp, self._username.reveal(), self._password.reveal())
        except OSError as exc:  # every smtplib and ssl error is one
            smtp.close()
            raise self._setup_problem(exc) from None
        except BaseException:
            smtp.close()
            raise
        return smtp

    @staticmethod
    def _login(smtp: smtplib.SMTP, username: str, password: str) -> None:
        """AUTH PLAIN when offered (over TLS, or on loopback), else smtplib's choice.

        ``smtplib.login`` tries every mechanism in turn: a wrong password would
        count as two or three failed logins (which gets an address blocked), and
        its AUTH LOGIN fallback can stall until the timeout on some servers.
        """
        if not smtp.has_extn("auth"):
            raise smtplib.SMTPNotSupportedError("the server offers no SMTP AUTH")
        if "PLAIN" in smtp.esmtp_features["auth"].upper().split():
            smtp.user, smtp.password = username, password
            smtp.auth("PLAIN", smtp.auth_plain)  # raises SMTPAuthenticationError when refused
        else:
            smtp.login(username, password)

    def _setup_problem(self, exc: OSError) -> Exception:
        if isinstance(exc, smtplib.SMTPAuthenticationError):
            # The server's answer only: smtplib does not put the credentials in it.
            detail = f"{self.where} refused the login: {_text(exc.smtp_error)}"
            # 454 4.7.0 is a temporary failure of the server's auth backend, not a wrong password.
            return _Temporary(exc.smtp_code, detail) if exc.smtp_code < 500 else _Unusable(exc.smtp_code, detail)
        if isinstance(exc, smtplib.SMTPNotSupportedError):
            return _Unusable(None, f"{self.where}: {exc} (security: {self.security})")
        if isinstance(exc, ssl.SSLError):
            return _Unusable(None, f"TLS with {self.where} failed: {exc}")
        if isinstance(exc, smtplib.SMTPResponseException):  # EHLO/HELO/STARTTLS refused
            problem = (exc.smtp_code, f"{self.where} refused the session: {_text(exc.smtp_error)}")
            return (_Unusable if exc.smtp_code >= 500 else _Temporary)(*problem)
        return _Temporary(None, f"connection to {self.where} lost while opening: {exc}")


class _Session:
    """One worker's connection, opened on first use, reopened when it drops."""

    def __init__(self, transport: SmtpTransport):
        self.t = transport
        self.smtp: smtplib.SMTP | None = None
        self.reused = False  # has this connection already carried a message?

    def close(self) -> None:
        if self.smtp is not None:
            try:
                self.smtp.quit()
            except (smtplib.SMTPException, OSError):
                self.smtp.close()  # the server is gone already: nothing to say goodbye to
            self._forget()

    def run(self, msg: OutgoingMessage) -> SendResult:
        try:
            payload = to_bytes(msg)
        except ValueError as exc:
            # The message itself is wrong (no server involved): code None tells it from a bounce.
            return SendResult(msg.message_id, "failed", None, f"cannot write this message: {exc}")
        return self._deliver(msg, payload)

    # --- one message -------------------------------------------------------------------

    def _deliver(self, msg: OutgoingMessage, payload: bytes) -> SendResult:
        sender = envelope_sender(msg)
        pending = recipients(msg)
        refused: dict[str, tuple[int, str]] = {}  # 5xx at RCPT: final
        delivered = False  # has any recipient got the message already?
        last: tuple[int | None, str] = (None, "")
        free_reconnect = True
        attempt = 0
        while True:
            attempt += 1
            was_reused = False
            if (problem := self.t._unusable) is not None:
                return self._final(msg, delivered, refused, (problem.code, problem.detail), pending)
            try:
                if self.smtp is None or self.smtp.sock is None:
                    self._open()
                was_reused, self.reused = self.reused, True
                temporary = self._split(self.smtp.sendmail(sender, pending, payload), refused)  # type: ignore[union-attr]
                delivered = True
                if not temporary:
                    return self._final(msg, delivered, refused, None, [])
                pending = list(temporary)
                last = self._refusals(temporary)
            except smtplib.SMTPRecipientsRefused as exc:
                # No DATA was sent: nobody got it. Recipients the server did not reach
                # (a 421 stops the RCPT loop) are retried with the 4xx ones.
                self._split(exc.recipients, refused)
                if self.smtp is not None and self.smtp.sock is None:
                    self._forget()
                pending = [r for r in pending if r not in refused]
                if not pending:
                    return self._final(msg, delivered, refused, None, [])
                temporary = {r: exc.recipients[r] for r in pending if r in exc.recipients}
                last = self._refusals(temporary) if temporary else (None, "the server closed the session at RCPT")
            except (smtplib.SMTPSenderRefused, smtplib.SMTPDataError) as exc:
                stage = f"MAIL FROM <{sender}>" if isinstance(exc, smtplib.SMTPSenderRefused) else "DATA"
                last = (exc.smtp_code, f"refused at {stage}: {_text(exc.smtp_error)}")
                if self.smtp is not None and self.smtp.sock is None:
                    self._forget()  # smtplib closes on 421
                if exc.smtp_code == 530:
                    # "Authentication required": our configuration, not this message, is wrong.
                    problem = _Unusable(530, f"{self.t.where} requires AUTH (set username_env and password_env): "
                                             f"{_text(exc.smtp_error)}")
                    self.t._mark_unusable(problem)
                    return self._final(msg, delivered, refused, (problem.code, problem.detail), pending)
                if exc.smtp_code >= 500:
                    return self._final(msg, delivered, refused, last, pending, failed=True)
            except _Unusable as exc:
                self.t._mark_unusable(exc)
                return self._final(msg, delivered, refused, (exc.code, exc.detail), pending)
            except _Temporary as exc:
                last = (exc.code, exc.detail)
                if attempt >= self.t.max_attempts and self.t._no_connection_open():
                    # No worker holds a connection: the server is down, not busy.
                    self.t._mark_unusable(_Unusable(exc.code, exc.detail, lasting=False))
            except OSError as exc:  # SMTPServerDisconnected, reset, timeout: the connection is gone
                self._drop()
                if was_reused and free_reconnect:
                    # A pooled connection the server closed while idle: reconnect at once, no attempt spent.
                    free_reconnect = False
                    attempt -= 1
                    continue
                # A drop after the final "." but before the reply cannot tell delivered from not
                # (RFC 1047); like MTAs, we retry: a rare duplicate rather than a lost reminder.
                last = (None, f"connection to {self.t.where} lost: {exc or type(exc).__name__}")
            if attempt >= self.t.max_attempts:
                return self._final(msg, delivered, refused, last, pending, gave_up=attempt)
            wait = self.t._backoff(attempt)
            log.info("SMTP %s: %s; %s tried %d of %d times, next in %.2fs",
                     self.t.where, last[1], msg.message_id, attempt, self.t.max_attempts, wait)
            time.sleep(wait)

    @staticmethod
    def _split(answers: dict[str, tuple[int, bytes]], refused: dict[str, tuple[int, str]]) -> dict[str, tuple[int, bytes]]:
        """File 5xx refusals as final; return the temporary (4xx) ones."""
        temporary = {}
        for rcpt, (code, text) in answers.items():
            if code >= 500:
                refused[rcpt] = (code, _text(text))
            else:
                temporary[rcpt] = (code, text)
        return temporary

    @staticmethod
    def _refusals(answers: dict[str, tuple[int, bytes | str]]) -> tuple[int | None, str]:
        items = list(answers.items())
        text = "; ".join(f"<{rcpt}> {code} {_text(reply)}" for rcpt, (code, reply) in items)
        return items[0][1][0], f"refused at RCPT: {text}"

    def _final(
        self, msg: OutgoingMessage, delivered: bool, refused: dict[str, tuple[int, str]],
        problem: tuple[int | None, str] | None, undelivered: list[str], *, failed: bool = False, gave_up: int = 0,
    ) -> SendResult:
        """The result once nothing more will be tried for this message."""
        permanent = list(refused)
        details = []
        if refused:
            details.append(self._refusals(refused)[1])  # type: ignore[arg-type]
        if problem is not None:
            code, text = problem
            if gave_up:
                text = f"gave up after {gave_up} attempts: {text}"
            if delivered and undelivered:
                text = f"not delivered to {', '.join(undelivered)}: {text}"
            details.append(text)
        detail = "; ".join(details)
        if delivered:
            # Some recipients got it: never "deferred", or the caller would send it again to them.
            return SendResult(msg.message_id, "sent", refused[permanent[0]][0] if permanent else 250, detail, permanent)
        if failed or (permanent and problem is None):
            code = problem[0] if problem is not None else refused[permanent[0]][0]
            return SendResult(msg.message_id, "failed", code, detail, permanent)
        return SendResult(msg.message_id, "deferred", problem[0] if problem else None, detail, permanent)

    # --- the connection ----------------------------------------------------------------

    def _open(self) -> None:
        self.smtp = self.t._connect()
        self.reused = False
        self.t._count_connection(+1)
        log.debug("SMTP connection to %s opened", self.t.where)

    def _forget(self) -> None:
        if self.smtp is not None:
            self.smtp = None
            self.t._count_connection(-1)

    def _drop(self) -> None:
        if self.smtp is not None:
            self.smtp.close()
        self._forget()
        self.reused = False
