"""`dunningops ledger import`: stream a file into staging, check it, write it, in one transaction.

Nothing is written when any row is invalid, unless ``skip_invalid`` (then the
bad rows go to a reject file). ``dry_run`` does all the work and rolls back,
so its summary is exact.
"""

from __future__ import annotations

import csv
import gc
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

from sqlalchemy import delete, literal, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from dunningops.errors import ConflictError, InvalidInputError, StoreError
from dunningops.ledger.checks import unknown_customers
from dunningops.ledger.columnar import Slow, batch_converter
from dunningops.ledger.columns import KINDS
from dunningops.ledger.context import LedgerContext
from dunningops.ledger.issues import LedgerImportError, RowIssue
from dunningops.ledger.loading import Staging, drop_staging, tables
from dunningops.ledger.mapping import Mapping
from dunningops.ledger.reader import RawRow, csv_batches, detect_format, read_rows, record_cells
from dunningops.ledger.staging import STAGING, STAGING_FUNCTIONS
from dunningops.ledger.writes import write
from dunningops.store.engine import Store, store_error
from dunningops.store.schema import InvoiceRow

BATCH = 5_000
T = TypeVar("T")
R = TypeVar("R")
# A CSV file this large is read by pyarrow (ledger/arrow.py). Importing pyarrow costs ~0.1 s and ~80 MiB of
# peak RSS: measured, an 8.6 MB customers file gained nothing, a 12 MB invoices file ~0.3 s (of 1.6 s).
ARROW_MIN_BYTES = 10 * 1024 * 1024


@dataclass
class ImportSummary:
    kind: str
    file: str
    rows: int = 0
    added: int = 0
    changed: int = 0
    pruned: int = 0
    links_changed: int = 0
    rejected: int = 0
    notices: int = 0  # payments: the portal notifications (A9) owed, sent once the import committed
    dry_run: bool = False
    issues: list[RowIssue] = field(default_factory=list)

    @property
    def unchanged(self) -> int:
        return self.rows - self.rejected - self.added - self.changed

    def line(self) -> str:
        verb = "would import" if self.dry_run else "imported"
        parts = [f"{self.added} added", f"{self.changed} changed", f"{self.unchanged} unchanged"]
        if self.kind == "contacts":
            parts.append(f"{self.links_changed} function links changed")
        if self.kind == "invoices" and self.pruned:
            parts.append(f"{self.pruned} voided (absent from the file, --prune)")
        if self.rejected:
            parts.append(f"{self.rejected} rejected")
        return f"{self.kind}: {verb} {self.rows} rows from {self.file}: {', '.join(parts)}."


class _Rollback(Exception):
    """Raised inside the transaction to undo a dry run or a declined confirmation."""


def import_file(
    store: Store,
    kind: str,
    path: Path,
    *,
    now: datetime,
    fmt: str | None = None,
    mapping: Mapping | None = None,
    skip_invalid: bool = False,
    reject_file: Path | None = None,
    prune: bool = False,
    dry_run: bool = False,
    confirm: Callable[[ImportSummary], bool] | None = None,
    progress: Callable[[int], None] | None = None,
    batch_size: int = BATCH,
) -> ImportSummary:
    """Import one file of ``kind`` (customers, contacts, invoices, payments)."""
    if kind not in KINDS:
        raise InvalidInputError(f"unknown ledger kind {kind!r} (expected one of: {', '.join(KINDS)})")
    if prune and kind != "invoices":
        raise InvalidInputError("--prune applies to invoices only (a full export voids the invoices it lacks)")
    mapping = mapping or Mapping()
    summary = ImportSummary(kind=kind, file=path.name, dry_run=dry_run)

    def conclude(session: Session, *, customers_later: bool = False) -> None:
        """After staging, in the write transaction: refuse or reject the bad rows, write, roll back a dry run.
        ``customers_later``: the unknown customers were not looked for yet (``_customers_later``)."""
        if summary.issues and not skip_invalid:
            raise LedgerImportError(summary.issues, summary.rows)
        if summary.issues:
            _reject(session, kind, summary, reject_file)
        counts = write(session, kind, now, prune)
        if customers_later and counts.added != summary.rows:
            # A row the write left out has an unknown customer: the same problems the check before
            # the write words, and the transaction rolls back.
            found = unknown_customers(session, kind)
            if not found:
                raise StoreError(f"{summary.rows - counts.added} rows of {path.name} were not written; nothing was imported")
            summary.issues.extend(RowIssue(path.name, r, c, m, "row") for r, c, m in found)
            raise LedgerImportError(summary.issues, summary.rows)
        summary.added, summary.changed, summary.pruned, summary.links_changed = (
            counts.added,
            counts.changed,
            counts.pruned,
            counts.links_changed,
        )
        summary.notices = counts.notices
        drop_staging(session, kind)
        if dry_run or (confirm is not None and not confirm(summary)):
            raise _Rollback

    try:
        arrow = _apart(store, path, fmt, mapping)
        if arrow is not None:
            _import_apart(store, arrow, kind, path, mapping, summary, progress, batch_size, conclude, skip_invalid)
        else:
            with _store_errors(store), store.session() as session:
                _stage(session, kind, path, fmt, mapping, summary, progress, batch_size)
                conclude(session)
    except _Rollback:
        pass
    return summary


def _apart(store: Store, path: Path, fmt: str | None, mapping: Mapping) -> ModuleType | None:
    """The pyarrow path's module when the file is staged in a file of its own (staging_file.py), else None."""
    if store.dialect != "sqlite" or detect_format(path, fmt) != "csv":
        return None
    arrow = _arrow(path, mapping)
    if arrow is None:
        return None
    try:
        import dunningops.ledger.staging_file  # noqa: F401  (its ADBC driver may be missing)
    except ImportError:
        return None
    return arrow


