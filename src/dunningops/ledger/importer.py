"""`dunningops ledger import` and `import-all`: each file streamed into staging (stream.py), checked and
written, in one transaction for one file or several.

Nothing is written when any row is invalid, unless ``skip_invalid`` (then the
bad rows go to a reject file). ``dry_run`` does all the work and rolls back,
so its summary is exact.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from sqlalchemy import delete, func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from dunningops.errors import InvalidInputError, StoreError
from dunningops.ledger.apart import Apart
from dunningops.ledger.checks import unknown_customers
from dunningops.ledger.columns import KINDS
from dunningops.ledger.issues import LedgerImportError, RowIssue
from dunningops.ledger.loading import drop_staging
from dunningops.ledger.mapping import Mapping
from dunningops.ledger.relay import invoices_empty
from dunningops.ledger.staging import STAGING, STAGING_FUNCTIONS
from dunningops.ledger.stream import BATCH, stage_file
from dunningops.ledger.writes import write
from dunningops.store.engine import Store, store_error
from dunningops.store.schema import InvoiceRow


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


@dataclass(frozen=True)
class LedgerFile:
    """One file to import: its kind, path, format (None: from the extension) and column mapping."""

    kind: str
    path: Path
    fmt: str | None = None
    mapping: Mapping = field(default_factory=Mapping)


def ledger_files(directory: Path) -> list[LedgerFile]:
    """The ledger files in ``directory``: KIND.csv or KIND.jsonl for each kind (the names `ledger generate` writes)."""
    found = []
    for kind in KINDS:
        present = [directory / f"{kind}.{ext}" for ext in ("csv", "jsonl") if (directory / f"{kind}.{ext}").is_file()]
        if len(present) > 1:
            raise InvalidInputError(f"{directory}: both {kind}.csv and {kind}.jsonl: keep one of them")
        found += [LedgerFile(kind, path) for path in present]
    if not found:
        raise InvalidInputError(
            f"{directory}: no ledger file (expected customers, contacts, invoices or payments, as .csv or .jsonl)"
        )
    return found


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
    (summary,) = import_files(
        store,
        [LedgerFile(kind, path, fmt, mapping or Mapping())],
        now=now,
        skip_invalid=skip_invalid,
        reject_file=reject_file,
        prune=prune,
        dry_run=dry_run,
        confirm=confirm,
        progress=None if progress is None else (lambda _kind, done: progress(done)),
        batch_size=batch_size,
    )
    return summary


def import_files(
    store: Store,
    files: Sequence[LedgerFile],
    *,
    now: datetime,
    skip_invalid: bool = False,
    reject_file: Path | None = None,
    prune: bool = False,
    dry_run: bool = False,
    confirm: Callable[[ImportSummary], bool] | None = None,
    progress: Callable[[str, int], None] | None = None,
    batch_size: int = BATCH,
) -> list[ImportSummary]:
    """Import files (one of each kind at most) in one transaction: all of them or nothing.

    They are written in the ledger's order (customers, contacts, invoices, payments), each checked
    against the store as the ones before left it. A file with invalid rows does not stop the others
    from being checked (against its valid rows), so that one run lists every error; then nothing is
    written, unless ``skip_invalid``. The summaries come in that order.
    """
    kinds = [f.kind for f in files]
    for kind in kinds:
        if kind not in KINDS:
            raise InvalidInputError(f"unknown ledger kind {kind!r} (expected one of: {', '.join(KINDS)})")
    if len(set(kinds)) != len(kinds):
        raise InvalidInputError("one file of each kind at most in an import")
    if prune and "invoices" not in kinds:
        raise InvalidInputError("--prune applies to invoices only (a full export voids the invoices it lacks)")
    order = list(KINDS)
    jobs = [
        _Job(f, ImportSummary(kind=f.kind, file=f.path.name, dry_run=dry_run))
        for f in sorted(files, key=lambda f: order.index(f.kind))
    ]
    try:
        with ExitStack() as stack:
            apart = Apart.prepare(
                store, stack, jobs, lambda job: _progress(progress, job), batch_size, relay=not (skip_invalid or prune)
            )
            # The write lock from the start: a writer meanwhile (an apply, another import) waits for this
            # import's commit (busy timeout), and the import never fails on turning from reading to writing.
            with (
                _store_errors(store),
                store.session(write_lock=True, attach=apart.attach, bulk=bool(apart)) as session,
                apart,
            ):
                for job in apart:  # a TEMP table of the same name would hide the file's
                    drop_staging(session, job.file.kind)
                apart.start(session)
                # The payments staged already when the invoices are written: a new invoice gets its
                # balance with its payments, so their recompute has nothing left to change. Not with
                # --skip-invalid: a payment rejected at its turn would leave its amount counted in an
                # invoice the recompute no longer looks at; without it, any problem writes nothing.
                paid = [job for job in apart if job.file.kind == "payments"]
                paid_staged = bool(paid) and not skip_invalid
                relay = _Relaying(apart, jobs, now, paid[0] if paid_staged else None)
                for job in jobs:
                    later = False
                    relay.meanwhile(session, job)
                    if relay.written(session, job):
                        continue
                    if job not in apart:
                        file = job.file
                        stage_file(
                            session,
                            file.kind,
                            file.path,
                            file.fmt,
                            file.mapping,
                            job.summary,
                            _progress(progress, job),
                            batch_size,
                        )
                    else:
                        staging = apart.wait(job)
                        if paid_staged and job.file.kind == "invoices":
                            apart.wait(paid[0])
                        later = _customers_later(session, job.file.kind, job.summary, skip_invalid)
                        staging.check(session, customers_later=later)
                    last = job is jobs[-1]
                    _conclude(
                        session,
                        job,
                        now=now,
                        prune=prune,
                        skip_invalid=skip_invalid,
                        customers_later=later,
                        last=last,
                        jobs=jobs,
                        paid_staged=paid_staged,
                    )
                issues = [issue for job in jobs for issue in job.summary.issues]
                if issues and not skip_invalid:
                    raise LedgerImportError(issues, sum(job.summary.rows for job in jobs))
                if issues and reject_file is not None:
                    _write_rejects(reject_file, issues)
                if dry_run or (confirm is not None and not all(confirm(job.summary) for job in jobs)):
                    raise _Rollback
    except _Rollback:
        pass
    return [job.summary for job in jobs]


class _Relaying:
    """The relay's turns in the import's loop (relay.py): while the transaction would wait for a file's
    staging, it writes the invoices' parts staged so far; at the invoices' turn, the rest."""

    def __init__(self, apart: Apart, jobs: list[_Job], now: datetime, paid: _Job | None):
        self.apart, self.relay, self.jobs, self.now, self.paid = apart, apart.relay, jobs, now, paid
        # The parts' rows refer to the customers: written first, when the import has them.
        self._customers = next((job for job in jobs if job.file.kind == "customers"), None)

    def _write(self, session: Session, stg) -> int:
        return write(session, "invoices", self.now, False, paid_staged=self.paid is not None, stg=stg, fresh=True).added

    def _ready(self) -> bool:
        return self.paid is None or self.apart.staged(self.paid)

    def _doubt(self) -> bool:
        return any(job.summary.issues for job in self.jobs)

    def _pump(self, session: Session, job: _Job) -> None:
        """The parts sealed so far and meanwhile written, until ``job`` is staged."""
        assert self.relay is not None
        self.relay.pump(session, self._write, until=lambda: self.apart.staged(job), ready=self._ready, doubt=self._doubt)

    def meanwhile(self, session: Session, job: _Job) -> None:
        """Before ``job``'s turn: the parts staged until ``job`` is (a file staged apart, after the customers)."""
        relay = self.relay
        # The jobs come in the ledger's order: at any turn but the customers' own, they are written.
        if relay is None or job is relay.job or job not in self.apart or job is self._customers:
            return
        self._pump(session, job)

    def written(self, session: Session, job: _Job) -> bool:
        """At the invoices' turn: True once every part is written (the summary says so); False: the usual
        way follows, from the parts combined in one staging table."""
        relay = self.relay
        if relay is None or job is not relay.job:
            return False
        self._pump(session, job)
        self.apart.wait(job)  # its staging's error, if it failed
        if self.paid is not None:
            self.apart.wait(self.paid)
        if relay.finish(session, self._write, rows=job.summary.rows, doubt=self._doubt):
            job.summary.added = relay.added
            return True
        relay.combine(session)
        return False


