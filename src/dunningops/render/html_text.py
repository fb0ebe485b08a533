"""A plain-text alternative for an HTML email: every email carries one.

Paragraphs and ``<br>`` become line breaks, links ``text (url)``, list items
``- item``, table rows lines of cells separated by two spaces. ``<head>``,
``<style>``, ``<script>`` and hidden elements (``display:none``, e.g. a
preheader) are dropped; ``white-space: pre*`` keeps its line breaks.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from html import unescape
from itertools import islice

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
# so that a body full of unclosed '<a ' costs one pass, not one pass per '<'. A tag's name and
# attributes split one way only, so the possessive quantifiers (never backtracking) change no
# match, only how fast a long attribute list is read.
_TOKENS = re.compile(
    r"<!--.*?(?:-->|\Z)|<![^<>]*>|<\?[^<>]*>"  # comments, doctype, processing instructions: dropped
    r"|<(/?)([A-Za-z][A-Za-z0-9:-]*+)((?:[^<>\"']++|\"[^<\"]*+\"|'[^<']*+')*+)>"  # tags; quoted values may hold '>'
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


# A start tag's meaning depends only on its own text: (name, dropped with its content, href,
# keeps line breaks, self-closing). A template writes the same few dozen tags in every email,
# so each is worked out once; long ones are not kept (a body's output is untrusted and large).
_StartTag = tuple[str, bool, str, bool, bool]
_CACHED_TAG = 256  # characters of attributes


def _start_tag(tag: str, raw: str) -> _StartTag:
    name = tag.lower()
    # Attributes are parsed only when there are some (style and href matter); the last of a
    # repeated attribute wins.
    attr = dict(_attrs(raw)) if raw.strip(" /") else {}
    style = attr.get("style") or ""
    dropped = name in _SKIP or (name not in _VOID and _HIDDEN.search(style) is not None)
    keeps = name == "pre" or _PRE.search(style) is not None
    return name, dropped, attr.get("href") or "", keeps, raw.rstrip().endswith("/") and name not in _VOID


_cached_start_tag = functools.lru_cache(maxsize=2048)(_start_tag)


def _text(raw: str) -> str:
    """Character references decoded, HTML whitespace collapsed to one space."""
    return _SPACES.sub(" ", unescape(raw))


# The same text runs (the indentation between two tags above all) come back in every email.
_cached_text = functools.lru_cache(maxsize=4096)(_text)
_CACHED_TEXT = 256  # characters of a text run


class _Converter:
    def __init__(self) -> None:
        self.out: list[str] = []
        self.skip_tag: str | None = None
        self.skip_depth = 0
        self.tags: list[str] = []  # open elements: their names ...
        self.keeps: list[bool] = []  # ... and whether each keeps line breaks
        self.pre = 0
        self.links: list[tuple[str, int]] = []  # (href, index in out where its text starts)
        self.lists: list[list[int]] = []  # per open list: [next number] for <ol>, [] for <ul>
        self.cells = 0

    def start(self, name: str, dropped: bool, href: str, keeps: bool) -> None:
        if self.skip_tag:
            self.skip_depth += name == self.skip_tag
            return
        if dropped:
            self.skip_tag, self.skip_depth = name, 1
            return
        out = self.out
        mark = _OPEN_MARK.get(name)
        if mark is not None:
            out.append(mark)
        if name == "tr":
            self.cells = 0
        elif name in ("td", "th"):
            if self.cells:
                out.append(_CELL)
            self.cells += 1
        elif name in ("ul", "ol"):
            self.lists.append([1] if name == "ol" else [])
        elif name == "li":
            numbering = self.lists[-1] if self.lists else []
            if numbering:
                out.append(f"{numbering[0]}. ")
                numbering[0] += 1
            else:
                out.append("- ")
        elif name == "a":
            self.links.append((href, len(out)))
        if name not in _VOID:
            self.tags.append(name)
            self.keeps.append(keeps)
            self.pre += keeps

    def end(self, name: str) -> None:
        if self.skip_tag:
            if name == self.skip_tag:
                self.skip_depth -= 1
                if not self.skip_depth:
                    self.skip_tag = None
            return
        tags = self.tags
        if name not in tags:
            return  # a stray end tag
        while tags:
            open_tag = tags.pop()
            self.pre -= self.keeps.pop()
            self._close(open_tag)
            if open_tag == name:
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
        mark = _CLOSE_MARK.get(tag)
        if mark is not None:
            self.out.append(mark)

    def feed(self, html: str) -> None:
        if "<!--" in html:  # a comment may run past a '<': the tokenizer over the whole text
            self.tokens(_TOKENS.findall(html))
            return
        # Without comments, every '<' starts a token and no token runs past the next '<' (see
        # _TOKENS): the text splits at '<' into pieces of a tag and the text after it. A template
        # writes the same pieces in every email, each worked out once (_piece); a piece the
        # cached shortcut cannot decide goes through the tokenizer on its own.
        pieces = html.split("<")
        if pieces[0]:
            self.tokens((("", "", "", pieces[0]),))
        get = _PIECES.get
        out = self.out
        append = out.append
        tags, keeps_stack = self.tags, self.keeps
        for piece in islice(pieces, 1, None):
            found = get(piece)
            if found is None:
                found = _piece(piece)
                if found is None:
                    self.tokens(_TOKENS.findall("<" + piece))
                    continue
            action, raw, text = found
            # The commonest tags, outside a dropped element, are opened and closed here, as
            # start() and end() would (a method call per tag is much of the cost of an email).
            if isinstance(action, str):  # an end tag
                if tags and tags[-1] == action and action not in _CLOSE_WORK and not self.skip_tag:
                    tags.pop()
                    self.pre -= keeps_stack.pop()
                    mark = _CLOSE_MARK.get(action)
                    if mark is not None:
                        append(mark)
                else:
                    self.end(action)
            elif action is not None:
                name, dropped, href, keeps, self_closing = action
                if dropped or self_closing or name in _OPEN_WORK or self.skip_tag:
                    self.start(name, dropped, href, keeps)
                    if self_closing:
                        self.end(name)
                else:
                    mark = _OPEN_MARK.get(name)
                    if mark is not None:
                        append(mark)
                    if name == "tr":
                        self.cells = 0
                    elif name == "td" or name == "th":
                        if self.cells:
                            append(_CELL)
                        self.cells += 1
                    if name not in _VOID:
                        tags.append(name)
                        keeps_stack.append(keeps)
                        self.pre += keeps
            if raw and not self.skip_tag:
                if self.pre:
                    append(unescape(raw).replace("\r\n", "\n").replace("\n", _BR))
                else:
                    append(text if text is not None else _text(raw))

    def tokens(self, tokens: Iterable[tuple[str, str, str, str]]) -> None:
        """Convert ``_TOKENS.findall`` tokens: one tuple of groups each, '' for those that did not take part."""
        append = self.out.append
        for closing, tag, raw, text in tokens:
            if text:
                if self.skip_tag:
                    continue
                if self.pre:
                    append(unescape(text).replace("\r\n", "\n").replace("\n", _BR))
                else:
                    append(_cached_text(text) if len(text) <= _CACHED_TEXT else _text(text))
            elif tag:
                if closing:
                    self.end(tag.lower())
                    continue
                name, dropped, href, keeps, self_closing = (
                    _cached_start_tag(tag, raw) if len(raw) <= _CACHED_TAG else _start_tag(tag, raw)
                )
                self.start(name, dropped, href, keeps)
                if self_closing:
                    self.end(name)


# What the markup at the start of a piece is, by its text up to the first '>': a start tag's
# _StartTag, an end tag's name, None for a doctype or processing instruction (dropped), or _UNSURE
# when that '>' does not end it (it is inside a quoted value, or the '<' is text).
_Markup = _StartTag | str | None
_UNSURE = ""  # no tag name is empty
_MARKUP: dict[str, _Markup] = {}
# A piece: (its markup, the text after it, that text converted outside pre or None if too long to cache).
_PIECES: dict[str, tuple[_Markup, str, str | None]] = {}
_CACHED_PIECES = 8192  # entries of each cache: emptied when full (a body's own pieces are untrusted)


def _markup(head: str) -> _Markup:
    # The tokenizer never looks past the '>' that ends a doctype, an instruction or a tag (possessive
    # quantifiers, no quoted value holding a '<'), so what "<head>" is, the whole piece is.
    match = _TOKENS.match(f"<{head}>")
    if match is None or match.end() != len(head) + 2:
        return _UNSURE
    closing, tag, raw, _ = match.groups()
    if tag is None:
        return None
    if closing:
        return tag.lower()
    return _start_tag(tag, raw)


def _piece(piece: str) -> tuple[_Markup, str, str | None] | None:
    """``piece`` (what follows a '<' up to the next one) as (markup, text after it, that text converted);
    None when the tokenizer has to decide."""
    end = piece.find(">")
    if end < 0:
        return None
    head = piece[:end]
    if head in _MARKUP:
        markup = _MARKUP[head]
    else:
        markup = _markup(head)
        if len(head) <= _CACHED_TAG:
            if len(_MARKUP) >= _CACHED_PIECES:
                _MARKUP.clear()
            _MARKUP[head] = markup
    if markup == _UNSURE:
        return None
    raw = piece[end + 1 :]
    if len(raw) > _CACHED_TEXT:
        return markup, raw, None
    found = (markup, raw, _cached_text(raw))
    if len(head) <= _CACHED_TAG:  # long pieces are not kept, as long tags and texts are not
        if len(_PIECES) >= _CACHED_PIECES:
            _PIECES.clear()
        _PIECES[piece] = found
    return found


_OPEN_MARK = {"br": _BR, **dict.fromkeys(_PARAGRAPH, _PARA), **dict.fromkeys(_LINE, _NL)}
_CLOSE_MARK = {**dict.fromkeys(_PARAGRAPH, _PARA), **dict.fromkeys(_LINE, _NL)}
# Tags whose start or end does more than write its marker and open or close the element.
_OPEN_WORK = frozenset({"ul", "ol", "li", "a"})
_CLOSE_WORK = frozenset({"ul", "ol", "a"})


def _breaks(match: re.Match) -> str:
    run = match.group(0)
    if _PARA in run:
        return "\n\n"
    return "\n" * max(1, min(2, run.count(_BR)))


# Runs of blanks that are not already one space (most gaps between words are).
_BLANKS = re.compile(r"\t[ \t]*| [ \t]+")
_BREAK_RUNS = re.compile(f"[{_NL}{_PARA}{_BR}]+")
_CELL_RUNS = re.compile(f"{_CELL}{_CELL}+")
_MARKS = f"{_NL}{_PARA}{_CELL}{_BR}"
# A cluster: a run of markers with the blanks between and after them. What it becomes depends on
# it alone, and a template's clusters are the same few dozen in every email (_cached_gap). The
# pattern starts with a class of characters, which re's search skips to at C speed.
_CLUSTERS = re.compile(f"([{_MARKS}][{_MARKS} \t]*+)")
_CACHED_GAP = 64  # characters


def _gap(run: str) -> str:
    """A gap as text: its blanks collapsed or dropped next to a marker, its markers as line breaks and cells."""
    text = _BLANKS.sub(" ", run)
    # Blanks are single spaces now: one next to a marker goes (str.replace, not a regex per match).
    for mark in (_NL, _PARA, _CELL, _BR):
        text = text.replace(" " + mark, mark).replace(mark + " ", mark)
    text = _BREAK_RUNS.sub(_breaks, text)
    # Empty cells (e.g. a column hidden on phones) leave no gap.
    return _CELL_RUNS.sub(_CELL, text)


# A template's gaps are the same few dozen in every email.
_cached_gap = functools.lru_cache(maxsize=1024)(_gap)


def html_to_text(html: str) -> str:
    """The plain-text version of ``html``."""
    parser = _Converter()
    parser.feed(html)
    # re.split with a group: the words at even indexes, the clusters between them at odd ones.
    parts = _CLUSTERS.split("".join(parser.out))
    # Blanks before a marker go, like those after it (in its cluster).
    parts[0:-1:2] = [word.rstrip(" \t") for word in parts[0:-1:2]]
    parts[1::2] = [_cached_gap(gap) if len(gap) <= _CACHED_GAP else _gap(gap) for gap in parts[1::2]]
    text = "".join(parts)
    if "\t" in text or "  " in text:  # the words' own runs of blanks
        text = _BLANKS.sub(" ", text)
    lines = (line.strip(" " + _CELL).replace(_CELL, "  ") for line in text.strip().split("\n"))
    return "\n".join(lines).strip() + "\n"