def _import_apart(
    store: Store, arrow, kind, path: Path, mapping: Mapping, summary: ImportSummary, progress, batch_size, conclude, skip_invalid
) -> None:
    """A large CSV file on SQLite: staged through ADBC into a scratch file, then checked and written as the file
    is ATTACHed to the write transaction."""
    from dunningops.ledger.staging_file import SCHEMA, StagingFile

    with _store_errors(store), store.session() as session:
        ctx = LedgerContext.load(session)
    with StagingFile(tables(kind)) as staged:
        staging = Staging(staged, ctx, True, kind, summary, path.name, "row", mapping)
        with _without_cycle_collector():
            _stage_arrow(arrow, staging, kind, path, mapping, progress, batch_size, as_table=True)
        staged.close()
        with _store_errors(store), store.session(attach={SCHEMA: staged.path}) as session:
            drop_staging(session, kind)  # a TEMP table of the same name would hide the file's
            # The rows were checked against the config as it was read before: the same config, or nothing.
            if LedgerContext.load(session) != ctx:
                raise ConflictError(
                    f"the applied config changed while {path.name} was read; nothing was imported: run the import again"
                )
            later = _customers_later(session, kind, summary, skip_invalid)
            staging.check(session, customers_later=later)
            conclude(session, customers_later=later)


def _customers_later(session: Session, kind: str, summary: ImportSummary, skip_invalid: bool) -> bool:
    """Whether unknown customers can be looked for after the write instead of before: invoices into an empty
    table, with no problem found so far (the import fails or writes everything). The write then adds every
    staged row whose customer exists, so it adds them all exactly when none is unknown (one query fewer
    over a million rows); else the check runs, words them, and the transaction rolls back."""
    if kind != "invoices" or summary.issues or skip_invalid:
        return False
    return session.scalar(select(literal(1)).select_from(InvoiceRow).limit(1)) is None


@contextmanager
def _store_errors(store: Store) -> Iterator[None]:
    """A store that turns read-only, full or unreachable mid-import: one clear line (the import is one transaction)."""
    try:
        yield
    except DBAPIError as exc:
        error = store_error(store.url, exc)
        if error is None:
            raise
        raise StoreError(f"{error}; nothing was imported") from exc


def _stage(session: Session, kind, path, fmt, mapping, summary: ImportSummary, progress, batch_size) -> None:
    file_format = detect_format(path, fmt)
    if file_format == "csv":
        _stage_csv(session, kind, path, mapping, summary, progress, batch_size)
        return
    rows = read_rows(path, file_format, KINDS[kind], mapping)
    stage_rows(
        session, kind, rows, summary, source=path.name, unit="line", mapping=mapping, progress=progress, batch_size=batch_size
    )


@contextmanager
def _without_cycle_collector() -> Iterator[None]:
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
    with _without_cycle_collector():
        _stage_csv_batches(session, kind, path, mapping, summary, progress, batch_size)


def _stage_csv_batches(session: Session, kind, path, mapping: Mapping, summary: ImportSummary, progress, batch_size) -> None:
    staging = Staging.in_session(session, kind, summary, path.name, "row", mapping)
    arrow = _arrow(path, mapping)
    if arrow is not None:
        _stage_arrow(arrow, staging, kind, path, mapping, progress, batch_size)
    else:
        positions, batches = csv_batches(path, KINDS[kind], mapping, batch_size)
        fast = batch_converter(kind, staging.ctx, positions, mapping, iso_dates=staging.iso_dates)
        for start, records, detail in batches:
            _stage_batch(staging, fast, positions, start, records, detail, progress)
        if progress:
            progress(summary.rows)
        staging.finish()
    staging.check(session)


def _arrow(path: Path, mapping: Mapping) -> ModuleType | None:
    """The pyarrow path's module for a file large enough to pay for importing pyarrow, else None."""
    try:
        large = path.stat().st_size >= ARROW_MIN_BYTES
    except OSError:
        return None  # the CSV reader words it
    if not large:
        return None
    try:
        from dunningops.ledger import arrow
    except ImportError:  # pyarrow not installed: the CSV reader does the same work, slower
        return None
    return arrow if arrow.usable(mapping) else None


def _stage_arrow(arrow, staging: Staging, kind, path, mapping: Mapping, progress, batch_size, *, as_table: bool = False) -> None:
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


def _reject(session: Session, kind: str, summary: ImportSummary, reject_file: Path | None) -> None:
    """--skip-invalid: drop the bad rows from staging; write them, with why, to the reject file."""
    bad = sorted({i.row for i in summary.issues})
    summary.rejected = len(bad)
    stg = STAGING[kind]
    for start in range(0, len(bad), 1000):
        chunk = bad[start : start + 1000]
        session.execute(delete(stg).where(stg.c.row_no.in_(chunk)))
        if kind == "contacts":
            session.execute(delete(STAGING_FUNCTIONS).where(STAGING_FUNCTIONS.c.row_no.in_(chunk)))
    if reject_file is None:
        return
    with reject_file.open("w", encoding="utf-8", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["file", "row", "column", "error"])
        for issue in summary.issues:
            out.writerow([issue.file, issue.row, issue.column, issue.message])


def ledger_counts(session: Session) -> dict[str, int]:
    from sqlalchemy import func

    from dunningops.store.schema import ContactRow, CustomerRow, InvoiceRow, PaymentRow

    return {
        name: session.execute(select(func.count()).select_from(row)).scalar_one()
        for name, row in (
            ("customers", CustomerRow),
            ("contacts", ContactRow),
            ("invoices", InvoiceRow),
            ("payments", PaymentRow),
        )
    }
