"""A fixed set of worker threads, each owning one resource (an SMTP connection), fed from one queue.

Threads rather than asyncio: ``smtplib`` is blocking, and a thread spends its
time waiting on the socket with the GIL released, so a few of them keep a
few connections busy. Each worker's resource is created, used and closed by
its own thread only, so no connection is ever shared.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterable
from typing import Generic, Protocol, TypeVar

__all__ = ["Worker", "WorkerPool"]


J = TypeVar("J")
R = TypeVar("R")
R_co = TypeVar("R_co", covariant=True)
J_contra = TypeVar("J_contra", contravariant=True)


class Worker(Protocol[J_contra, R_co]):
    """What one thread owns: ``run`` handles one job, ``close`` releases the resource.

    ``after`` is the job this worker runs next when it is already known (taken from the queue
    with this one): a worker may start on it early, e.g. an SMTP session sends its envelope
    with this message's end (RFC 2920). ``run(after, ...)`` always follows.
    """

    def run(self, job: J_contra, after: J_contra | None = None) -> R_co: ...

    def close(self) -> None: ...


class WorkerPool(Generic[J, R]):
    """``map`` jobs over ``size`` threads; results come back in the order of the jobs.

    Threads start on the first ``map`` and each makes its worker with
    ``make_worker`` on its first job, so a batch smaller than the pool opens
    fewer connections. ``map`` calls run one at a time; ``close`` ends the
    threads, each closing its own worker.
    """

    def __init__(self, size: int, make_worker: Callable[[], Worker[J, R]], *, name: str = "worker"):
        if size < 1:
            raise ValueError(f"a pool needs at least one worker, not {size}")
        self.size = size
        self._make_worker = make_worker
        self._name = name
        self._jobs: queue.SimpleQueue[tuple[int, J, queue.SimpleQueue] | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._closed = False

    def map(self, jobs: Iterable[J]) -> list[R]:
        """Run every job; re-raises the first exception a worker raised (a bug), after the batch ends."""
        with self._lock:
            if self._closed:
                raise RuntimeError("this pool is closed")
            if not self._threads:
                self._start()
            done: queue.SimpleQueue[tuple[int, bool, object]] = queue.SimpleQueue()
            count = 0
            # Jobs are queued as the iterable yields them, so workers start at once.
            for index, job in enumerate(jobs):
                self._jobs.put((index, job, done))
                count += 1
            results: list = [None] * count
            errors: list[BaseException] = []
            for _ in range(count):
                index, ok, value = done.get()
                if ok:
                    results[index] = value
                else:
                    errors.append(value)  # type: ignore[arg-type]
            if errors:
                raise errors[0]
            return results

    def close(self) -> None:
        """Stop the threads once the queue is drained; each closes its own worker. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for _ in self._threads:
                self._jobs.put(None)
            for thread in self._threads:
                thread.join()
            self._threads.clear()

    def _start(self) -> None:
        for n in range(self.size):
            # Daemon threads: a transport someone forgot to close must not keep the process alive.
            thread = threading.Thread(target=self._serve, name=f"{self._name}-{n}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def _serve(self) -> None:
        worker: Worker[J, R] | None = None
        try:
            item = self._jobs.get()
            while item is not None:
                index, job, done = item
                # The next job, if one is waiting, is this worker's too: it is told, so that it can
                # start on it early. Only jobs of the same map call are ever queued together.
                try:
                    following, waiting = self._jobs.get_nowait(), True
                except queue.Empty:
                    following, waiting = None, False
                after = following[1] if following is not None else None
                try:
                    if worker is None:
                        worker = self._make_worker()
                    done.put((index, True, worker.run(job, after)))
                except BaseException as exc:
                    done.put((index, False, exc))
                item = following if waiting else self._jobs.get()  # following may be None: the stop sentinel
        finally:
            if worker is not None:
                with contextlib.suppress(Exception):
                    worker.close()
