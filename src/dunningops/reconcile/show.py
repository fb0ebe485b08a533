"""Text and JSON listings of the applied state (`show`) and of the audit trail (`history`)."""

from __future__ import annotations

import json
from datetime import datetime

from dunningops.reconcile.objects import KIND_ORDER
from dunningops.reconcile.render import _mask_tree
from dunningops.store.config_objects import ActualObject
from dunningops.store.schema import ApplyRow

# The one field that best names each kind in a listing.
HEADLINE = {"member": "email", "alias": "email", "contact_function": "label", "template": "name", "plan": "name"}


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value else "never"


def render_state(actual: dict[str, ActualObject], fmt: str = "text") -> str:
    ordered = sorted(actual.values(), key=lambda o: (KIND_ORDER.index(o.kind), o.id))
    if fmt == "json":
        data = [
            {
                "address": o.address,
                "fields": _mask_tree(o.fields),
                "meta": {k: v.isoformat() if isinstance(v, datetime) else v for k, v in o.meta.items()},
            }
            for o in ordered
        ]
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    if not ordered:
        return "The store holds no config yet: run `dunningops plan` and `dunningops apply`.\n"
    width = max(len(o.address) for o in ordered)
    lines = []
    for o in ordered:
        parts = [o.address.ljust(width)]
        if o.kind == "settings":
            parts.append(o.fields["company"]["name"])
        else:
            parts.append(str(o.fields[HEADLINE[o.kind]]))
        if o.kind == "alias":
            parts.append("verified" if o.meta.get("verified") else "unverified")
        if o.kind == "plan":
            parts.append(f"{o.fields['level']}-level, {len(o.fields['steps'])} steps")
        if o.kind in ("alias", "template"):
            parts.append(f"last send: {_when(o.meta.get('last_sent_at'))}")
        parts.append(f"updated {_when(o.meta.get('updated_at'))}")
        lines.append("  ".join(parts))
    return "\n".join(lines) + "\n"


def actor_label(actor: str, member: str | None, role: str | None) -> str:
    """``alice (owner)``, ``alice@acme.fr (alice, owner)``, or the bare actor when no member was found (T1)."""
    if member is None:
        return actor
    return f"{member} ({role})" if actor == member else f"{actor} ({member}, {role})"


def render_history(rows: list[ApplyRow], fmt: str = "text") -> str:
    if fmt == "json":
        data = [
            {
                "id": r.id,
                "applied_at": r.applied_at.isoformat(),
                "actor": r.actor,
                "actor_member": r.actor_member,
                "actor_role": r.actor_role,
                "git_commit": r.git_commit,
                "plan_digest": r.plan_digest,
                "summary": r.summary,
                "changes": r.changes,
            }
            for r in rows
        ]
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    if not rows:
        return "No applies yet.\n"
    lines = []
    for r in rows:
        s = r.summary
        commit = (r.git_commit or "no commit")[:10]
        lines.append(
            f"#{r.id}  {_when(r.applied_at)}  {actor_label(r.actor, r.actor_member, r.actor_role)}  {commit}  "
            f"+{s['add']} ~{s['change']} -/+{s['replace']} -{s['destroy']}  plan {r.plan_digest[:12]}"
        )
    return "\n".join(lines) + "\n"
