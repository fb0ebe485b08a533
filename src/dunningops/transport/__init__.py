"""Sending email: messages as data, their bytes built by hand, and the transports that deliver them.

* ``message``: ``Address``, ``OutgoingMessage``, ``new_message_id``,
  ``recipients`` and ``to_bytes``, the fast MIME writer (no ``EmailMessage``:
  building those is the send cycle's bottleneck, performance.md).
* ``base``: ``Transport`` (the protocol the send cycle is given, with its
  ``fatal`` error), ``SendResult`` (sent, failed, deferred, unknown: a
  message is sent at most once), ``TransportError`` and ``open_transport``
  (settings → transport, secrets from the environment only).
* ``maildir``: ``MaildirTransport``, the embedded default (files in a Maildir).
* ``smtp``: ``SmtpTransport``, a pool of reused ``smtplib`` connections with
  retries; ``smtp_session``: one connection and the staged MAIL / RCPT / DATA
  exchange that tells a safe retry from a maybe-delivered message;
  ``pool``: the worker threads behind it.
* ``bench``: the sending throughput check against Postfix ``smtp-sink``
  (``python -m dunningops.transport.bench``).

Imports nothing of dunningops except ``errors`` and ``spec.models``, so the
send cycle, the CLI and the benchmarks can all use it.
"""

from typing import Any

from dunningops.transport.base import SendResult, Transport, TransportError, open_transport
from dunningops.transport.message import Address, OutgoingMessage, new_message_id, recipients, to_bytes

_LAZY = {"MaildirTransport": "dunningops.transport.maildir", "SmtpTransport": "dunningops.transport.smtp"}


def __getattr__(name: str) -> Any:
    # The transports load on first use: a command that never sends does not pay for smtplib and ssl.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Address",
    "MaildirTransport",
    "OutgoingMessage",
    "SendResult",
    "SmtpTransport",
    "Transport",
    "TransportError",
    "new_message_id",
    "open_transport",
    "recipients",
    "to_bytes",
]
