"""The CSV files of an import on SQLite staged apart, each in a scratch file of its own (staging_file.py),
by threads of their own while the write transaction writes the files staged before.

SQLite ATTACHes a file only outside a transaction, so the scratch files and their tables are made
first, empty, and the transaction attaches them before it begins. Then two threads stage the files
(the invoices; the others in the order the transaction writes them), while the transaction writes
the ones already staged: 100k customers' 200k contacts are written while their million invoices
are read. The transaction reads a file only once its staging is done (``Apart.wait``): till then
the thread's ADBC connection is the file's only user. The indexes a thread builds change the
file's schema under the transaction, which SQLite notices when a statement first reads the file
(its schema cookie) and prepares that statement again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType, TracebackType
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from dunningops.ledger.context import LedgerContext
from dunningops.ledger.loading import Staging, tables
from dunningops.ledger.relay import Relay, RelaySink, invoices_empty, per_part, relay_parts
from dunningops.ledger.stream import apart_module, stage_arrow, without_cycle_collector
from dunningops.store.engine import Store

if TYPE_CHECKING:
    from dunningops.ledger.importer import _Job
    from dunningops.ledger.staging_file import StagingFile


def _parts(store: Store, job: _Job, others: int) -> int:
    """The parts a relay stages the invoices file in: 1 (none) unless the store has no invoice yet."""
    parts = relay_parts(job.file.path.stat().st_size, others)
    if parts > 1:
        with store.session() as session:  # read before the import's transaction: it only decides the way
            if not invoices_empty(session):
                return 1
    return parts


@dataclass(eq=False)
class _File:
    names: list[str]  # the names the write transaction attaches its file (a relay's parts) under
    sink: StagingFile | RelaySink
    arrow: ModuleType
    staging: Staging | None = None  # made once the transaction has read the config (Apart.start)

    @property
    def paths(self) -> list[Path]:
        return [part.path for part in self.sink.files] if isinstance(self.sink, RelaySink) else [self.sink.path]


class _Stopped(Exception):
    """Raised in the staging thread when the write transaction ended first (an error, Ctrl-C)."""


class Apart:
    """The files staged apart: made by ``prepare``, staged from ``start`` on, each awaited by ``wait``;
    the ``with`` block's end stops the threads and waits for them (before the files are removed)."""

    def __init__(self, files: dict[_Job, _File], progress: Callable, batch_size: int, changed: threading.Condition | None = None):
        self.files = files
        self._progress, self._batch = progress, batch_size
        # Notified whenever a file is staged or a relay's part sealed (relay.py waits on it).
        self.changed = changed or threading.Condition()
        self.relay: Relay | None = None
        for job, file in files.items():
            if isinstance(file.sink, RelaySink):
                self.relay = Relay(job, file.sink, file.names)
        # Two lanes, a thread each: the invoices (most of a ledger) from the start, and the other files
        # in the order the transaction reads them. Staged one after the other, the transaction sat
        # idle for the invoices' staging once it had written the contacts (1.5 s of a 100k ledger).
        # A relay's parts count the staged payments in their balances: the payments go before the contacts.
        first = ("customers", "payments") if self.relay is not None else ("customers",)
        others = sorted((job for job in files if job.file.kind != "invoices"), key=lambda job: job.file.kind not in first)
        lanes = [[job for job in files if job.file.kind == "invoices"], others]
        self._done = {job: threading.Event() for job in files}
        self._errors: dict[_Job, BaseException] = {}
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(lane,), name=f"ledger-staging-{n}", daemon=True)
            for n, lane in enumerate(lanes)
            if lane
        ]

    @classmethod
    def prepare(
        cls, store: Store, stack: ExitStack, jobs: list[_Job], progress: Callable, batch_size: int, *, relay: bool = False
    ) -> Apart:
        """The large CSV files on SQLite, and the smaller ones beside a large one: their scratch files,
        empty (removed when ``stack`` closes). ``relay``: a large invoices file may be staged in parts,
        each written as soon as it is staged (relay.py), when the store has no invoice yet."""
        modules = {job: apart_module(store, job.file.path, job.file.fmt, job.file.mapping) for job in jobs}
        files: dict[_Job, _File] = {}
        if not any(modules.values()):
            return cls(files, progress, batch_size)
        # pyarrow and ADBC are loaded for one large file: the smaller CSV files go the same way, which
        # takes their staging out of the write transaction too (100k customers' 8.7 MB: 1.0 s → 0.3 s).
        modules = {
            job: arrow or apart_module(store, job.file.path, job.file.fmt, job.file.mapping, any_size=True)
            for job, arrow in modules.items()
        }
        from dunningops.ledger.staging_file import SCHEMA, StagingFile, remove_orphans

        remove_orphans()  # the scratch files killed imports left: before this one adds its own
        changed = threading.Condition()
        staged = [job for job, arrow in modules.items() if arrow is not None]
        for job in staged:
            kind, name = job.file.kind, f"{SCHEMA}_{job.file.kind}"
            parts = _parts(store, job, len(staged) - 1) if relay and kind == "invoices" else 1
            if parts > 1:
                sink: StagingFile | RelaySink = RelaySink(
                    [stack.enter_context(StagingFile(tables(kind))) for _ in range(parts)],
                    per_part(job.file.path.stat().st_size, parts, modules[job].CHUNK_BYTES),  # type: ignore[union-attr]
                    changed,
                )
                names = [name, *(f"{name}_{n}" for n in range(1, parts))]
            else:
                sink, names = stack.enter_context(StagingFile(tables(kind))), [name]
            files[job] = _File(names, sink, modules[job])  # type: ignore[arg-type]
        return cls(files, progress, batch_size, changed)

    def start(self, session: Session) -> None:
        """Begin staging, in the write transaction that attached the files, which holds the store's
        write lock (``Store.session(write_lock=True)``): the config the rows are checked against,
        read here, stays the one the transaction writes under."""
        if not self.files:
            return
        ctx = LedgerContext.load(session)
        for job, file in self.files.items():
            f = job.file
            file.staging = Staging(file.sink, ctx, True, f.kind, job.summary, f.path.name, "row", f.mapping)
        for thread in self._threads:
            thread.start()

    def __bool__(self) -> bool:
        return bool(self.files)

    def __iter__(self) -> Iterator[_Job]:
        return iter(self.files)

    def __contains__(self, job: object) -> bool:
        return job in self.files

    @property
    def attach(self) -> dict[str, Path]:
        return {name: path for f in self.files.values() for name, path in zip(f.names, f.paths, strict=True)}

    def staged(self, job: _Job) -> bool:
        """Whether ``job``'s staging is over (done, or failed: ``wait`` raises its error)."""
        return self._done[job].is_set()

    def __enter__(self) -> Apart:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        for thread in self._threads:
            if thread.is_alive():
                thread.join()

    def wait(self, job: _Job) -> Staging:
        """``job``'s staging, once its file is staged; the staging thread's error if it failed first."""
        self._done[job].wait()
        if job in self._errors:
            raise self._errors[job]
        staging = self.files[job].staging
        assert staging is not None
        return staging

    def _run(self, lane: list[_Job]) -> None:
        with without_cycle_collector():
            for n, job in enumerate(lane):
                try:
                    self._stage(job)
                except BaseException as exc:  # raised by wait() in the transaction's thread
                    for later in lane[n:]:
                        self._errors[later] = exc
                        self._mark(later)
                    return

    def _mark(self, job: _Job) -> None:
        with self.changed:
            self._done[job].set()
            self.changed.notify_all()

    def _stage(self, job: _Job) -> None:
        file, each = self.files[job], self._progress(job)

        def progress(done: int) -> None:
            if self._stop.is_set():
                raise _Stopped
            if each is not None:
                each(done)

        if self._stop.is_set():
            raise _Stopped
        kind, path, mapping, staging = job.file.kind, job.file.path, job.file.mapping, file.staging
        assert staging is not None  # made by start()
        stage_arrow(file.arrow, staging, kind, path, mapping, progress, self._batch, as_table=True)
        file.sink.close()  # the transaction alone holds the file from here
        self._mark(job)
