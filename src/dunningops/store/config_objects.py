"""Config objects as the store holds them: read them all, create, update, delete, rename.

An object is addressed ``kind.id`` and carries ``fields`` (what the YAML
sets, in the same canonical JSON shape that reconcile builds from the
desired state) and ``meta`` (actual-only: timestamps, verification, last send).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import Session

from dunningops.spec.types import parse_days
from dunningops.store.schema import (
    AliasRow,
    ContactFunctionLinkRow,
    ContactFunctionRow,
    MemberRow,
    PlanRow,
    PlanStepRow,
    SettingsRow,
    TemplateRow,
)
from dunningops.store.state import FIELDS, STEP_COLUMNS

ROWS: dict[str, Any] = {
    "settings": SettingsRow,
    "member": MemberRow,
    "alias": AliasRow,
    "contact_function": ContactFunctionRow,
    "template": TemplateRow,
    "plan": PlanRow,
}
META = {
    "alias": ("verified", "verified_at", "last_sent_at"),
    "template": ("last_sent_at",),
}


@dataclass(frozen=True)
class ActualObject:
    kind: str
    id: str
    fields: dict
    meta: dict = field(default_factory=dict)

    @property
    def address(self) -> str:
        return self.kind if self.kind == "settings" else f"{self.kind}.{self.id}"


def read_actual(session: Session) -> dict[str, ActualObject]:
    """Every applied config object, by address; a handful of queries whatever the size."""
    objects: dict[str, ActualObject] = {}
    for row in session.scalars(select(SettingsRow)):
        obj = ActualObject("settings", "settings", row.data, _meta(row, "settings"))
        objects[obj.address] = obj
    steps: dict[str, list[dict]] = {}
    for step in session.scalars(select(PlanStepRow).order_by(PlanStepRow.plan_id, PlanStepRow.position)):
        steps.setdefault(step.plan_id, []).append({key: getattr(step, col) for key, col in STEP_COLUMNS.items()})
    for kind, columns in FIELDS.items():
        for row in session.scalars(select(ROWS[kind]).order_by(ROWS[kind].id)):
            values = {c: getattr(row, c) for c in columns}
            if kind == "plan":
                values["steps"] = steps.get(row.id, [])
            obj = ActualObject(kind, row.id, values, _meta(row, kind))
            objects[obj.address] = obj
    return objects


def _meta(row: Any, kind: str) -> dict:
    meta = {"created_at": row.created_at, "updated_at": row.updated_at}
    meta.update({c: getattr(row, c) for c in META.get(kind, ())})
    return meta


def create(session: Session, kind: str, ident: str, fields: dict, now: datetime, **meta: Any) -> None:
    values = {"id": ident, "created_at": now, "updated_at": now, **_columns(kind, fields), **meta}
    session.execute(insert(ROWS[kind]).values(**values))
    if kind == "plan":
        _write_steps(session, ident, fields["steps"], now, {})


def update_fields(session: Session, kind: str, ident: str, fields: dict, now: datetime) -> None:
    row = ROWS[kind]
    session.execute(update(row).where(row.id == ident).values(updated_at=now, **_columns(kind, fields)))
    if kind == "plan":
        # E3: a step keeps the time it was first applied; only new steps get `now`.
        created = {
            sid: at
            for sid, at in session.execute(select(PlanStepRow.id, PlanStepRow.created_at).where(PlanStepRow.plan_id == ident))
        }
        session.execute(delete(PlanStepRow).where(PlanStepRow.plan_id == ident))
        _write_steps(session, ident, fields["steps"], now, created)


def destroy(session: Session, kind: str, ident: str) -> None:
    row = ROWS[kind]
    if kind == "plan":  # explicit, so no dialect depends on ON DELETE CASCADE being enforced
        session.execute(delete(PlanStepRow).where(PlanStepRow.plan_id == ident))
    session.execute(delete(row).where(row.id == ident))


def rename(session: Session, kind: str, old: str, new: str, now: datetime) -> None:
    """A ``moved`` entry: the row keeps its actual-only fields and its history under a new id."""
    row = ROWS[kind]
    if kind == "plan":
        # Steps first would break the foreign key; copy the plan, move the steps, drop the old row.
        plan = session.execute(select(PlanRow).where(PlanRow.id == old)).scalar_one()
        values = {c.key: getattr(plan, c.key) for c in PlanRow.__table__.columns}
        session.expunge(plan)
        session.execute(insert(PlanRow).values(**{**values, "id": new, "updated_at": now}))
        session.execute(update(PlanStepRow).where(PlanStepRow.plan_id == old).values(plan_id=new))
        session.execute(delete(PlanRow).where(PlanRow.id == old))
        return
    session.execute(update(row).where(row.id == old).values(id=new, updated_at=now))


def reassign_contacts(session: Session, function_id: str, target: str | None) -> None:
    """C8: a deleted function's contacts move to ``target`` (or are left without it)."""
    links = ContactFunctionLinkRow.__table__
    if target is not None:
        has_target = select(links.c.contact_id).where(links.c.function_id == target)
        session.execute(
            update(links)
            .where(links.c.function_id == function_id, links.c.contact_id.not_in(has_target))
            .values(function_id=target)
        )
    session.execute(delete(links).where(links.c.function_id == function_id))


def _columns(kind: str, fields: dict) -> dict:
    if kind == "settings":
        return {"data": fields}
    return {c: fields[c] for c in FIELDS[kind]}


def _write_steps(session: Session, plan_id: str, steps: list[dict], now: datetime, created: dict) -> None:
    if not steps:
        return
    rows = []
    for position, step in enumerate(steps):
        values = {col: step[key] for key, col in STEP_COLUMNS.items()}
        rows.append(
            {
                **values,
                "plan_id": plan_id,
                "position": position,
                "at_days": parse_days(step["at"]),
                "created_at": created.get(step["id"]) or now,
            }
        )
    session.execute(insert(PlanStepRow), rows)
