"""Streaming readers for CSV and JSON Lines: rows come out one at a time, as strings by our column names."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

from dunningops.errors import DunningOpsError
from dunningops.ledger.columns import Column
from dunningops.ledger.mapping import Mapping


class LedgerFileError(DunningOpsError):
    """The file itself cannot be read (missing, wrong encoding, missing columns)."""


def detect_format(path: Path, explicit: str | None) -> str:
    if explicit:
        return explicit
    return "jsonl" if path.suffix.lower() in (".jsonl", ".ndjson") else "csv"


def read_rows(path: Path, fmt: str, columns: tuple[Column, ...], mapping: Mapping) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield (row number as the user sees it, {column: raw text}); header problems raise at once."""
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


def _csv_rows(path, handle, columns, mapping) -> Iterator[tuple[int, dict[str, str]]]:
    reader = csv.reader(handle, delimiter=mapping.delimiter)
    header = next(reader, None)
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
    width = len(header)
    # Row numbers count the header as row 1, as a spreadsheet shows them.
    for number, record in enumerate(reader, start=2):
        if not record or (len(record) == 1 and not record[0].strip()):
            continue
        if len(record) != width:
            yield number, {"__error__": f"has {len(record)} fields, the header has {width}"}
            continue
        yield number, {name: record[i].strip() for name, i in positions}


def _jsonl_rows(path, handle, columns, mapping) -> Iterator[tuple[int, dict[str, str]]]:
    for number, line in enumerate(handle, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            yield number, {"__error__": f"is not valid JSON ({exc.msg})"}
            continue
        if not isinstance(record, dict):
            yield number, {"__error__": "is not a JSON object"}
            continue
        row = {}
        for column in columns:
            value = record.get(mapping.source(column.name))
            if value is None:
                continue
            if isinstance(value, list):
                value = ";".join(str(v) for v in value)
            elif isinstance(value, bool):
                value = "true" if value else "false"
            row[column.name] = str(value).strip()
        yield number, row
