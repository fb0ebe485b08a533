"""A chunk the arrow path read, checked and converted in ``pyarrow.compute`` (arrow.py reads it).

Into the staging tuples the columnar path (``columnar.py``) gives, or (``as_table``, SQLite) an
Arrow table of the staging table's columns. Anything it is not sure of (a date in another shape, a
non-ASCII currency or status, an unknown member or function) raises ``Slow``, and the chunk goes
the columnar way, then row by row, so the messages are exactly the row-by-row path's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import Boolean, Integer, Table

from dunningops.ledger.columnar import Slow
from dunningops.ledger.columns import _FALSE, _TRUE, KINDS, MAX_DATE, MAX_UNITS_DIGITS, MIN_DATE, PAYMENT_KINDS
from dunningops.ledger.context import LedgerContext
from dunningops.ledger.reader import Positions
from dunningops.ledger.staging import ADDRESS_COLUMNS, STAGING, STAGING_FUNCTIONS

# str.strip()'s characters (str.isspace): cells are stripped exactly as the row-by-row path strips them.
STRIP = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
_CENTS = rf"^(?P<units>[0-9]{{1,{MAX_UNITS_DIGITS}}})(?:\.(?P<decimals>[0-9]{{1,2}}))?$"
_ISO_DATE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
_MIN_ISO, _MAX_ISO = MIN_DATE.isoformat(), MAX_DATE.isoformat()
_LOCALE = r"^[a-z]{2}([_-][A-Za-z]{2})?$"
_CONTROL = r"[\x00-\x1f\x7f]"
# columns._EMAIL for ASCII text: Python's \s (str.isspace) holds \x1c-\x1f too, RE2's does not.
_EMAIL = r"^[^@\t\n\x0b\x0c\r\x1c-\x1f <>,;]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$"
_LIST_SPLIT = r"[;|,]"
_WORDS_TRUE, _WORDS = sorted(_TRUE), sorted(_TRUE | _FALSE - {""})  # columns.parse_bool's words
_NULL = pa.scalar(None, pa.string())


# A converter: (first row number, the chunk's raw table) → (staging tuples or table, function links the same way).
ArrowConverter = Callable[[int, pa.Table], tuple[Any, Any]]


def staging_schema(table: Table) -> pa.Schema:
    """A staging table's columns as Arrow types; dates are their ISO text, as SQLAlchemy stores them on SQLite."""

    def kind(column) -> pa.DataType:
        if isinstance(column.type, Boolean):
            return pa.bool_()
        return pa.int64() if isinstance(column.type, Integer) else pa.string()

    return pa.schema([pa.field(c.name, kind(c)) for c in table.columns])


_LINKS_SCHEMA = staging_schema(STAGING_FUNCTIONS)


def converter(
    kind: str, ctx: LedgerContext, positions: Positions, *, iso_dates: bool, as_table: bool = False
) -> ArrowConverter | None:
    """``kind``'s chunk converter in pyarrow.compute; None: the columnar path converts this kind's chunks.

    ``as_table`` (SQLite, ``iso_dates``): a chunk's staging rows as an Arrow table of the staging
    table's columns (``staging_schema``), not tuples: no Python object per cell.
    """
    build = {"customers": _customers, "contacts": _contacts, "invoices": _invoices, "payments": _payments}.get(kind)
    if build is None:
        return None
    where = dict(positions)
    spec = {c.name: c for c in KINDS[kind]}
    order = [c.name for c in STAGING[kind].columns]
    schema = staging_schema(STAGING[kind]) if as_table else None

    def convert(start: int, table: pa.Table) -> tuple[list[tuple], list[tuple]]:
        def cells(name: str) -> pa.Array | None:
            """A column's stripped cells, checked for length and emptiness; None: not in the file."""
            index = where.get(name)
            if index is None:
                return None
            column = spec[name]
            values = pc.utf8_trim(table.column(index).chunk(0), characters=STRIP)
            if pc.max(pc.utf8_length(values)).as_py() > column.max_length:
                raise Slow
            if column.required and pc.any(pc.equal(values, "")).as_py():
                raise Slow
            return values

        n = table.num_rows
        numbers = list(range(start, start + n))
        out = build(ctx, cells, n, iso_dates)
        out["row_no"] = numbers
        values = list(map(out.__getitem__, order))
        links = out["links"](start, schema is not None) if "links" in out else []
        if schema is not None:
            return pa.Table.from_arrays([_typed(v, f.type) for v, f in zip(values, schema, strict=True)], schema=schema), links
        lists = [v if isinstance(v, list) else v.to_pylist() for v in values]
        return list(zip(*lists, strict=True)), links

    return convert


Cells = Callable[[str], "pa.Array | None"]


def _typed(values: pa.Array | list, kind: pa.DataType) -> pa.Array:
    if isinstance(values, list):
        return pa.array(values, kind)
    return values if values.type == kind else values.cast(kind)


