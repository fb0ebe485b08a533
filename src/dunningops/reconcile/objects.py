"""Config objects as plain JSON-able dicts: built from the desired state, referenced, renamed.

Both sides of a diff are turned into ``{address: fields}`` of the same shape,
so that comparing them is comparing dicts.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from dunningops.spec.state import DesiredState

# What is referenced comes first (created first, deleted last).
KIND_ORDER = ("member", "alias", "contact_function", "template", "settings", "plan")
# A4: an alias's address cannot change in place: a different address is a different alias.
REPLACE_ON = {"alias": frozenset({"email"})}


def address(kind: str, ident: str) -> str:
    return kind if kind == "settings" else f"{kind}.{ident}"


def split_address(addr: str) -> tuple[str, str]:
    kind, _, ident = addr.partition(".")
    return kind, ident or kind


def desired_objects(state: DesiredState) -> dict[str, dict]:
    """The desired state as ``{address: canonical fields}``."""
    objects: dict[str, dict] = {}
    if state.settings is not None:
        objects["settings"] = state.settings.model_dump(mode="json", by_alias=True)
    for kind in ("member", "alias", "contact_function"):
        for ident, model in state.collection(kind).items():
            objects[address(kind, ident)] = model.model_dump(mode="json", by_alias=True, exclude={"id"})
    for ident, template in state.templates.items():
        folder = (state.root / state.sources[f"template.{ident}"].file).parent
        objects[address("template", ident)] = {
            "name": template.name,
            "design": template.design,
            "locales": {
                lang: {
                    "subject": loc.subject,
                    "body_file": (folder / loc.body).relative_to(state.root).as_posix(),
                    "body": state.template_bodies.get((ident, lang), ""),
                }
                for lang, loc in template.locales.items()
            },
        }
    for ident, plan in state.plans.items():
        objects[address("plan", ident)] = plan.model_dump(mode="json", by_alias=True, exclude={"id"})
    return objects


def references(addr: str, fields: dict) -> set[str]:
    """The addresses an object points at."""
    kind, _ = split_address(addr)
    refs: set[str] = set()
    if kind == "settings":
        alias = (fields.get("portal") or {}).get("notifications_alias")
        if alias:
            refs.add(f"alias.{alias}")
        # T7, T8, A9: each notification's template, sender and contact functions.
        for notice in (fields.get("notifications") or {}).values():
            if not isinstance(notice, dict):
                continue
            if notice.get("template"):
                refs.add(f"template.{notice['template']}")
            if notice.get("from") and "." in notice["from"]:
                refs.add(notice["from"])
            for key in ("to", "cc"):
                refs.update(f"contact_function.{fn}" for fn in notice.get(key) or [])
    elif kind == "plan":
        for step in fields.get("steps", []):
            for actor in (step.get("from"), step.get("assignee")):
                if actor and "." in actor:
                    refs.add(actor)
            for key in ("to", "cc", "bcc"):
                refs.update(f"contact_function.{fn}" for fn in step.get(key) or [])
            if step.get("template"):
                refs.add(f"template.{step['template']}")
    return refs


def rewrite_references(addr: str, fields: dict, renames: dict[str, str]) -> dict:
    """A copy of ``fields`` whose references follow ``renames`` ({old address: new address})."""
    kind, _ = split_address(addr)
    if not renames or kind not in ("settings", "plan"):
        return fields
    ids = {old: new.split(".", 1)[1] for old, new in renames.items()}
    if kind == "settings":
        fields = dict(fields)
        portal = dict(fields.get("portal") or {})
        alias = portal.get("notifications_alias")
        if alias and f"alias.{alias}" in ids:
            portal["notifications_alias"] = ids[f"alias.{alias}"]
            fields["portal"] = portal
        notices = {}
        for name, notice in (fields.get("notifications") or {}).items():
            if isinstance(notice, dict) and "template" in notice:
                notice = dict(notice)
                if f"template.{notice['template']}" in ids:
                    notice["template"] = ids[f"template.{notice['template']}"]
                if notice.get("from") in renames:
                    notice["from"] = renames[notice["from"]]
                for key in ("to", "cc"):
                    if key in notice:
                        notice[key] = [ids.get(f"contact_function.{fn}", fn) for fn in notice[key] or []]
            notices[name] = notice
        if notices:
            fields["notifications"] = notices
        return fields
    steps = []
    for step in fields.get("steps", []):
        step = dict(step)
        for key in ("from", "assignee"):
            if step.get(key) in renames:
                step[key] = renames[step[key]]
        for key in ("to", "cc", "bcc"):
            step[key] = [ids.get(f"contact_function.{fn}", fn) for fn in step.get(key) or []]
        if step.get("template") and f"template.{step['template']}" in ids:
            step["template"] = ids[f"template.{step['template']}"]
        steps.append(step)
    return {**fields, "steps": steps}


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def digest(value: Any) -> str:
    return hashlib.sha256(canonical_json(value).encode()).hexdigest()