@dataclass(eq=False)
class _Job:
    """One file of an import and its summary."""

    file: LedgerFile
    summary: ImportSummary


def _progress(progress: Callable[[str, int], None] | None, job: _Job) -> Callable[[int], None] | None:
    if progress is None:
        return None
    kind = job.file.kind
    return lambda done: progress(kind, done)


def _conclude(
    session: Session,
    job: _Job,
    *,
    now: datetime,
    prune: bool,
    skip_invalid: bool,
    customers_later: bool,
    last: bool,
    jobs: list[_Job],
    paid_staged: bool = False,
) -> None:
    """After staging, in the write transaction: set the bad rows aside, write the rest.
    ``customers_later``: the unknown customers were not looked for yet (``_customers_later``).
    ``paid_staged``: the payments of this import are staged (and checked at their turn)."""
    kind, summary = job.file.kind, job.summary
    if summary.issues:
        if not skip_invalid and last:
            # Nothing after this file to check against its valid rows: fail without writing them.
            issues = [issue for other in jobs for issue in other.summary.issues]
            raise LedgerImportError(issues, sum(other.summary.rows for other in jobs))
        # The bad rows out of staging: rejected (--skip-invalid), or the import fails once the files
        # after this one are checked against its valid rows.
        _drop_rows(session, kind, summary, count=skip_invalid)
    counts = write(session, kind, now, prune and kind == "invoices", paid_staged=paid_staged)
    if customers_later:
        _unknown_after(session, job, counts.added)
    summary.added, summary.changed, summary.pruned, summary.links_changed = (
        counts.added,
        counts.changed,
        counts.pruned,
        counts.links_changed,
    )
    summary.notices = counts.notices
    drop_staging(session, kind)


