"""What an incoming email is: a bounce, a complaint, an auto-reply or a reply, and what decided it.

Checked in this order, the first that applies wins:

1. complaint: an abuse report (ARF, RFC 5965: ``multipart/report; report-type=feedback-report``);
2. bounce: a delivery status notification (RFC 3464), or a failure text of a known shape (Exim's
   ``X-Failed-Recipients``; qmail, Postfix, Exchange, Gmail, French ISPs' words) coming from mail
   software (the null sender, a MAILER-DAEMON or postmaster address, Exchange's NDR flag);
   before auto-replies, since many DSNs carry ``Auto-Submitted: auto-replied``;
3. auto-reply: RFC 3834 ``Auto-Submitted``, ``X-Autoreply``, ``X-Autorespond``, ``Precedence``,
   Exchange's inbox-rule headers, out-of-office subjects in French and English;
4. reply: everything else.

The evidence is the header, part or words that decided, as a person would look them up in the
message: ``Auto-Submitted: auto-replied``, ``Subject: Réponse automatique : …``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import Message
from typing import Literal

from dunningops.inbox.bounces import (
    DSN_TYPES,
    Bounce,
    dsn_bounces,
    from_a_mailer,
    human_part,
    report_parts,
    returned_message_id,
    returned_recipients,
    status_blocks,
    text_bounces,
    text_shape,
)
from dunningops.inbox.headers import addresses, decode_header_text, first, header_map, one_line

__all__ = ["Bounce", "Classification", "Complaint", "Kind", "classify"]

Kind = Literal["reply", "auto_reply", "bounce", "complaint"]


@dataclass(frozen=True)
class Complaint:
    """An abuse report: a recipient marked one of our emails as spam."""

    feedback_type: str | None  # abuse, fraud, virus, not-spam...
    original_message_id: str | None
    recipient: str | None  # who complained, lower-cased


@dataclass(frozen=True)
class Classification:
    kind: Kind
    evidence: str
    bounces: tuple[Bounce, ...] = ()  # one per failed recipient (kind bounce)
    complaint: Complaint | None = None


_AUTO_HEADERS = {name.lower(): name for name in ("X-Autoreply", "X-Autorespond", "X-Autoresponder", "X-Autoresponse")}
_NO = frozenset({"no", "false", "0", "off"})
_PRECEDENCE = frozenset({"auto_reply", "bulk", "junk"})

# Out-of-office subjects as the common clients and webmails write them, at the start of the
# subject ("RE: Absence de règlement" is a person's reply and must not match).
_OUT_OF_OFFICE = re.compile(
    r"^[\s\[(]*(?:r[ée]ponse automatique|message automatique|message d'absence|absen(?:ce|t|te)(?:\(e\))? du bureau"
    r"|absente?(?:\(e\))?\s*:|absence\s*:|auto(?:matic)?[ -]?(?:reply|response)|autoreply|auto\s*:|out of (?:the )?office"
    r"|ooo\b|abwesenheitsnotiz)",
    re.I,
)


def classify(
    msg: Message,
    *,
    fields: dict[str, list[str]] | None = None,
    subject: str | None = None,
    from_address: str | None = None,
    return_path: str | None = None,
    ours: Sequence[str] = (),
    text: str = "",
    parts: Sequence[Message] | None = None,
) -> Classification:
    """Classify a parsed message (``parse_message`` calls it with what it has already read).

    Args:
        msg: the message as ``email`` parsed it (any policy).
        fields: its header fields (``headers.header_map``); read from ``msg`` when not given.
        subject: its decoded Subject.
        from_address, return_path: as in ``ParsedMail`` ("" is the null sender).
        ours: the addresses the message was sent to (To, Delivered-To...): never a failed recipient.
        text: its best plain text, where text bounces are read.
        parts: its report parts (``bounces.report_parts``); found in ``msg`` when not given.
    """
    if fields is None:
        fields = header_map(msg)
    if subject is None:
        subject = decode_header_text(first(fields, "subject") or "")
    if from_address is None:
        found = addresses(fields.get("from", [])[:1])
        from_address = found[0][1] if found else None
    if parts is None:
        parts = report_parts(msg)
    report_type = ""
    if msg.get_content_type() == "multipart/report":
        report_type = str(msg.get_param("report-type") or "").strip().lower()

    feedback = next((p for p in parts if p.get_content_type() == "message/feedback-report"), None)
    if report_type == "feedback-report" or feedback is not None:
        arf = "Content-Type: multipart/report; report-type=feedback-report"
        return _complaint(feedback, parts, text, arf if report_type == "feedback-report" else "message/feedback-report part")
    dsns = [p for p in parts if p.get_content_type() in DSN_TYPES]
    if dsns or report_type == "delivery-status":
        return _dsn(dsns, parts, fields, subject, from_address, ours, text, report_type)
    failure = _text_bounce(fields, subject, from_address, return_path, ours, text, parts)
    if failure is not None:
        return failure
    automatic = _auto_reply(fields, subject)
    if automatic:
        return Classification("auto_reply", automatic)
    return Classification("reply", "no bounce or auto-reply marker")


def _complaint(feedback: Message | None, parts: Sequence[Message], text: str, evidence: str) -> Classification:
    fields = {k: v for block in (status_blocks(feedback) if feedback is not None else [])[:1] for k, v in block.items()}
    recipient = None
    rcpt = addresses(fields.get("original-rcpt-to", [])[:1])
    if rcpt:
        recipient = rcpt[0][1]
    else:
        returned = returned_recipients(parts)
        recipient = returned[0] if len(returned) == 1 else None
    feedback_type = (first(fields, "feedback-type") or "").strip().lower() or None
    complaint = Complaint(feedback_type, returned_message_id(parts, text), recipient)
    return Classification("complaint", evidence, complaint=complaint)


def _dsn(
    dsns: Sequence[Message],
    parts: Sequence[Message],
    fields: dict[str, list[str]],
    subject: str,
    from_address: str | None,
    ours: Sequence[str],
    text: str,
    report_type: str,
) -> Classification:
    original = returned_message_id(parts, text)
    bounces: list[Bounce] = []
    successes: list[str] = []
    for dsn in dsns:
        failed, succeeded = dsn_bounces(dsn, original)
        bounces += failed
        successes += succeeded
    if report_type == "delivery-status":
        evidence = "Content-Type: multipart/report; report-type=delivery-status"
    else:
        evidence = f"{dsns[0].get_content_type()} part"
    if not bounces and successes:
        # A report that every recipient got the message (NOTIFY=SUCCESS, or relayed on): nothing failed.
        return Classification("auto_reply", f"{evidence} without failure (Action: {successes[0]})")
    if not bounces:
        # A report without readable per-recipient fields: its human part says what failed.
        head = human_part(text)
        shape = text_shape(subject, head)
        reporter = shape[0] if shape else "rfc3464"
        bounces = text_bounces(reporter, head, [*ours, from_address or ""], [], parts, original)
    return Classification("bounce", evidence, bounces=tuple(bounces))


def _text_bounce(
    fields: dict[str, list[str]],
    subject: str,
    from_address: str | None,
    return_path: str | None,
    ours: Sequence[str],
    text: str,
    parts: Sequence[Message],
) -> Classification | None:
    failed = first(fields, "x-failed-recipients")
    head = human_part(text)
    if failed:
        # Exim names the failed addresses in a header only an MTA writes: that is enough.
        named = [addr for _, addr in addresses([failed])]
        original = returned_message_id(parts, text)
        bounces = text_bounces("exim", head, [*ours, from_address or ""], named, parts, original)
        return Classification("bounce", f"X-Failed-Recipients: {one_line(failed, 120)}", bounces=tuple(bounces))
    support = from_a_mailer(return_path, from_address, fields)
    if support is None:
        return None
    shape = text_shape(subject, head)
    if shape is None:
        return None
    reporter, words = shape
    original = returned_message_id(parts, text)
    bounces = text_bounces(reporter, head, [*ours, from_address or ""], [], parts, original)
    return Classification("bounce", f"{words} ({support})", bounces=tuple(bounces))


def _auto_reply(fields: dict[str, list[str]], subject: str) -> str | None:
    """The header or subject that marks an automatic answer, as evidence; None for a person's mail."""
    value = first(fields, "auto-submitted")
    if value is not None:
        token = value.split(";", 1)[0].split("(", 1)[0].strip().lower()
        if token and token != "no":
            return f"Auto-Submitted: {one_line(value, 80)}"
    for name in _AUTO_HEADERS:
        value = first(fields, name)
        if value is not None and value.strip().lower() not in _NO:
            return f"{_AUTO_HEADERS[name]}: {one_line(value, 80)}"
    # Outlook sets X-Auto-Response-Suppress on much ordinary mail; with the inbox-rules loop
    # header it is an answer generated by a rule (out of office).
    loop = first(fields, "x-ms-exchange-inbox-rules-loop")
    suppress = first(fields, "x-auto-response-suppress")
    if loop is not None and suppress is not None:
        return f"X-Auto-Response-Suppress: {one_line(suppress, 40)} with X-MS-Exchange-Inbox-Rules-Loop: {one_line(loop, 80)}"
    value = first(fields, "precedence")
    if value is not None and value.strip().lower() in _PRECEDENCE:
        return f"Precedence: {value.strip()}"
    if _OUT_OF_OFFICE.match(subject):
        return f"Subject: {one_line(subject, 80)}"
    return None
