"""Streaming readers for CSV and JSON Lines: rows come out one at a time, as strings by our column names."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

from dunningops.errors import InvalidInputError
from dunningops.ledger.columns import Column
from dunningops.ledger.mapping import Mapping

# Any cell, used or not: what a spreadsheet export holds is far below this; a bigger
# cell is a broken export (or not a ledger file), said with its row and column.
CELL_LIMIT = 64 * 1024  # bytes (UTF-8)
CELL_LIMIT_TEXT = "64 KB"
# csv's own limit (131,072 by default) raises a bare _csv.Error with no place; raised
# so that every cell up to this size is measured here and reported with its column.
_CSV_FIELD_LIMIT = 16 * 1024 * 1024
_SUSPECT = CELL_LIMIT  # counted for a line with a NUL in it, so that its record is looked at
# PostgreSQL refuses NUL in text (SQLite would store it): a broken export, refused with its place.
NUL_MESSAGE = "contains a NUL character (byte 0)"

# (row number as the user sees it, {column: raw text} or None when the row cannot be
# split into cells, [(column or "", problem)]): problems found while reading.
RawRow = tuple[int, dict[str, str] | None, list[tuple[str, str]]]


class LedgerFileError(InvalidInputError):
    """The file itself cannot be read (missing, wrong encoding, missing columns)."""


def detect_format(path: Path, explicit: str | None) -> str:
    if explicit:
        return explicit
    return "jsonl" if path.suffix.lower() in (".jsonl", ".ndjson") else "csv"


def read_rows(path: Path, fmt: str, columns: tuple[Column, ...], mapping: Mapping) -> Iterator[RawRow]:
    """Yield each row with its number and its reading problems; header problems raise at once."""
    try:
        handle = path.open(encoding=mapping.encoding, newline="")
    except OSError as exc:
        raise LedgerFileError(f"{path}: cannot open: {exc.strerror}") from exc
    with handle:
        try:
            if fmt == "csv":
                yield from _csv_rows(path, handle, columns, mapping)
            else:
                yield from _jsonl_rows(path, handle, columns, mapping)
        except UnicodeDecodeError as exc:
            raise LedgerFileError(f"{path}: not {mapping.encoding} text ({exc.reason} at byte {exc.start})") from exc


def _size(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MB" if n >= 1024 * 1024 else f"{n // 1024} KB"


def _cell_problems(record: list[str], names: dict[int, str], used: set[int]) -> list[tuple[str, str]]:
    """Cells over the size limit (any cell) and cells holding a NUL character (cells we import)."""
    problems = []
    for i, cell in enumerate(record):
        if len(cell) > CELL_LIMIT // 4 and (size := len(cell.encode("utf-8", "surrogatepass"))) > CELL_LIMIT:
            problems.append((names.get(i, f"#{i + 1}"), f"is {_size(size)}, over the {CELL_LIMIT_TEXT} limit for a cell"))
        elif i in used and "\x00" in cell:
            problems.append((names[i], NUL_MESSAGE))
    return problems


def _csv_rows(path, handle, columns, mapping) -> Iterator[RawRow]:
    if csv.field_size_limit() < _CSV_FIELD_LIMIT:
        csv.field_size_limit(_CSV_FIELD_LIMIT)  # only ever raised, so other readers in the process lose nothing
    # Characters read since the last record, and whether a NUL was among them: one look per
    # line tells which records need their cells checked (looking at every cell of every
    # record was a fifth of the reading).
    read = [0]

    def lines() -> Iterator[str]:
        for line in handle:
            read[0] += _SUSPECT if "\x00" in line else len(line)
            yield line

    reader = csv.reader(lines(), delimiter=mapping.delimiter)
    number = 0  # the last row read: a csv.Error is on the next one
    try:
        header = next(reader, None)
        number = 1
        if header is None:
            raise LedgerFileError(f"{path}: the file is empty (a header row is expected)")
        header = [h.strip() for h in header]
        positions: list[tuple[str, int]] = []
        missing = []
        for column in columns:
            source = mapping.source(column.name)
            if source in header:
                positions.append((column.name, header.index(source)))
            elif column.required:
                missing.append(source if source == column.name else f"{source} (for {column.name})")
        if missing:
            raise LedgerFileError(f"{path}: row 1: missing required column(s): {', '.join(missing)}")
        names = dict(enumerate(header)) | {i: name for name, i in positions}  # our name where we use the column
        used = {i for _, i in positions}
        width = len(header)
        read[0] = 0
        # Row numbers count the header as row 1, as a spreadsheet shows them.
        for number, record in enumerate(reader, start=2):
            # A cell of n characters is at most 4n bytes: most records are cleared by their length.
            problems = _cell_problems(record, names, used) if read[0] > CELL_LIMIT // 4 else []
            read[0] = 0
            if not record or (len(record) == 1 and not record[0].strip()):
                continue
            if len(record) != width:
                problems.append(("", f"row has {len(record)} fields, the header has {width}"))
                yield number, None, problems
            elif problems:
                bad = {column for column, _ in problems}
                yield number, {name: record[i].strip() for name, i in positions if name not in bad}, problems
            else:
                yield number, {name: record[i].strip() for name, i in positions}, problems
    except csv.Error as exc:
        # Past _CSV_FIELD_LIMIT (or a malformed quote in strict mode): the rest of the file cannot be trusted.
        what = f"a cell is over {_size(_CSV_FIELD_LIMIT)}" if "field limit" in str(exc) else str(exc)
        raise LedgerFileError(
            f"{path}: row {number + 1}: {what} (the limit for a cell is {CELL_LIMIT_TEXT}); the file cannot be read further"
        ) from exc


def _jsonl_rows(path, handle, columns, mapping) -> Iterator[RawRow]:
    for number, line in enumerate(handle, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            yield number, None, [("", f"line is not valid JSON ({exc.msg})")]
            continue
        except ValueError:  # e.g. a number of more than 4,300 digits (Python's limit)
            yield number, None, [("", "line holds a number too long to read")]
            continue
        except RecursionError:
            yield number, None, [("", "line is nested too deeply to be a JSON object of cells")]
            continue
        if not isinstance(record, dict):
            yield number, None, [("", "line is not a JSON object")]
            continue
        row, problems = json_cells(record, columns, mapping)
        yield number, row, problems


def json_cells(record: dict, columns: tuple[Column, ...], mapping: Mapping) -> tuple[dict[str, str], list[tuple[str, str]]]:
    """One JSON object's values as the cells a CSV row would hold, and its problems (JSON Lines, the HTTP API)."""
    row, problems = {}, []
    for column in columns:
        value = record.get(mapping.source(column.name))
        if value is None:
            continue
        if isinstance(value, list):
            value = ";".join(str(v) for v in value)
        elif isinstance(value, bool):
            value = "true" if value else "false"
        elif isinstance(value, dict):
            problems.append((column.name, "is a JSON object, not a value"))
            continue
        text = str(value).strip()
        if "\x00" in text:
            problems.append((column.name, NUL_MESSAGE))
            continue
        row[column.name] = text
    return row, problems
