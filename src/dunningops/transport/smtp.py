"""SMTP delivery with ``smtplib``: a small pool of reused connections, retries, at most once.

Each worker thread of the pool owns one connection (``smtp_session.Session``)
and sends whole messages over it in stages (MAIL, RCPT, DATA, the prebuilt
bytes), so that a failure is known to be before or after the message was
handed over. What the server answers becomes a ``SendResult``:

* 2xx: ``sent``; recipients refused with 5xx at RCPT for the address's sake
  are listed in ``permanent_recipients`` (C9: the caller marks those
  contacts invalid).
* 4xx (421, 450, 451, 452...) at any stage, or a dropped connection or a
  timeout before DATA: retried with the same bytes on a fresh connection
  with exponential backoff, up to ``max_attempts``, then ``deferred``.
* No clear answer once DATA was written (timeout, drop, reset, garbage):
  ``unknown``, never retried: the message may have arrived.
* 5xx: ``failed`` with the code and the server's text.
* The server cannot be used at all: the rest is ``deferred`` at once instead
  of hammering the server with one bad login per message. Login refused,
  TLS failure, no STARTTLS, AUTH required but not configured: for the
  transport's life (``fatal`` then holds the error to stop the run with).
  Unreachable from every worker, or a 5xx greeting: for the current batch.

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

from dunningops.transport.base import Secret, SendResult, TransportError
from dunningops.transport.message import OutgoingMessage
from dunningops.transport.pool import WorkerPool
from dunningops.transport.smtp_session import Session, Temporary, Unusable, text

__all__ = ["SmtpTransport"]

log = logging.getLogger(__name__)

Security = Literal["starttls", "ssl", "none"]

_CHECK_SECURITY = "check security and port in settings.sending.transport, and the server's certificate"


@functools.cache
def _local_hostname() -> str:
    # smtplib would call getfqdn() (a name lookup) for every connection: once per process is enough.
    return socket.getfqdn()


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

    ``fatal`` is None until the server turns out unusable as configured
    (login refused, TLS failure, STARTTLS missing, AUTH required but not
    configured); it then holds the ``TransportError`` to stop the run with,
    and every later message comes back ``deferred`` without being tried.
    """

    fatal: TransportError | None

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
        self._unusable: Unusable | None = None
        self.fatal = None
        # Until a login has worked, connections open one at a time: a wrong password then costs one
        # refused login per run, not one per connection of the pool (servers lock such accounts).
        self._first_login = threading.Lock()
        self._logged_in = False
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

    def _new_session(self) -> Session:
        return Session(self)

    def _backoff(self, attempt: int) -> float:
        return min(self.backoff_max, self.backoff_base * 2 ** (attempt - 1))

    def _mark_unusable(self, problem: Unusable) -> None:
        with self._state:
            if self._unusable is None:
                log.error("SMTP server %s unusable, deferring the rest of the batch: %s", self.where, problem.detail)
                self._unusable = problem
                if problem.lasting and self.fatal is None:
                    # What the caller raises to stop the run: the server's answer and what to change, no secret.
                    advice = f"; {problem.advice}" if problem.advice else ""
                    self.fatal = TransportError(f"{problem.detail}{advice}")

    def _count_connection(self, delta: int) -> None:
        with self._state:
            self._live += delta

    def _no_connection_open(self) -> bool:
        with self._state:
            return self._live == 0

    def _connect(self) -> smtplib.SMTP:
        """A connection ready for MAIL FROM: greeted, TLS as configured, logged in."""
        if self._username is None or self._logged_in:
            return self._open_connection()
        with self._first_login:
            if (problem := self._unusable) is not None and problem.lasting:
                # The login another worker just tried was refused: do not try it again.
                raise Unusable(problem.code, problem.detail)
            try:
                smtp = self._open_connection()
            except Unusable as exc:
                if exc.lasting:
                    # Marked before the lock is released, so the worker waiting on it never tries the same login.
                    self._mark_unusable(exc)
                raise
            self._logged_in = True
            return smtp

    def _open_connection(self) -> smtplib.SMTP:
        hostname = self.local_hostname or _local_hostname()
        try:
            if self.security == "ssl":
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(
                    self.host, self.port, local_hostname=hostname, timeout=self.timeout, context=self._ssl_context
                )
            else:
                smtp = smtplib.SMTP(self.host, self.port, local_hostname=hostname, timeout=self.timeout)
        except smtplib.SMTPConnectError as exc:  # a greeting other than 220
            detail = f"the SMTP server {self.where} greeted with: {exc.smtp_code} {text(exc.smtp_error)}"
            if exc.smtp_code >= 500:
                raise Unusable(exc.smtp_code, detail, lasting=False) from None
            raise Temporary(exc.smtp_code, detail) from None
        except ssl.SSLError as exc:
            raise self._tls_problem(exc) from None
        except OSError as exc:  # refused, unreachable, timeout, name not found
            raise Temporary(None, f"cannot connect to the SMTP server {self.where}: {exc}") from None
        stage = "EHLO"
        try:
            smtp.ehlo_or_helo_if_needed()
            if self.security == "starttls":
                stage = "STARTTLS"
                if not smtp.has_extn("starttls"):
                    # Never fall back to clear text: the configuration asked for TLS.
                    raise Unusable(
                        None, f"the SMTP server {self.where} does not offer STARTTLS (security: starttls)", advice=_CHECK_SECURITY
                    )
                smtp.starttls(context=self._ssl_context)
                smtp.ehlo()
            if self._username and self._password:
                stage = "AUTH"
                self._login(smtp, self._username.reveal(), self._password.reveal())
        except OSError as exc:  # every smtplib and ssl error is one
            smtp.close()
            raise self._setup_problem(exc, stage) from None
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

    def _tls_problem(self, exc: ssl.SSLError) -> Unusable:
        return Unusable(None, f"TLS with the SMTP server {self.where} failed: {exc}", advice=_CHECK_SECURITY)

    def _setup_problem(self, exc: OSError, stage: str) -> Exception:
        if isinstance(exc, smtplib.SMTPAuthenticationError):
            # The server's answer only: smtplib does not put the credentials in it.
            detail = f"the SMTP server {self.where} refused the login: {exc.smtp_code} {text(exc.smtp_error)}"
            # 454 4.7.0 is a temporary failure of the server's auth backend, not a wrong password.
            if exc.smtp_code < 500:
                return Temporary(exc.smtp_code, detail)
            return Unusable(exc.smtp_code, detail, advice="check username_env and password_env in settings.sending.transport")
        if isinstance(exc, smtplib.SMTPNotSupportedError):  # no AUTH offered
            return Unusable(
                None,
                f"the SMTP server {self.where} offers no login (AUTH) but credentials are set (security: {self.security})",
                advice="check security, username_env and password_env in settings.sending.transport",
            )
        if isinstance(exc, ssl.SSLError):
            return self._tls_problem(exc)
        if isinstance(exc, smtplib.SMTPResponseException):  # EHLO/HELO/STARTTLS refused
            detail = f"the SMTP server {self.where} refused {stage}: {exc.smtp_code} {text(exc.smtp_error)}"
            return Unusable(exc.smtp_code, detail) if exc.smtp_code >= 500 else Temporary(exc.smtp_code, detail)
        return Temporary(None, f"connection to the SMTP server {self.where} lost at {stage}: {exc}")
