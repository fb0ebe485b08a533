"""Delivery failures: RFC 3464 delivery status notifications, and the text-only shapes that MTAs still send.

What a bounce says about the address decides what the import cycle does to the contact (C9): only a
hard failure of the mailbox condemns it (5.1.x, or no precise code but "no such user" words). A full
mailbox is soft; a refusal for policy (5.7.x: spam, SPF, DKIM, DMARC) is about OUR sending, not the
contact; a delay (``Action: delayed``, 4.x.x) is temporary. Those meanings are statuses.py's; this
module finds the failures in a report's parts and in an NDR's text.

The human-readable part of a text bounce is looked at in its first ``_HEAD_CHARS`` characters, cut
where the copy of the returned message begins, so that addresses and words of the original never
pass for the failure's.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from email.message import Message

from dunningops.inbox.headers import (
    addresses,
    decode_bytes,
    decode_header_text,
    first,
    header_map,
    normalise_message_id,
    one_line,
    payload_of,
)
from dunningops.inbox.statuses import (
    BASIC_CODE,
    FULL,
    INVALID,
    POLICY,
    STATUS,
    Bounce,
    make_bounce,
    status_in_text,
)

_HEAD_CHARS = 8_000  # an NDR's human part is a few lines; the returned copy follows and may be huge
_MAX_RECIPIENTS = 100  # per bounce: a DSN of thousands of recipient blocks is an attack, not our mail

REPORT_TYPES = frozenset(
    {
        "message/delivery-status",
        "message/global-delivery-status",
        "message/feedback-report",
        "message/rfc822",
        "message/global",
        "text/rfc822-headers",
        "message/rfc822-headers",
        "message/global-headers",
    }
)
DSN_TYPES = frozenset({"message/delivery-status", "message/global-delivery-status"})
_RETURNED_MESSAGE = frozenset({"message/rfc822", "message/global"})
_RETURNED_HEADERS = frozenset({"text/rfc822-headers", "message/rfc822-headers", "message/global-headers"})
_SUCCESS_ACTIONS = frozenset({"delivered", "relayed", "expanded"})


# --- the parts of a report ------------------------------------------------------------------


def report_parts(msg: Message, limit: int = 1_000) -> list[Message]:
    """The report parts of ``msg`` (delivery status, feedback report, returned message or headers),
    not looking inside returned messages: a bounce forwarded as an attachment is not ours."""
    found: list[Message] = []
    stack = [msg]
    seen = 0
    while stack and seen < limit:
        part = stack.pop()
        seen += 1
        ctype = part.get_content_type()
        if ctype in REPORT_TYPES:
            found.append(part)
        elif ctype.startswith("multipart/"):
            payload = payload_of(part)
            if isinstance(payload, list):
                stack.extend(p for p in reversed(payload) if isinstance(p, Message))
    return found


_FIELD_LINE = re.compile(r"^([!-9;-~]+)[ \t]*:[ \t]*(.*(?:\r?\n[ \t]+.*)*)", re.M)


def _text_blocks(text: str) -> list[dict[str, list[str]]]:
    """``Name: value`` blocks separated by blank lines (a delivery-status body the parser left as text)."""
    blocks: list[dict[str, list[str]]] = []
    for chunk in re.split(r"\r?\n[ \t]*\r?\n", text):
        fields: dict[str, list[str]] = {}
        for name, value in _FIELD_LINE.findall(chunk):
            fields.setdefault(name.lower(), []).append(re.sub(r"\r?\n", "", value).strip())
        if fields:
            blocks.append(fields)
    return blocks


def _part_text(part: Message) -> str:
    data = part.get_payload(decode=True)
    if not isinstance(data, bytes):
        return ""
    return decode_bytes(data[:200_000], part.get_content_charset(), final=False)[0]


def status_blocks(part: Message) -> list[dict[str, list[str]]]:
    """The field blocks of a delivery-status (or feedback-report) part: per-message first, then per-recipient."""
    payload = payload_of(part)
    if isinstance(payload, list):
        blocks = [header_map(block) for block in payload if isinstance(block, Message)]
        # message/global-delivery-status is parsed as one message: its body holds the other blocks.
        last = payload[-1] if payload else None
        if isinstance(last, Message) and not last.is_multipart():
            rest = _part_text(last)  # from the bytes: RFC 6533 fields are UTF-8
            if ":" in rest:
                blocks.extend(_text_blocks(rest))
        return blocks
    return _text_blocks(_part_text(part))


def _strip_type(value: str | None) -> str | None:
    """``rfc822; x@y`` → ``x@y`` (lower-cased, brackets dropped)."""
    if not value:
        return None
    value = decode_header_text(value)  # RFC 6533: UTF-8 addresses
    value = value.split(";", 1)[1] if ";" in value else value
    value = value.strip().strip("<>").strip().lower()
    return value or None


_MESSAGE_ID_LINE = re.compile(r"^[ \t>]*Message-ID[ \t]*:[ \t]*(.*(?:\r?\n[ \t]+.*)?)", re.I | re.M)


def returned_message_id(parts: Sequence[Message], text: str = "") -> str | None:
    """The Message-ID of the message a report returns: from its message/rfc822 or headers part,
    else quoted in the report's text."""
    for part in parts:
        ctype = part.get_content_type()
        if ctype in _RETURNED_MESSAGE:
            payload = payload_of(part)
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                found = first(header_map(payload[0]), "message-id")
                if found and (normalised := normalise_message_id(found)):
                    return normalised
        elif ctype in _RETURNED_HEADERS:
            payload = payload_of(part)
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                found = first(header_map(payload[0]), "message-id")
            else:
                match = _MESSAGE_ID_LINE.search(_part_text(part))
                found = match.group(1) if match else None
            if found and (normalised := normalise_message_id(found)):
                return normalised
    match = _MESSAGE_ID_LINE.search(text)
    return normalise_message_id(match.group(1)) if match else None


