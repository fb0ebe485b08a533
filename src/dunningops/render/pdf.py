"""A letter step's rendered HTML as an A4 PDF: the company's letterhead, the customer's postal
address where a window envelope shows it, the place and date, the subject, the letter, the legal
mentions at the foot of each page.

The letter's HTML is untrusted (whoever opens a pull request writes its template): WeasyPrint gets
a URL fetcher that refuses everything but ``data:`` URIs, so nothing is read from disk or the
network (images, stylesheets, ``@import``, fonts, ``url()``), and the work is bounded: the HTML's
size and element count before layout (layout costs ~80 ms a page of table, CSS ~0.3 ms an
element), the pages and the time during it. WeasyPrint is imported on the first PDF only: the CLI
does not pay its import (~1 s), and a machine without Pango gets one line, not a traceback.
"""

from __future__ import annotations

import base64
import logging
import re
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import date
from html import escape
from html.parser import HTMLParser
from time import monotonic
from typing import Any
from urllib.parse import unquote_to_bytes

from dunningops.errors import DunningOpsError, InvalidInputError, UnavailableError
from dunningops.render.formatting import babel_locale, long_date
from dunningops.render.layout import brand_colour

__all__ = ["MAX_PAGES", "LetterTooLargeError", "address_lines", "letter_body", "letter_pdf"]

log = logging.getLogger("dunningops.render.pdf")

MAX_PAGES = 50
MAX_SECONDS = 30.0  # wall time of one PDF: a two-page letter takes ~0.1 s
MAX_HTML = 200_000  # characters of the letter's HTML (CSS included) handed to WeasyPrint: ~50 pages of table
MAX_ELEMENTS = 8_000  # elements of the letter: ~2,500 table rows
MAX_DATA_URI = 2_000_000  # bytes of one data: URI (a logo, a font)
PANGO_MISSING = "letters as PDF need Pango: apt-get install libpango-1.0-0 libpangoft2-1.0-0"

# Elements that fetch, run or redirect something, or only make sense in a browser: dropped with their content.
_DROPPED = frozenset(
    {"script", "noscript", "template", "iframe", "frame", "frameset", "object", "embed", "applet", "audio", "video"}
)
# Dropped on their own (void, or head-only).
_DROPPED_TAGS = frozenset({"link", "base", "meta", "source", "track", "param"})
_VOID = frozenset({"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source", "track", "wbr"})
_CONTENT_CELL = "dno-content"  # the branded email layout's content cell (render/layout.py)
# A postal code then the town ("69002 Lyon", "F-69002 Lyon", "1012 AB Amsterdam"): where the letter is written from.
_POSTAL_TOWN = re.compile(r"^\s*(?:[A-Z]{1,3}-)?\d{4,5}(?:\s?[A-Z]{2})?\s+(\D.*?)\s*$")
_STYLE_END = re.compile(r"</(style)", re.IGNORECASE)
# Countries whose postal addresses put the town before the postcode.
_TOWN_FIRST = frozenset({"GB", "IE", "US", "CA", "AU", "NZ"})

_WORDS = {
    "fr": {"subject": "Objet\u00a0:", "place_date": "{place}, le {date}"},
    "en": {"subject": "Subject:", "place_date": "{place}, {date}"},
}


class LetterTooLargeError(InvalidInputError):
    """The letter is too long or too complex to print (it names the bound it went past)."""


# --- the letter's own content -----------------------------------------------------------------


