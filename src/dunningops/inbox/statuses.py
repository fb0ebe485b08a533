"""What a delivery failure means: its status code (RFC 3463) and words, and the category and
permanence the import cycle acts on (C9): only a hard failure of the mailbox condemns the contact.

``Bounce`` is one recipient's failure; ``make_bounce`` builds it from what a report (bounces.py)
or an NDR's text gives, the status made precise from the diagnostic.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from dunningops.inbox.headers import one_line

Category = Literal["invalid_address", "mailbox_full", "refused_by_policy", "temporary", "unknown"]

MAX_DIAGNOSTIC = 300  # characters of a diagnostic kept: one readable line in a timeline or an alert


@dataclass(frozen=True)
class Bounce:
    """One recipient's delivery failure, as the report (or the NDR's text) gives it."""

    recipient: str | None  # the failed address, lower-cased
    status: str | None  # "5.1.1", "4.4.7"...
    action: str | None  # failed | delayed | ...
    permanent: bool  # the address itself is bad: the contact is marked invalid (C9)
    category: Category
    diagnostic: str | None  # one line, at most MAX_DIAGNOSTIC characters
    original_message_id: str | None  # the returned message's Message-ID
    reporter: str  # the shape that decided: "rfc3464", "exim", "qmail", "exchange", "gmail", "french-text"...


# --- what a status and its text mean ------------------------------------------------------

# An enhanced status code (RFC 3463) inside text: not a piece of an IP address or a version.
STATUS = re.compile(r"(?<!\d)(?<!\d\.)([245])\.(\d{1,3})\.(\d{1,3})(?!\d|\.\d)")
BASIC_CODE = re.compile(r"(?:^|[\s'\"(#])([245])\d\d(?=[\s\-:]|$)")
# What failures say, in lower case: matched against lower-cased text, which is five times faster
# than re.IGNORECASE on alternations this long.
INVALID = re.compile(
    r"user(?:name)? unknown|unknown user|no such (?:user|mailbox|recipient|address|account)|no mailbox here"
    r"|n[o']t exist|recipient (?:address )?(?:not found|unknown|invalid)|unknown (?:recipient|address|mailbox)"
    r"|address not found|(?:couldn't|could not|cannot) be found|recip(?:ient)?notfound|invalid (?:recipient|mailbox|address)"
    r"|(?:user|mailbox|account) not found|mailbox unknown|utilisateur inconnu|adresse inconnue|destinataire inconnu"
    r"|(?:adresse|destinataire)s?(?: [ée]lectronique| e-?mail)? invalide|n'existe pas|inexistant"
)
FULL = re.compile(
    r"quota|mailbox (?:is )?full|storage (?:space )?(?:exceeded|full)"
    r"|bo[iî]te (?:aux lettres |mail |de r[ée]ception )?(?:est )?pleine|espace (?:de stockage )?insuffisant"
)
POLICY = re.compile(
    r"spam|block(?:ed|list|ing)|black ?list|polic(?:y|ies)|\b(?:spf|dkim|dmarc|rbl)\b|reputation|authenticat"
    r"|not authori[sz]ed|relay(?:ing)? (?:access )?denied|refus|rejet[ée]|ind[ée]sirable|virus"
)
TEMPORARY = re.compile(
    r"temporar|try again later|will (?:retry|be retried|keep trying)|not yet been delivered|delayed|deferred"
    r"|n'a pas encore|nouvel(?:le)? (?:tentative|essai)|r[ée]essa"
)


def status_in_text(text: str | None) -> str | None:
    """The first enhanced status code written in ``text`` ("550 5.1.1 <x@y>: ..." → "5.1.1")."""
    if not text:
        return None
    match = STATUS.search(text)
    return ".".join(match.groups()) if match else None


def categorise(status: str | None, action: str | None, text: str | None) -> tuple[Category, bool]:
    """What a failure means for the address: its category, and whether it condemns the address."""
    text = (text or "").lower()
    if action == "delayed" or (status or "").startswith("4"):
        return "temporary", False
    if status and status.startswith("5."):
        _, subject, detail = status.split(".")
        if subject == "1":
            # 5.1.7 / 5.1.8 are about the sender's address (ours): a refusal of our mail.
            if detail in ("7", "8") or (detail == "0" and POLICY.search(text) and not INVALID.search(text)):
                return "refused_by_policy", False
            return "invalid_address", True
        if subject == "2" and detail == "2":
            return "mailbox_full", False
        if subject == "7" or (subject, detail) in (("2", "3"), ("3", "4")):  # 5.x.3/5.3.4: our message is too big
            return "refused_by_policy", False
        # 5.0.0 and the codes that say nothing precise: the words decide
    if INVALID.search(text):
        return "invalid_address", True
    if FULL.search(text):
        return "mailbox_full", False
    if POLICY.search(text):
        return "refused_by_policy", False
    if not status:
        basic = BASIC_CODE.search(text)
        if (basic and basic.group(1) == "4") or TEMPORARY.search(text):
            return "temporary", False
    return "unknown", False


_LEADING_CODE = re.compile(r"\s*([245]\d\d)[ -]((?:[245]\.\d{1,3}\.\d{1,3})?)\s*")


def _without_repeated_codes(diagnostic: str) -> str:
    """A multi-line SMTP reply without its per-line codes: "550-5.1.1 The email ... 550-5.1.1 double-checking"
    → "550 5.1.1 The email ... double-checking"."""
    match = _LEADING_CODE.match(diagnostic)
    if match is None:
        return diagnostic
    code, status = match.groups()
    repeated = re.compile(rf"\s{code}[ -]{re.escape(status)}\s+" if status else rf"\s{code}[ -]\s*")
    rest = repeated.sub(" ", diagnostic[match.end() :])
    return f"{code} {status} {rest}" if status else f"{code} {rest}"


def make_bounce(
    recipient: str | None,
    status: str | None,
    action: str | None,
    diagnostic: str | None,
    original_message_id: str | None,
    reporter: str,
    context: str | None = None,
) -> Bounce:
    """A Bounce, its status made precise from the diagnostic and its category decided.

    ``context`` is the text the category is decided from when there is no diagnostic.
    """
    if diagnostic:
        diagnostic = _without_repeated_codes(diagnostic)
    precise = status_in_text(diagnostic)
    # "Status: 5.0.0" with "550 5.1.1 ... user unknown" in the diagnostic: the precise code decides.
    if precise and (not status or (status.endswith(".0.0") and precise[0] == status[0])):
        status = precise
    category, permanent = categorise(status, action, diagnostic or context)
    if action is None:  # a text NDR says no Action: its words or code do
        action = "delayed" if category == "temporary" else "failed"
    return Bounce(
        recipient=recipient,
        status=status,
        action=action,
        permanent=permanent,
        category=category,
        diagnostic=one_line(diagnostic, MAX_DIAGNOSTIC) if diagnostic else None,
        original_message_id=original_message_id,
        reporter=reporter,
    )