def returned_recipients(parts: Sequence[Message]) -> list[str]:
    """The To and Cc addresses of the returned message, when the report carries it."""
    for part in parts:
        if part.get_content_type() in _RETURNED_MESSAGE | _RETURNED_HEADERS:
            payload = payload_of(part)
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                fields = header_map(payload[0])
            else:
                fields = {b: v for block in _text_blocks(_part_text(part))[:1] for b, v in block.items()}
            return [addr for _, addr in addresses([*fields.get("to", []), *fields.get("cc", [])])]
    return []


def dsn_bounces(dsn: Message, original_message_id: str | None) -> tuple[list[Bounce], list[str]]:
    """The failures a delivery-status part reports, and the actions of the recipients that did not fail."""
    bounces: list[Bounce] = []
    successes: list[str] = []
    for fields in status_blocks(dsn)[: _MAX_RECIPIENTS + 1]:
        recipient = _strip_type(first(fields, "final-recipient") or first(fields, "original-recipient"))
        action = (first(fields, "action") or "").split("(")[0].strip().lower() or None
        status = status_in_text(first(fields, "status"))
        if recipient is None and action is None and status is None:
            continue  # the per-message block (Reporting-MTA, Arrival-Date...)
        if action in _SUCCESS_ACTIONS or (action is None and (status or "").startswith("2")):
            successes.append(action or f"status {status}")
            continue
        diagnostic = first(fields, "diagnostic-code")
        diagnostic = decode_header_text(diagnostic) if diagnostic else None
        if diagnostic and ";" in diagnostic[:20]:
            diagnostic = diagnostic.split(";", 1)[1]  # "smtp; 550 ..." → "550 ..."
        bounces.append(make_bounce(recipient, status, action, diagnostic, original_message_id, "rfc3464"))
    return bounces, successes


# --- the text-only shapes -------------------------------------------------------------------

# Where the copy of the returned message (or its headers) starts in a text bounce.
_COPY_STARTS = re.compile(
    r"^(?:[ \t]*-{2,}.{0,40}(?:copy of the|below this line|original message|message d'origine|message original|en-t[êe]tes?)"
    r"|[ \t]*(?:original message headers|en-t[êe]tes du message d'origine)|Received:|Return-Path:|Message-ID:|From:)",
    re.I | re.M,
)
_EMAIL = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9-]+)+")
_DAEMONS = re.compile(r"^(?:mailer-daemon|mail-daemon|postmaster|mailerdaemon|mdaemon|microsoftexchange[0-9a-f]*)$", re.I)

# The first matching shape decides the reporter; the sentence that matched is the evidence.
# In lower case, matched against lower-cased text (see INVALID).
_SHAPES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("qmail", re.compile(r"this is the qmail-send program[^\n]*")),
    ("postfix-text", re.compile(r"this is the mail system at host[^\n]*")),
    (
        "exchange",
        re.compile(
            r"delivery has failed to these recipients or groups|your message to \S+ couldn't be delivered"
            r"|diagnostic information for administrators|remote server returned '[^\n]*"
        ),
    ),
    (
        "gmail",
        re.compile(
            r"delivery to the following recipients? failed[^\n]*|\*\* address not found \*\*"
            r"|your message wasn't delivered to [^\n]*|delivery status notification \((?:failure|delay)\)"
        ),
    ),
    (
        "french-text",
        re.compile(
            r"(?:message )?non remis|n'a (?:pas )?pu [êe]tre (?:remis|d[ée]livr[ée]|distribu[ée])[^\n]*"
            r"|[ée]chec (?:de la |lors de la )?(?:remise|distribution)|impossible de (?:remettre|distribuer)[^\n]*"
        ),
    ),
    (
        "generic-text",
        re.compile(
            r"undelivered mail returned to sender|mail delivery failed[^\n]*|returned mail: [^\n]*|undeliverable:?"
            r"|delivery (?:status notification|failure)[^\n]*|failure notice|could not be delivered to[^\n]*"
            r"|permanent (?:fatal )?error[^\n]*|message (?:was )?not delivered"
        ),
    ),
)


