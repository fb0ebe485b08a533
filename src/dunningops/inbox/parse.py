"""One incoming email, raw bytes → ``ParsedMail``: who, what about, the best text, what the sender wrote, its kind.

What cannot be parsed raises ``UnparseableMessageError`` (the message goes to quarantine): empty
input, more than ``MAX_MESSAGE_BYTES``, no header at all, or no readable From, Message-ID and Date.
Everything else is repaired and parses, the repair listed in ``defects``: a wrong or unknown
charset, 8-bit bytes in a header, a missing MIME boundary, bad base64.

The structure is parsed by ``email``'s feedparser with the ``compat32`` policy: ``policy.default``
parses Content-Type through its header registry four times per message (~290 µs for a short
reply, against ~40 µs), and the header objects it gives are not used: ``headers`` decodes the
fields itself. Attachments are measured, never decoded; the text is bounded (``MAX_TEXT_CHARS``);
the quoted history is looked for only in replies.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.feedparser import FeedParser
from email.message import Message
from email.policy import compat32
from email.utils import parsedate_to_datetime
from typing import Any

from dunningops.errors import InvalidInputError
from dunningops.inbox.bounces import REPORT_TYPES
from dunningops.inbox.classify import Classification, classify
from dunningops.inbox.headers import (
    addresses,
    decode_bytes,
    decode_header_text,
    first,
    has_8bit,
    header_map,
    message_ids,
    normalise_message_id,
    payload_of,
)
from dunningops.inbox.reply import reply_text

__all__ = [
    "MAX_MESSAGE_BYTES",
    "MAX_TEXT_CHARS",
    "Attachment",
    "ParsedMail",
    "UnparseableMessageError",
    "normalise_message_id",
    "parse_message",
    "to_json",
]

MAX_MESSAGE_BYTES = 50 * 1024 * 1024  # larger is refused before parsing: an inbox's real mail is far smaller
MAX_TEXT_CHARS = 200_000  # characters of text kept: a long reply is a few thousand
MAX_HTML_CHARS = 1_000_000  # characters of HTML converted when there is no plain text
MAX_PARTS = 1_000  # MIME parts looked at; a message of more is hostile
MAX_DEPTH = 30  # multiparts nested in one another

_FEED_CHUNK = 1 << 16


class UnparseableMessageError(InvalidInputError):
    """The bytes are not an email that can be read; the message says why, in one line."""


@dataclass(frozen=True)
class Attachment:
    filename: str | None
    content_type: str
    size: int  # bytes once decoded (base64: computed from its length, not decoded)


@dataclass(frozen=True)
class ParsedMail:
    message_id: str | None  # "<x@y>", None when absent
    in_reply_to: tuple[str, ...]
    references: tuple[str, ...]  # in header order, oldest first
    from_address: str | None  # lower-cased addr-spec
    from_name: str | None
    to: tuple[str, ...]
    cc: tuple[str, ...]
    delivered_to: tuple[str, ...]  # Delivered-To, X-Original-To, Envelope-To
    return_path: str | None  # "" for the null sender <>, None without the header
    subject: str
    date: datetime | None  # UTC
    text: str  # text/plain preferred, else the HTML as text; at most MAX_TEXT_CHARS
    reply_text: str  # what the sender wrote, quoted history removed (replies only; else the text)
    attachments: tuple[Attachment, ...]
    defects: tuple[str, ...]  # what had to be repaired to read it
    size: int  # bytes of the raw message
    classification: Classification

    @property
    def referenced_ids(self) -> tuple[str, ...]:
        """The Message-IDs this message points to, most telling first: In-Reply-To, References newest
        first, then the original of a bounce or a complaint; each once."""
        ids = [*self.in_reply_to, *reversed(self.references)]
        ids += [b.original_message_id for b in self.classification.bounces if b.original_message_id]
        complaint = self.classification.complaint
        if complaint is not None and complaint.original_message_id:
            ids.append(complaint.original_message_id)
        return tuple(dict.fromkeys(ids))


def parse_message(raw: bytes) -> ParsedMail:
    """Parse and classify one message; raises UnparseableMessageError only."""
    if not raw or raw.isspace():
        raise UnparseableMessageError("empty message")
    if len(raw) > MAX_MESSAGE_BYTES:
        raise UnparseableMessageError(
            f"message of {len(raw):,} bytes is larger than the limit of {MAX_MESSAGE_BYTES // (1024 * 1024)} MiB"
        )
    try:
        return _parse(raw)
    except (UnparseableMessageError, MemoryError):
        raise
    except Exception as error:
        # The email package has raised on hostile input before (IndexError, ValueError deep in its
        # parsers): that one message goes to quarantine instead of stopping the import of the others.
        reason = " ".join(str(error).split())[:200]
        raise UnparseableMessageError(f"the message could not be read ({type(error).__name__}: {reason})") from error


def _parse(raw: bytes) -> ParsedMail:
    msg = _parse_bytes(raw)
    fields = header_map(msg)
    if not fields:
        raise UnparseableMessageError("no header: the first line is not a 'Name: value' header field, this is not an email")
    defects: dict[str, None] = {}  # ordered, each once

    sender = addresses(fields.get("from", [])[:1])
    from_name, from_address = (sender[0][0] or None, sender[0][1]) if sender else (None, None)
    message_id = normalise_message_id(first(fields, "message-id") or "")
    date = _date(first(fields, "date"))
    if from_address is None and message_id is None and date is None:
        raise UnparseableMessageError("no readable From, Message-ID or Date header: this is not an email")
    if "from" in fields and from_address is None:
        defects["unreadable From header"] = None
    if "date" in fields and date is None:
        defects["unreadable Date header"] = None
    for name, values in fields.items():
        if any(has_8bit(v) for v in values):
            title = "-".join(word.capitalize() for word in name.split("-"))
            defects[f"8-bit bytes in the {title} header (read as UTF-8)"] = None

    return_path = None
    if "return-path" in fields:
        value = fields["return-path"][0].strip()
        if value in ("<>", ""):
            return_path = ""  # the null sender: what every bounce is sent from
        else:
            found = addresses([value])
            return_path = found[0][1] if found else ("" if "<" in value else value.lower())
    to = _addrs(fields, "to")
    cc = _addrs(fields, "cc")
    delivered_to = _addrs(fields, "delivered-to", "x-original-to", "envelope-to")
    subject = decode_header_text(first(fields, "subject") or "")

    walk = _Walk()
    walk.visit(msg, 0, "body")
    text = ""
    if walk.plain is not None:
        text = _part_text(walk.plain, MAX_TEXT_CHARS, defects)
    if not text.strip() and walk.html is not None:
        from dunningops.render.html_text import html_to_text  # only mail without plain text needs it

        text = html_to_text(_part_text(walk.html, MAX_HTML_CHARS, defects))[:MAX_TEXT_CHARS]
    for part in walk.parts:  # after decoding: bad base64 is found while decoding
        for defect in part.defects:
            where = "" if part is msg else f"{part.get_content_type()} part: "
            defects[where + _DEFECTS.get(type(defect).__name__, type(defect).__name__)] = None
    defects.update(dict.fromkeys(walk.notes))

    classification = classify(
        msg,
        fields=fields,
        subject=subject,
        from_address=from_address,
        return_path=return_path,
        ours=(*to, *cc, *delivered_to),
        text=text,
        parts=walk.report_parts,
    )
    return ParsedMail(
        message_id=message_id,
        in_reply_to=message_ids(first(fields, "in-reply-to")),
        references=message_ids(" ".join(fields.get("references", []))),
        from_address=from_address,
        from_name=from_name,
        to=to,
        cc=cc,
        delivered_to=delivered_to,
        return_path=return_path,
        subject=subject,
        date=date,
        text=text,
        reply_text=reply_text(text) if classification.kind == "reply" else text,
        attachments=tuple(walk.attachments),
        defects=tuple(defects),
        size=len(raw),
        classification=classification,
    )


class _Part(Message):
    """compat32's Message, its content type worked out once: the feedparser asks for it a dozen times a part.

    Parsing only appends header fields, and nothing changes them after: the number of fields and the
    default type (set for the parts of a multipart/digest) are enough to know the type is still right.
    """

    _type_key: tuple[int, str] | None = None
    _type = "text/plain"

    def get_content_type(self) -> str:
        key = (len(self._headers), self._default_type)  # type: ignore[attr-defined]  # Message's own state, not typed
        if key != self._type_key:
            self._type = super().get_content_type()
            self._type_key = key
        return self._type


def _parse_bytes(raw: bytes) -> Message:
    """What ``BytesParser(policy=compat32).parsebytes`` does, without its ``StringIO``: that holds the
    whole message at 4 bytes a character, 110 MB more at the peak for a 28 MB message."""
    text = raw.decode("ascii", "surrogateescape")  # as BytesParser: 8-bit bytes kept as surrogates
    parser = FeedParser(_Part, policy=compat32)
    for start in range(0, len(text), _FEED_CHUNK):
        parser.feed(text[start : start + _FEED_CHUNK])
    del text
    return parser.close()


def _addrs(fields: dict[str, list[str]], *names: str) -> tuple[str, ...]:
    values = [v for name in names for v in fields.get(name, [])]
    return tuple(dict.fromkeys(addr for _, addr in addresses(values)))


def _date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(decode_header_text(value))
        if parsed.tzinfo is None:  # "-0000": the time is UTC, its zone unknown
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.astimezone(UTC)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


# --- the MIME tree ----------------------------------------------------------------------------

_DEFECTS = {
    "StartBoundaryNotFoundDefect": "its MIME boundary is never found (the body is read as one text)",
    "CloseBoundaryNotFoundDefect": "its closing MIME boundary is missing",
    "NoBoundaryInMultipartDefect": "a multipart without a boundary (the body is read as one text)",
    "FirstHeaderLineIsContinuationDefect": "the first header line is a continuation line",
    "MisplacedEnvelopeHeaderDefect": "a 'From ' envelope line among the headers",
    "MissingHeaderBodySeparatorDefect": "a line that is not a header field ends the headers (no blank line)",
    "MultipartInvariantViolationDefect": "a multipart part without sub-parts",
    "InvalidMultipartContentTransferEncodingDefect": "a multipart with an invalid Content-Transfer-Encoding",
    "InvalidBase64PaddingDefect": "bad base64 padding",
    "InvalidBase64CharactersDefect": "invalid characters in base64",
    "InvalidBase64LengthDefect": "base64 of an impossible length",
    "UndecodableBytesDefect": "bytes that cannot be decoded",
    "NonPrintableDefect": "non-printable characters in a header",
    "InvalidHeaderDefect": "an invalid header field",
    "HeaderMissingRequiredValue": "a header field without its required value",
    "ObsoleteHeaderDefect": "an obsolete header syntax",
}
_BODY_TYPES = frozenset({"text/plain", "text/html"})
_RETURNED = frozenset({"message/rfc822", "message/global"})


@dataclass
class _Walk:
    """What one pass over the MIME tree finds: the body candidates, attachments, report parts."""

    plain: Message | None = None
    html: Message | None = None
    attachments: list[Attachment] = field(default_factory=list)
    report_parts: list[Message] = field(default_factory=list)
    parts: list[Message] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def visit(self, part: Message, depth: int, role: str) -> None:
        """``role``: "body" (may hold the text), "related" (inside multipart/related: inline images are
        the HTML's), "report" (a report's machine-readable parts, after its first)."""
        if len(self.parts) >= MAX_PARTS:
            if len(self.parts) == MAX_PARTS:
                self.notes.append(f"more than {MAX_PARTS} MIME parts: the rest is ignored")
                self.parts.append(part)
            return
        self.parts.append(part)
        ctype = part.get_content_type()
        if ctype.startswith("multipart/"):
            if not part.is_multipart():  # its boundary was never found: its text is all there is
                self._body(part, "text/plain")
                return
            payload = payload_of(part)
            if depth >= MAX_DEPTH:
                self.notes.append(f"MIME parts nested more than {MAX_DEPTH} deep: the deeper ones are ignored")
                return
            for i, child in enumerate(payload):
                if isinstance(child, Message):
                    child_role = "report" if ctype == "multipart/report" and i > 0 else role
                    self.visit(child, depth + 1, "related" if ctype == "multipart/related" and i > 0 else child_role)
            return
        if ctype in REPORT_TYPES:
            self.report_parts.append(part)
            if ctype in _RETURNED and role != "report":  # a message forwarded as an attachment
                self.attachments.append(Attachment(_filename(part), ctype, _size(part)))
            return
        if role == "report":
            return
        disposition = str(part.get("content-disposition", "")).split(";", 1)[0].strip().lower()
        filename = _filename(part)
        if ctype in _BODY_TYPES and disposition != "attachment" and filename is None:
            self._body(part, ctype)
            return
        if role == "related" and disposition != "attachment" and "content-id" in part:
            return  # an image the HTML shows (a logo in a signature), not a file sent
        self.attachments.append(Attachment(filename, ctype, _size(part)))

    def _body(self, part: Message, ctype: str) -> None:
        if ctype == "text/plain" and self.plain is None:
            self.plain = part
        elif ctype == "text/html" and self.html is None:
            self.html = part


def _filename(part: Message) -> str | None:
    if "content-disposition" not in part and "name" not in str(part.get("content-type", "")).lower():
        return None  # most parts: no need to parse their parameters
    name = part.get_filename()
    return decode_header_text(str(name)) if name else None


def _size(part: Message) -> int:
    """Decoded size in bytes, without decoding base64 (a 20 MB attachment is measured, not copied)."""
    payload = payload_of(part)
    if isinstance(payload, list):
        return sum(_size(p) for p in payload if isinstance(p, Message))
    if not isinstance(payload, str):
        return 0
    cte = str(part.get("content-transfer-encoding", "")).strip().lower()
    if cte == "base64":
        chars = len(payload) - payload.count("\n") - payload.count("\r") - payload.count(" ") - payload.count("\t")
        tail = payload[-8:].rstrip()
        return max(0, chars * 3 // 4 - (len(tail) - len(tail.rstrip("="))))
    if cte == "quoted-printable" or not payload.isascii():
        # Decoded to count: quoted-printable, and 8-bit bytes, which email re-reads in the part's charset.
        data = part.get_payload(decode=True)
        return len(data) if isinstance(data, bytes) else 0
    return len(payload)  # 7-bit: one character per byte


def _part_text(part: Message, limit: int, defects: dict[str, None]) -> str:
    data = part.get_payload(decode=True)
    if not isinstance(data, bytes):
        return ""
    cut = len(data) > 4 * limit  # no character takes more than 4 bytes
    charset = part.get_content_charset()
    text, used = decode_bytes(data[: 4 * limit] if cut else data, charset, final=not cut)
    if used:
        declared = f"declared charset {charset}" if charset else "no charset declared"
        defects[f"{part.get_content_type()} part: {declared}, its bytes read as {used}"] = None
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    return text[:limit]


# --- for `inbox explain --format json` ---------------------------------------------------------


def to_json(parsed: ParsedMail) -> dict[str, Any]:
    """The parsed message as JSON-ready data: what the import cycle saw, and why it classified it so."""
    c = parsed.classification
    bounces = [
        {
            "recipient": b.recipient,
            "status": b.status,
            "action": b.action,
            "permanent": b.permanent,
            "category": b.category,
            "diagnostic": b.diagnostic,
            "original_message_id": b.original_message_id,
            "reporter": b.reporter,
        }
        for b in c.bounces
    ]
    complaint = None
    if c.complaint is not None:
        complaint = {
            "feedback_type": c.complaint.feedback_type,
            "original_message_id": c.complaint.original_message_id,
            "recipient": c.complaint.recipient,
        }
    return {
        "message_id": parsed.message_id,
        "from": parsed.from_address,
        "subject": parsed.subject,
        "date": parsed.date.isoformat() if parsed.date else None,
        "kind": c.kind,
        "evidence": c.evidence,
        "bounce": bounces[0] if bounces else None,
        "bounces": bounces,
        "complaint": complaint,
        "reply_text": parsed.reply_text,
        "attachments": [{"filename": a.filename, "content_type": a.content_type, "size": a.size} for a in parsed.attachments],
        "defects": list(parsed.defects),
    }