def _any(mask: pa.Array) -> bool:
    return bool(pc.any(mask).as_py())


def _none(n: int) -> list[Any]:
    return [None] * n


def _text(values: pa.Array | None, n: int) -> Any:
    """Empty cells are None, as the row-by-row path leaves them out."""
    if values is None:
        return _none(n)
    return pc.if_else(pc.equal(values, ""), _NULL, values)


def _dates(values: pa.Array | None, n: int, iso: bool) -> Any:
    """ISO dates between MIN_DATE and MAX_DATE: their text on SQLite (what SQLAlchemy's Date stores), else dates."""
    if values is None:
        return _none(n)
    present = _text(values, n)
    # Other shapes that date.fromisoformat reads (20261116) go the columnar way: a date here is its ISO text.
    if _any(pc.invert(pc.match_substring_regex(pc.fill_null(present, "2000-01-01"), _ISO_DATE))):
        raise Slow
    low, high = pc.min(present).as_py(), pc.max(present).as_py()
    if low is not None and (low < _MIN_ISO or high > _MAX_ISO):
        raise Slow
    try:
        days = pc.cast(present, pa.date32())  # 2026-02-30 is not a date
    except pa.ArrowInvalid:
        raise Slow from None
    return present if iso else days


def _cents(values: pa.Array | None, n: int) -> Any:
    if values is None:
        return _none(n)
    parts = pc.extract_regex(values, _CENTS)  # null where empty or another shape
    if parts.null_count != (pc.sum(pc.equal(values, "")).as_py() or 0):
        raise Slow
    units = pc.cast(pc.struct_field(parts, "units"), pa.int64())
    decimals = pc.cast(pc.utf8_rpad(pc.struct_field(parts, "decimals"), width=2, padding="0"), pa.int64())
    return pc.add(pc.multiply(units, 100), decimals)


def _ascii(values: pa.Array, pattern: str) -> None:
    """Every non-empty cell matches ``pattern`` (ASCII: str.upper/lower and pyarrow agree there)."""
    if _any(pc.and_(pc.not_equal(values, ""), pc.invert(pc.match_substring_regex(values, pattern)))):
        raise Slow


def _upper(values: pa.Array | None, n: int, width: int, default: str | None = None) -> Any:
    if values is None:
        return [default] * n
    _ascii(values, rf"^[A-Za-z]{{{width}}}$")
    ups = pc.ascii_upper(values)
    return pc.if_else(pc.equal(values, ""), pa.scalar(default, pa.string()), ups)


def _lowered(values: pa.Array | None, n: int, default: str) -> Any:
    """An enum's cells lowered (ASCII only), empty ones ``default``."""
    if values is None:
        return pa.array([default] * n, pa.string())
    if not pc.all(pc.string_is_ascii(values)).as_py():
        raise Slow
    return pc.if_else(pc.equal(values, ""), default, pc.ascii_lower(values))


def _invoices(ctx: LedgerContext, cells: Cells, n: int, iso: bool) -> dict[str, Any]:
    issue, due = _dates(cells("issue_date"), n, iso), _dates(cells("due_date"), n, iso)
    if not isinstance(issue, list) and _any(pc.less(due, issue)):  # null-aware: only where both are there
        raise Slow
    amount = _cents(cells("amount"), n)
    reported = _cents(cells("outstanding"), n)
    outstanding = amount if isinstance(reported, list) else pc.coalesce(reported, amount)
    if _any(pc.greater(outstanding, amount)):
        raise Slow
    statuses = cells("status")
    if statuses is None:
        status = pc.if_else(pc.equal(outstanding, 0), "paid", "open")
    else:
        status = _lowered(statuses, n, "")
        status = pc.if_else(pc.equal(status, ""), pc.if_else(pc.equal(outstanding, 0), "paid", "open"), status)
        if not pc.all(pc.is_in(status, pa.array(["open", "paid", "void"]))).as_py():
            raise Slow
    return {
        "external_id": cells("external_id"),
        "customer_external_id": cells("customer_external_id"),
        "number": cells("number"),
        "issue_date": issue,
        "due_date": due,
        "amount_cents": amount,
        "reported_outstanding_cents": outstanding,
        "currency": _upper(cells("currency"), n, 3, ctx.currency),
        "document_url": _text(cells("document_url"), n),
        "reported_status": status,
    }


def _payments(ctx: LedgerContext, cells: Cells, n: int, iso: bool) -> dict[str, Any]:
    kinds = _lowered(cells("kind"), n, "payment")
    if not pc.all(pc.is_in(kinds, pa.array(PAYMENT_KINDS))).as_py():
        raise Slow
    return {
        "external_id": cells("external_id"),
        "invoice_external_id": cells("invoice_external_id"),
        "paid_on": _dates(cells("date"), n, iso),
        "amount_cents": _cents(cells("amount"), n),
        "kind": kinds,
    }


