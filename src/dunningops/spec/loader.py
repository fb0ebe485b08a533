"""Load a config directory: parse every YAML file, validate it, merge, check references.

Every problem becomes a ConfigIssue naming file:line and key; all of them are
raised together in one ConfigError, never one at a time.
"""

from __future__ import annotations

import difflib
import typing
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from dunningops.errors import ConfigError, ConfigIssue
from dunningops.spec.checks import CheckedSource, body_path, check_references, read_template_bodies
from dunningops.spec.models import ConfigFile
from dunningops.spec.paths import MAX_YAML_BYTES, FileProblem, read_inside, resolved, resolved_child, yaml_file_problem
from dunningops.spec.state import DesiredState, Source
from dunningops.spec.yamlmarks import LineDict, LineList, line_at, load_marked

# ConfigFile's list fields, in the order of DesiredState's collections.
_LISTS = {
    "members": "member",
    "aliases": "alias",
    "contact_functions": "contact_function",
    "templates": "template",
    "plans": "plan",
}


def config_files(root: Path, issues: list[ConfigIssue] | None = None) -> list[Path]:
    """The YAML files of a config directory, in a stable order (hidden ones skipped).

    A file that is a symlink leading outside the directory, a FIFO or a device is left out, and
    reported in ``issues`` when given: the config cannot make us read what is not in it.
    """
    return [path for path, _ in _config_files(root, issues)]


def _config_files(root: Path, issues: list[ConfigIssue] | None) -> list[tuple[Path, Path]]:
    """``config_files`` with the real path of each (read_inside needs it), each resolved once."""
    root_real = resolved(root)
    found = sorted(
        p
        for p in root.rglob("*")
        if p.suffix in (".yaml", ".yml") and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )
    files = []
    real_folders: dict[Path, Path] = {}
    for path in found:
        if path.parent not in real_folders:
            real_folders[path.parent] = resolved(path.parent)
        real = resolved_child(real_folders[path.parent], path.name)
        problem = yaml_file_problem(root_real, path, path.relative_to(root).as_posix(), real)
        if problem is not None:
            if issues is not None:
                issues.append(problem)
        elif path.is_file():
            files.append((path, real))
    return files


def load_config(root: Path | str, *, known_good: Callable[[], Collection[CheckedSource]] | None = None) -> DesiredState:
    """Load, validate and cross-check the config in ``root``; raise ConfigError listing every problem.

    Args:
        known_good: gives the template sources that need no check again, (design, text) pairs such as
            the applied ones (`plan`, `apply`: read_template_bodies). Called only once every file
            parsed and validated, so that a config with errors fails before the store is opened.
            None (`validate`): every body and subject is checked.
    """
    root = Path(root)
    if not root.is_dir():
        raise ConfigError([ConfigIssue(str(root), None, "", "config directory not found")])
    issues: list[ConfigIssue] = []
    files = _config_files(root, issues)
    if not files:
        raise ConfigError([*issues, ConfigIssue(str(root), None, "", "no *.yaml files in the config directory")])

    state = DesiredState(root=root)
    root_real = resolved(root)
    not_mappings: list[ConfigIssue] = []
    for path, real in files:
        rel = path.relative_to(root).as_posix()
        parsed = _parse_file(root_real, real, rel, issues, not_mappings)
        if parsed is not None:
            _merge(state, parsed, rel, issues)
    # A YAML file that is not a mapping is fine when a template uses it as its body (blocks design).
    issues.extend(_not_bodies(state, not_mappings))
    # A file that failed to parse may hold the settings: only then is "missing" a guess.
    if state.settings is None and not issues:
        issues.append(ConfigIssue(root.as_posix(), None, "settings", "no file defines `settings` (company, deliverability)"))
    if not issues:
        read_template_bodies(state, issues, known_good() if known_good is not None else frozenset())
        check_references(state, issues)
    if issues:
        raise ConfigError(issues)
    return state


def _not_bodies(state: DesiredState, not_mappings: list[ConfigIssue]) -> list[ConfigIssue]:
    """The issues of ``not_mappings`` whose file no template names as its body."""
    if not not_mappings:
        return []
    # First by the path as written (no symlink to follow: resolving every body's path was a tenth
    # of a plan); a name with ".." or an absolute one is left to the full comparison below.
    written = {
        (Path(state.sources[f"template.{tid}"].file).parent / loc.body).as_posix()
        for tid, template in state.templates.items()
        for loc in template.locales.values()
        if not Path(loc.body).is_absolute() and ".." not in Path(loc.body).parts
    }
    left = [i for i in not_mappings if i.file not in written]
    if not left:
        return []
    bodies = {body_path(state, tid, loc.body) for tid, template in state.templates.items() for loc in template.locales.values()}
    return [i for i in left if resolved(state.root / i.file) not in bodies]


