"""T2 "blocks" design: a YAML list of ready-made blocks, parsed and compiled once, rendered per message.

Block texts are plain text with variables: they are rendered without
autoescape and escaped as a whole for the HTML part (so a ``<`` typed in a
paragraph shows as ``<``, and a customer's name can never inject markup).
The plain-text part is built from the same blocks, not from the HTML.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Sequence
from dataclasses import dataclass

import yaml
from jinja2 import Template
from markupsafe import escape

from dunningops.render import limits
from dunningops.render.environment import render
from dunningops.render.escaping import escape_text
from dunningops.render.labels import days_overdue
from dunningops.render.layout import FONT, MUTED, RULE, TEXT, ink_on, text_html


@dataclass(frozen=True)
class BlockType:
    required: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()

    @property
    def fields(self) -> tuple[str, ...]:
        return self.required + self.optional


# Every field of every block type is a text with variables.
BLOCK_TYPES: dict[str, BlockType] = {
    "heading": BlockType(required=("text",)),
    "paragraph": BlockType(required=("text",)),
    "invoice_table": BlockType(),
    "button": BlockType(required=("text", "url")),
    "signature": BlockType(),
    "divider": BlockType(),
}
URL_SCHEMES = ("https://", "http://", "mailto:")


class BlockError(Exception):
    """A block cannot be rendered with this message's values (e.g. a button link that is no link)."""

    def __init__(self, message: str, block: int):
        super().__init__(message)
        self.block = block


@dataclass(frozen=True)
class RawBlock:
    """One block as written: its type, its fields and the line of each (1-based)."""

    index: int  # 1-based position in the list
    type: str
    line: int
    fields: dict[str, object]
    lines: dict[str, int]


