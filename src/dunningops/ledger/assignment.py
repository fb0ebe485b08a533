"""Which plan a customer is in: its explicit plan, else the first plan whose `assign.where` matches
(plans tried in id order), else the default plan. One SQL expression, so lists and the send cycle
assign every customer in the query itself.
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, Table, and_, case, func, literal, null, select
from sqlalchemy.orm import Session

from dunningops.store.schema import PlanRow


def applied_assignments(session: Session) -> dict[str, dict]:
    """{plan id: its `assign` mapping} from the applied config."""
    return {plan_id: assign for plan_id, assign in session.execute(select(PlanRow.id, PlanRow.assign))}


def plan_expression(assignments: dict[str, dict], customers: Table) -> ColumnElement:
    """SQL for the effective plan id of each customer row (NULL when no plan applies).

    ``assignments`` may come from the store or from a desired config not yet
    applied, so a config change's effect can be shown before it is applied.
    """
    whens = []
    default = None
    for plan_id in sorted(assignments):
        assign = assignments[plan_id] or {}
        where = assign.get("where") or {}
        if where:
            whens.append((and_(*(customers.c[field].in_(values) for field, values in sorted(where.items()))), literal(plan_id)))
        if assign.get("default"):
            default = plan_id
    fallback = literal(default) if default else null()
    rule = case(*whens, else_=fallback) if whens else fallback
    return func.coalesce(customers.c.plan_id, rule)