class _Extractor(HTMLParser):
    """One pass over the rendered HTML: the content cell of the branded layout, else the <body>,
    else the whole fragment; the <style> sheets; without what fetches or runs something."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.whole: list[str] = []
        self.body: list[str] | None = None
        self.cell: list[str] | None = None
        self.styles: list[str] = []
        self._stack: list[str] = []
        self._cell_depth: int | None = None  # stack length when the content cell opened
        self._cell_done = False
        self._skip_depth: int | None = None  # inside a dropped element, or the <head>
        self._in_style = False

    def _emit(self, text: str) -> None:
        if self._skip_depth is not None:
            return
        if self._cell_depth is not None and self.cell is not None:
            self.cell.append(text)
        if self.body is not None:
            self.body.append(text)
        self.whole.append(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "style":
            self._in_style = True
            return
        if tag == "body":
            self.body = []
            self._stack.append(tag)
            return
        opens = tag not in _VOID
        if self._skip_depth is None and (tag in _DROPPED or tag in ("head", "title")):
            if opens:
                self._skip_depth = len(self._stack)
                self._stack.append(tag)
            return
        if opens:
            self._stack.append(tag)
        if tag in _DROPPED_TAGS or tag == "html" or self._skip_depth is not None:
            return
        classes = next((v or "" for k, v in attrs if k == "class"), "").split()
        if tag == "td" and _CONTENT_CELL in classes and self.cell is None and not self._cell_done:
            self.cell, self._cell_depth = [], len(self._stack)
            return
        if any(k.startswith("on") for k, _ in attrs):
            kept = "".join(f' {k}="{escape(v or "")}"' for k, v in attrs if not k.startswith("on"))
            self._emit(f"<{tag}{kept}>")
        else:
            self._emit(self.get_starttag_text() or f"<{tag}>")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _VOID:
            self.handle_starttag(tag, attrs)
        else:  # <div/>: an empty element
            self.handle_starttag(tag, attrs)
            self.handle_endtag(tag)

    def handle_endtag(self, tag: str) -> None:
        if tag == "style":
            self._in_style = False
            return
        if tag in _VOID or tag not in self._stack:
            return
        while self._stack:
            top = self._stack.pop()
            depth = len(self._stack)
            if self._skip_depth is not None and depth <= self._skip_depth:
                self._skip_depth = None
            elif self._cell_depth is not None and depth < self._cell_depth:
                self._cell_depth, self._cell_done = None, True
            elif top == "body":
                pass
            elif top not in _DROPPED_TAGS and top != "html":
                self._emit(f"</{top}>")
            if top == tag:
                break

    def handle_data(self, data: str) -> None:
        if self._in_style:
            if self._skip_depth is None or self._stack[self._skip_depth :][:1] == ["head"]:
                self.styles.append(data)
            return
        self._emit(escape(data, quote=False))


def letter_body(html: str) -> tuple[str, str]:
    """(content, css) of a rendered letter: the branded layout's content cell when there is one (the
    text and blocks designs; their CSS is the email's, left out), else the <body>, else the
    fragment as it is (the html design, with its own <style> sheets)."""
    parser = _Extractor()
    parser.feed(html)
    parser.close()
    if parser.cell is not None:
        return "".join(parser.cell), ""
    content = parser.body if parser.body is not None else parser.whole
    return "".join(content), "\n".join(parser.styles)


# --- the frame: letterhead, address, place and date, subject, legal mentions --------------------


def address_lines(customer: Mapping[Any, Any], *, from_country: str | None = None, locale: str = "en") -> list[str]:
    """The postal address as printed: the lines, the postcode and town, and the country (by name, in
    capitals) when it is not ``from_country``; nothing when the ledger has no address."""
    line1, line2 = (customer.get(k) or "" for k in ("address_line1", "address_line2"))
    postal, town = customer.get("postal_code") or "", customer.get("city") or ""
    country = (customer.get("country") or "").upper()
    parts = [p for p in (postal, town) if p]
    last = " ".join(reversed(parts) if country in _TOWN_FIRST else parts)
    lines = [p.strip() for p in (line1, line2, last) if p.strip()]
    if lines and country and from_country and country != from_country.upper():
        lines.append((babel_locale(locale).territories.get(country) or country).upper())
    return lines


def _place(company_address: list[str]) -> str | None:
    """The town the company writes from: the last letterhead line that holds a postcode and a town."""
    for line in reversed(company_address):
        if match := _POSTAL_TOWN.match(line):
            return match.group(1)
    return None


def _lines(lines: list[str]) -> str:
    return "<br>".join(escape(line) for line in lines)


def _frame(company: dict[str, Any], customer: dict[str, Any], subject: str, day: date, language: str, locale: str) -> str:
    words = _WORDS.get(language, _WORDS["en"])
    name = escape(company.get("name") or "")
    logo = company.get("logo_url") or ""
    # Only an embedded logo: a URL would be a request to the network for every letter.
    head = f'<img class="dno-logo" src="{escape(logo)}" alt="{name}">' if logo.startswith("data:image/") else ""
    head += f'<div class="dno-company">{name}</div>'
    if company.get("address"):
        head += f'<div class="dno-company-address">{_lines(list(company["address"]))}</div>'
    recipient = [customer.get("name") or "", *address_lines(customer, from_country=company.get("country"), locale=locale)]
    when = long_date(day, locale)
    place = _place(list(company.get("address") or []))
    dated = words["place_date"].format(place=escape(place), date=when) if place else when
    legal = " · ".join(escape(p) for p in (company.get("name"), company.get("legal")) if p)
    return (
        f'<div class="dno-legal">{legal}</div>\n'
        f'<div class="dno-head"><div class="dno-letterhead">{head}</div>\n'
        f'<div class="dno-recipient">{_lines([r for r in recipient if r])}</div></div>\n'
        f'<p class="dno-date">{dated}</p>\n'
        f'<p class="dno-subject"><strong>{escape(words["subject"])}</strong> {escape(subject)}</p>\n'
    )


# Before the letter's own sheets: what a letter looks like when its template says nothing.
_DEFAULTS = """
html { font-family: "DejaVu Sans", Arial, Helvetica, sans-serif; font-size: 10pt; line-height: 1.4; color: #1d2733; }
body { margin: 0; padding: 0; }
p { margin: 0 0 3.5mm 0; }
table { border-collapse: collapse; max-width: 100%; margin: 0 0 3.5mm 0; }
th, td { padding: 1mm 3mm 1mm 0; text-align: left; vertical-align: top; }
img { max-width: 100%; }
"""


def _frame_css(company: dict[str, Any]) -> str:
    brand = brand_colour(company)
    # After the letter's own sheets: the page stays A4 and the frame where the envelope needs it,
    # whatever they say. A DL window envelope shows 100 x 45 mm, 100 mm from the left and 50 mm
    # from the top of a page folded in three.
    return f"""
@page {{ size: A4 portrait !important; margin: 18mm 20mm 24mm 20mm !important;
  @bottom-center {{ content: element(dno-legal); vertical-align: top; }} }}
.dno-legal {{ position: running(dno-legal); font-size: 7.5pt; color: #6b7785; text-align: center; }}
.dno-head {{ position: relative; height: 82mm; }}
.dno-letterhead {{ width: 80mm; }}
.dno-logo {{ display: block; max-height: 16mm; max-width: 60mm; margin-bottom: 2mm; }}
.dno-company {{ font-weight: bold; font-size: 12pt; color: {brand}; }}
.dno-company-address {{ font-size: 8.5pt; color: #4a5562; margin-top: 1mm; }}
.dno-recipient {{ position: absolute; top: 34mm; left: 90mm; width: 80mm; height: 38mm; overflow: hidden;
  font-size: 10.5pt; line-height: 1.35; }}
.dno-date {{ margin: 0 0 6mm 90mm; }}
.dno-subject {{ margin: 0 0 6mm 0; }}
"""


def _document(frame: str, content: str, css: str, subject: str, language: str, company: dict[str, Any]) -> str:
    css = _STYLE_END.sub(r"<\\/\1", css)  # raw text: only "</style" could end the sheet early
    return (
        f'<!DOCTYPE html>\n<html lang="{escape(language)}">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{escape(subject)}</title>\n"
        f'<meta name="author" content="{escape(company.get("name") or "")}">\n'
        f"<style>{_DEFAULTS}</style>\n<style>{css}</style>\n<style>{_frame_css(company)}</style>\n</head>\n"
        f'<body>\n{frame}<div class="dno-body">\n{content}\n</div>\n</body>\n</html>\n'
    )


# --- WeasyPrint, fenced in ----------------------------------------------------------------------


class _Budget(threading.local):
    deadline: float | None = None
    refused: list[str] | None = None


_budget = _Budget()


class _Stop(Exception):
    """Raised from inside WeasyPrint's layout when a bound is reached."""


class _PageGuard(logging.Filter):
    """WeasyPrint logs each page it lays out: the place to stop a letter past the pages or the time.
    Every record is dropped (they would fill the daemon's logs)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _budget.deadline is None:
            return False
        if monotonic() > _budget.deadline:
            raise _Stop(f"printing it took longer than {MAX_SECONDS:g} seconds")
        if str(record.msg).startswith("Step 5 - Creating layout - Page") and record.args:
            page = record.args[0] if isinstance(record.args, tuple) else 0
            if isinstance(page, int) and page > MAX_PAGES:
                raise _Stop(f"it would be longer than {MAX_PAGES} pages")
        return False


class _Quiet(logging.Filter):
    """WeasyPrint's warnings (a refused image, an unknown CSS property) are about the template: not
    the daemon's logs' business; the refused URLs are counted instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return False


_GUARD, _QUIET = _PageGuard(), _Quiet()


def _data_uri(url: str) -> tuple[str, bytes]:
    """(media type, bytes) of a ``data:`` URI (RFC 2397)."""
    header, comma, payload = url[5:].partition(",")
    if not comma:
        raise ValueError("a data: URI without a comma")
    if len(payload) > MAX_DATA_URI * 4 // 3 + 4:
        raise ValueError("a data: URI over the size limit")
    params = header.split(";")
    media = params[0].strip() or "text/plain"
    data = base64.b64decode(unquote_to_bytes(payload)) if params[-1].strip() == "base64" else unquote_to_bytes(payload)
    return media, data


def _fetcher(weasyprint: Any) -> Any:
    from weasyprint.urls import URLFetcher, URLFetcherResponse

    class DataOnly(URLFetcher):
        """Every URL refused but ``data:`` (decoded here: no urllib handler is ever reached)."""

        def fetch(self, url: str, headers: Any = None) -> Any:
            if url[:5].lower() == "data:":
                media, data = _data_uri(url)
                return URLFetcherResponse(url, data, {"Content-Type": media})
            if _budget.refused is not None:
                _budget.refused.append(url[:200])
            raise ValueError("letters fetch nothing: only data: URIs are used")

    return DataOnly(timeout=1, allowed_protocols={"data"}, allow_redirects=False)


def _weasyprint() -> Any:
    # Before the import, which already logs (its default stylesheets).
    progress = logging.getLogger("weasyprint.progress")
    if _GUARD not in progress.filters:
        progress.addFilter(_GUARD)
    progress.setLevel(logging.INFO)  # the page guard sees each page (and drops the record)
    quiet = logging.getLogger("weasyprint")
    if _QUIET not in quiet.filters:
        quiet.addFilter(_QUIET)
    try:
        import weasyprint
    except (OSError, ImportError) as exc:  # cffi's dlopen of Pango fails with OSError
        raise UnavailableError(PANGO_MISSING) from exc
    return weasyprint


@contextmanager
def _bounded() -> Iterator[list[str]]:
    refused: list[str] = []
    _budget.deadline, _budget.refused = monotonic() + MAX_SECONDS, refused
    try:
        yield refused
    finally:
        _budget.deadline, _budget.refused = None, None


def letter_pdf(
    *,
    company: dict[str, Any],
    customer: dict[str, Any],
    subject: str,
    body_html: str,
    date: date,
    language: str,
    locale: str | None = None,
) -> bytes:
    """The letter as an A4 PDF.

    Args:
        company: settings.company's name, address (lines), legal, brand_color, logo_url (used
            only when a ``data:`` URI), country.
        customer: name, address_line1, address_line2, postal_code, city, country (ISO code).
        subject: the letter's subject line.
        body_html: the rendered letter (a whole document or a fragment; see ``letter_body``).
        date: the letter's date; language: its language (fr, en: the frame's few words);
        locale: how the date is spelt (default: the language).

    Raises:
        LetterTooLargeError: past MAX_HTML, MAX_ELEMENTS, MAX_PAGES or MAX_SECONDS.
        UnavailableError: WeasyPrint or Pango is missing.
    """
    locale = locale or language
    content, css = letter_body(body_html)
    size = len(content) + len(css)
    if size > MAX_HTML:
        raise LetterTooLargeError(f"the letter is too long to print: {size:,} characters of HTML (at most {MAX_HTML:,})")
    elements = content.count("<") - content.count("</")
    if elements > MAX_ELEMENTS:
        raise LetterTooLargeError(f"the letter is too long to print: {elements:,} HTML elements (at most {MAX_ELEMENTS:,})")
    frame = _frame(company, customer, subject, date, language, locale)
    document = _document(frame, content, css, subject, language, company)
    weasyprint = _weasyprint()
    fetcher = _fetcher(weasyprint)
    with _bounded() as refused:
        try:
            rendered = weasyprint.HTML(string=document, url_fetcher=fetcher, base_url=None).render()
        except _Stop as exc:
            raise LetterTooLargeError(f"the letter cannot be printed: {exc}") from None
        except RecursionError:
            raise LetterTooLargeError("the letter cannot be printed: its HTML nests too deeply") from None
        if len(rendered.pages) > MAX_PAGES:  # a layout pass may log fewer pages than it finally keeps
            raise LetterTooLargeError(f"the letter cannot be printed: it would be longer than {MAX_PAGES} pages")
        pdf = rendered.write_pdf()
    if refused:
        log.info("letter %r: %d resources not fetched (only data: URIs are): %s", subject, len(refused), ", ".join(refused[:20]))
    if not isinstance(pdf, bytes):  # write_pdf() without a target returns the bytes
        raise DunningOpsError("WeasyPrint returned no PDF")
    return pdf
