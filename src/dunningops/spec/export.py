"""Config values → YAML text that the loader reads back exactly, in `dunningops fmt`'s canonical form.

The loader parses with PyYAML (YAML 1.1) while ruamel.yaml writes YAML 1.2: a plain ``yes``,
``no`` (Norway's language code), ``10:30`` or ``2026-01-01`` means a bool, an int or a date to
PyYAML. Such strings are double-quoted, and the text is read back with PyYAML before it is
returned, so what is written is what was meant.
"""

from __future__ import annotations

import io
from typing import Any

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.scalarstring import DoubleQuotedScalarString, LiteralScalarString

from dunningops.errors import DunningOpsError
from dunningops.spec.fmt import format_text

__all__ = ["yaml_text"]

_STR_TAG = "tag:yaml.org,2002:str"
_RESOLVER = yaml.resolver.Resolver()
# Small mappings of free-form keys read best on one line, as the example config writes them.
_FLOW_KEYS = frozenset({"labels"})
_SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def yaml_text(doc: dict, header: str = "") -> str:
    """``doc`` (plain dicts, lists and scalars, keys in the models' order) as canonical YAML after ``header``.

    Multi-line strings are written as ``|`` blocks (a signature reads as it will be sent).

    Raises:
        DunningOpsError: a value cannot be written so that the loader reads it back unchanged.
    """
    for literal in (True, False):  # a block scalar that would not read back falls back to quoting
        text = header + (format_text(_dump(_node(doc, literal=literal))) or "")
        if yaml.load(text, Loader=_SafeLoader) == doc:
            return text
    raise DunningOpsError("a value in the store cannot be written as YAML that reads back the same")


def _dump(node: Any) -> str:
    writer = YAML(typ="rt")
    writer.indent(mapping=2, sequence=4, offset=2)  # as `dunningops fmt`
    writer.width = 4096  # never fold a long subject line
    out = io.StringIO()
    writer.dump(node, out)
    return out.getvalue()


def _node(value: Any, *, literal: bool, key: str = "") -> Any:
    if isinstance(value, dict):
        node = CommentedMap()
        for k, v in value.items():
            node[_scalar(k, literal=False)] = _node(v, literal=literal, key=str(k))
        if key in _FLOW_KEYS and all(isinstance(v, str) for v in value.values()):
            node.fa.set_flow_style()
        return node
    if isinstance(value, list):
        seq = CommentedSeq(_node(item, literal=literal) for item in value)
        if all(not isinstance(item, (dict, list)) for item in value):
            seq.fa.set_flow_style()  # to: [payer, accountant]
        return seq
    return _scalar(value, literal=literal)


def _scalar(value: Any, *, literal: bool) -> Any:
    if not isinstance(value, str):
        return value
    if literal and "\n" in value.strip("\n") and _printable_lines(value):
        return LiteralScalarString(value)
    if _RESOLVER.resolve(yaml.nodes.ScalarNode, value, (True, False)) != _STR_TAG:
        return DoubleQuotedScalarString(value)
    return value


def _printable_lines(value: str) -> bool:
    # A block scalar holds only printable characters (tabs allowed) between its line breaks.
    return all(line.replace("\t", " ").isprintable() for line in value.split("\n"))
