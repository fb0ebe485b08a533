"""The CSV import's fastest path: a large file read by pyarrow's CSV parser (converted in arrow_convert.py).

``csv.reader`` plus a Python pass per column was most of a 1M-invoice import. Here the file is read
in chunks of whole lines, each parsed by pyarrow (every column as a string) only when the chunk's
row numbers are certain: each line one record (no quoted line breaks, no empty lines, no lone
carriage returns), no NUL byte, no cell over the reader's limit, every record the header's width,
and any line holding a quote read the same by ``csv.reader``. Then a chunk's row numbers are the
line numbers, as the CSV reader counts them. The first chunk that is not certain hands the rest of
the file to the CSV reader (``reader.csv_batches``, from that record on), so a broken file is
reported exactly as before.

A chunk's columns are then checked and converted in ``pyarrow.compute`` (``arrow_convert.py``, whose
``converter`` and ``staging_schema`` this module hands on); anything that is not sure there raises
``Slow``, and the chunk's ``records`` (the raw cells, as ``csv.reader`` splits them) go through the
columnar path, then row by row. pyarrow costs ~0.1 s to import: only files of ``stream.ARROW_MIN_BYTES`` or more come here.
"""

from __future__ import annotations

import codecs
import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from dunningops.ledger.arrow_convert import ArrowConverter, converter, staging_schema
from dunningops.ledger.columns import Column
from dunningops.ledger.mapping import Mapping
from dunningops.ledger.reader import CELL_LIMIT, Positions, RecordBatch, csv_batches

__all__ = ["CHUNK_BYTES", "ArrowConverter", "Chunk", "chunks", "converter", "records", "staging_schema", "usable"]

CHUNK_BYTES = 1024 * 1024  # lines parsed per pyarrow call (about 8,500 invoices): memory stays flat
# Either a chunk the arrow path read ("arrow", row number of its first record, its table of raw
# cells, every header column as a string), or the CSV reader's batch for the rest of the file.
Chunk = tuple[str, int, Any, Any]


def usable(mapping: Mapping) -> bool:
    """Whether a file read with ``mapping`` can take this path (UTF-8, ISO dates, decimal points)."""
    if mapping.date_format or mapping.decimal_comma:
        return False
    return codecs.lookup(mapping.encoding).name in ("utf-8", "utf-8-sig") and mapping.delimiter not in ('"', "\r", "\n")


def chunks(path: Path, columns: tuple[Column, ...], mapping: Mapping, batch_size: int) -> tuple[Positions, Iterator[Chunk]]:
    """The header's positions (header problems raise here, as ``csv_batches`` words them) and the file's chunks."""
    positions, batches = csv_batches(path, columns, mapping, batch_size)
    return positions, _chunks(path, mapping, positions, batches)


def _header(first: bytes, mapping: Mapping) -> list[str] | None:
    """The header line split as csv.reader splits it; None when the header is not one plain line."""
    try:
        text = first.decode(mapping.encoding)
    except UnicodeDecodeError:
        return None
    if text.count('"') % 2 or "\r" in text.rstrip("\r\n") or "\x00" in text:
        return None
    return next(csv.reader([text.rstrip("\r\n")], delimiter=mapping.delimiter), None)


def _chunks(path: Path, mapping: Mapping, positions: Positions, batches: Iterator[RecordBatch]) -> Iterator[Chunk]:
    with path.open("rb") as handle:
        first = handle.readline()
        header = _header(first, mapping)
        if header is None or not first.endswith(b"\n"):
            yield from _rest(batches, 2)
            return
        names = [h.strip() for h in header]
        # The same positions as the CSV reader found: the same header, read the same way.
        sources = [(name, mapping.source(name)) for name, _ in positions]
        if [(name, names.index(source)) for name, source in sources if source in names] != positions:
            yield from _rest(batches, 2)
            return
        width = len(header)
        column_names = [f"c{i}" for i in range(width)]
        convert = pacsv.ConvertOptions(
            column_types=dict.fromkeys(column_names, pa.string()), strings_can_be_null=False, quoted_strings_can_be_null=False
        )
        # One thread: as fast for a 1 MB chunk on this 2-core machine, and 40 MiB less peak RSS at 1M invoices.
        read = pacsv.ReadOptions(column_names=column_names, use_threads=False)
        row = 2  # the header is row 1
        tail = b""
        while True:
            block = handle.read(CHUNK_BYTES)
            data = tail + block
            if not data:
                return
            if block:
                end = data.rfind(b"\n") + 1
                if end == 0:  # a line longer than a chunk: read on
                    tail = data
                    continue
                chunk, tail = data[:end], data[end:]
            else:
                chunk, tail = data, b""
            table = _parse(chunk, mapping, read, convert, width)
            if table is None:
                yield from _rest(batches, row)
                return
            yield "arrow", row, table, None
            row += table.num_rows
            if not block:
                return


def _parse(chunk: bytes, mapping: Mapping, read, convert, width: int) -> pa.Table | None:
    """A chunk's table when its rows are certainly its lines, read as csv.reader reads them; else None."""
    lines = chunk.count(b"\n") + (not chunk.endswith(b"\n"))
    if (
        b"\x00" in chunk
        or (b"\r" in chunk and chunk.count(b"\r") != chunk.count(b"\r\n"))  # counted only in a CR LF file
        or chunk.startswith((b"\n", b"\r\n"))
        or b"\n\n" in chunk
        or b"\n\r\n" in chunk
    ):
        return None
    quoted = b'"' in chunk
    try:
        table = pacsv.read_csv(
            pa.py_buffer(chunk),
            read_options=read,
            parse_options=pacsv.ParseOptions(delimiter=mapping.delimiter, newlines_in_values=quoted),
            convert_options=convert,
        )
    except (pa.ArrowInvalid, UnicodeDecodeError):  # a record of another width, invalid UTF-8
        return None
    if table.num_rows != lines or table.num_columns != width:
        return None  # a quoted line break: a record over two lines
    table = table.combine_chunks()
    for column in table.columns:
        if (longest := pc.max(pc.binary_length(column)).as_py()) is not None and longest > CELL_LIMIT:
            return None  # the CSV reader words it, with its row and column
    if quoted and not _same_as_csv(chunk, table, mapping):
        return None
    return table


def _same_as_csv(chunk: bytes, table: pa.Table, mapping: Mapping) -> bool:
    """Every line holding a quote split by csv.reader as pyarrow split it (quoting rules are where parsers differ)."""
    lines = chunk.split(b"\n")
    rows = [i for i, line in enumerate(lines) if b'"' in line]
    texts = [lines[i].removesuffix(b"\r").decode("utf-8") for i in rows]
    expected = list(csv.reader(texts, delimiter=mapping.delimiter))
    got = table.take(pa.array(rows)).to_pylist()
    return len(expected) == len(got) and all(list(g.values()) == e for g, e in zip(got, expected, strict=True))


def _rest(batches: Iterator[RecordBatch], row: int) -> Iterator[Chunk]:
    """The CSV reader's batches from row ``row`` on (the rows before it went the arrow way)."""
    for start, records, detail in batches:
        end = start + len(records)
        if end <= row:
            continue
        if start < row:
            records = records[row - start :]
            if detail is not None:
                detail = [d for d in detail if d[0] >= row]
            start = row
        yield "csv", start, records, detail


def records(table: pa.Table) -> list[tuple[str, ...]]:
    """A table's rows as the CSV reader's records (raw cells, every header column)."""
    return list(zip(*(column.to_pylist() for column in table.columns), strict=True))
