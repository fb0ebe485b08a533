"""The config a cycle runs on: the applied config (what runs is what was applied), or a desired
config not applied yet (to preview a change's effect on customers before it is applied).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from dunningops.errors import ConflictError
from dunningops.spec.models import Settings
from dunningops.spec.types import parse_days
from dunningops.store.config_objects import read_actual
from dunningops.store.schema import PlanStepRow


@dataclass(frozen=True)
class StepConfig:
    plan_id: str
    id: str
    position: int
    at_days: int
    action: str  # email | call | letter
    send: str  # auto | manual
    sender: str | None  # alias.x | account_manager | member.x
    to: tuple[str, ...]
    cc: tuple[str, ...]
    bcc: tuple[str, ...]
    template: str | None
    assignee: str | None
    created_at: datetime | None  # None: not applied yet

    @property
    def automatic(self) -> bool:
        return self.action == "email" and self.send == "auto"


@dataclass(frozen=True)
class PlanConfig:
    id: str
    name: str
    level: str  # customer | invoice
    assign: dict
    min_contact_delay_days: int
    reply_to: str | None
    steps: tuple[StepConfig, ...]
    entry: str = "first_step"  # E7: first_step (standard logic) | by_age
    group_invoices: bool = True  # invoice-level: one email for a customer's invoices at one step
    track_opens: bool = False  # E6 "opened": a tracking pixel in its emails

    @property
    def enters_by_age(self) -> bool:
        return self.entry == "by_age"


@dataclass(frozen=True)
class RunConfig:
    settings: Settings
    plans: dict[str, PlanConfig]
    aliases: dict[str, dict]  # id → {email, display_name, signature, verified}
    members: dict[str, dict]  # id → {email, name, role}
    templates: dict[str, dict]  # id → {name, design, locales}

    @classmethod
    def from_objects(
        cls,
        objects: dict[str, dict],
        meta: dict[str, dict],
        step_times: Mapping[tuple[str, str], datetime | None],  # (plan id, step id) → when first applied
    ) -> RunConfig:
        """Build from canonical config objects ({address: fields}) plus actual-only data."""
        if "settings" not in objects:
            raise ConflictError("no config applied yet: run `dunningops apply` first")
        plans, aliases, members, templates = {}, {}, {}, {}
        for address, fields in objects.items():
            kind, _, ident = address.partition(".")
            if kind == "plan":
                steps = tuple(
                    StepConfig(
                        plan_id=ident,
                        id=s["id"],
                        position=i,
                        at_days=parse_days(s["at"]),
                        action=s["action"],
                        send=s["send"],
                        sender=s.get("from"),
                        to=tuple(s.get("to") or ()),
                        cc=tuple(s.get("cc") or ()),
                        bcc=tuple(s.get("bcc") or ()),
                        template=s.get("template"),
                        assignee=s.get("assignee"),
                        created_at=step_times.get((ident, s["id"])),
                    )
                    for i, s in enumerate(fields["steps"])
                )
                plans[ident] = PlanConfig(
                    id=ident,
                    name=fields["name"],
                    level=fields["level"],
                    assign=fields.get("assign") or {},
                    min_contact_delay_days=parse_days(fields.get("min_contact_delay") or "0d"),
                    reply_to=fields.get("reply_to"),
                    steps=steps,
                    entry=fields.get("entry") or "first_step",
                    group_invoices=fields.get("group_invoices", True) is not False,
                    track_opens=bool(fields.get("track_opens")),
                )
            elif kind == "alias":
                aliases[ident] = {**fields, "verified": bool(meta.get(address, {}).get("verified"))}
            elif kind == "member":
                members[ident] = fields
            elif kind == "template":
                templates[ident] = fields
        return cls(Settings.model_validate(objects["settings"]), plans, aliases, members, templates)

    @classmethod
    def from_store(cls, session: Session) -> RunConfig:
        actual = read_actual(session)
        times = {(p, s): t for p, s, t in session.execute(select(PlanStepRow.plan_id, PlanStepRow.id, PlanStepRow.created_at))}
        return cls.from_objects({a: o.fields for a, o in actual.items()}, {a: o.meta for a, o in actual.items()}, times)

    @classmethod
    def from_desired(cls, desired_objects: dict[str, dict], session: Session) -> RunConfig:
        """A config not applied yet (e.g. a pull request's), with the store's actual-only state
        (alias verification, when steps were applied) where the objects already exist."""
        actual = read_actual(session)
        times = {(p, s): t for p, s, t in session.execute(select(PlanStepRow.plan_id, PlanStepRow.id, PlanStepRow.created_at))}
        return cls.from_objects(desired_objects, {a: o.meta for a, o in actual.items()}, times)

    @property
    def owner(self) -> str | None:
        return next((mid for mid, m in sorted(self.members.items()) if m["role"] == "owner"), None)
