"""An outgoing email as plain data, and its wire form built by hand.

``to_bytes`` writes the RFC 5322 / MIME bytes directly instead of building an
``email.message.EmailMessage``: building those objects is what limits the
send cycle's throughput (performance.md), while the bytes of a reminder have
one fixed shape: a few headers, then one text/plain part or a
multipart/alternative of text/plain and text/html, UTF-8, quoted-printable.
The output parses back with ``email.message_from_bytes(policy=default)``
into the original strings; tests/test_transport.py holds it to that.
"""

from __future__ import annotations

import binascii
import functools
import os
import re
import secrets
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import format_datetime

__all__ = ["Address", "OutgoingMessage", "new_message_id", "recipients", "to_bytes"]


@dataclass(frozen=True, slots=True)
class Address:
    """A mailbox: ``email`` and an optional display ``name``."""

    email: str
    name: str | None = None


@dataclass(frozen=True, slots=True)
class OutgoingMessage:
    """One email to send. ``bcc`` goes into the envelope only, never into the headers.

    ``return_path`` is the envelope sender (bounces go there); it defaults to
    ``from_.email``. ``date`` defaults to the time the bytes are built; callers
    with an injected clock pass it so that rendered emails are reproducible.
    """

    message_id: str
    from_: Address
    to: list[Address]
    subject: str
    text: str
    html: str | None = None
    cc: list[Address] = field(default_factory=list)
    bcc: list[Address] = field(default_factory=list)
    reply_to: Address | None = None
    headers: dict[str, str] = field(default_factory=dict)
    return_path: str | None = None
    date: datetime | None = None


# --- identifiers and envelope ---------------------------------------------------------

_DOMAIN = re.compile(r"^[A-Za-z0-9.-]+$")
_MESSAGE_ID = re.compile(r"^<[^<>\s@]+@[^<>\s@]+>$")
_TAG = re.compile(r"^[0-9a-f]{8}$")
_OURS = re.compile(r"^<[0-9a-f]{32}\.([0-9a-f]{8})@[^<>\s@]+>$")


class _RandomHex:
    """Random UUIDs' hex, their random bits read from ``os.urandom`` a block at a time.

    ``os.urandom`` lets go of the GIL around its system call: called once a message, the rendering
    thread then waited for the GIL back while the sending threads held it, 0.17 ms a message (a
    quarter of the send benchmark's rendering). A block of 256 costs one call; each id is still 122
    bits of the operating system's randomness, drawn once (a child process after a fork draws anew).
    """

    BLOCK = 256

    def __init__(self) -> None:
        self._forget()
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        # A new lock too: another thread may have held this one at the fork.
        self._lock = threading.Lock()
        self._ids: list[str] = []

    def __call__(self) -> str:
        with self._lock:
            if not self._ids:
                data = os.urandom(16 * self.BLOCK)
                self._ids = [uuid.UUID(bytes=data[i : i + 16], version=4).hex for i in range(0, len(data), 16)]
            return self._ids.pop()


_random_hex = _RandomHex()


def new_message_id(domain: str, organisation: str | None = None) -> str:
    """A new RFC 5322 Message-ID, ``<hex.organisation@domain>`` (``<hex@domain>`` without one).

    A random UUID is enough: 122 random bits never collide in practice, and it
    needs no hostname or counter shared between daemons. The organisation's tag
    lets an import tell a reply to another organisation's mail from a reply to
    ours when both read one mailbox (inbox/match.py, R7).
    """
    if not _DOMAIN.match(domain):
        raise ValueError(f"{domain!r} is not a domain name for a Message-ID")
    if organisation is None:
        return f"<{_random_hex()}@{domain}>"
    if not _TAG.match(organisation):
        raise ValueError(f"{organisation!r} is not an organisation tag for a Message-ID")
    return f"<{_random_hex()}.{organisation}@{domain}>"


