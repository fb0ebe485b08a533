"""Field-by-field differences between two canonical objects."""

from __future__ import annotations

from typing import Any

from dunningops.reconcile.plan import FieldChange

_ABSENT = None


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts → dotted paths; lists of objects with ids → ``steps[id].key`` plus the id order."""
    out: dict[str, Any] = {}
    if isinstance(value, dict):
        for key, item in value.items():
            out.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
        if not value and prefix:
            out[prefix] = {}
    elif isinstance(value, list) and value and all(isinstance(i, dict) and "id" in i for i in value):
        out[prefix] = [i["id"] for i in value]  # the order, so a reordering shows
        for item in value:
            rest = {k: v for k, v in item.items() if k != "id"}
            out.update(flatten(rest, f"{prefix}[{item['id']}]"))
    else:
        out[prefix] = value
    return out


def field_changes(before: dict, after: dict, replace_on: frozenset[str] = frozenset()) -> tuple[FieldChange, ...]:
    """Only the fields that change, in the order of ``after`` (then removed ones)."""
    if before == after:  # the common case (a plan with no changes): equal dicts flatten to equal paths
        return ()
    old, new = flatten(before), flatten(after)
    paths = list(new) + [p for p in old if p not in new]
    return tuple(
        FieldChange(path, old.get(path, _ABSENT), new.get(path, _ABSENT), path in replace_on)
        for path in paths
        if old.get(path, _ABSENT) != new.get(path, _ABSENT)
    )
