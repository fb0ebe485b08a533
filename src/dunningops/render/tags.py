"""T2: the source product's ``@TAG@``s, rewritten to Jinja before a template is compiled.

Tags are replaced in the template's text only (not inside ``{# #}``, ``{{ }}``
or ``{% %}``), one line for one line so that line numbers stay true. An
unknown tag is an error rather than text sent to a customer.
"""

from __future__ import annotations

import difflib
import re

TAGS: dict[str, str] = {
    "@CUSTOMERNAME@": "{{ customer.name }}",
    "@CONTACTNAME@": "{{ contact.name }}",
    "@COMPANYNAME@": "{{ company.name }}",
    "@TOTALDUE@": "{{ totals.outstanding }}",
    # T7: each invoice's reference, due date and amount, with a link to its document.
    "@INVOICELIST@": "{{ invoices|invoice_list }}",
    "@SENDERNAME@": "{{ sender.name }}",
    "@SIGNATURE@": "{{ signature }}",
    "@TODAY@": "{{ today }}",
    # T8: the incident's description, and the widget with which the customer rates its handling.
    "@Observations@": "{{ incident.observations }}",
    "@widgetvaluation@": "{{ rating_widget }}",
}

# Known tags of features not built: a clear error, not a silent hole (none left today).
UNSUPPORTED: dict[str, str] = {}

# Letters only, between two @, not glued to a word or another @: a@b.fr is no tag.
TAG_RE = re.compile(r"(?<![\w@])@[A-Za-z]+@(?![\w@])")
# An opener that is never closed runs to the end (Jinja then reports it): one pass, never quadratic.
_JINJA_RE = re.compile(r"\{#.*?(?:#\}|\Z)|\{\{.*?(?:\}\}|\Z)|\{%.*?(?:%\}|\Z)", re.S)


def _problem(tag: str) -> str:
    if tag in UNSUPPORTED:
        return f"tag {tag} is not supported: {UNSUPPORTED[tag]}"
    known = list(TAGS) + list(UNSUPPORTED)
    close = difflib.get_close_matches(tag.upper(), [k.upper() for k in known], n=1, cutoff=0.6)
    hint = f"; did you mean {next(k for k in known if k.upper() == close[0])}?" if close else ""
    return f"unknown tag {tag}{hint} (see `dunningops template vars`)"


def expand_tags(source: str) -> tuple[str, list[tuple[int, str]]]:
    """``source`` with known tags replaced, and ``(line, message)`` for each tag that is not."""
    if "@" not in source:
        return source, []
    problems: list[tuple[int, str]] = []
    out: list[str] = []
    line = 1

    def text(chunk: str, line: int) -> str:
        def replace(match: re.Match) -> str:
            tag = match.group(0)
            if tag in TAGS:
                return TAGS[tag]
            problems.append((line + chunk.count("\n", 0, match.start()), _problem(tag)))
            return tag

        return TAG_RE.sub(replace, chunk)

    pos = 0
    for match in _JINJA_RE.finditer(source):
        chunk = source[pos : match.start()]
        out.append(text(chunk, line))
        line += chunk.count("\n") + match.group(0).count("\n")
        out.append(match.group(0))
        pos = match.end()
    out.append(text(source[pos:], line))
    return "".join(out), problems
