"""The console's pages: Jinja2 templates (autoescaped), dates in the company's time zone, amounts,
pages of long lists, and the headers every page carries."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from dunningops.tables import money

TEMPLATES = Path(__file__).resolve().parent.parent / "templates" / "console"
STATIC = Path(__file__).resolve().parent.parent / "static"

# No script, no frame, no resource from elsewhere: the pages need none, so an injected one runs nowhere.
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,  # a typo in a template is an error in the tests, not an empty cell
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["money"] = lambda cents, currency=None: money(int(cents or 0), currency)
    env.filters["day"] = lambda d: d.isoformat() if isinstance(d, date) else (d or "—")
    env.filters["plural"] = lambda n, word, many=None: f"{n:,} {word if n == 1 else (many or word + 's')}"
    return env


def local_time(zone: str):
    """The ``when`` filter: an instant as the company's clock shows it (``2026-12-04 09:30``)."""
    tz = ZoneInfo(zone)

    def when(value: datetime | str | None, fmt: str = "%Y-%m-%d %H:%M") -> str:
        if value is None or value == "":
            return "—"
        if isinstance(value, str):
            try:
                instant = datetime.fromisoformat(value)
            except ValueError:
                return value
            value = instant
        if value.tzinfo is None:  # the store's instants are UTC
            value = value.replace(tzinfo=UTC)
        return value.astimezone(tz).strftime(fmt)

    return when


@dataclass(frozen=True)
class Pager:
    """Where a page of a long list sits: "51–100 of 1,234", with links to the pages around it."""

    path: str
    params: dict[str, str]
    offset: int
    limit: int
    total: int
    shown: int

    def _url(self, offset: int) -> str:
        params = {k: v for k, v in self.params.items() if v not in (None, "") and k not in ("offset", "flash")}
        if offset:
            params["offset"] = str(offset)
        return self.path + ("?" + urlencode(params) if params else "")

    @property
    def first(self) -> int:
        return self.offset + 1 if self.shown else 0

    @property
    def last(self) -> int:
        return self.offset + self.shown

    @property
    def previous_url(self) -> str | None:
        return self._url(max(0, self.offset - self.limit)) if self.offset > 0 else None

    @property
    def next_url(self) -> str | None:
        return self._url(self.offset + self.limit) if self.offset + self.shown < self.total else None