def _customers(ctx: LedgerContext, cells: Cells, n: int, iso: bool) -> dict[str, Any]:
    plans = _text(cells("plan"), n)
    if not isinstance(plans, list) and not set(pc.unique(plans).drop_null().to_pylist()) <= ctx.plans:
        raise Slow
    locales = cells("locale")
    if locales is None:
        locale: Any = [ctx.locale] * n
    else:
        _ascii(locales, _LOCALE)
        locale = pc.if_else(pc.equal(locales, ""), ctx.locale, pc.replace_substring(locales, "-", "_"))
    managers = _text(cells("account_manager"), n)
    if not isinstance(managers, list):
        found = {}
        for value in managers.unique().drop_null().to_pylist():
            if (hit := ctx.members.get(value) or ctx.members.get(value.lower())) is None:
                raise Slow  # an unknown member: the row-by-row path words it
            found[value] = hit
        managers = [found[v] if v is not None else None for v in managers.to_pylist()]
    lines = {}
    for name in ADDRESS_COLUMNS:
        values = cells(name)
        if values is not None and _any(pc.match_substring_regex(values, _CONTROL)):
            raise Slow
        lines[name] = _text(values, n)
    return {
        "external_id": cells("external_id"),
        "name": cells("name"),
        "country": _upper(cells("country"), n, 2),
        "locale": locale,
        "currency": _upper(cells("currency"), n, 3, ctx.currency),
        "account_manager": managers,
        "plan_id": plans,
        **lines,
    }


def _bools(values: pa.Array | None, n: int) -> Any:
    """true / false in the words columns.py reads (ASCII only), empty cells None."""
    if values is None:
        return _none(n)
    if not pc.all(pc.string_is_ascii(values)).as_py():
        raise Slow
    low = pc.ascii_lower(values)
    if not pc.all(pc.or_(pc.equal(low, ""), pc.is_in(low, pa.array(_WORDS)))).as_py():
        raise Slow
    return pc.if_else(pc.equal(low, ""), pa.scalar(None, pa.bool_()), pc.is_in(low, pa.array(_WORDS_TRUE)))


def _contacts(ctx: LedgerContext, cells: Cells, n: int, iso: bool) -> dict[str, Any]:
    customer, emails = cells("customer_external_id"), cells("email")
    assert customer is not None and emails is not None  # required: in every file
    if not pc.all(pc.string_is_ascii(emails)).as_py() or not pc.all(pc.match_substring_regex(emails, _EMAIL)).as_py():
        raise Slow  # the columnar path matches other addresses with Python's own expression
    emails = pc.ascii_lower(emails)
    primary = _bools(cells("primary"), n)
    out = {
        "customer_external_id": customer,
        "email": emails,
        "name": _text(cells("name"), n),
        "phone": _text(cells("phone"), n),
        "job": _text(cells("job"), n),
        "is_primary": [False] * n if isinstance(primary, list) else pc.fill_null(primary, False),  # C3: written set-based
        "valid": _bools(cells("valid"), n),  # C10: None leaves the contact's validity as it is
    }
    functions = cells("functions")
    if functions is not None:
        out["links"] = _links(ctx, functions, customer, emails)
    return out


def _links(ctx: LedgerContext, functions: pa.Array, customer: pa.Array, emails: pa.Array) -> Callable[[int, bool], Any]:
    """C7: functions by id or label (any language), each once per contact, in the file's order: as
    tuples, or (``as_table``) an Arrow table of the links' staging columns (no Python object per link)."""
    parts = pc.split_pattern_regex(functions, _LIST_SPLIT)
    owners = pc.list_parent_indices(parts)
    names = pc.utf8_trim(pc.list_flatten(parts), characters=STRIP)
    kept = pc.not_equal(names, "")
    owners, names = pc.filter(owners, kept), pc.filter(names, kept)
    unique = pc.unique(names)
    found = []
    for name in unique.to_pylist():
        if (fid := ctx.functions.get(name.lower())) is None:
            raise Slow  # an unknown function: the row-by-row path words it, with the closest one
        found.append(fid)
    fids = pc.take(pa.array(found, pa.string()), pc.index_in(names, value_set=unique))
    # A function named twice for one contact (by its id and its label, say) once, where first named.
    mentions = pa.table({"owner": owners, "fid": fids, "at": pa.array(range(len(owners)), pa.int64())})
    firsts = mentions.group_by(["owner", "fid"], use_threads=False).aggregate([("at", "min")]).column("at_min")
    once = pc.take(firsts, pc.sort_indices(firsts))
    owners, fids = pc.take(owners, once), pc.take(fids, once)

    def links(start: int, as_table: bool) -> Any:
        rows = pc.add(owners.cast(pa.int64()), start)
        columns = [rows, pc.take(customer, owners), pc.take(emails, owners), fids]
        if as_table:
            return pa.Table.from_arrays(columns, schema=_LINKS_SCHEMA)
        return list(zip(*(c.to_pylist() for c in columns), strict=True))

    return links