def organisation_of(message_id: str) -> str | None:
    """The organisation tag of a Message-ID this program created, None for any other Message-ID."""
    match = _OURS.match(message_id)
    return match.group(1) if match else None


def recipients(msg: OutgoingMessage) -> list[str]:
    """The envelope recipients: To, then Cc, then Bcc, each address once (first spelling kept)."""
    seen: set[str] = set()
    out: list[str] = []
    for address in (*msg.to, *msg.cc, *msg.bcc):
        key = address.email.lower()
        if key not in seen:
            seen.add(key)
            out.append(address.email)
    return out


def envelope_sender(msg: OutgoingMessage) -> str:
    """MAIL FROM: ``return_path`` when set, else the From address."""
    return msg.return_path if msg.return_path is not None else msg.from_.email


# --- header encoding ----------------------------------------------------------------

# A plain ASCII address; non-ASCII local parts would need SMTPUTF8, which we
# do not speak (a reminder to such an address fails alone, not its batch).
_EMAIL = re.compile(r"^[!#-\'*+\-/-9=?A-Z^-~.]+@[A-Za-z0-9.\-\[\]:]+$")
# RFC 5322 atext plus space: a display name made of these needs no quoting.
_ATOM_PHRASE = re.compile(r"^[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~ ]*$")
_HEADER_NAME = re.compile(r"^[!-9;-~]+$")
# Control characters (CR and LF above all: header injection) become spaces.
_WHITESPACE_CONTROLS = {**{code: " " for code in range(32)}, 127: " "}
# 39 UTF-8 bytes → 52 base64 characters → a 64-character encoded word, so that
# "Subject: " plus one word stays within the 78-character line (RFC 5322 2.1.1).
_WORD_BYTES = 39
# Headers built from the message's fields; ``headers`` may not set them again.
_RESERVED = frozenset(
    name.lower()
    for name in (
        "Date",
        "From",
        "To",
        "Cc",
        "Bcc",
        "Reply-To",
        "Subject",
        "Message-ID",
        "MIME-Version",
        "Content-Type",
        "Content-Transfer-Encoding",
        "Return-Path",
        "Sender",
    )
)


def _one_line(value: str) -> str:
    """Line breaks, tabs and other controls become spaces: a header value is one line."""
    # isprintable() is a fast C check that is true for almost every value.
    return value if value.isprintable() else value.translate(_WHITESPACE_CONTROLS)


def _encoded_words(value: str) -> str:
    """RFC 2047 ``=?utf-8?b?...?=`` words, folded, each within 75 characters and whole characters."""
    raw = value.encode("utf-8")
    words = []
    start, end_of_text = 0, len(raw)
    while start < end_of_text:
        end = min(start + _WORD_BYTES, end_of_text)
        # Never split a UTF-8 sequence: back off over continuation bytes (0b10xxxxxx).
        while end < end_of_text and (raw[end] & 0xC0) == 0x80:
            end -= 1
        words.append("=?utf-8?b?" + binascii.b2a_base64(raw[start:end], newline=False).decode("ascii") + "?=")
        start = end
    # Whitespace between adjacent encoded words is not displayed (RFC 2047 6.2).
    return "\r\n ".join(words)


def _fold(value: str, room: int) -> str:
    """Fold an ASCII unstructured value at spaces so lines stay near 78 characters."""
    if len(value) <= room:
        return value
    lines, line = [], ""
    for word in value.split(" "):
        if line and len(line) + 1 + len(word) > room:
            lines.append(line)
            line, room = word, 77
        else:
            line = f"{line} {word}" if line else word
    lines.append(line)
    return "\r\n ".join(lines)


def _unstructured(name: str, value: str) -> str:
    """A ``Name: value`` header line for free text (Subject, extra headers)."""
    value = _one_line(value)
    # "=?" in plain text could be misread as an encoded word: encode it too.
    if value.isascii() and "=?" not in value:
        return f"{name}: {_fold(value, 76 - len(name))}"
    return f"{name}: {_encoded_words(value)}"


