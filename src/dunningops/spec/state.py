"""DesiredState: the merged, validated config of a directory, with where each object came from."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from dunningops.spec.models import (
    Alias,
    ContactFunction,
    Member,
    Moved,
    Plan,
    Removed,
    Settings,
    Template,
)
from dunningops.spec.yamlmarks import LineDict, LineList


@dataclass
class Source:
    """Where an object is defined: its file (relative to the config dir) and its YAML mapping."""

    file: str
    line: int
    raw: LineDict | None = None

    def line_of(self, *path: object) -> int:
        # MarkedLoader builds every mapping as a LineDict and every sequence as a LineList.
        node: object = self.raw
        line = self.line
        for seg in path:
            if isinstance(node, LineDict) and seg in node:
                line = node.line_of(seg)
                node = node[seg]
            elif isinstance(node, LineList) and isinstance(seg, int) and seg < len(node):
                line = node.item_lines[seg]
                node = node[seg]
            else:
                break
        return line


@dataclass
class DesiredState:
    """What the YAML says the system should be."""

    root: Path
    settings: Settings | None = None
    members: dict[str, Member] = field(default_factory=dict)
    aliases: dict[str, Alias] = field(default_factory=dict)
    contact_functions: dict[str, ContactFunction] = field(default_factory=dict)
    templates: dict[str, Template] = field(default_factory=dict)
    plans: dict[str, Plan] = field(default_factory=dict)
    moved: list[Moved] = field(default_factory=list)
    removed: list[Removed] = field(default_factory=list)
    # (template id, language) → body text read from the file beside the YAML.
    template_bodies: dict[tuple[str, str], str] = field(default_factory=dict)
    # "alias.billing" → Source; "settings" for the settings block.
    sources: dict[str, Source] = field(default_factory=dict)

    def collection(self, kind: str) -> dict:
        collections: dict[str, dict] = {
            "member": self.members,
            "alias": self.aliases,
            "contact_function": self.contact_functions,
            "template": self.templates,
            "plan": self.plans,
        }
        return collections[kind]
