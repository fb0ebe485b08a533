"""Progress for long work: a rich progress bar on a terminal, a plain line now and then elsewhere (CI logs)."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def row_progress(description: str, every_s: float = 5.0) -> Iterator[Callable[[int], None]]:
    """Yield a callback taking the number of rows done so far."""
    if sys.stderr.isatty():
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        with Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            TextColumn("{task.completed:,} rows"),
            TimeElapsedColumn(),
            transient=True,
        ) as bar:
            task = bar.add_task(description, total=None)
            yield lambda done: bar.update(task, completed=done)
        return
    last = [time.monotonic()]

    def plain(done: int) -> None:
        now = time.monotonic()
        if now - last[0] >= every_s:
            print(f"{description}: {done:,} rows", file=sys.stderr, flush=True)
            last[0] = now

    yield plain