# Display names are cut at this length: a run of non-ASCII words becomes one
# encoded word (see _phrase), and the header line must stay under 998 characters.
_NAME_LIMIT = 200


def _phrase(name: str) -> str:
    """A non-ASCII display name as atoms and encoded words, never two encoded words side by side.

    RFC 2047 drops the space between two adjacent encoded words, while Python's
    address parser keeps it: either way a name split into several words would
    read wrong somewhere. So plain words stay plain, and each run of words that
    need encoding becomes ONE encoded word, spaces included; only a run longer
    than 45 bytes exceeds the 75-character limit, which decoders accept.
    """
    tokens: list[str] = []
    run: list[str] = []
    for word in name[:_NAME_LIMIT].split():
        if word.isascii() and _ATOM_PHRASE.match(word) and "=?" not in word:
            if run:
                tokens.append(_encoded_word(" ".join(run)))
                run = []
            tokens.append(word)
        else:
            run.append(word)
    if run:
        tokens.append(_encoded_word(" ".join(run)))
    return " ".join(tokens)


def _encoded_word(value: str) -> str:
    return "=?utf-8?b?" + binascii.b2a_base64(value.encode("utf-8"), newline=False).decode("ascii") + "?="


@functools.lru_cache(maxsize=4096)
def _mailbox(email: str, name: str | None) -> str:
    """``Name <email>`` as it goes into a header; cached, since senders repeat on every message.

    Hand-written rather than ``email.utils.formataddr(..., charset="utf-8")``
    (~230k names/s against ~420k uncached and ~9M from the cache, and one
    encoded word for the whole name) or ``email.header.Header(name).encode()``
    (~30k/s, and it splits names mid-word, which Python's own parser then
    reads back with a stray space).
    """
    if not email.isascii():
        raise ValueError(f"{email!r}: non-ASCII addresses need SMTPUTF8, which this transport does not use")
    if not _EMAIL.match(email):
        raise ValueError(f"{email!r} is not an email address")
    if not name:
        return email
    name = _one_line(name).strip()
    if not name:
        return email
    if not name.isascii():
        return f"{_phrase(name)} <{email}>"
    if _ATOM_PHRASE.match(name) and "=?" not in name:
        return f"{name} <{email}>"
    escaped = name.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}" <{email}>'


def _address_list(name: str, addresses: Sequence[Address]) -> str:
    """``To: a, b`` with a fold before an address that would pass 78 characters."""
    line_length = len(name) + 2
    parts = []
    for i, address in enumerate(addresses):
        text = _mailbox(address.email, address.name)
        if i:
            if line_length + 2 + len(text) > 78:
                parts.append(",\r\n ")
                line_length = 1
            else:
                parts.append(", ")
                line_length += 2
        parts.append(text)
        line_length += len(text)
    return f"{name}: {''.join(parts)}"


# Date headers change once a second: format each second once.
_date_cache: tuple[int, str] = (0, "")


def _date(value: datetime | None) -> str:
    global _date_cache
    if value is not None:
        if value.tzinfo is None:
            raise ValueError("a message's date needs a time zone")
        return format_datetime(value)
    second = int(time.time())
    cached_second, text = _date_cache
    if cached_second != second:
        text = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(second))
        _date_cache = (second, text)
    return text


# --- bodies -------------------------------------------------------------------------

# Quoted-printable output never contains "=_" (an "=" is always followed by two
# hex digits or a line break), so a boundary starting with "=_" cannot occur in
# a part and needs no scan of the bodies (RFC 2045 6.7 / 2046 5.1.1).
_BOUNDARY = f"=_dunningops_{secrets.token_hex(8)}"
_PART_HEADERS = {
    "plain": b'Content-Type: text/plain; charset="utf-8"\r\nContent-Transfer-Encoding: quoted-printable\r\n',
    "html": b'Content-Type: text/html; charset="utf-8"\r\nContent-Transfer-Encoding: quoted-printable\r\n',
}


