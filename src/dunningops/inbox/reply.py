"""What the sender of a reply wrote: its text above the quoted history, by mail-parser-reply (French and English).

The library splits a text at the headers mail clients write above a quote ("Le … a écrit :",
"On … wrote:", "De : … Envoyé : …", "-----Original Message-----") and the first part is the reply.
Its header regex costs ~150 ns a character, tried at every position of the text; most of a
reply is text before any header. So the library's own compiled regex is run from the first line
that may start a header (``_MAYBE_HEADER`` matches every line the library's regex can start on,
and is cheap), which gives the library's answer for a fraction of the cost. ``read_with_library``
is the plain library call, the reference the tests compare with.
"""

from __future__ import annotations

import re
from typing import Any

from mailparser_reply import EmailReplyParser
from mailparser_reply.parser import EmailMessage

MAX_REPLY_CHARS = 32_000  # what is read: the sender's words come first, the library is slow on long texts
LANGUAGES = ("fr", "en")

# Every token one of the library's header patterns needs, fr and en: "wrote:", "a écrit",
# "-----Original Message-----", and the lines of an Outlook block ("From:", "De :", "Envoyé :"...).
# In lower case, for lower-cased text: re.IGNORECASE makes it several times slower.
_MAYBE_HEADER = re.compile(
    r"wrote:|[ée]crit|original message"
    r"|^[> *]*(?:from|sent|to|subject|date|cc|organization):"
    r"|^[> *]*(?:de |envoy[ée] |à |objet |cc |  ):",
    re.M,
)

# What the library misses: Gmail wraps "Le ..., Nom <\nadresse> a écrit :" on two lines (the
# library's French pattern wants one), and a forwarded message starts with a separator it keeps.
_HISTORY = re.compile(
    r"^(?:Le [^\n]*(?:\n[^\n]*)?a [ée]crit ?:|On [^\n]*(?:\n[^\n]*)?wrote:"
    r"|-{5,} ?(?:Forwarded message|Message transf[ée]r[ée]|Original Message|Message d'origine) ?-{0,})[ \t\xa0]*$",
    re.M | re.I,
)

_library = EmailReplyParser(languages=list(LANGUAGES))


def _compiled() -> dict[str, Any] | None:
    """The library's regexes, compiled once: EmailReplyParser compiles them again for every text,
    and the message class takes them ready-made. None for a version without those fields."""
    try:
        template = EmailMessage(text="", languages=list(LANGUAGES))
        compiled: dict[str, Any] = {
            "_header_regex": template.HEADER_REGEX,
            "_disclaimers_regex": template.DISCLAIMERS_REGEX,
            "_signature_regex": template.SIGNATURE_REGEX,
        }
        EmailMessage(text="", languages=list(LANGUAGES), **compiled)
    except (TypeError, AttributeError):
        return None
    return compiled


_COMPILED = _compiled()


def read_with_library(text: str) -> str | None:
    """The library's answer, as ``EmailReplyParser.parse_reply`` gives it."""
    return _library.parse_reply(text=text)


def _read(text: str) -> str | None:
    if _COMPILED is None:
        return read_with_library(text)
    message = EmailMessage(text=text, languages=list(LANGUAGES), **_COMPILED)  # normalises the text
    normalised = message.text
    low = normalised.lower()
    if len(low) == len(normalised):  # lower() keeps positions, but for a few letters (İ)
        candidate = _MAYBE_HEADER.search(low)
        if candidate is None:
            return normalised.strip()  # no header: the library's one fragment, the whole text
        # A header may begin three lines above its token (the English pattern, On\s(.+?\s?.+?)\s?wrote:,
        # spans up to four lines), and at the newline before that line.
        start = candidate.start()
        for _ in range(4):
            start = normalised.rfind("\n", 0, max(start, 0))
        start = max(0, start)
    else:
        start = 0
    match = _COMPILED["_header_regex"].search(normalised, start)
    if match is None:
        return normalised.strip()
    header = next((group for group in match.groups() if group), "")
    reply = normalised[: normalised.find(header)].strip() if header else ""
    return reply or message.read().latest_reply  # a header at the very top: the library decides


def reply_text(text: str) -> str:
    """What the sender wrote above the quoted history (the whole text when nothing is quoted)."""
    if not text.strip():
        return text
    try:
        found = _read(text[:MAX_REPLY_CHARS])
    except Exception:  # the library's regexes on an odd text: the whole text is still what was written
        return text
    found = trim_history(found.strip()) if found else ""
    return found or text


def trim_history(text: str) -> str:
    """``text`` without a quote header or forward separator the library left in it, and what follows."""
    match = _HISTORY.search(text)
    if match is None or match.start() == 0:
        return text
    return text[: match.start()].rstrip()
