# The plain-text converter of render/html_text.py before it was made faster, kept verbatim as a test oracle
# (tests/test_render_html_text.py).
"""A plain-text alternative for an HTML email: every email carries one.

Paragraphs and ``<br>`` become line breaks, links ``text (url)``, list items
``- item``, table rows lines of cells separated by two spaces. ``<head>``,
``<style>``, ``<script>`` and hidden elements (``display:none``, e.g. a
preheader) are dropped; ``white-space: pre*`` keeps its line breaks.
"""

from __future__ import annotations

import re
from html import unescape

_SKIP = frozenset({"head", "style", "script", "title", "template"})
_VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"})
_PARAGRAPH = frozenset({"p", "h1", "h2", "h3", "h4", "h5", "h6", "table", "ul", "ol", "blockquote", "hr", "pre"})
_LINE = frozenset({"div", "tr", "li", "dt", "dd", "section", "article", "header", "footer", "center", "address"})
_HIDDEN = re.compile(r"display\s*:\s*none", re.I)
_PRE = re.compile(r"white-space\s*:\s*pre", re.I)

# Markers survive whitespace collapsing and become text at the end. A block boundary is a soft
# line break (several in a row make one); <br> is a hard one (two make an empty line).
_NL, _PARA, _CELL, _BR = "\x01", "\x02", "\x03", "\x04"
_SPACES = re.compile(r"[ \t\n\r\f]+")  # HTML whitespace: no-break spaces stay


# One pass of a regex tokenizer: html.parser was ~1 ms per email, the html design's bottleneck.
# No alternative scans past the next '<' (an unclosed comment runs to the end, as in a browser),
# so that a body full of unclosed '<a ' costs one pass, not one pass per '<'.
_TOKENS = re.compile(
    r"<!--.*?(?:-->|\Z)|<![^<>]*>|<\?[^<>]*>"  # comments, doctype, processing instructions: dropped
    r"|<(/?)([A-Za-z][A-Za-z0-9:-]*)((?:[^<>\"']|\"[^<\"]*\"|'[^<']*')*)>"  # tags; quoted values may hold '>'
    r"|([^<]+|<)",  # text (a lone '<' is text too)
    re.S,
)
_ATTRS = re.compile(r"([A-Za-z_:][-A-Za-z0-9_:.]*)(?:\s*=\s*(\"[^\"]*\"|'[^']*'|[^\s\"'=<>`]+))?")


def _attrs(raw: str) -> list[tuple[str, str | None]]:
    found: list[tuple[str, str | None]] = []
    for name, value in _ATTRS.findall(raw):
        if value[:1] in ("'", '"'):
            value = value[1:-1]
        found.append((name.lower(), unescape(value)))
    return found


class _Converter:
    def __init__(self) -> None:
        self.out: list[str] = []
        self.skip_tag: str | None = None
        self.skip_depth = 0
        self.stack: list[tuple[str, bool]] = []  # open elements that matter: (tag, keeps line breaks)
        self.pre = 0
        self.links: list[tuple[str, int]] = []  # (href, index in out where its text starts)
        self.lists: list[list[int]] = []  # per open list: [next number] for <ol>, [] for <ul>
        self.cells = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self.skip_tag:
            self.skip_depth += tag == self.skip_tag
            return
        attr = dict(attrs)
        style = attr.get("style") or ""
        if tag in _SKIP or (tag not in _VOID and _HIDDEN.search(style)):
            self.skip_tag, self.skip_depth = tag, 1
            return
        if tag == "br":
            self.out.append(_BR)
        elif tag in _PARAGRAPH:
            self.out.append(_PARA)
        elif tag in _LINE:
            self.out.append(_NL)
        if tag == "tr":
            self.cells = 0
        elif tag in ("td", "th"):
            if self.cells:
                self.out.append(_CELL)
            self.cells += 1
        elif tag in ("ul", "ol"):
            self.lists.append([1] if tag == "ol" else [])
        elif tag == "li":
            numbering = self.lists[-1] if self.lists else []
            if numbering:
                self.out.append(f"{numbering[0]}. ")
                numbering[0] += 1
            else:
                self.out.append("- ")
        elif tag == "a":
            self.links.append((attr.get("href") or "", len(self.out)))
        if tag not in _VOID:
            keeps = tag == "pre" or bool(_PRE.search(style))
            self.stack.append((tag, keeps))
            self.pre += keeps

    def handle_endtag(self, tag: str) -> None:
        if self.skip_tag:
            if tag == self.skip_tag:
                self.skip_depth -= 1
                if not self.skip_depth:
                    self.skip_tag = None
            return
        if not any(t == tag for t, _ in self.stack):
            return  # a stray end tag
        while self.stack:
            open_tag, keeps = self.stack.pop()
            self.pre -= keeps
            self._close(open_tag)
            if open_tag == tag:
                break

    def _close(self, tag: str) -> None:
        if tag == "a" and self.links:
            href, start = self.links.pop()
            label = "".join(self.out[start:]).strip()
            if href.startswith("mailto:"):
                href = href[7:]
            if href and not href.startswith("#") and href not in label:
                self.out.append(f" ({href})" if label else href)
        elif tag in ("ul", "ol") and self.lists:
            self.lists.pop()
        if tag in _PARAGRAPH:
            self.out.append(_PARA)
        elif tag in _LINE:
            self.out.append(_NL)

    def handle_data(self, data: str) -> None:
        if self.skip_tag:
            return
        if self.pre:
            self.out.append(data.replace("\r\n", "\n").replace("\n", _BR))
        else:
            self.out.append(_SPACES.sub(" ", data))

    def feed(self, html: str) -> None:
        for match in _TOKENS.finditer(html):
            closing, tag, raw, text = match.groups()
            if text is not None:
                self.handle_data(unescape(text))
            elif tag is not None:
                tag = tag.lower()
                if closing:
                    self.handle_endtag(tag)
                else:
                    # Attributes are parsed only when there are some (style and href matter).
                    self.handle_starttag(tag, _attrs(raw) if raw.strip(" /") else [])
                    if raw.rstrip().endswith("/") and tag not in _VOID:
                        self.handle_endtag(tag)


def _breaks(match: re.Match) -> str:
    run = match.group(0)
    if _PARA in run:
        return "\n\n"
    return "\n" * max(1, min(2, run.count(_BR)))


def html_to_text(html: str) -> str:
    """The plain-text version of ``html``."""
    parser = _Converter()
    parser.feed(html)
    text = re.sub(r"[ \t]+", " ", "".join(parser.out))
    text = re.sub(f" *([{_NL}{_PARA}{_CELL}{_BR}]) *", r"\1", text)
    text = re.sub(f"[{_NL}{_PARA}{_BR}]+", _breaks, text)
    # Empty cells (e.g. a column hidden on phones) leave no gap.
    text = re.sub(f"{_CELL}+", _CELL, text)
    lines = (line.strip(" " + _CELL).replace(_CELL, "  ") for line in text.strip().split("\n"))
    return "\n".join(lines).strip() + "\n"
