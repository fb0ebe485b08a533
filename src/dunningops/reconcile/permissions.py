"""T1: which changes of a plan need which permission, and the check apply makes before writing.

The check is against the members and roles of the applied state (the store), never the desired
one: a change cannot grant the permission it needs. Changes that decide who may do what
(members, their roles and emails, ``settings.roles``, the console's trusted sign-in header) are
for owners and admins only, so that nobody raises their own role.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from dunningops.errors import PermissionDeniedError
from dunningops.permissions import ALL_POWERFUL, Actor, either, grants, identify, roles_with
from dunningops.reconcile.diff import flatten
from dunningops.reconcile.plan import Change, Plan

if TYPE_CHECKING:
    from dunningops.store.state import Applied

# Not a permission a role can be given: what only owners and admins may change.
MEMBERS = "members"
# Settings whose change needs a permission: the first path segment → the permission.
SETTINGS_PERMISSIONS = {"notifications": "notifications", "portal": "notifications", "roles": MEMBERS}
# The console signs in whoever this header names (from these proxies): an identity change.
SIGN_IN_SETTINGS = ("console.trusted_user_header", "console.trusted_proxies")
# The member fields that make a member who they are: role (T1), email (how an actor is found).
IDENTITY_FIELDS = ("role", "email")
MAX_NAMED = 10  # objects named in a refusal, then "and N more"


def needed(plan: Plan) -> dict[str, list[str]]:
    """Permission → the addresses (or settings paths) in ``plan`` that need it, in plan order.

    ``templates``: any change of a template; ``notifications``: settings under
    ``notifications`` or ``portal``; ``members`` (owner or admin): members created, deleted,
    moved, or given another role or email, ``settings.roles`` and the console's sign-in header.
    """
    out: dict[str, list[str]] = {}

    def add(permission: str, what: str) -> None:
        names = out.setdefault(permission, [])
        if what not in names:
            names.append(what)

    for change in plan.changes:
        if change.kind == "template":
            add("templates", change.address)
        elif change.kind == "member":
            if change.action != "update" or any(f.path in IDENTITY_FIELDS for f in change.fields):
                add(MEMBERS, change.address)
        elif change.kind == "settings":
            for path in _settings_paths(change):
                permission, what = _settings_need(path)
                if permission:
                    add(permission, what)
    return out


def _settings_paths(change: Change) -> Iterable[str]:
    if change.fields:
        return (f.path for f in change.fields)
    # A created or deleted settings object: every path it holds.
    return flatten(change.after or change.before or {})


def _settings_need(path: str) -> tuple[str | None, str]:
    if path.startswith(SIGN_IN_SETTINGS):
        return MEMBERS, "settings." + path.split("[", 1)[0]
    parts = path.split(".")
    top = parts[0]
    permission = SETTINGS_PERMISSIONS.get(top)
    if permission is None:
        return None, ""
    # Name the block that changes (settings.notifications.debtor), not each of its fields.
    kept = parts[:1] if top == "roles" else parts[:2]
    return permission, "settings." + ".".join(kept)


def applied_members(actual: Mapping[str, Applied]) -> tuple[dict[str, dict[str, Any]], dict[str, list[str]]]:
    """The members (id → fields) and ``settings.roles`` of the applied state."""
    members = {o.id: o.fields for o in actual.values() if o.kind == "member"}
    settings = actual.get("settings")
    roles = dict(settings.fields.get("roles") or {}) if settings is not None else {}
    return members, roles


def authorize(plan: Plan, actual: Mapping[str, Applied], actor: str) -> Actor:
    """Who ``actor`` is among the applied members, if they may apply ``plan``.

    The first apply (no member in the store yet) is allowed to anyone: there is nobody yet to
    ask. Changes that need no permission are allowed to anyone, member or not.

    Raises:
        PermissionDeniedError: naming the objects and the roles that may change them.
    """
    members, roles = applied_members(actual)
    who = identify(members, actor)
    if not members:
        return who
    allowed = set(grants(roles, who.role)) if who.member is not None else set()
    if who.member is not None and who.role in ALL_POWERFUL:
        allowed.add(MEMBERS)
    missing = {p: names for p, names in needed(plan).items() if p not in allowed}
    if missing:
        raise PermissionDeniedError(refusal(who, roles, missing))
    return who


def refusal(who: Actor, roles: Mapping[str, Sequence[str]], missing: Mapping[str, Sequence[str]]) -> str:
    """One line: who, what they may not change, and the roles that may."""
    if who.member is not None:
        subject = f"{who.member} (role {who.role})"
    else:
        subject = f"{who.name or 'nobody'} (not a member)"
    parts = []
    for permission, names in missing.items():
        shown = ", ".join(names[:MAX_NAMED]) + (f" and {len(names) - MAX_NAMED} more" if len(names) > MAX_NAMED else "")
        if permission == MEMBERS:
            parts.append(f"{shown}: that needs the role {either(ALL_POWERFUL)} (members and roles)")
        else:
            parts.append(f"{shown}: that needs the role {either(roles_with(roles, permission))} (permission {permission})")
    return f"{subject} may not change " + "; nor ".join(parts)
