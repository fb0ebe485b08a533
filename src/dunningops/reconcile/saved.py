"""Saved plans (``plan --out FILE``): the plan with the fingerprints of the states it was built on."""

from __future__ import annotations

import json
from pathlib import Path

from dunningops.errors import PlanError
from dunningops.reconcile.plan import Plan

MAGIC = "dunningops-plan"


def save_plan(plan: Plan, path: Path) -> None:
    data = {"kind": MAGIC, "digest": plan.digest, "plan": plan.to_dict()}
    path.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def load_plan(path: Path) -> Plan:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PlanError(f"{path}: not a readable saved plan: {exc}") from exc
    if not isinstance(data, dict) or data.get("kind") != MAGIC:
        raise PlanError(f"{path}: not a dunningops saved plan (make one with `dunningops plan --out FILE`)")
    try:
        plan = Plan.from_dict(data["plan"])
    except (KeyError, TypeError) as exc:
        raise PlanError(f"{path}: the saved plan is damaged ({exc})") from exc
    if plan.digest != data.get("digest"):
        raise PlanError(f"{path}: the saved plan was edited after it was made (its checksum does not match)")
    return plan
