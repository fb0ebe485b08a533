"""`dunningops fmt`: rewrite the config's YAML in canonical form, keeping every comment.

Canonical: each mapping's keys in the order its pydantic model declares them
(from ConfigFile down), 2-space indentation, list items indented under their
key. ruamel.yaml's round-trip mode keeps comments, quotes and flow style, but
stores the comment written *above* a key as the tail of the value before it;
so before a mapping is reordered, those lines are cut out and re-attached to
their key.
"""

from __future__ import annotations

import io
import itertools
import types
import typing
from collections import OrderedDict
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq, merge_attrib
from ruamel.yaml.error import CommentMark, MarkedYAMLError, YAMLError
from ruamel.yaml.scalarstring import FoldedScalarString, LiteralScalarString
from ruamel.yaml.tokens import CommentToken

from dunningops.errors import ConfigError, ConfigIssue
from dunningops.spec.loader import config_files
from dunningops.spec.models import ConfigFile
from dunningops.spec.paths import MAX_YAML_BYTES, FileProblem, read_inside, resolved

__all__ = ["format_config", "format_text"]


def format_config(config_dir: Path, write: bool = True) -> list[Path]:
    """Format every config file in ``config_dir``; return those that changed (or would, if not ``write``).

    Raises:
        ConfigError: no such directory, or a file cannot be read or is not valid YAML; then
            no file is written.
    """
    config_dir = Path(config_dir)
    if not config_dir.is_dir():
        raise ConfigError([ConfigIssue(str(config_dir), None, "", "config directory not found")])
    issues: list[ConfigIssue] = []
    changed: list[tuple[Path, str]] = []
    root = resolved(config_dir)
    # Files outside the directory (symlinks), FIFOs and devices are reported, never read nor written.
    for path in config_files(config_dir, issues):
        rel = path.relative_to(config_dir).as_posix()
        try:
            text = read_inside(root, resolved(path), MAX_YAML_BYTES, "", rel)
        except FileProblem as exc:
            issues.append(ConfigIssue(rel, exc.line, "", exc.message))
            continue
        except OSError as exc:
            issues.append(ConfigIssue(rel, None, "", f"cannot read: {exc.strerror or exc}"))
            continue
        try:
            formatted = format_text(text)
        except YAMLError as exc:
            mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
            problem = (exc.problem if isinstance(exc, MarkedYAMLError) else None) or str(exc)
            issues.append(ConfigIssue(rel, mark.line + 1 if mark else None, "", f"invalid YAML: {problem}"))
            continue
        if formatted is not None and formatted != text:
            changed.append((path, formatted))
    # All files are parsed before any is written: a broken file leaves the directory as it was.
    if issues:
        raise ConfigError(issues)
    if write:
        for path, formatted in changed:
            path.write_text(formatted, encoding="utf-8")
    return [path for path, _ in changed]


def format_text(text: str) -> str | None:
    """The canonical form of one config file's text; ``None`` if it is not a mapping (e.g. a blocks body)."""
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.indent(mapping=2, sequence=4, offset=2)
    yaml.width = 4096  # never fold a long subject line
    doc = yaml.load(text)
    if not isinstance(doc, CommentedMap):
        return None
    _canonicalize(doc, ConfigFile, at="top")
    out = io.StringIO()
    yaml.dump(doc, out)
    return out.getvalue()


# --- walking the models ------------------------------------------------------------------

# Where a mapping sits: the file itself, the value of a key, or item ``index`` of a list.
At = Literal["top", "key"] | tuple[CommentedSeq, int]


def _canonicalize(node: Any, annotation: Any, at: At = "key") -> None:
    """Reorder ``node`` and what it holds as ``annotation`` (``ConfigFile``, ``list[Step]``...) declares."""
    annotation = _unwrap(annotation)
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if isinstance(node, CommentedMap) and isinstance(annotation, type) and issubclass(annotation, BaseModel):
        fields = {(f.alias or name): f.annotation for name, f in annotation.model_fields.items()}
        known = [key for key in fields if key in node]
        # Unknown keys (validation rejects them) stay, after the known ones, in their order.
        _reorder(node, known + [key for key in node if key not in fields], at)
        for key in known:
            _canonicalize(node[key], fields[key])
    elif isinstance(node, CommentedMap) and origin is dict and args:
        for value in node.values():  # free-form keys (labels, locales): their order is the user's
            _canonicalize(value, args[1])
    elif isinstance(node, CommentedSeq) and origin is list and args:
        for index, item in enumerate(node):
            _canonicalize(item, args[0], (node, index))


