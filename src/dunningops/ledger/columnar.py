"""The columnar fast path of a CSV import: a batch of records converted a column at a time.

Per-row Python (a dict per row, a parser call per cell) was most of an import's time.
Here each column of a batch is checked and converted with C-level ``map`` calls and
plain comprehensions, straight into the staging table's tuples. It accepts only what
the row-by-row path (``columns.make_parsers``, ``staging.converter``) accepts, giving
the same values; anything else (a bad cell, a custom date or number format) raises
``Slow``, and the importer runs that batch through the row-by-row path, whose messages
(file, row, column) are the ones users read. So a valid file goes fast, and a file
with bad rows is reported exactly as before.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from datetime import date
from itertools import repeat
from operator import itemgetter
from typing import Any

from dunningops.ledger.columns import _EMAIL, _FALSE, _TRUE, KINDS, MAX_DATE, MAX_UNITS_DIGITS, MIN_DATE, PAYMENT_KINDS
from dunningops.ledger.context import LedgerContext
from dunningops.ledger.mapping import Mapping
from dunningops.ledger.reader import Positions
from dunningops.ledger.staging import ADDRESS_COLUMNS, STAGING, STAGING_FUNCTIONS


class Slow(Exception):
    """This batch holds a cell only the row-by-row path handles (and words) exactly."""


# "1234.50", "7", "0.5": what exports mostly hold, as the row-by-row parser's own fast path
# reads them (ASCII digits only here: anything else goes the row-by-row way).
_CENTS = re.compile(rf"([0-9]{{1,{MAX_UNITS_DIGITS}}})(?:\.([0-9]{{1,2}}))?")
_CENTS_2 = re.compile(rf"[0-9]{{1,{MAX_UNITS_DIGITS}}}\.[0-9]{{2}}")  # the usual shape: two decimals
_DECIMALS: dict[str | None, int] = {None: 0} | {f"{i}": i * 10 for i in range(10)} | {f"{i:02d}": i for i in range(100)}
_LOCALE = re.compile(r"[a-z]{2}([_-][A-Za-z]{2})?")
_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_MIN_ISO, _MAX_ISO = MIN_DATE.isoformat(), MAX_DATE.isoformat()
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_LIST_SPLIT = re.compile(r"[;|,]")
_BOOLS = {value: True for value in _TRUE} | {value: False for value in _FALSE if value}

Batch = list[list[str]]
# (row numbers, records) → (staging tuples, function-link tuples), in the staging tables' column order.
BatchConverter = Callable[[list[int], Batch], tuple[list[tuple], list[tuple]]]


def batch_converter(
    kind: str, ctx: LedgerContext, positions: Positions, mapping: Mapping, *, iso_dates: bool
) -> BatchConverter | None:
    """The columnar converter of ``kind``'s records, or None when the file's conventions need the row-by-row path."""
    if mapping.date_format or mapping.decimal_comma:
        return None  # strptime formats and decimal commas: rare, and the row-by-row parsers handle them
    where = dict(positions)
    spec = {c.name: c for c in KINDS[kind]}

    def cells(records: Batch, name: str) -> list[str] | None:
        """A column's stripped cells, checked for length and emptiness; None: not in the file."""
        index = where.get(name)
        if index is None:
            return None
        column = spec[name]
        # A column at a time by itemgetter: zip(*records) of all columns was three times slower.
        values = list(map(str.strip, map(itemgetter(index), records)))
        if max(map(len, values)) > column.max_length or (column.required and "" in values):
            raise Slow
        return values

    build = {"customers": _customers, "contacts": _contacts, "invoices": _invoices, "payments": _payments}[kind]
    return build(ctx, cells, iso_dates)


Cells = Callable[[Batch, str], list[str] | None]


def _none(n: int) -> list[Any]:
    return [None] * n


def _text(values: list[str] | None, n: int) -> list[str | None]:
    """Empty cells are None, as the row-by-row path leaves them out."""
    if values is None:
        return _none(n)
    return [v or None for v in values] if "" in values else list(values)


def _lines(values: list[str] | None, n: int) -> list[str | None]:
    if values is not None and any(map(_CONTROL.search, values)):
        raise Slow
    return _text(values, n)