_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _suggest(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def parse_blocks(text: str) -> tuple[list[RawBlock], list[tuple[int | None, str]]]:
    """The blocks of a body and the ``(line, message)`` problems of its shape (not of its texts)."""
    try:
        # Compose once (for line numbers) with the C parser where present, and build the data from the nodes.
        loader = _LOADER(text)
        try:
            root = loader.get_single_node()
            data = loader.construct_document(root) if root is not None else None
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        return [], [(mark.line + 1 if mark else None, f"invalid YAML: {getattr(exc, 'problem', None) or exc}")]
    if not isinstance(data, list) or not data:
        return [], [(1, "a blocks body is a non-empty list of blocks (- type: paragraph …)")]
    blocks: list[RawBlock] = []
    problems: list[tuple[int | None, str]] = []
    names = list(BLOCK_TYPES)
    for index, (item, node) in enumerate(zip(data, root.value, strict=True), start=1):
        line = node.start_mark.line + 1
        if not isinstance(item, dict):
            problems.append((line, f"block {index}: a block is a mapping with a `type` ({', '.join(names)})"))
            continue
        lines = {str(k.value): v.start_mark.line + 1 for k, v in node.value}
        kind = item.get("type")
        if kind not in BLOCK_TYPES:
            hint = _suggest(str(kind), names) if kind is not None else ""
            problems.append(
                (
                    lines.get("type", line),
                    f"block {index}: unknown block type {kind!r}{hint} (expected one of: {', '.join(names)})",
                )
            )
            continue
        spec = BLOCK_TYPES[kind]
        fields = {str(k): v for k, v in item.items() if k != "type"}
        for key in fields:
            if key not in spec.fields:
                accepts = f"accepts {', '.join(spec.fields)}" if spec.fields else "takes no fields"
                problems.append(
                    (
                        lines.get(key, line),
                        f"block {index} ({kind}): unknown field {key!r}"
                        f"{_suggest(key, list(spec.fields))}; a {kind} block {accepts}",
                    )
                )
        for key in spec.required:
            if key not in fields:
                problems.append((line, f"block {index} ({kind}): missing field {key!r}"))
        for key, value in fields.items():
            if key in spec.fields and not isinstance(value, str):
                problems.append(
                    (lines.get(key, line), f"block {index} ({kind}): {key!r} must be text, not {type(value).__name__}")
                )
        blocks.append(RawBlock(index, kind, line, fields, lines))
    return blocks, problems


@dataclass(frozen=True)
class CompiledBlock:
    type: str
    fields: dict[str, Template | str]  # a str: a field without variables, as it always renders (constant_field)
    line: int  # where the block starts in the body file
    lines: dict[str, int]  # where each field is


_ROW = '<tr><td style="padding:0 0 16px;">{}</td></tr>'
_TH = "padding:8px; border-bottom:2px solid {brand}; font-weight:bold; white-space:nowrap;"
_TD = f"padding:8px; border-bottom:1px solid {RULE};"


def _invoice_table(tvars: dict, words: dict[str, str], brand: str) -> tuple[str, str]:
    th = _TH.format(brand=brand)
    heads = [
        ("left", "", "invoice"),
        ("left", "", "due_date"),
        ("right", ' class="dno-hide-sm"', "days_overdue"),
        ("right", ' class="dno-hide-sm"', "amount"),
        ("right", "", "outstanding"),
        ("left", "", "document"),
    ]
    html = [
        '<table role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0" style="font-size:14px;">',
        '<tr style="background:#f3f5f7;">'
        + "".join(f'<th align="{a}"{c} style="{th}">{escape_text(words[k])}</th>' for a, c, k in heads)
        + "</tr>",
    ]
    text = []
    colon = words["colon"]
    for inv in tvars["invoices"]:
        url = inv["document_url"]
        link = f'<a href="{escape_text(url)}">{escape_text(words["view"])}</a>' if url else ""
        html.append(
            f'<tr><td style="{_TD}">{escape_text(inv["number"])}</td>'
            f'<td style="{_TD} white-space:nowrap;">{escape_text(inv["due_date"])}</td>'
            f'<td align="right" class="dno-hide-sm" style="{_TD}">{inv["days_overdue"]}</td>'
            f'<td align="right" class="dno-hide-sm" style="{_TD} white-space:nowrap;">{escape_text(inv["amount"])}</td>'
            f'<td align="right" style="{_TD} white-space:nowrap;">{escape_text(inv["outstanding"])}</td>'
            f'<td style="{_TD}">{link}</td></tr>'
        )
        first = f"• {words['invoice']} {inv['number']} – {words['due']}{colon}{inv['due_date']}"
        if inv["days_overdue"] > 0:
            first += f" ({days_overdue(inv['days_overdue'], words)})"
        text.append(first)
        text.append(f"  {words['amount']}{colon}{inv['amount']} – {words['outstanding'].lower()}{colon}{inv['outstanding']}")
        if url:
            text.append(f"  {words['view']}{colon}{url}")
    total = escape_text(tvars["totals"]["outstanding"])
    html.append(
        f'<tr><td colspan="2" style="padding:12px 8px; font-weight:bold;">{escape_text(words["total"])}</td>'
        '<td class="dno-hide-sm"></td><td class="dno-hide-sm"></td>'
        f'<td align="right" style="padding:12px 8px; font-weight:bold; white-space:nowrap;">{total}</td><td></td></tr>'
    )
    html.append("</table>")
    text.append(f"{words['total']}{colon}{tvars['totals']['outstanding']}")
    return "\n".join(html), "\n".join(text)


def _button(label: str, url: str, brand: str) -> str:
    # "Bulletproof": a table cell with the colour as bgcolor plus a padded, bordered link,
    # so that Outlook (no padding on <a>) still shows a coloured, clickable box.
    ink, label, url = ink_on(brand), escape(label), escape(url)
    return (
        '<table role="presentation" cellpadding="0" cellspacing="0" border="0" style="margin:8px 0;"><tr>'
        f'<td align="center" bgcolor="{brand}" style="border-radius:4px; background:{brand};">'
        f'<a href="{url}" target="_blank" style="display:inline-block; padding:12px 28px; border:1px solid {brand}; '
        f"border-radius:4px; background:{brand}; color:{ink}; font-family:{FONT}; font-size:15px; font-weight:bold; "
        f'line-height:1.2; text-decoration:none;">{label}</a></td></tr></table>'
    )


def constant_field(source: str, template: Template) -> Template | str:
    """A block field with no variable, statement or @TAG@ (no '{', no '@') as the text it renders to
    in every email, rendered once; else ``template``."""
    if "{" in source or "@" in source:
        return template
    previous = limits.begin()
    try:
        return render(template, {})
    except Exception:  # e.g. past a limit: rendered per email instead, which reports it
        return template
    finally:
        limits.end(previous)


# The HTML of a constant text is the same in every email.
_constant_html = functools.lru_cache(maxsize=256)(text_html)


def _text_html(block: CompiledBlock, text: str) -> str:
    return _constant_html(text) if isinstance(block.fields.get("text"), str) else text_html(text)


def render_blocks(
    blocks: Sequence[CompiledBlock], tvars: dict, words: dict[str, str], brand: str, company_name: str
) -> tuple[str, str]:
    """(HTML content for the layout, plain text) of compiled blocks for one message."""
    html: list[str] = []
    text: list[str] = []
    for index, block in enumerate(blocks, start=1):
        # A constant is charged to the email's budget as its rendering would be.
        values = {
            key: limits.concat_output((field,)) if isinstance(field, str) else render(field, tvars)
            for key, field in block.fields.items()
        }
        kind = block.type
        if kind == "heading":
            colour = brand if ink_on(brand) == "#ffffff" else TEXT
            html.append(
                _ROW.format(
                    f'<h1 style="margin:0; font-family:{FONT}; font-size:22px; line-height:1.3; '
                    f'color:{colour};">{_text_html(block, values["text"].strip())}</h1>'
                )
            )
            text.append(values["text"].strip())
        elif kind == "paragraph":
            html.append(_ROW.format(f'<p style="margin:0;">{_text_html(block, values["text"].strip())}</p>'))
            text.append(values["text"].strip())
        elif kind == "invoice_table":
            table_html, table_text = _invoice_table(tvars, words, brand)
            html.append(_ROW.format(table_html))
            text.append(table_text)
        elif kind == "button":
            url = values["url"].strip()
            if not url:  # e.g. no portal for this customer: no button rather than a dead one
                continue
            if not url.startswith(URL_SCHEMES):
                raise BlockError(f"block {index} (button): link {url!r} must start with {', '.join(URL_SCHEMES)}", index)
            html.append(_ROW.format(_button(values["text"].strip(), url, brand)))
            text.append(f"{values['text'].strip()}{words['colon']}{url}")
        elif kind == "signature":
            # A7: the alias's signature; without one, the sender's name and the company.
            signature = tvars["signature"].strip() or "\n".join(part for part in (tvars["sender"]["name"], company_name) if part)
            html.append(_ROW.format(f'<p style="margin:0; color:{MUTED}; font-size:14px;">{text_html(signature)}</p>'))
            text.append(signature)
        elif kind == "divider":
            html.append(
                f'<tr><td style="padding:8px 0 24px;"><div style="border-top:1px solid {RULE}; '
                'font-size:1px; line-height:1px;">&nbsp;</div></td></tr>'
            )
            text.append("-" * 24)
    table = (
        '<table role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0">\n' + "\n".join(html) + "\n</table>"
    )
    return table, "\n\n".join(t for t in text if t) + "\n"
