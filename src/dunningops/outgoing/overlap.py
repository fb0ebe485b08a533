"""Render the next batch while the previous one is on the wire.

Rendering is Python (it holds the GIL); sending is mostly waiting on sockets (it releases
it). Taking turns leaves the sockets idle while a batch renders and the CPU idle while one
is sent, so the send cycle prepares batch N+1 on the caller's thread while batch N is sent
on one worker thread. At most one batch is in flight: a batch is recorded ``sending`` (and
may reach the server) only after the previous one's send has returned, so the order of
records, and what a crash can leave ``unknown``, stay those of the sequential loop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
P = TypeVar("P")


def overlapped(
    items: Iterable[T],
    prepare: Callable[[T], P | None],
    send: Callable[[P], None],
    *,
    stopped: Callable[[], bool] = lambda: False,
    discard: Callable[[P], None] | None = None,
) -> None:
    """``prepare`` each item on this thread and ``send`` the result on a worker, one send at a time.

    ``prepare`` returning None skips the item. An exception from ``send`` is raised here once
    the send in flight has finished, and nothing more is sent: the item prepared meanwhile goes
    to ``discard`` (its claims given back, say). ``stopped()`` is asked before each item is
    prepared; once it is true, the send in flight finishes and nothing more is prepared.
    An exception from ``prepare`` (or from ``items``) is raised once the send in flight has finished.
    """
    in_flight: Future[None] | None = None
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="dunningops-send") as pool:
        try:
            for item in items:
                if stopped():
                    break
                prepared = prepare(item)
                if in_flight is not None:
                    sending, in_flight = in_flight, None
                    try:
                        sending.result()  # a failed send stops the loop before the next one starts
                    except BaseException:
                        if prepared is not None and discard is not None:
                            discard(prepared)
                        raise
                if prepared is not None:
                    in_flight = pool.submit(send, prepared)
            if in_flight is not None:
                sending, in_flight = in_flight, None
                sending.result()
        finally:
            if in_flight is not None:
                # Leaving on an exception from prepare: a send already running finishes (the pool waits for it).
                in_flight.cancel()
