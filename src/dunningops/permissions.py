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

import getpass
import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
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


def grants(roles: Mapping[str, Sequence[str]], role: str | None) -> frozenset[str]:
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


def either(names: Sequence[str]) -> str:
    """``a``, ``a or b``, ``a, b or c``: the roles a message names."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def roles_with(roles: Mapping[str, Sequence[str]], permission: str) -> list[str]:
    """The roles that have ``permission``, for messages: owner, admin, then settings.roles'."""
    return [*ALL_POWERFUL, *(r for r, perms in roles.items() if permission in perms)]


def require(
    members: Mapping[str, Mapping[str, Any]], roles: Mapping[str, Sequence[str]], actor: str | None, permission: str, what: str
) -> Actor:
    """The actor, if their role has ``permission``; else PermissionDeniedError naming ``what`` and the roles needed."""
    who = identify(members, actor)
    if who.member is not None and permission in grants(roles, who.role):
        return who
    needed = either(roles_with(roles, permission))
    if not actor:
        raise PermissionDeniedError(
            f"{what} needs a member whose role may {DESCRIPTIONS[permission]} ({needed}): say who you are with --actor"
        )
    if who.member is None:
        raise PermissionDeniedError(f"{what}: {actor!r} is not a member; it needs the role {needed}")
    raise PermissionDeniedError(f"{what}: {who.member} has the role {who.role}; it needs the role {needed}")


def who_acts(config_dir: Path, given: str | None = None) -> str:
    """The actor's name: ``given`` (--actor), else DUNNINGOPS_ACTOR, else in CI the author of the
    commit checked out (who made the change being applied), else git's user.email, else the login."""
    if given:
        return given
    if os.environ.get("DUNNINGOPS_ACTOR"):
        return os.environ["DUNNINGOPS_ACTOR"]
    if os.environ.get("CI") == "true" or os.environ.get("GITHUB_ACTIONS") == "true":
        author = git(config_dir, "log", "-1", "--format=%ae")
        if author:
            return author
    return git(config_dir, "config", "user.email") or getpass.getuser()


def git(config_dir: Path, *args: str) -> str | None:
    """``git -C config_dir args``'s output, or None (no git, not a repository, an error)."""
    try:
        out = subprocess.run(["git", "-C", str(config_dir), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None