def _quoted_printable(text: str) -> bytes:
    """UTF-8 quoted-printable with CRLF lines of at most 76 characters.

    Quoted-printable rather than base64: the French text of a reminder stays
    readable on the wire and in the maildir, and base64 text bodies score as
    "disguised" with some spam filters. ``binascii.b2a_qp`` is C and keeps the
    input's CRLF line breaks.
    """
    # Line breaks are made CRLF in the UTF-8 bytes: the same bytes (no multi-byte sequence holds a
    # CR or an LF) at a fraction of the cost of str.replace on the two-byte strings that "€" makes.
    data = text.encode("utf-8")
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    data = data.replace(b"\n", b"\r\n")
    if data.endswith(b"\r\n"):
        return binascii.b2a_qp(data, istext=True)
    # b2a_qp writes soft breaks in the style of the first line ending it meets, and
    # bare LFs when it meets none: give it a CRLF to find, then take it away.
    return binascii.b2a_qp(data + b"\r\n", istext=True)[:-2]


# --- the message --------------------------------------------------------------------


def to_bytes(msg: OutgoingMessage) -> bytes:
    """The message as RFC 5322 bytes with CRLF line endings, ready for ``sendmail``.

    Raises ``ValueError`` for what cannot be written: a malformed address or
    Message-ID, a non-ASCII address, an extra header that is invalid or that
    the message's fields already set.
    """
    if not _MESSAGE_ID.match(msg.message_id):
        raise ValueError(f"{msg.message_id!r} is not a Message-ID of the form <id@domain>")
    if not msg.to and not msg.cc and not msg.bcc:
        raise ValueError("a message needs at least one recipient")
    if msg.return_path and not _EMAIL.match(msg.return_path):
        # "" is the null sender (RFC 5321 4.5.5); anything else must be an address.
        raise ValueError(f"{msg.return_path!r} is not an address for the envelope sender")
    lines = [f"Date: {_date(msg.date)}", f"From: {_mailbox(msg.from_.email, msg.from_.name)}"]
    if msg.to:
        lines.append(_address_list("To", msg.to))
    else:
        # RFC 5322 3.6.3: Bcc-only messages carry an empty group so that To is not absent.
        lines.append("To: undisclosed-recipients:;")
    if msg.cc:
        lines.append(_address_list("Cc", msg.cc))
    if msg.reply_to is not None:
        lines.append(f"Reply-To: {_mailbox(msg.reply_to.email, msg.reply_to.name)}")
    lines.append(_unstructured("Subject", msg.subject))
    lines.append(f"Message-ID: {msg.message_id}")
    lines.append("MIME-Version: 1.0")
    for name, value in msg.headers.items():
        if not _HEADER_NAME.match(name):
            raise ValueError(f"{name!r} is not a header name")
        if name.lower() in _RESERVED:
            raise ValueError(f"header {name!r} is set from the message's fields, not from `headers`")
        lines.append(_unstructured(name, value))
    text = _quoted_printable(msg.text)
    if msg.html is None:
        head = "\r\n".join(lines).encode("ascii")
        return b"".join((head, b"\r\n", _PART_HEADERS["plain"], b"\r\n", text))
    lines.append(f'Content-Type: multipart/alternative; boundary="{_BOUNDARY}"')
    head = "\r\n".join(lines).encode("ascii")
    delimiter = f"\r\n--{_BOUNDARY}\r\n".encode("ascii")
    return b"".join(
        (
            head,
            b"\r\n\r\n",
            # The first delimiter needs no preceding CRLF when the preamble is empty.
            delimiter[2:],
            _PART_HEADERS["plain"],
            b"\r\n",
            text,
            delimiter,
            _PART_HEADERS["html"],
            b"\r\n",
            _quoted_printable(msg.html),
            f"\r\n--{_BOUNDARY}--\r\n".encode("ascii"),
        )
    )
