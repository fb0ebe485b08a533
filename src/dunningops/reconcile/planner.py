"""Build a Plan from the desired and the actual state. Reads only; writes nothing."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from dunningops.errors import PlanError
from dunningops.reconcile.diff import field_changes
from dunningops.reconcile.objects import (
    KIND_ORDER,
    REPLACE_ON,
    desired_objects,
    digest,
    references,
    rewrite_references,
    split_address,
)
from dunningops.reconcile.plan import Change, Plan
from dunningops.spec.state import DesiredState

if TYPE_CHECKING:  # either reader's objects: store.state's (plan, no ORM) or config_objects' (apply)
    from dunningops.store.state import Applied


def actual_fields(actual: Mapping[str, Applied]) -> dict[str, dict]:
    return {addr: obj.fields for addr, obj in actual.items()}


def build_plan(
    desired: DesiredState,
    actual: Mapping[str, Applied],
    *,
    targets: Iterable[str] = (),
    excludes: Iterable[str] = (),
) -> Plan:
    """Diff desired against actual; changes ordered so that what is referenced comes first."""
    want = desired_objects(desired)
    have = actual_fields(actual)
    targets, excludes = tuple(targets), tuple(excludes)
    _check_addresses(targets + excludes, want, have)

    renames = _renames(desired, have)
    # The actual state as it will be once the renames are done; references follow.
    moved_have = {renames.get(a, a): rewrite_references(a, f, renames) for a, f in have.items()}
    # Objects that point at a renamed one: apply rewrites their references.
    followers = {
        new: tuple(sorted(a for a in have if a not in renames and old in references(a, have[a]))) for old, new in renames.items()
    }
    removed = {r.from_: r.reassign_to for r in desired.removed}

    changes: list[Change] = []
    for addr, after in want.items():
        kind, ident = split_address(addr)
        previous = next((old for old, new in renames.items() if new == addr), None)
        before = moved_have.get(addr)
        if before is None:
            changes.append(Change("create", kind, ident, None, after))
            continue
        fields = field_changes(before, after, REPLACE_ON.get(kind, frozenset()))
        if any(f.forces_replacement for f in fields):
            changes.append(Change("replace", kind, ident, before, after, fields, previous, followers.get(addr, ())))
        elif fields or previous:
            follow = followers.get(addr, ())
            changes.append(Change("update" if fields else "move", kind, ident, before, after, fields, previous, follow))
    for addr, before in moved_have.items():
        if addr in want:
            continue
        kind, ident = split_address(addr)
        note = None
        if kind == "contact_function":
            if addr not in removed:
                raise PlanError(
                    f"{addr} is no longer in the config: say where its contacts go with "
                    f"`removed: [{{from: {addr}, reassign_to: <function> or null}}]`"
                )
            target = removed[addr]
            note = f"its contacts move to contact_function.{target}" if target else "its contacts are left without it"
        changes.append(Change("delete", kind, ident, before, None, note=note))

    changes = _select(changes, targets, excludes, want)
    ordered = tuple(sorted(changes, key=_order))
    warnings: tuple[str, ...] = ()
    if targets or excludes:
        warnings = ("This plan is partial (--target/--exclude): other changes in the config are not shown and not applied.",)
    safety = desired.settings.safety.model_dump() if desired.settings else {}
    return Plan(
        changes=ordered,
        desired_digest=digest(want),
        actual_digest=digest(have),
        warnings=warnings,
        targets=targets,
        excludes=excludes,
        objects_in_store=len(have),
        safety=safety,
    )


def _order(change: Change) -> tuple:
    rank = KIND_ORDER.index(change.kind)
    if change.action == "delete":
        return (1, -rank, change.id)
    return (0, rank, change.id)


def _renames(desired: DesiredState, have: dict[str, dict]) -> dict[str, str]:
    renames: dict[str, str] = {}
    for moved in desired.moved:
        if moved.from_ not in have:
            continue  # already moved by an earlier apply; the entry may stay in the config
        if moved.to in have:
            raise PlanError(f"moved: both {moved.from_} and {moved.to} exist in the store; remove one first")
        renames[moved.from_] = moved.to
    return renames


def _check_addresses(addresses: tuple[str, ...], want: dict, have: dict) -> None:
    for addr in addresses:
        if addr not in want and addr not in have:
            kind = split_address(addr)[0]
            if kind not in KIND_ORDER:
                raise PlanError(f"--target/--exclude {addr!r}: unknown kind {kind!r} (expected one of: {', '.join(KIND_ORDER)})")
            raise PlanError(f"--target/--exclude {addr!r}: no such object in the config or the store")


def _select(changes: list[Change], targets: tuple[str, ...], excludes: tuple[str, ...], want: dict) -> list[Change]:
    if targets:
        # Like Terraform, a target brings along what it references, so an apply never
        # leaves a plan pointing at an alias or template that does not exist yet.
        wanted, stack = set(), list(targets)
        while stack:
            addr = stack.pop()
            if addr in wanted:
                continue
            wanted.add(addr)
            stack.extend(references(addr, want.get(addr, {})))
        changes = [c for c in changes if c.address in wanted]
    if excludes:
        changes = [c for c in changes if c.address not in excludes]
    return changes