def _dates(values: list[str] | None, n: int, iso: bool) -> list[Any]:
    """ISO dates: as the text itself on SQLite (what SQLAlchemy's Date stores there), else as dates."""
    if values is None:
        return _none(n)
    if "" not in values:
        return _check_dates(values, iso)
    present = iter(_check_dates([v for v in values if v], iso))
    return [next(present) if v else None for v in values]


def _check_dates(values: list[str], iso: bool) -> list[Any]:
    # date.fromisoformat also reads other shapes (20261116, 2026-W47-1): those go the row-by-row way,
    # so that a date matched here is its own ISO text, and text order is date order.
    if not values:
        return []
    if None in map(_ISO_DATE.fullmatch, values) or min(values) < _MIN_ISO or max(values) > _MAX_ISO:
        raise Slow
    try:
        days = list(map(date.fromisoformat, values))  # 2026-02-30 is not a date
    except ValueError:
        raise Slow from None
    return values if iso else days


def _cents(values: list[str] | None, n: int) -> list[int | None]:
    if values is None:
        return _none(n)
    if "" in values:
        present = iter(_check_cents([v for v in values if v]))
        return [next(present) if v else None for v in values]
    return list(_check_cents(values))


def _check_cents(values: list[str]) -> list[int]:
    if None not in map(_CENTS_2.fullmatch, values):
        return list(map(int, map(str.replace, values, repeat("."), repeat(""))))  # "1234.50" → 123450, in C
    matches = list(map(_CENTS.fullmatch, values))
    if None in matches:
        raise Slow
    return [int(m[1]) * 100 + _DECIMALS[m[2]] for m in matches]  # type: ignore[index]


def _upper(values: list[str] | None, n: int, width: int) -> list[str | None]:
    if values is None:
        return _none(n)
    ups = [v.upper() for v in values]
    present = [u for u in ups if u] if "" in values else ups
    if any(len(u) != width for u in present) or not all(map(str.isalpha, present)):
        raise Slow
    return [u or None for u in ups]


def _locales(values: list[str] | None, n: int) -> list[str | None]:
    if values is None:
        return _none(n)
    present = [v for v in values if v] if "" in values else values
    if None in map(_LOCALE.fullmatch, present):
        raise Slow
    return [v.replace("-", "_") or None for v in values]


def _bools(values: list[str] | None, n: int) -> list[bool | None]:
    if values is None:
        return _none(n)
    try:
        return [_BOOLS[v.lower()] if v else None for v in values]
    except KeyError:
        raise Slow from None


def _lookup(values: list[str | None], known: Callable[[str], str | None]) -> list[str | None]:
    """Each distinct value looked up once; an unknown one is the row-by-row path's to word."""
    found = {}
    for value in set(values):
        if value is not None:
            if (hit := known(value)) is None:
                raise Slow
            found[value] = hit
    return [found[v] if v is not None else None for v in values]


def _default(values: list[str | None], default: str) -> list[str]:
    return [v or default for v in values]


def _stg_order(kind: str) -> list[str]:
    return [c.name for c in STAGING[kind].columns]


def _customers(ctx: LedgerContext, cells: Cells, iso: bool) -> BatchConverter:
    def manager(value: str) -> str | None:
        return ctx.members.get(value) or ctx.members.get(value.lower())

    def convert(numbers: list[int], records: Batch) -> tuple[list[tuple], list[tuple]]:
        n = len(numbers)
        plans = _text(cells(records, "plan"), n)
        if not set(plans) - {None} <= ctx.plans:
            raise Slow
        country = cells(records, "country")
        out = {
            "row_no": numbers,
            "external_id": cells(records, "external_id"),
            "name": cells(records, "name"),
            "country": _upper(country, n, 2),
            "locale": _default(_locales(cells(records, "locale"), n), ctx.locale),
            "currency": _default(_upper(cells(records, "currency"), n, 3), ctx.currency),
            "account_manager": _lookup(_text(cells(records, "account_manager"), n), manager),
            "plan_id": plans,
            **{c: _lines(cells(records, c), n) for c in ADDRESS_COLUMNS},
        }
        return list(zip(*(out[c] for c in _stg_order("customers")), strict=True)), []

    return convert


