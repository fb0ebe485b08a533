"""A Plan is data: an ordered tuple of frozen Change values, its summary, and the digests
of the states it was built from. Renderers (render.py) turn it into text; apply carries it out.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from dunningops.reconcile.objects import address, digest

Action = Literal["create", "update", "replace", "delete", "move"]
SYMBOLS = {"create": "+", "update": "~", "replace": "-/+", "delete": "-", "move": "~"}
FORMAT_VERSION = 1


@dataclass(frozen=True)
class FieldChange:
    path: str  # dotted, with list items by id: steps[courtesy].at
    before: Any
    after: Any
    forces_replacement: bool = False


@dataclass(frozen=True)
class Change:
    action: Action
    kind: str
    id: str
    before: dict | None
    after: dict | None
    fields: tuple[FieldChange, ...] = ()
    moved_from: str | None = None  # a `moved` entry: the object's previous address
    followers: tuple[str, ...] = ()  # objects whose references follow a move
    note: str | None = None  # what else happens (C8: where a deleted function's contacts go)

    @property
    def address(self) -> str:
        return address(self.kind, self.id)

    @property
    def symbol(self) -> str:
        return SYMBOLS[self.action]


@dataclass(frozen=True)
class Plan:
    changes: tuple[Change, ...]
    desired_digest: str
    actual_digest: str
    warnings: tuple[str, ...] = ()
    targets: tuple[str, ...] = ()
    excludes: tuple[str, ...] = ()
    objects_in_store: int = 0
    safety: dict = field(default_factory=lambda: {"max_destroy_share": 0.3, "min_objects": 10})

    @property
    def empty(self) -> bool:
        return not self.changes

    def summary(self) -> dict[str, int]:
        count = {"add": 0, "change": 0, "replace": 0, "destroy": 0}
        key = {"create": "add", "update": "change", "move": "change", "replace": "replace", "delete": "destroy"}
        for change in self.changes:
            count[key[change.action]] += 1
        return count

    def summary_line(self) -> str:
        if self.empty:
            return "No changes. The store matches the configuration."
        s = self.summary()
        return f"Plan: {s['add']} to add, {s['change']} to change, {s['replace']} to replace, {s['destroy']} to destroy."

    def destructive_share(self) -> float:
        s = self.summary()
        return (s["destroy"] + s["replace"]) / self.objects_in_store if self.objects_in_store else 0.0

    def to_dict(self) -> dict:
        data = asdict(self)
        data["changes"] = [{**asdict(c), "address": c.address, "fields": [asdict(f) for f in c.fields]} for c in self.changes]
        data["summary"] = self.summary()
        data["format_version"] = FORMAT_VERSION
        return data

    @property
    def digest(self) -> str:
        """sha256 of the plan's canonical JSON: what a reviewer saw is what apply runs."""
        return digest(self.to_dict())

    @classmethod
    def from_dict(cls, data: dict) -> Plan:
        changes = tuple(
            Change(
                action=c["action"],
                kind=c["kind"],
                id=c["id"],
                before=c["before"],
                after=c["after"],
                fields=tuple(FieldChange(**f) for f in c["fields"]),
                moved_from=c.get("moved_from"),
                followers=tuple(c.get("followers", ())),
                note=c.get("note"),
            )
            for c in data["changes"]
        )
        return cls(
            changes=changes,
            desired_digest=data["desired_digest"],
            actual_digest=data["actual_digest"],
            warnings=tuple(data.get("warnings", ())),
            targets=tuple(data.get("targets", ())),
            excludes=tuple(data.get("excludes", ())),
            objects_in_store=data.get("objects_in_store", 0),
            safety=data.get("safety", {}),
        )