def from_a_mailer(return_path: str | None, from_address: str | None, fields: dict[str, list[str]]) -> str | None:
    """What says a message comes from mail software, not a person: the null sender, a daemon's address,
    Exchange's NDR flag. On its own this proves nothing (a person may write from postmaster@)."""
    if return_path == "":
        return "Return-Path: <>"
    if from_address and _DAEMONS.match(from_address.split("@", 1)[0]):
        return f"From: {from_address}"
    if "x-ms-exchange-message-is-ndr" in fields:
        return "X-MS-Exchange-Message-Is-Ndr"
    return None


def human_part(text: str) -> str:
    """The beginning of a report's text, up to where the returned message is copied."""
    head = text[:_HEAD_CHARS]
    cut = _COPY_STARTS.search(head)
    return head[: cut.start()] if cut else head


def text_shape(subject: str, head: str) -> tuple[str, str] | None:
    """``(reporter, matched words)`` of the first failure text found in the subject or the human part."""
    texts = [("Subject", subject, subject.lower()), ("body", head, head.lower())]
    for reporter, pattern in _SHAPES:
        for where, text, low in texts:
            match = pattern.search(low)
            if match:
                # The words as written, where lower-casing kept the positions (all but a few letters).
                words = text[match.start() : match.end()] if len(low) == len(text) else match.group(0)
                return reporter, f"{where}: {one_line(words, 80)}"
    return None


def _blocks_after(head: str, address: str) -> str | None:
    """The lines that explain one failed address in a text NDR: the rest of its line, the indented
    lines under it, or the paragraph after it (qmail, Exim, Postfix text all write one of those)."""
    lines = head.splitlines()
    for i, line in enumerate(lines):
        if address not in line.lower():
            continue
        rest = line.lower().split(address, 1)[1].lstrip(">): \t")
        taken = [line.strip()] if len(rest) > 3 else []
        for following in lines[i + 1 : i + 8]:
            if not following.strip():
                if taken:
                    break
                continue
            if _EMAIL.search(following) and not following[:1].isspace() and address not in following.lower() and taken:
                break  # the next recipient's block
            taken.append(following.strip())
        found = " ".join(taken)
        if found:
            return found
    return None


def _code_line(head: str) -> str | None:
    """The first line of ``head`` with an SMTP code, else with a failure's words: the diagnostic of an NDR."""
    found = [m.start() for m in (STATUS.search(head),) if m]
    basic = BASIC_CODE.search(head)
    if basic:
        found.append(basic.start(1))  # its group: the match may begin with the newline before the line
    if not found:
        low = head.lower()
        if len(low) == len(head):  # lower() keeps positions, but for a few letters (İ)
            found = [m.start() for m in (INVALID.search(low), FULL.search(low), POLICY.search(low)) if m]
    if not found:
        return None
    at = min(found)
    end = head.find("\n", at)
    return head[head.rfind("\n", 0, at) + 1 : end if end >= 0 else len(head)].strip()


def text_bounces(
    reporter: str,
    head: str,
    ours: Iterable[str],
    named: Sequence[str],
    parts: Sequence[Message],
    original_message_id: str | None,
) -> list[Bounce]:
    """The failures a text NDR describes: one per failed address it names.

    ``named`` are addresses a header gives as failed (Exim's X-Failed-Recipients); else the
    addresses written in the human part that are not ours; else the single recipient of the
    returned message (one of ``parts``).
    """
    excluded = {a.lower() for a in ours}
    recipients = list(dict.fromkeys(a.lower() for a in named))
    if not recipients:
        for match in _EMAIL.finditer(head):
            addr = match.group(0).lower().rstrip(".")
            if addr not in excluded and not _DAEMONS.match(addr.split("@", 1)[0]) and addr not in recipients:
                recipients.append(addr)
    if not recipients:
        returned_to = returned_recipients(parts)
        recipients = returned_to if len(returned_to) == 1 else []
    if not recipients:
        return [make_bounce(None, None, None, _code_line(head), original_message_id, reporter, head)]
    bounces = []
    for recipient in recipients[:_MAX_RECIPIENTS]:
        diagnostic = _blocks_after(head, recipient) if reporter != "exchange" else None
        if not (diagnostic and STATUS.search(diagnostic)) and len(recipients) == 1:
            # One recipient: the SMTP reply anywhere in the text is its own ("The response was: 550 5.1.1 ...").
            code_line = _code_line(head)
            if code_line and (STATUS.search(code_line) or not diagnostic):
                diagnostic = code_line
        if not diagnostic:
            diagnostic = _code_line(head)
        bounces.append(make_bounce(recipient, None, None, diagnostic, original_message_id, reporter, head))
    return bounces
