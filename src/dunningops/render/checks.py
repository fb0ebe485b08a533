"""Validate-time checks of template sources: what would fail at send time fails at ``validate``.

Each check returns ``(line, message)`` problems (line 1-based, None when
unknown); an empty list means the source is fine.
"""

from __future__ import annotations

import difflib

from jinja2 import TemplateSyntaxError, nodes

from dunningops.render.blocks import parse_blocks
from dunningops.render.environment import environment
from dunningops.render.safety import static_limits, unsafe_constructs
from dunningops.render.tags import expand_tags
from dunningops.render.variables import FIELDS, TOP_LEVEL

Problem = tuple[int | None, str]
DESIGNS = ("text", "html", "blocks", "subject")
# Filters that keep a list of invoices a list of invoices, or pick one of them.
_LIST_FILTERS = frozenset({"sort", "reverse", "list", "unique", "select", "reject", "selectattr", "rejectattr"})
_ITEM_FILTERS = frozenset({"first", "last", "random"})
# Names Jinja itself provides inside loops, macros and blocks.
_JINJA_SPECIALS = frozenset({"loop", "caller", "varargs", "kwargs", "self", "super"})


def check_template(source: str, design: str, known_only: bool = True) -> list[Problem]:
    """Problems of a subject or body: Jinja syntax, unknown @TAG@s, what a template may not do
    (names beginning with '_', ``.format``, computed attribute names, …: safety.py), what would go
    past the render-time limits whatever the values and, with ``known_only``, variables and fields
    that are not documented (``dunningops template vars``).

    Args:
        source: the template text (a "blocks" body is checked with ``check_blocks``).
        design: text, html, blocks, or subject.
        known_only: also refuse undocumented variables; without it only syntax and tags are checked.
    """
    if design not in DESIGNS:
        raise ValueError(f"unknown design {design!r}")
    if design == "blocks":
        return check_blocks(source, known_only)
    expanded, tag_problems = expand_tags(source)
    problems: list[Problem] = list(tag_problems)  # widened: the problems added below may have no line
    env = environment(design == "html")
    try:
        ast = env.parse(expanded)
    except TemplateSyntaxError as exc:
        return _sorted([*problems, (exc.lineno, f"template syntax: {exc.message}")])
    except RecursionError:
        return _sorted([*problems, (None, "template syntax: expressions are nested too deeply")])
    try:
        # What a template may not do, and what would go past the render-time limits whatever the values.
        problems += unsafe_constructs(ast) + static_limits(ast, env)
        if known_only:
            problems += _unknown_variables(ast, set(env.globals))
    except RecursionError:
        problems.append((None, "template syntax: expressions are nested too deeply"))
    return _sorted(problems)


def check_blocks(text: str, known_only: bool = True) -> list[Problem]:
    """Problems of a "blocks" body: a YAML list of mappings, each of a known ``type`` with the
    fields that type takes (required ones present), and each text a valid template."""
    blocks, problems = parse_blocks(text)
    for block in blocks:
        for key, value in block.fields.items():
            if isinstance(value, str):
                line = block.lines.get(key, block.line)
                problems += [
                    (line, f"block {block.index} ({block.type}) {key}: {message}")
                    for _, message in check_template(value, "text", known_only)
                ]
    return _sorted(problems)


def _sorted(problems: list[Problem]) -> list[Problem]:
    return sorted(problems, key=lambda p: (p[0] or 0, p[1]))


def _hint(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""


def _unknown_variables(ast: nodes.Template, globals_: set[str]) -> list[Problem]:
    problems: list[Problem] = []
    first_use: dict[str, int] = {}
    assigned: set[str] = set()
    for ref in ast.find_all(nodes.Name):
        if ref.ctx == "load":
            first_use.setdefault(ref.name, ref.lineno)
        else:  # {% set %}, loop targets, macro parameters
            assigned.add(ref.name)
    assigned.update(macro.name for macro in ast.find_all(nodes.Macro))
    # Loaded names that the template never sets itself. (jinja2.meta.find_undeclared_variables
    # is scope-exact but runs the code generator: it was half of `plan`'s time on 400 bodies.)
    for name in sorted(set(first_use) - assigned - TOP_LEVEL - globals_ - _JINJA_SPECIALS):
        if name == "invoice":
            message = "invoice is only defined inside {% for invoice in invoices %}…{% endfor %}"
        else:
            message = f"unknown variable {name}{_hint(name, sorted(TOP_LEVEL))} (see `dunningops template vars`)"
        problems.append((first_use.get(name), message))
    _unknown_fields(ast, {}, assigned, problems)
    return problems


def _kind(node: nodes.Node, aliases: dict[str, str], assigned: set[str]) -> str | None:
    """Which documented object ``node`` stands for: company, …, invoices, or one invoice."""
    if isinstance(node, nodes.Name) and node.ctx == "load":
        if node.name in aliases:
            return aliases[node.name]
        return node.name if node.name in TOP_LEVEL and node.name not in assigned else None
    if isinstance(node, nodes.Filter) and node.node is not None and _kind(node.node, aliases, assigned) == "invoices":
        return "invoice" if node.name in _ITEM_FILTERS else "invoices" if node.name in _LIST_FILTERS else None
    if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, int):
        return "invoice" if _kind(node.node, aliases, assigned) == "invoices" else None
    return None


def _field_read(node: nodes.Node) -> tuple[nodes.Node, str] | None:
    """(object, field name) when ``node`` reads a field by name: ``x.field`` or ``x["field"]``."""
    if isinstance(node, nodes.Getattr):
        return node.node, node.attr
    if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
        return node.node, node.arg.value
    return None


def _unknown_fields(node: nodes.Node, aliases: dict[str, str], assigned: set[str], problems: list[Problem]) -> None:
    if isinstance(node, nodes.For):
        _unknown_fields(node.iter, aliases, assigned, problems)
        inner = dict(aliases)
        for target in node.target.find_all(nodes.Name) if not isinstance(node.target, nodes.Name) else [node.target]:
            inner.pop(target.name, None)
        if isinstance(node.target, nodes.Name) and _kind(node.iter, aliases, assigned) == "invoices":
            inner[node.target.name] = "invoice"
        for child in [*node.body, *([node.test] if node.test else [])]:
            _unknown_fields(child, inner, assigned, problems)
        for child in node.else_:
            _unknown_fields(child, aliases, assigned, problems)
        return
    read = _field_read(node)
    if read is not None:
        owner, field = read
        kind = _kind(owner, aliases, assigned)
        if kind in FIELDS and field not in FIELDS[kind]:
            base = owner.name if isinstance(owner, nodes.Name) else kind
            choices = [f"{base}.{f}" for f in sorted(FIELDS[kind])]
            problems.append(
                (
                    node.lineno,
                    f"unknown field {base}.{field}{_hint(f'{base}.{field}', choices)} "
                    f"({kind} has: {', '.join(sorted(FIELDS[kind]))})",
                )
            )
    for child in node.iter_child_nodes():
        _unknown_fields(child, aliases, assigned, problems)
