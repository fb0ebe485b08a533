"""Claims: how send cycles running side by side (several daemons on PostgreSQL) share the due steps.

A due step's action row (unique per plan, step, customer and anchor) is the claim. A cycle
inserts the rows of a batch ``claimed``, with its runner id, in a short transaction of its own
(``INSERT … ON CONFLICT DO NOTHING RETURNING``): the rows it gets back are its steps; the others
were taken by another cycle and are left to it. Only then does it render them, record the
messages ``sending`` (the rows become ``sent``, naming the message) and send, outside any
transaction. A to-do turns its rows into ``todo``. A step that cannot be rendered, or that a
stop left unsent, is released (deleted: due again).

A cycle that dies holding claims leaves ``claimed`` rows of a dead runner: nothing was recorded
for them, so the next cycle releases them and they are due again. Once a row is ``sent``, its
message may have left: that is the history's business (``unknown``, never re-sent).

Rows are claimed in key order, so two cycles inserting overlapping batches wait for each other
briefly instead of deadlocking.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import cast

from sqlalchemy import CursorResult, and_, bindparam, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from dunningops.store.runners import live_runners
from dunningops.store.schema import ActionRow

__all__ = ["Key", "claim", "key_of", "release", "release_dead", "settle"]

actions = ActionRow.__table__
Key = tuple[str, str, int, int]  # plan, step, customer, anchor invoice
KEY_COLUMNS = (actions.c.plan_id, actions.c.step_id, actions.c.customer_id, actions.c.anchor_invoice_id)


def key_of(decision) -> Key:
    return (decision.plan.id, decision.step.id, decision.customer_id, decision.anchor_invoice_id)


def claim(session: Session, keys: Iterable[Key], *, runner_id: int, at: datetime) -> set[Key]:
    """Claim the steps ``keys`` for ``runner_id``; returns the ones this runner got."""
    rows = [
        {
            "plan_id": p,
            "step_id": s,
            "customer_id": c,
            "anchor_invoice_id": a,
            "outcome": "claimed",
            "runner_id": runner_id,
            "performed_at": at,
        }
        for p, s, c, a in sorted(set(keys))
    ]
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    if not rows:
        return set()
    # One statement compiled once and given the rows (SQLAlchemy's "insertmanyvalues" sends them as
    # multi-row INSERTs, in this order); a VALUES list built per batch was compiled every time.
    statement = (
        dialect.insert(actions).on_conflict_do_nothing(index_elements=[c.name for c in KEY_COLUMNS]).returning(*KEY_COLUMNS)
    )
    return {cast(Key, tuple(r)) for r in session.execute(statement, rows)}


# Bound parameters may not take a column's name in an UPDATE: k0..k3 are the key's parts.
_NAMES = ("k0", "k1", "k2", "k3")


def _mine(runner_id: int):
    return and_(
        *(c == bindparam(n) for c, n in zip(KEY_COLUMNS, _NAMES, strict=True)),
        actions.c.runner_id == runner_id,
        actions.c.outcome == "claimed",
    )


def _params(keys: Iterable[Key]) -> list[dict]:
    return [dict(zip(_NAMES, k, strict=True)) for k in keys]


def settle(session: Session, outcome: str, links: Sequence[tuple[Key, int]], *, runner_id: int, at: datetime) -> None:
    """This runner's claimed steps performed: ``sent`` (linked to a message) or ``todo`` (to a to-do)."""
    if not links:
        return
    column = "message_id" if outcome == "sent" else "todo_id"
    session.execute(
        update(actions)
        .where(_mine(runner_id))
        .values({"outcome": outcome, "runner_id": None, "performed_at": at, column: bindparam("link")}),
        [dict(p, link=link) for p, (_, link) in zip(_params(k for k, _ in links), links, strict=True)],
    )


def release(session: Session, keys: Iterable[Key], *, runner_id: int) -> None:
    """Give back this runner's claims on ``keys``: the steps are due again."""
    params = _params(set(keys))
    if params:
        session.execute(delete(actions).where(_mine(runner_id)), params)


def release_dead(session: Session) -> int:
    """Release the claims of dead runners (nothing was recorded for them); returns how many."""
    holders = set(session.scalars(select(actions.c.runner_id).where(actions.c.runner_id.is_not(None)).distinct()))
    dead = {h for h in holders if h is not None} - live_runners(session, holders)
    if not dead:
        return 0
    result = session.execute(delete(actions).where(actions.c.runner_id.in_(dead), actions.c.outcome == "claimed"))
    return cast(CursorResult, result).rowcount
