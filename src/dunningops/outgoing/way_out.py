"""``send``: the one function every email leaves through.

At most once: (1) the messages are recorded ``sending`` and committed, together with whatever
the caller must write with them (``reserve``: a reminder's action rows, a to-do's or an outbox
row's claim); (2) the transport sends; (3) the outcomes are committed, with the caller's
follow-up (``settle``). A process that dies in (2) leaves ``sending`` rows: reported and then
marked ``unknown`` (history.py), never sent again, since (1) already says the step, the to-do
or the confirmation was taken. Only ``deferred`` (nothing was delivered) is sent again, later,
with the same Message-ID.

The sending lock (store/lock.py) is held, shared, from before (1) until (3) has committed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from dunningops.errors import ConflictError, StoreError
from dunningops.outgoing import history
from dunningops.outgoing.letter import Letter, Outcome, Recorded
from dunningops.store.lock import sending
from dunningops.transport.base import Transport

Reserve = Callable[[Session, list[Recorded]], None]
Settle = Callable[[Session, list[Outcome]], None]


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

    Raises:
        TransportError: the transport found it cannot work as configured (``transport.fatal``),
            after every outcome was recorded (the messages it did not try are ``deferred``).
        ConflictError, StoreError: the store refused the `sending` rows (nothing was sent), or
            the outcomes (the emails stay `sending`: shown unknown, never sent again).
    """
    if not letters:
        return []
    with sending(store.engine):
        try:
            with store.session(write_lock=True) as session:
                recorded = history.record(session, letters, at=at, domain=domain)
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
        results = transport.send([r.message for r in recorded])
        try:
            with store.session(write_lock=True) as session:
                outcomes = history.record_outcomes(session, recorded, results, at=at)
                if settle is not None:
                    settle(session, outcomes)
        except (IntegrityError, OperationalError) as exc:
            # They stay `sending`: shown as unknown (they may have left) and never sent again.
            raise StoreError(
                f"the store could not record what the server answered ({_reason(exc)}); "
                f"{len(recorded)} email(s) show as possibly sent and are not sent again"
            ) from exc
    fatal = getattr(transport, "fatal", None)
    if fatal is not None:
        raise fatal
    return outcomes


def _reason(exc: IntegrityError | OperationalError) -> str:
    return str(exc.orig).strip().splitlines()[0] if exc.orig is not None else type(exc).__name__