def _unwrap(annotation: Any) -> Any:
    """``X | None`` → X, ``Annotated[X, ...]`` → X (the config's only unions are optional ones)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        args = [arg for arg in typing.get_args(annotation) if arg is not type(None)]
        return _unwrap(args[0]) if len(args) == 1 else annotation
    return annotation


# --- reordering with comments ----------------------------------------------------------------
# ruamel keeps the lines between two keys after the first key's value: in the comment slot of
# its last scalar (after the end-of-line comment), or in the ``ca.end`` of a collection it ends.


def _reorder(node: CommentedMap, order: list[Any], at: At) -> None:
    """Put ``node``'s keys in ``order``, each key taking the comment lines written above it."""
    keys = list(node)
    if keys == order or getattr(node, merge_attrib, None):
        return  # nothing to do; or a `<<:` merge, whose positions ruamel tracks itself
    column = node.lc.col or 0
    # Above a list item's first key, the comment is the item's (ruamel puts it before the `- `).
    leading = {keys[0]: "" if isinstance(at, tuple) else _cut_head(node, header=at == "top")}
    for before, key in itertools.pairwise(keys):
        leading[key] = _cut_tail(node, before, column)
    trailer = _cut_tail(node, keys[-1], None)  # what follows the mapping stays after it
    for key in order:
        OrderedDict.move_to_end(node, key)
    if isinstance(at, tuple) and leading[order[0]]:
        _above_item(*at, leading.pop(order[0]))  # nothing may come between `- ` and the first key
    for key in order:
        if leading.get(key):
            entry = node.ca.items.setdefault(key, [None, None, None, None])
            entry[1] = [_token(leading[key]), *(entry[1] or [])]
    if trailer:
        container, key, slot, _ = _tail(node, order[-1])
        token = _slot_token(container, key, slot)
        _set_slot(container, key, slot, (token.value if token else _line_end(container[key])) + trailer)


def _tail(node: CommentedMap | CommentedSeq, key: Any) -> tuple[Any, Any, int, list[Any]]:
    """Where the comments after ``node[key]`` live: the slot of its last scalar, and the collections it ends."""
    value = node[key]
    if not isinstance(value, (CommentedMap, CommentedSeq)):
        return node, key, 2 if isinstance(node, CommentedMap) else 0, []
    if not value or value.fa.flow_style():
        return node, key, 2 if isinstance(node, CommentedMap) else 0, [value]
    container, last, slot, path = _tail(value, list(value)[-1] if isinstance(value, CommentedMap) else len(value) - 1)
    return container, last, slot, [*path, value]


def _cut_tail(node: CommentedMap, key: Any, column: int | None) -> str:
    """Cut the comment lines after ``node[key]`` out and return them; its end-of-line comment stays.

    With ``column``, comment lines indented deeper than the keys (a closing remark
    inside the value) stay too: only the lines after the last of them are taken.
    """
    container, last, slot, path = _tail(node, key)
    token = _slot_token(container, last, slot)
    eol, rest = _split_eol(token, container[last]) if token else ("", "")
    for collection in path:  # innermost first, as they are written
        ends = getattr(collection.ca, "end", None) or []
        rest += "".join(_text(end) for end in ends)
        ends[:] = []  # in place: ruamel may hold the same list elsewhere
    lines = rest.splitlines(keepends=True)
    cut = 0
    if column is not None:
        for index, line in enumerate(lines):
            stripped = line.lstrip(" ")
            if stripped.startswith("#") and len(line) - len(stripped) > column:
                cut = index + 1
    kept = "".join(lines[:cut])
    if token or kept:
        _set_slot(container, last, slot, (eol or _line_end(container[last])) + kept)
    return "".join(lines[cut:])


def _cut_head(node: CommentedMap, header: bool) -> str:
    """Cut the comment lines above a mapping's first key (below its parent key, or the file's top)."""
    if not node.ca.comment:
        return ""
    text = ""
    token = node.ca.comment[0]
    if token is not None:  # the parent key's end-of-line comment, then the lines above the first key
        token.value, text = _split_eol(token, None)
    listed = "".join(_text(pre) for pre in node.ca.comment[1] or [])
    # At the top of a file only the last paragraph is the first key's; the rest is the file's header.
    split = listed.rfind("\n\n") + 2 if header and "\n\n" in listed else 0
    if node.ca.comment[1]:
        node.ca.comment[1][:] = [_token(listed[:split])] if split else []  # in place: the parent shares it
    return text + listed[split:]


def _above_item(seq: CommentedSeq, index: int, text: str) -> None:
    # The lines sat at the item's key column; above the `- `, they go 2 columns left.
    text = "".join(line.removeprefix("  ") for line in text.splitlines(keepends=True))
    entry = seq.ca.items.setdefault(index, [None, None, None, None])
    entry[1] = [*(entry[1] or []), _token(text)]


def _slot_token(container: Any, key: Any, slot: int) -> CommentToken | None:
    entry = container.ca.items.get(key)
    return entry[slot] if entry else None


def _set_slot(container: Any, key: Any, slot: int, value: str) -> None:
    if not value:
        if entry := container.ca.items.get(key):
            entry[slot] = None  # ruamel cannot write an empty comment
    elif (token := _slot_token(container, key, slot)) is not None:
        token.value = value  # in place: a flow value shares this token with its parent's entry
    else:
        container.ca.items.setdefault(key, [None, None, None, None])[slot] = _token(value)


def _split_eol(token: CommentToken, scalar: Any) -> tuple[str, str]:
    """A slot's text → (the end-of-line comment or just "\\n", the lines after it)."""
    if not _line_end(scalar):  # after a block, the first line is a comment line, column kept apart
        return "", _text(token)
    value = token.value
    end = value.find("\n") + 1 or len(value)
    return value[:end], value[end:]


def _line_end(scalar: Any) -> str:
    """What ends a value's line before the comment lines after it: nothing after a ``|`` or ``>`` block."""
    return "" if isinstance(scalar, (LiteralScalarString, FoldedScalarString)) else "\n"


def _text(token: CommentToken) -> str:
    """A listed comment's text with its indentation (ruamel keeps the column apart)."""
    return ("" if token.value.startswith("\n") else " " * token.start_mark.column) + token.value


def _token(text: str) -> CommentToken:
    return CommentToken(text, CommentMark(0))  # column 0: ``text`` carries its own indentation
