"""To-dos (E1): manual emails, calls and letters for people; reply to-dos (R3); customers nobody can be written to;
promises to pay broken (dunning/pauses.py, for the account manager, else the owner).

Who gets one: the step's assignee; else, for an email, the member it is from (account
manager or named member, A6); else the customer's account manager; else the owner.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from dunningops.dunning.runconfig import RunConfig
from dunningops.dunning.schedule import Decision
from dunningops.errors import ConflictError, NotFoundError
from dunningops.store.schema import CustomerRow, TodoRow

todos, customers = TodoRow.__table__, CustomerRow.__table__
OPEN = "open"


def assignee_for(config: RunConfig, d: Decision) -> str | None:
    for ref in (d.step.assignee, d.step.sender if d.step.action == "email" else None):
        if not ref:
            continue
        kind, _, ident = ref.partition(".")
        if kind == "member" and ident in config.members:
            return ident
        if kind == "account_manager" and d.account_manager:
            return d.account_manager
    return d.account_manager if d.account_manager in config.members else config.owner


def add(
    session: Session,
    *,
    kind: str,
    customer_id: int,
    now: datetime,
    assignee: str | None,
    payload: dict,
    reason: str | None = None,
    plan_id: str | None = None,
    step_id: str | None = None,
    invoice_id: int | None = None,
) -> int:
    """A new open to-do. One whose email nobody can receive (``payload["problem"]``) says so in its reason."""
    return add_many(session, [new(kind, customer_id, now, assignee, payload, reason, plan_id, step_id, invoice_id)])[0]


def new(
    kind: str,
    customer_id: int,
    now: datetime,
    assignee: str | None,
    payload: dict,
    reason: str | None = None,
    plan_id: str | None = None,
    step_id: str | None = None,
    invoice_id: int | None = None,
) -> dict:
    """The row of a new open to-do (see ``add``), for ``add_many``."""
    problem = payload.get("problem")
    if problem and reason in (None, problem):
        reason = nobody_can_be_written_to(problem)
    return {
        "kind": kind,
        "status": OPEN,
        "customer_id": customer_id,
        "invoice_id": invoice_id,
        "plan_id": plan_id,
        "step_id": step_id,
        "assignee": assignee,
        "reason": reason,
        "payload": payload,
        "created_at": now,
    }


def add_many(session: Session, rows: list[dict]) -> list[int]:
    """New to-dos (rows from ``new``) in one statement; their ids, in the rows' order."""
    if not rows:
        return []
    inserted = session.execute(insert(todos).returning(todos.c.id, sort_by_parameter_order=True), rows)
    return list(inserted.scalars())


def nobody_can_be_written_to(problem: str) -> str:
    """The to-do's reason when no contact can receive its email (``problem``: recipients.nobody_to_write_to)."""
    return f"Nobody can be written to: {problem}."


def list_todos(
    session: Session,
    *,
    status: str | None = OPEN,
    assignee: str | None = None,
    kind: str | None = None,
    customer_id: int | None = None,
    limit: int = 200,
) -> list[dict]:
    query = (
        select(
            todos.c.id,
            todos.c.kind,
            todos.c.status,
            customers.c.external_id.label("customer"),
            customers.c.name,
            todos.c.plan_id,
            todos.c.step_id,
            todos.c.assignee,
            todos.c.reason,
            todos.c.created_at,
        )
        .join(customers, customers.c.id == todos.c.customer_id)
        .order_by(todos.c.id)
        .limit(limit)
    )
    if status:
        query = query.where(todos.c.status == status)
    if assignee:
        query = query.where(todos.c.assignee == assignee)
    if customer_id is not None:
        query = query.where(todos.c.customer_id == customer_id)
    if kind:
        query = query.where(todos.c.kind == kind)
    return [dict(r) for r in session.execute(query).mappings()]


def get(session: Session, todo_id: int) -> dict:
    row = (
        session.execute(
            select(todos, customers.c.external_id.label("customer"), customers.c.name.label("customer_name"))
            .join(customers, customers.c.id == todos.c.customer_id)
            .where(todos.c.id == todo_id)
        )
        .mappings()
        .first()
    )
    if row is None:
        raise NotFoundError(f"no to-do #{todo_id}")
    return dict(row)


def close(session: Session, todo_id: int, status: str, by: str | None, now: datetime) -> dict:
    """Mark a to-do done, dismissed or sent; a closed to-do stays closed."""
    todo = get(session, todo_id)
    if todo["status"] != OPEN:
        raise ConflictError(f"to-do #{todo_id} is already {todo['status']}")
    session.execute(update(todos).where(todos.c.id == todo_id).values(status=status, closed_at=now, closed_by=by))
    return {**todo, "status": status}