def _contacts(ctx: LedgerContext, cells: Cells, iso: bool) -> BatchConverter:
    def convert(numbers: list[int], records: Batch) -> tuple[list[tuple], list[tuple]]:
        n = len(numbers)
        customer = cells(records, "customer_external_id")
        emails = cells(records, "email")
        assert customer is not None and emails is not None  # required: in every file
        if None in map(_EMAIL.match, emails):
            raise Slow
        emails = list(map(str.lower, emails))
        primary = _bools(cells(records, "primary"), n)
        out = {
            "row_no": numbers,
            "customer_external_id": customer,
            "email": emails,
            "name": _text(cells(records, "name"), n),
            "phone": _text(cells(records, "phone"), n),
            "job": _text(cells(records, "job"), n),
            "is_primary": [bool(p) for p in primary],  # C3: checked and written set-based (checks.py, writes.py)
            "valid": _bools(cells(records, "valid"), n),  # C10: None leaves the contact's validity as it is
        }
        # C7: functions by id or label (any language), each once per contact, in the file's order.
        links = []
        functions = cells(records, "functions")
        if functions is not None:
            for row_no, cust, email, value in zip(numbers, customer, emails, functions, strict=True):
                if not value:
                    continue
                seen: list[str] = []
                for part in _LIST_SPLIT.split(value):
                    name = part.strip()
                    if not name:
                        continue
                    fid = ctx.functions.get(name.lower())
                    if fid is None:
                        raise Slow
                    if fid not in seen:
                        seen.append(fid)
                        links.append((row_no, cust, email, fid))
        assert [c.name for c in STAGING_FUNCTIONS.columns] == ["row_no", "customer_external_id", "email", "function_id"]
        return list(zip(*(out[c] for c in _stg_order("contacts")), strict=True)), links

    return convert


def _invoices(ctx: LedgerContext, cells: Cells, iso: bool) -> BatchConverter:
    def convert(numbers: list[int], records: Batch) -> tuple[list[tuple], list[tuple]]:
        n = len(numbers)
        issue, due = _dates(cells(records, "issue_date"), n, iso), _dates(cells(records, "due_date"), n, iso)
        # Both compared only where both are there (due_date is required: it always is).
        if any(i is not None and d is not None and d < i for i, d in zip(issue, due, strict=True)):
            raise Slow
        amount = _cents(cells(records, "amount"), n)
        outstanding_cells = _cents(cells(records, "outstanding"), n)
        outstanding = [a if o is None else o for o, a in zip(outstanding_cells, amount, strict=True)]
        if any(o is not None and a is not None and o > a for o, a in zip(outstanding, amount, strict=True)):
            raise Slow
        statuses = _text(cells(records, "status"), n)
        status = [s.lower() if s else ("paid" if o == 0 else "open") for s, o in zip(statuses, outstanding, strict=True)]
        if not set(status) <= {"open", "paid", "void"}:
            raise Slow
        out = {
            "row_no": numbers,
            "external_id": cells(records, "external_id"),
            "customer_external_id": cells(records, "customer_external_id"),
            "number": cells(records, "number"),
            "issue_date": issue,
            "due_date": due,
            "amount_cents": amount,
            "reported_outstanding_cents": outstanding,
            "currency": _default(_upper(cells(records, "currency"), n, 3), ctx.currency),
            "document_url": _text(cells(records, "document_url"), n),
            "reported_status": status,
        }
        return list(zip(*(out[c] for c in _stg_order("invoices")), strict=True)), []

    return convert


def _payments(ctx: LedgerContext, cells: Cells, iso: bool) -> BatchConverter:
    def convert(numbers: list[int], records: Batch) -> tuple[list[tuple], list[tuple]]:
        n = len(numbers)
        kinds = [(k or "payment").lower() for k in _text(cells(records, "kind"), n)]
        if not set(kinds) <= set(PAYMENT_KINDS):
            raise Slow
        paid = _dates(cells(records, "date"), n, iso)
        out: dict[str, Sequence[Any] | None] = {
            "row_no": numbers,
            "external_id": cells(records, "external_id"),
            "invoice_external_id": cells(records, "invoice_external_id"),
            "paid_on": paid,
            "amount_cents": _cents(cells(records, "amount"), n),
            "kind": kinds,
        }
        return list(zip(*(out[c] for c in _stg_order("payments")), strict=True)), []

    return convert
