"""YAML loading that remembers where each key and item came from (file line numbers).

PyYAML's C parser is used where present (speed, performance.md); only the
construction of mappings and sequences is ours, to record line marks.
"""

from __future__ import annotations

from typing import Any

import yaml

_Base: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class LineDict(dict):
    """A dict that knows the line of itself and of each of its keys (1-based)."""

    line: int = 0
    key_lines: dict

    def line_of(self, key: object) -> int:
        return self.key_lines.get(key, self.line)


class LineList(list):
    line: int = 0
    item_lines: list


# The tag of a plain scalar, by its text (MarkedLoader.resolve).
_PLAIN_TAGS: dict[str, str] = {}
_PLAIN_TAGS_MAX = 100_000


class MarkedLoader(_Base):
    """Safe loader building LineDict / LineList and collecting duplicate keys."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self.duplicate_keys: list[tuple[int, str]] = []

    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        # PyYAML tries a list of regular expressions on every plain scalar (a fifth of parsing a
        # config). With no path resolvers (none is ever added) the tag depends on the text alone,
        # and texts repeat (keys, ids, "auto", "email"): each is resolved once per process.
        if kind is yaml.ScalarNode and implicit[0] and not self.yaml_path_resolvers:
            tag = _PLAIN_TAGS.get(value)
            if tag is None:
                tag = super().resolve(kind, value, implicit)
                if len(_PLAIN_TAGS) < _PLAIN_TAGS_MAX:
                    _PLAIN_TAGS[value] = tag
            return tag
        return super().resolve(kind, value, implicit)


def _construct_map(loader: MarkedLoader, node: yaml.MappingNode):
    data = LineDict()
    data.line = node.start_mark.line + 1
    data.key_lines = {}
    yield data
    loader.flatten_mapping(node)
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node)
        if not isinstance(key, (str, int, float, bool)) and key is not None:
            raise yaml.constructor.ConstructorError(None, None, "a mapping key must be a plain value", key_node.start_mark)
        if key in data:
            loader.duplicate_keys.append((key_node.start_mark.line + 1, str(key)))
        data[key] = loader.construct_object(value_node)
        data.key_lines[key] = key_node.start_mark.line + 1


def _construct_seq(loader: MarkedLoader, node: yaml.SequenceNode):
    data = LineList()
    data.line = node.start_mark.line + 1
    data.item_lines = [child.start_mark.line + 1 for child in node.value]
    yield data
    data.extend(loader.construct_object(child) for child in node.value)


def _construct_str(loader: MarkedLoader, node: yaml.Node) -> Any:
    # SafeConstructor.construct_yaml_str's result for a scalar, without its two calls per string;
    # anything else (a mapping tagged !!str) goes the usual way, errors included.
    return node.value if isinstance(node, yaml.ScalarNode) else loader.construct_yaml_str(node)


MarkedLoader.add_constructor("tag:yaml.org,2002:map", _construct_map)
MarkedLoader.add_constructor("tag:yaml.org,2002:seq", _construct_seq)
MarkedLoader.add_constructor("tag:yaml.org,2002:str", _construct_str)


def load_marked(text: str) -> tuple[Any, list[tuple[int, str]]]:
    """Parse one YAML document; returns (data, duplicate keys as (line, key))."""
    loader = MarkedLoader(text)
    try:
        data = loader.get_single_data()
    finally:
        loader.dispose()
    return data, loader.duplicate_keys


def line_at(doc: Any, loc: tuple) -> int | None:
    """The line of the deepest node of ``doc`` that ``loc`` (a pydantic error location) reaches."""
    line = getattr(doc, "line", None)
    node = doc
    for seg in loc:
        if isinstance(node, LineDict) and seg in node:
            line = node.line_of(seg)
            node = node[seg]
        elif isinstance(node, LineList) and isinstance(seg, int) and 0 <= seg < len(node):
            line = node.item_lines[seg]
            node = node[seg]
        elif isinstance(seg, str) and seg.startswith(("function-", "union[", "literal[")):
            continue  # pydantic's validator frames, not keys
        else:
            break
    return line
