"""``send``: the one function every email leaves through.

At most once: (1) the messages are recorded ``sending`` and committed, together with whatever
the caller must write with them (``reserve``: a reminder's action rows, a to-do's or an outbox
row's claim); (2) the transport sends; (3) the outcomes are committed, with the caller's
follow-up (``settle``). A process that dies in (2) leaves ``sending`` rows: reported and then
marked ``unknown`` (history.py), never sent again, since (1) already says the step, the to-do
or the confirmation was taken. Only ``deferred`` (nothing was delivered) is sent again, later,
with the same Message-ID.

Each message is recorded with this process's runner (store/runners.py): only a dead runner's
``sending`` rows are taken for interrupted, so several processes may send at once.

With a ``stop`` event (the daemon on SIGTERM), the transport gets the messages a few at a time:
once ``stop`` is set, the ones in flight finish and the rest come back ``deferred`` (nothing
of them was handed over; due again, with the same Message-ID): a clean stop leaves nothing
``sending`` or ``unknown``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from datetime import datetime

from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session

from dunningops.errors import ConflictError, StoreError
from dunningops.outgoing import history
from dunningops.outgoing.letter import Letter, Outcome, Recorded
from dunningops.store.runners import runner_of
from dunningops.transport.base import SendResult, Transport

Reserve = Callable[[Session, list[Recorded]], None]
Settle = Callable[[Session, list[Outcome]], None]
# With a stop event: how many messages the transport gets at a time (its pool sends them in parallel).
STOP_CHUNK = 16
STOPPED = "not sent: the run was stopped before its turn; it goes out with the next run"


class NotClaimed(Exception):
    """Raised by a ``reserve`` hook: another process took what these letters were for; send nothing."""


def send(
    store,
    transport: Transport,
    letters: Sequence[Letter],
    *,
    at: datetime,
    domain: str,
    reserve: Reserve | None = None,
    settle: Settle | None = None,
    stop: threading.Event | None = None,
) -> list[Outcome]:
    """Record, send and settle ``letters``; returns the outcomes of the ones sent, in order.

    Args:
        store: the store (``dunningops.store.Store``).
        transport: sends; its ``fatal`` (once set) is raised after the outcomes are recorded.
        letters: what to send and record.
        at: the instant recorded (created_at, sent_at) and put in each Date header.
        domain: the right-hand side of new Message-IDs.
        reserve: writes that must commit with the ``sending`` rows; raising ``NotClaimed``
            sends nothing and returns ``[]``; any other exception propagates, nothing sent.
        settle: writes that must commit with the outcomes.
        stop: once set, the messages not yet handed to the transport come back ``deferred``.

    Raises:
        TransportError: the transport found it cannot work as configured (``transport.fatal``),
            after every outcome was recorded (the messages it did not try are ``deferred``).
        ConflictError, StoreError: the store refused the `sending` rows (nothing was sent), or
            the outcomes (the emails stay `sending`: shown unknown, never sent again).
    """
    if not letters:
        return []
    runner = runner_of(store)
    try:
        with store.session(write_lock=True) as session:
            recorded = history.record(session, letters, at=at, domain=domain, runner_id=runner.id)
            if recorded and reserve is not None:
                reserve(session, recorded)
    except NotClaimed:
        return []
    except IntegrityError as exc:
        raise ConflictError("another process recorded the same email at the same moment; nothing was sent") from exc
    except OperationalError as exc:
        raise StoreError(f"the store could not record the emails before sending ({_reason(exc)}); nothing was sent") from exc
    if not recorded:
        return []
    results = _send(transport, [r.message for r in recorded], stop)
    try:
        with store.session(write_lock=True) as session:
            outcomes = history.record_outcomes(session, recorded, results, at=at)
            if settle is not None:
                settle(session, outcomes)
    except (IntegrityError, OperationalError) as exc:
        # They may have left: unknown, never sent again (if even that cannot be written, they stay
        # `sending` and read unknown once this process has stopped).
        try:
            with store.session(write_lock=True) as session:
                history.give_up(session, [r.id for r in recorded])
        except SQLAlchemyError:
            pass
        raise StoreError(
            f"the store could not record what the server answered ({_reason(exc)}); "
            f"{len(recorded)} email(s) show as possibly sent and are not sent again"
        ) from exc
    fatal = getattr(transport, "fatal", None)
    if fatal is not None:
        raise fatal
    return outcomes


def _send(transport: Transport, messages: list, stop: threading.Event | None) -> list[SendResult]:
    if stop is None:
        return transport.send(messages)
    results: list[SendResult] = []
    for start in range(0, len(messages), STOP_CHUNK):
        if stop.is_set():
            results += [SendResult(m.message_id, "deferred", detail=STOPPED) for m in messages[start:]]
            break
        results += transport.send(messages[start : start + STOP_CHUNK])
    return results


def _reason(exc: IntegrityError | OperationalError) -> str:
    return str(exc.orig).strip().splitlines()[0] if exc.orig is not None else type(exc).__name__
