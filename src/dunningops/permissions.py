"""T1: who may do what. Owners and admins may do everything; other roles have the permissions
``settings.roles`` gives them (plain members none, unless ``member`` is listed there).

The permissions: ``templates`` (change templates), ``notifications`` (change the notification
settings: ``settings.notifications`` and ``settings.portal``) and ``send`` (send on demand: a
template to chosen customers (T5), the debtor notification (T7)).

An actor is the name a change or a send is made under: a member's id or email (``--actor``, the
git author in CI, the member signed in to the console). The check is always against the config
in force (the applied one), never the one being applied, so that nobody grants themselves a
permission in the same change that uses it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dunningops.errors import PermissionDeniedError

PERMISSIONS = ("templates", "notifications", "send")
ALL_POWERFUL = ("owner", "admin")
DESCRIPTIONS = {
    "templates": "change templates",
    "notifications": "change the notification settings",
    "send": "send emails on demand",
}


@dataclass(frozen=True)
class Actor:
    """Who an actor name was found to be: ``member`` None when it names no member."""

    name: str
    member: str | None = None
    role: str | None = None


def grants(roles: Mapping[str, list[str]], role: str | None) -> frozenset[str]:
    """The permissions of ``role`` (``roles``: ``settings.roles``)."""
    if role in ALL_POWERFUL:
        return frozenset(PERMISSIONS)
    return frozenset(roles.get(role or "", ()))


def identify(members: Mapping[str, Mapping[str, Any]], name: str | None) -> Actor:
    """The member ``name`` is (their id, or their email in any case), from ``members`` (id → {email, role})."""
    if not name:
        return Actor("")
    if name in members:
        return Actor(name, name, members[name].get("role"))
    low = name.strip().lower()
    for mid, member in members.items():
        if str(member.get("email", "")).lower() == low:
            return Actor(name, mid, member.get("role"))
    return Actor(name)


def roles_with(roles: Mapping[str, list[str]], permission: str) -> list[str]:
    """The roles that have ``permission``, for messages: owner, admin, then settings.roles'."""
    return [*ALL_POWERFUL, *(r for r, perms in roles.items() if permission in perms)]


def require(
    members: Mapping[str, Mapping[str, Any]], roles: Mapping[str, list[str]], actor: str | None, permission: str, what: str
) -> Actor:
    """The actor, if their role has ``permission``; else PermissionDeniedError naming ``what`` and the roles needed."""
    who = identify(members, actor)
    if who.member is not None and permission in grants(roles, who.role):
        return who
    needed = " or ".join(roles_with(roles, permission))
    if not actor:
        raise PermissionDeniedError(
            f"{what} needs a member whose role may {DESCRIPTIONS[permission]} ({needed}): say who you are with --actor"
        )
    if who.member is None:
        raise PermissionDeniedError(f"{what}: {actor!r} is not a member; it needs the role {needed}")
    raise PermissionDeniedError(f"{what}: {who.member} has the role {who.role}; it needs the role {needed}")