def _parse_file(
    root_real: Path, real: Path, rel: str, issues: list[ConfigIssue], not_mappings: list[ConfigIssue]
) -> tuple[ConfigFile, LineDict] | None:
    try:
        text = read_inside(root_real, real, MAX_YAML_BYTES, "", rel)
    except FileProblem as exc:
        issues.append(ConfigIssue(rel, exc.line, "", exc.message))
        return None
    except OSError as exc:
        issues.append(ConfigIssue(rel, None, "", f"cannot read: {exc.strerror or exc}"))
        return None
    try:
        doc, duplicates = load_marked(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        issues.append(ConfigIssue(rel, line, "", f"invalid YAML: {exc.problem or exc}"))
        return None
    except yaml.YAMLError as exc:
        issues.append(ConfigIssue(rel, None, "", f"invalid YAML: {exc}"))
        return None
    for line, key in duplicates:
        issues.append(ConfigIssue(rel, line, key, "key appears twice in the same mapping"))
    if doc is None:
        return None
    if not isinstance(doc, LineDict):
        not_mappings.append(ConfigIssue(rel, getattr(doc, "line", 1), "", "a config file must be a mapping of kinds"))
        return None
    try:
        model = ConfigFile.model_validate(doc)
    except ValidationError as exc:
        errors = exc.errors()
        # A misspelt required key is one mistake, not two: drop its "missing" twin.
        suggested = {(err["loc"][:-1], _suggestion(err["loc"])) for err in errors if err["type"] == "extra_forbidden"}
        for err in errors:
            if err["type"] == "missing" and (err["loc"][:-1], err["loc"][-1]) in suggested:
                continue
            issues.append(_issue_from_error(rel, doc, err))
        return None
    return (model, doc) if not duplicates else None


def _issue_from_error(rel: str, doc: LineDict, err: Any) -> ConfigIssue:
    loc = tuple(seg for seg in err["loc"] if not (isinstance(seg, str) and seg.startswith(("function-", "union["))))
    line = line_at(doc, loc)
    key = _key_path(doc, loc)
    if err["type"] == "extra_forbidden":
        close = _suggestion(loc)
        message = f"unknown key {loc[-1]!r}"
        message += f"; did you mean {close!r}?" if close else f" (expected one of: {', '.join(_allowed_keys(loc[:-1]))})"
    else:
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "missing":
            message = "required key is missing"
        elif err["type"] == "literal_error":
            message += f", got {err.get('input')!r}"
    return ConfigIssue(rel, line, key, message)


def _suggestion(loc: tuple) -> str | None:
    loc = tuple(seg for seg in loc if not (isinstance(seg, str) and seg.startswith(("function-", "union["))))
    close = difflib.get_close_matches(str(loc[-1]), _allowed_keys(loc[:-1]), n=1, cutoff=0.6)
    return close[0] if close else None


def _key_path(doc: Any, loc: tuple) -> str:
    """('aliases', 1, 'email') → 'aliases[billing].email' (the item's id when it has one)."""
    parts: list[str] = []
    node = doc
    for seg in loc:
        if isinstance(seg, int):
            item = node[seg] if isinstance(node, list) and seg < len(node) else None
            ident = item.get("id") if isinstance(item, dict) else None
            parts.append(f"[{ident if isinstance(ident, str) else seg}]")
            node = item
        else:
            parts.append(("." if parts else "") + str(seg))
            node = node.get(seg) if isinstance(node, dict) else None
    return "".join(parts)


def _allowed_keys(loc: tuple) -> list[str]:
    """The keys a mapping at ``loc`` accepts, found by walking ConfigFile's annotations."""
    annotation: Any = ConfigFile
    for seg in loc:
        model = _model_in(annotation)
        if isinstance(seg, int):
            annotation = _item_type(annotation)
            continue
        if model is None:
            annotation = _item_type(annotation)  # a dict key such as a template's language
            continue
        field = next((f for n, f in model.model_fields.items() if (f.alias or n) == seg), None)
        if field is None:
            return []
        annotation = field.annotation
    model = _model_in(annotation)
    return [f.alias or n for n, f in model.model_fields.items()] if model else []


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, __import__("types").UnionType):
        for arg in typing.get_args(annotation):
            found = _model_in(arg)
            if found:
                return found
    return None


def _item_type(annotation: Any) -> Any:
    args = typing.get_args(annotation)
    for arg in args:
        if arg is not type(None):
            inner = typing.get_args(arg)
            if typing.get_origin(arg) in (list, dict):
                return inner[-1]
    return args[-1] if args else annotation


def _merge(state: DesiredState, parsed: tuple[ConfigFile, LineDict], rel: str, issues: list[ConfigIssue]) -> None:
    model, doc = parsed
    if model.settings is not None:
        here = Source(rel, doc.line_of("settings"), doc["settings"])
        if state.settings is not None:
            first = state.sources["settings"]
            issues.append(ConfigIssue(rel, here.line, "settings", f"defined twice: also in {first.file}:{first.line}"))
        else:
            state.settings = model.settings
            state.sources["settings"] = here
    for key, kind in _LISTS.items():
        raw_items: LineList = doc.get(key) or LineList()
        target = state.collection(kind)
        for index, obj in enumerate(getattr(model, key)):
            address = f"{kind}.{obj.id}"
            here = Source(rel, raw_items.item_lines[index], raw_items[index])
            if obj.id in target:
                first = state.sources[address]
                issues.append(
                    ConfigIssue(
                        rel,
                        here.line,
                        f"{key}[{obj.id}]",
                        f"{kind} {obj.id!r} is defined twice: also in {first.file}:{first.line}",
                    )
                )
                continue
            target[obj.id] = obj
            state.sources[address] = here
    for key in ("moved", "removed"):
        raw_items = doc.get(key) or LineList()
        for index, obj in enumerate(getattr(model, key)):
            getattr(state, key).append(obj)
            state.sources[f"{key}.{obj.from_}"] = Source(rel, raw_items.item_lines[index], raw_items[index])
