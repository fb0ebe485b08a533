"""Streaming readers for CSV and JSON Lines: rows come out one at a time, as strings by our column names."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import islice
from pathlib import Path
from typing import Any, TextIO, cast

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
# PostgreSQL refuses NUL in text (SQLite would store it): a broken export, refused with its place.
NUL_MESSAGE = "contains a NUL character (byte 0)"

# (row number as the user sees it, {column: raw text} or None when the row cannot be
# split into cells, [(column or "", problem)]): problems found while reading.
RawRow = tuple[int, dict[str, str] | None, list[tuple[str, str]]]
# The same with the record as the CSV reader split it (unstripped, every header column), for
# the columnar import; and where each of our columns is in a record: [(our name, index)].
RawRecord = tuple[int, list[str] | None, list[tuple[str, str]]]
Positions = list[tuple[str, int]]
# (row number of the first record, the records, None when all are clean else each as a RawRecord).
RecordBatch = tuple[int, list[list[str]], list[RawRecord] | None]
_ROWS_BATCH = 1000  # read_rows reads this many records at a time


class LedgerFileError(InvalidInputError):
    """The file itself cannot be read (missing, wrong encoding, missing columns)."""


def detect_format(path: Path, explicit: str | None) -> str:
    if explicit:
        return explicit
    return "jsonl" if path.suffix.lower() in (".jsonl", ".ndjson") else "csv"


def read_rows(path: Path, fmt: str, columns: tuple[Column, ...], mapping: Mapping) -> Iterator[RawRow]:
    """Yield each row with its number and its reading problems; header problems raise at once."""
    with _opened(path, mapping) as handle:
        if fmt == "csv":
            yield from _csv_rows(path, handle, columns, mapping)
        else:
            yield from _jsonl_rows(path, handle, columns, mapping)


@contextmanager
def _opened(path: Path, mapping: Mapping) -> Iterator[TextIO]:
    """The file as text in the mapping's encoding; opening and decoding problems as one line naming it."""
    try:
        handle = path.open(encoding=mapping.encoding, newline="")
    except OSError as exc:
        raise LedgerFileError(f"{path}: cannot open: {exc.strerror}") from exc
    with handle:
        try:
            yield handle
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
    batches = _csv_batches(path, handle, columns, mapping, _ROWS_BATCH)
    positions = next(batches)
    for start, records, detail in batches:
        if detail is None:
            for number, record in enumerate(records, start=start):
                yield number, record_cells(record, positions, []), []
        else:
            for number, record, problems in detail:
                yield number, None if record is None else record_cells(record, positions, problems), problems


def record_cells(record: list[str], positions: Positions, problems: list[tuple[str, str]]) -> dict[str, str]:
    """One record's cells by our column names, stripped; a cell the reader reported is left out."""
    if problems:
        bad = {column for column, _ in problems}
        return {name: record[i].strip() for name, i in positions if name not in bad}
    return {name: record[i].strip() for name, i in positions}


def csv_batches(path: Path, columns: tuple[Column, ...], mapping: Mapping, size: int) -> tuple[Positions, Iterator[RecordBatch]]:
    """A CSV file's header positions and its records in batches of ``size`` (the columnar import's input).

    Header problems raise here. A batch is (the row number of its first record, its records,
    None) when every record has the header's width and no reading problem; else the third
    item lists each record as a RawRecord, with the same row numbers and problems as ``read_rows``.
    """
    batches = _batches(path, columns, mapping, size)
    positions = next(batches)
    assert isinstance(positions, list)
    return positions, cast(Iterator[RecordBatch], batches)


def _batches(path: Path, columns: tuple[Column, ...], mapping: Mapping, size: int) -> Iterator[Any]:
    with _opened(path, mapping) as handle:
        yield from _csv_batches(path, handle, columns, mapping, size)


def _csv_batches(path, handle, columns, mapping, size: int) -> Iterator[Any]:
    """Yields the header's positions first, then RecordBatches."""
    if csv.field_size_limit() < _CSV_FIELD_LIMIT:
        csv.field_size_limit(_CSV_FIELD_LIMIT)  # only ever raised, so other readers in the process lose nothing
    reader = csv.reader(handle, delimiter=mapping.delimiter)
    number = 0  # the last row read: a csv.Error is on the next one
    try:
        header = next(reader, None)
        number = 1
        if header is None:
            raise LedgerFileError(f"{path}: the file is empty (a header row is expected)")
        header = [h.strip() for h in header]
        positions: Positions = []
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
        yield positions
        while True:
            records: list[list[str]] = []
            try:
                # Read by C code a batch at a time (a Python step per line was a fifth of the reading).
                records.extend(islice(reader, size))
            finally:
                number += len(records)  # a csv.Error is on the row after the ones read
            if not records:
                return
            start = number - len(records) + 1  # row numbers count the header as row 1, as a spreadsheet shows them
            # A cell of n characters is at most 4n bytes: most records are cleared by their length, and
            # only a record that holds a NUL or more than a quarter of the limit has its cells looked at.
            joined = list(map("".join, records))
            suspect = max(map(len, joined)) > CELL_LIMIT // 4 or "\x00" in "".join(joined)
            if not suspect and min(map(len, records)) == width == max(map(len, records)):
                yield start, records, None
                continue
            detail: list[RawRecord] = []
            for row, (record, text) in enumerate(zip(records, joined, strict=True), start=start):
                problems = _cell_problems(record, names, used) if len(text) > CELL_LIMIT // 4 or "\x00" in text else []
                if not record or (len(record) == 1 and not record[0].strip()):
                    continue
                if len(record) != width:
                    problems.append(("", f"row has {len(record)} fields, the header has {width}"))
                    detail.append((row, None, problems))
                else:
                    detail.append((row, record, problems))
            yield start, records, detail
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
