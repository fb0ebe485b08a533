"""Streaming a ledger file into staging: the CSV reader's batches, pyarrow's chunks of a large CSV file, JSON Lines.

A batch converts column by column when it all can (columnar.py, arrow_convert.py), else row by row, so
that the messages (file, row, column) are the row-by-row path's. The staging goes to the transaction's
TEMP tables, or for a large CSV file on SQLite to a scratch file of its own (staging_file.py).
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy.orm import Session

from dunningops.ledger.columnar import Slow, batch_converter
from dunningops.ledger.columns import KINDS
from dunningops.ledger.loading import Staging
from dunningops.ledger.mapping import Mapping
from dunningops.ledger.reader import RawRow, csv_batches, detect_format, read_rows, record_cells
from dunningops.store.engine import Store

if TYPE_CHECKING:
    from dunningops.ledger.importer import ImportSummary

BATCH = 5_000
T = TypeVar("T")
R = TypeVar("R")
# A CSV file this large is read by pyarrow (ledger/arrow.py). Importing pyarrow costs ~0.1 s and ~80 MiB of
# peak RSS: measured, an 8.6 MB customers file gained nothing, a 12 MB invoices file ~0.3 s (of 1.6 s).
ARROW_MIN_BYTES = 10 * 1024 * 1024


def stage_file(
    session: Session, kind: str, path: Path, fmt: str | None, mapping: Mapping, summary: ImportSummary, progress, batch_size
) -> None:
    """A file into ``kind``'s TEMP staging tables, in the write transaction; then the checks over them."""
    file_format = detect_format(path, fmt)
    if file_format == "csv":
        _stage_csv(session, kind, path, mapping, summary, progress, batch_size)
        return
    rows = read_rows(path, file_format, KINDS[kind], mapping)
    stage_rows(
        session, kind, rows, summary, source=path.name, unit="line", mapping=mapping, progress=progress, batch_size=batch_size
    )


@contextmanager
def without_cycle_collector() -> Iterator[None]:
    """The staging loop makes millions of short-lived lists and tuples, none in a reference cycle:
    reference counting frees them, and the cycle collector's passes over them were a fifth of the loop."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _stage_csv(session: Session, kind, path, mapping: Mapping, summary: ImportSummary, progress, batch_size) -> None:
    """A CSV file a batch at a time: columnar when the whole batch converts, else row by row (exact messages)."""
    with without_cycle_collector():
        _stage_csv_batches(session, kind, path, mapping, summary, progress, batch_size)


def _stage_csv_batches(session: Session, kind, path, mapping: Mapping, summary: ImportSummary, progress, batch_size) -> None:
    staging = Staging.in_session(session, kind, summary, path.name, "row", mapping)
    arrow = arrow_module(path, mapping)
    if arrow is not None:
        stage_arrow(arrow, staging, kind, path, mapping, progress, batch_size)
    else:
        positions, batches = csv_batches(path, KINDS[kind], mapping, batch_size)
        fast = batch_converter(kind, staging.ctx, positions, mapping, iso_dates=staging.iso_dates)
        for start, records, detail in batches:
            _stage_batch(staging, fast, positions, start, records, detail, progress)
        if progress:
            progress(summary.rows)
        staging.finish()
    staging.check(session)


def arrow_module(path: Path, mapping: Mapping, *, any_size: bool = False) -> ModuleType | None:
    """The pyarrow path's module for a file large enough to pay for importing pyarrow, else None.
    ``any_size``: whatever the file's size (pyarrow is imported already, for another file)."""
    try:
        large = path.stat().st_size >= ARROW_MIN_BYTES
    except OSError:
        return None  # the CSV reader words it
    if not (large or any_size):
        return None
    try:
        from dunningops.ledger import arrow
    except ImportError:  # pyarrow not installed: the CSV reader does the same work, slower
        return None
    return arrow if arrow.usable(mapping) else None


