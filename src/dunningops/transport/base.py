"""What every transport promises (``Transport``, ``SendResult``), and ``open_transport`` from settings."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

from dunningops.errors import UnavailableError
from dunningops.transport.message import OutgoingMessage

if TYPE_CHECKING:
    from dunningops.spec import models

__all__ = ["Secret", "SendResult", "Transport", "TransportError", "open_transport"]

Status = Literal["sent", "failed", "deferred", "unknown"]


@dataclass(frozen=True, slots=True)
class SendResult:
    """What became of one message. A message is sent at most once: only ``deferred`` may be sent again.

    * ``sent``: the server took it (perhaps not for every recipient: see
      ``permanent_recipients`` and ``detail``).
    * ``failed``: refused for good (5xx). ``code`` is the server's; ``None``
      means the message could not even be written (a malformed address).
    * ``deferred``: nothing was delivered (4xx after the retries, connection or
      login trouble before the message was handed over): sending it again
      later, with the same Message-ID, is safe.
    * ``unknown``: the message's bytes may have reached the server but no
      clear answer came (timeout, dropped or reset connection, garbage reply,
      from the DATA command on). It may have been delivered: never send it
      again, neither the transport nor its caller.

    ``permanent_recipients`` lists the recipients refused with 5xx at RCPT for
    the address's sake (enhanced status 5.1.x or 5.2.x, or no enhanced status
    at all): those, and only those, are the addresses a bounce proves wrong
    (C9: the caller marks those contacts invalid). A policy refusal (5.7.x
    "relay denied" and the like) says our setup is wrong, not the address: it
    fails that recipient without listing it.
    """

    message_id: str
    status: Status
    code: int | None = None
    detail: str = ""
    permanent_recipients: list[str] = field(default_factory=list)


class Transport(Protocol):
    """Sends messages; one instance per send run, ``close()`` when done.

    ``fatal`` is None until the transport finds it cannot work as configured
    (login refused, TLS failure, STARTTLS missing, a login required but none
    configured, an unwritable maildir): from then on every message of that
    and later ``send()`` calls comes back ``deferred`` without anything being
    sent, and the caller, once it has recorded the results, raises ``fatal``
    to stop the run with its one-line message (it never holds a secret).
    """

    fatal: TransportError | None

    def send(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        """One result per message, in the order given. Never raises for one message's failure."""
        ...

    def close(self) -> None:
        """Release connections and threads; the transport is not used again."""
        ...


class TransportError(UnavailableError):
    """The transport cannot work as configured (its settings, the environment, or what the server says of them)."""


class Secret:
    """A credential read from the environment; its repr and str never show it.

    So that it cannot leak through a log line, an exception message or
    pytest's ``--showlocals``.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__


DEFAULT_PORTS = {"ssl": 465, "starttls": 587, "none": 25}


def _from_env(env: Mapping[str, str], variable: str, what: str) -> Secret:
    # The message names the variable, never a value (the config names variables only).
    value = env.get(variable)
    if not value:
        state = "is empty" if value == "" else "is not set"
        raise TransportError(f"the SMTP {what} is read from the environment variable {variable}, which {state}")
    return Secret(value)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def open_transport(settings: models.Transport, base_dir: Path, env: Mapping[str, str] = os.environ) -> Transport:
    """The transport described by ``settings.sending.transport``.

    Args:
        settings: the ``Transport`` settings model.
        base_dir: what a relative maildir ``path`` is relative to (the repo root).
        env: where ``username_env`` / ``password_env`` are looked up; secrets
            come from there only, never from the config.

    Raises:
        TransportError: a credential variable is missing, or credentials would
            cross the network in clear text.
    """
    if settings.kind == "maildir":
        from dunningops.transport.maildir import MaildirTransport

        path = Path(settings.path)
        return MaildirTransport(path if path.is_absolute() else base_dir / path)

    from dunningops.transport.smtp import SmtpTransport

    assert settings.host  # the model requires a host for smtp
    if bool(settings.username_env) != bool(settings.password_env):
        raise TransportError("settings.sending.transport: set both username_env and password_env, or neither")
    username = password = None
    if settings.username_env and settings.password_env:
        username = _from_env(env, settings.username_env, "username")
        password = _from_env(env, settings.password_env, "password")
        # A password in clear text is only acceptable on this machine's loopback.
        if settings.security == "none" and not _is_loopback(settings.host):
            raise TransportError(
                f"settings.sending.transport: refusing to send the SMTP password to {settings.host} "
                "without encryption (security: none); use starttls or ssl"
            )
    return SmtpTransport(
        settings.host,
        settings.port or DEFAULT_PORTS[settings.security],
        security=settings.security,
        username=username,
        password=password,
        timeout=settings.timeout_seconds,
    )
