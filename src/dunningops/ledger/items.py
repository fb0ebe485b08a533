"""The ledger's items as the HTTP API receives them: JSON objects, checked and upserted by the very
code a file's rows go through (``stream.stage_rows``, ``writes``), in the caller's transaction.

Same cell parsers, same set-based checks, same messages and the same idempotence as
``dunningops ledger import``; an item is placed by its index in the request (0 first) instead of a
row number. All or nothing: one invalid item and nothing is written.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from dunningops.errors import InvalidInputError
from dunningops.ledger.columns import KINDS
from dunningops.ledger.importer import ImportSummary
from dunningops.ledger.issues import RowIssue
from dunningops.ledger.loading import drop_staging
from dunningops.ledger.mapping import Mapping
from dunningops.ledger.reader import RawRow, json_cells
from dunningops.ledger.stream import stage_rows
from dunningops.ledger.writes import write

__all__ = ["ItemIssue", "ItemsError", "import_items"]

SOURCE = "request"


@dataclass(frozen=True)
class ItemIssue:
    """One problem of one item: its index in the request, its field (None: the item as a whole), why."""

    index: int
    field: str | None
    message: str

    def __str__(self) -> str:
        field = f", field {self.field}" if self.field else ""
        return f"item {self.index}{field}: {self.message}"


class ItemsError(InvalidInputError):
    """Invalid items: nothing was written. Every problem is listed, by item index and field."""

    http_status = 422  # the request was well-formed JSON; its items are not acceptable

    def __init__(self, issues: list[ItemIssue], items: int):
        self.issues = sorted(issues, key=lambda i: (i.index, i.field or "", i.message))
        bad = len({i.index for i in self.issues})
        n = len(self.issues)
        super().__init__(f"{n} error{'s' if n != 1 else ''} in {bad} of {items} items; nothing was written")


def _place(index: int) -> str:
    return f"item {index}"


def _unknown_fields(item: dict, names: tuple[str, ...]) -> list[tuple[str, str]]:
    # A file's extra columns are ignored (exports carry many); an API client's misspelt field is a bug to say.
    problems = []
    for key in item:
        if key in names:
            continue
        close = difflib.get_close_matches(str(key), names, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"expected one of: {', '.join(names)}"
        problems.append((str(key), f"unknown field ({hint})"))
    return problems


def _raw_rows(kind: str, items: Sequence[object]) -> Iterator[RawRow]:
    columns = KINDS[kind]
    names = tuple(c.name for c in columns)
    mapping = Mapping()
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            yield index, None, [("", "is not a JSON object")]
            continue
        row, problems = json_cells(item, columns, mapping)
        yield index, row, problems + _unknown_fields(item, names)


def import_items(session: Session, kind: str, items: Sequence[object], *, now: datetime) -> ImportSummary:
    """Upsert ``items`` (decoded JSON) of ``kind`` (customers, contacts, invoices, payments) in ``session``.

    Returns the counts (``added``, ``changed``, ``unchanged``, ``links_changed``), as ``ledger import``
    gives them: the same items posted twice change nothing the second time.

    Raises:
        ItemsError: any item is invalid (every problem listed); nothing is written.
        ConflictError: no config has been applied yet.
    """
    if kind not in KINDS:
        raise InvalidInputError(f"unknown ledger kind {kind!r} (expected one of: {', '.join(KINDS)})")
    summary = ImportSummary(kind=kind, file=SOURCE)
    stage_rows(session, kind, _raw_rows(kind, items), summary, source=SOURCE, unit="item", place=_place)
    if summary.issues:
        drop_staging(session, kind)
        raise ItemsError([_item_issue(i) for i in summary.issues], summary.rows)
    counts = write(session, kind, now, prune=False)
    summary.added, summary.changed, summary.links_changed = counts.added, counts.changed, counts.links_changed
    summary.notices = counts.notices  # A9: the caller sends them once its transaction committed
    drop_staging(session, kind)
    return summary


def _item_issue(issue: RowIssue) -> ItemIssue:
    return ItemIssue(issue.row, issue.column or None, issue.message)