def stage_arrow(arrow, staging: Staging, kind, path, mapping: Mapping, progress, batch_size, *, as_table: bool = False) -> None:
    """A large CSV file read by pyarrow a chunk at a time; a chunk it cannot convert exactly goes the columnar way.
    ``as_table``: a converted chunk goes to staging as an Arrow table (staging_file.py), not as tuples."""
    positions, chunks = arrow.chunks(path, KINDS[kind], mapping, batch_size)
    fast = batch_converter(kind, staging.ctx, positions, mapping, iso_dates=staging.iso_dates)
    quick = arrow.converter(kind, staging.ctx, positions, iso_dates=staging.iso_dates, as_table=as_table)

    def converted(chunk: tuple) -> tuple | None:
        """A chunk's staging rows and links; None: not converted here (CSV reader's batch, or Slow)."""
        how, start, cells, _ = chunk
        if how == "csv" or quick is None:
            return None
        try:
            return quick(start, cells)
        except Slow:
            return None

    # Staging into a file (ADBC, which lets go of the GIL as pyarrow does): the next chunk is read
    # and converted in a second thread while this one is inserted.
    for (how, start, cells, detail), done in _ahead(chunks, converted) if as_table else ((c, converted(c)) for c in chunks):
        if done is not None:
            rows, links = done
            if as_table:
                staging.columns(rows, links, progress)
            else:
                _staged(staging, rows, links, len(rows), progress)
        elif how == "csv":
            _stage_batch(staging, fast, positions, start, cells, detail, progress)
        else:
            _stage_batch(staging, fast, positions, start, arrow.records(cells), None, progress)
    if progress:
        progress(staging.summary.rows)
    staging.finish()


_END = object()


def _ahead(items: Iterator[T], work: Callable[[T], R]) -> Iterator[tuple[T, R]]:
    """Each item with ``work(item)``, the next item taken and worked on in a thread while this one is used.
    The items are taken one at a time, in order, by that thread alone; its exceptions raise here."""

    def step() -> tuple[Any, Any]:
        item: Any = next(items, _END)
        return (item, None) if item is _END else (item, work(item))

    with ThreadPoolExecutor(1, thread_name_prefix="ledger-read") as pool:
        future = pool.submit(step)
        while True:
            item, result = future.result()
            if item is _END:
                return
            future = pool.submit(step)
            yield item, result


def _staged(staging: Staging, rows: list, links: list, count: int, progress) -> None:
    """A batch converted at once (``count`` records): its staging rows and links, flushed."""
    staging.summary.rows += count
    staging.rows.extend(rows)
    staging.links.extend(links)
    staging.flush()
    if progress:
        progress(staging.summary.rows)


def _stage_batch(staging: Staging, fast, positions, start: int, records, detail, progress) -> None:
    """One batch of the CSV reader's records: columnar when it all converts, else row by row (exact messages)."""
    summary = staging.summary
    if detail is None and fast is not None:
        try:
            rows, links = fast(list(range(start, start + len(records))), records)
        except Slow:
            pass
        else:
            _staged(staging, rows, links, len(records), progress)
            return
    if detail is None:
        detail = [(number, record, []) for number, record in enumerate(records, start=start)]
    for row_no, record, problems in detail:
        staging.row(row_no, None if record is None else record_cells(record, positions, problems), problems)
    staging.flush()
    if progress:
        progress(summary.rows)


def stage_rows(
    session: Session,
    kind: str,
    raw_rows: Iterable[RawRow],
    summary: ImportSummary,
    *,
    source: str,
    unit: str = "row",
    mapping: Mapping | None = None,
    progress: Callable[[int], None] | None = None,
    batch_size: int = BATCH,
    place: Callable[[int], str] | None = None,
) -> None:
    """Parse, check and stage ``raw_rows`` (a file's, or the HTTP API's items) into ``kind``'s staging table.

    Every problem lands in ``summary.issues`` (nothing raises for a bad row); ``place`` words a
    row number in the messages that point at another row (default: "row N").
    """
    staging = Staging.in_session(session, kind, summary, source, unit, mapping or Mapping())
    for row_no, raw, read_problems in raw_rows:
        staging.row(row_no, raw, read_problems)
        if len(staging.rows) >= batch_size:
            staging.flush()
            if progress:
                progress(summary.rows)
    staging.flush()
    if progress:
        progress(summary.rows)
    staging.finish()
    staging.check(session, place)


def apart_module(store: Store, path: Path, fmt: str | None, mapping: Mapping, *, any_size: bool = False) -> ModuleType | None:
    """The pyarrow path's module when the file is staged in a file of its own (staging_file.py), else None."""
    if store.dialect != "sqlite" or detect_format(path, fmt) != "csv":
        return None
    arrow = arrow_module(path, mapping, any_size=any_size)
    if arrow is None:
        return None
    try:
        import dunningops.ledger.staging_file  # noqa: F401  (its ADBC driver may be missing)
    except ImportError:
        return None
    return arrow