def _unknown_after(session: Session, job: _Job, added: int) -> None:
    """Once the write added ``added`` rows: a staged row it left out has an unknown customer, worded as
    the check before the write words it; the transaction rolls back when every file is checked."""
    kind, summary = job.file.kind, job.summary
    # The bad rows (a repeated key, found by the check) went out of staging before the write, and a row
    # the reader could not split was never staged.
    staged = summary.rows if not summary.issues else session.execute(select(func.count()).select_from(STAGING[kind])).scalar_one()
    if added == staged:
        return
    found = unknown_customers(session, kind)
    if not found:
        raise StoreError(f"{staged - added} rows of {job.file.path.name} were not written; nothing was imported")
    summary.issues.extend(RowIssue(job.file.path.name, r, c, m, "row") for r, c, m in found)


def _customers_later(session: Session, kind: str, summary: ImportSummary, skip_invalid: bool) -> bool:
    """Whether unknown customers can be looked for after the write instead of before: invoices into an empty
    table, with no problem found so far (the import fails or writes everything). The write then adds every
    staged row whose customer exists, so it adds them all exactly when none is unknown (one query fewer
    over a million rows); else the check runs, words them, and the transaction rolls back."""
    if kind != "invoices" or summary.issues or skip_invalid:
        return False
    return invoices_empty(session)


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


def _drop_rows(session: Session, kind: str, summary: ImportSummary, *, count: bool) -> None:
    """The rows with problems out of staging; ``count``: as rejected (--skip-invalid)."""
    bad = sorted({i.row for i in summary.issues})
    if count:
        summary.rejected = len(bad)
    stg = STAGING[kind]
    for start in range(0, len(bad), 1000):
        chunk = bad[start : start + 1000]
        session.execute(delete(stg).where(stg.c.row_no.in_(chunk)))
        if kind == "contacts":
            session.execute(delete(STAGING_FUNCTIONS).where(STAGING_FUNCTIONS.c.row_no.in_(chunk)))


def _write_rejects(reject_file: Path, issues: list[RowIssue]) -> None:
    """--skip-invalid: the rejected rows of every file, with why."""
    with reject_file.open("w", encoding="utf-8", newline="") as handle:
        out = csv.writer(handle)
        out.writerow(["file", "row", "column", "error"])
        for issue in issues:
            out.writerow([issue.file, issue.row, issue.column, issue.message])


def ledger_counts(session: Session) -> dict[str, int]:
    from dunningops.store.schema import ContactRow, CustomerRow, PaymentRow

    return {
        name: session.execute(select(func.count()).select_from(row)).scalar_one()
        for name, row in (
            ("customers", CustomerRow),
            ("contacts", ContactRow),
            ("invoices", InvoiceRow),
            ("payments", PaymentRow),
        )
    }
