"""Validate-time refusal of what a template may not do: reach Python's internals, or ask for more
than rendering allows.

The sandbox stops ``{{ ''.__class__.__mro__ }}`` at render time; here it is refused at
``validate``, with its line, so that it is never applied, stored or sent for review. The rules are
conservative: a template names documented variables and their fields, and never computes the
name of an attribute.

  * no name, attribute, key, filter or keyword beginning with ``_``;
  * no ``.format`` / ``.format_map`` (they read attributes through format fields), no ``mro`` or
    other Python internals;
  * ``|attr`` and the ``attribute=`` of filters take a quoted name; a subscript is a number, a
    loop counter or a quoted name, never a computed text; ``|format`` takes a quoted pattern;
  * no ``include``, ``import`` or ``extends`` (there is nothing to include);
  * what the limits refuse at render time is refused here too when literals alone decide it
    (``'x' * 10**8``, ``range(10**9)``, nested loops over big ranges).
"""

from __future__ import annotations

import re
from typing import Any

from jinja2 import nodes
from jinja2.nodes import EvalContext

from dunningops.render.environment import REFUSED_ATTRIBUTES, BoundedEnvironment
from dunningops.render.limits import (
    MAX_ITERATIONS,
    MAX_SIZE,
    MAX_TOTAL,
    RenderLimitError,
    begin,
    binop,
    bounded_range,
    current,
    end,
    sized,
    weight,
)

Problem = tuple[int | None, str]

# Attributes of Python's frames, code and generators that do not begin with "_" (the sandbox's list, and more).
_INTERNALS = REFUSED_ATTRIBUTES | frozenset(
    {
        "gi_code",
        "gi_frame",
        "gi_yieldfrom",
        "cr_code",
        "cr_frame",
        "cr_await",
        "ag_code",
        "ag_frame",
        "ag_await",
        "f_back",
        "f_builtins",
        "f_code",
        "f_globals",
        "f_locals",
        "tb_frame",
        "tb_next",
        "co_code",
        "func_code",
        "func_globals",
        "im_func",
        "im_self",
        "im_class",
    }
)
# Where filters take an attribute name: positional index (after the value) and keyword.
_ATTRIBUTE_ARGS = {
    "selectattr": 0,
    "rejectattr": 0,
    "groupby": 0,
    "sum": 0,
    "join": 1,
    "unique": 1,
    "min": 1,
    "max": 1,
    "sort": 2,
    "map": None,
}
_LOOP_NUMBERS = frozenset({"index", "index0", "revindex", "revindex0", "length", "depth", "depth0"})
_NUMBER_FILTERS = frozenset({"length", "count", "int", "abs", "round"})
_NUMBER_FIELDS = frozenset({"count", "days_overdue"})  # totals.count, invoice.days_overdue
_PERCENT = re.compile(r"%(?:\(([^)]*)\))?[#0 +-]*(?:\*|\d+)?(?:\.(?:\*|\d+))?[hlL]?([a-zA-Z%])")
_UNDERSCORE = "templates may not use names beginning with '_'"
_COMPUTED = "templates may not compute the names of attributes"


def unsafe_constructs(ast: nodes.Template) -> list[Problem]:
    """What ``ast`` does that a template may not, one ``(line, message)`` each."""
    problems: list[Problem] = []
    numbers = _number_names(ast)

    def add(node: nodes.Node, message: str) -> None:
        problems.append((node.lineno, message))

    for node in ast.find_all(nodes.Node):
        if isinstance(node, nodes.Getattr):
            _check_name(node, node.attr, add)
        elif isinstance(node, nodes.Getitem):
            arg = node.arg
            if isinstance(arg, nodes.Const) and isinstance(arg.value, str):
                _check_name(node, arg.value, add)
            elif not isinstance(arg, nodes.Slice) and not _is_number(arg, numbers):
                add(node, f"a subscript must be a number, a loop counter or a quoted name ({_COMPUTED})")
        elif isinstance(node, (nodes.Name, nodes.Block, nodes.Macro)):
            if node.name.startswith("_"):
                add(node, f"{_UNDERSCORE} (here: {node.name})")
        elif isinstance(node, nodes.NSRef):
            _check_name(node, node.attr, add)
        elif isinstance(node, nodes.Keyword):
            if node.key.startswith("_"):
                add(node, f"{_UNDERSCORE} (here: {node.key})")
        elif isinstance(node, (nodes.Filter, nodes.Test)):
            _check_filter(node, add)
        elif isinstance(node, (nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends)):
            add(node, "templates cannot include, import or extend other templates")
    return problems


def _check_name(node: nodes.Node, name: str, add) -> None:
    if name.startswith("_"):
        add(node, f"{_UNDERSCORE} (here: {name})")
    elif name in ("format", "format_map"):
        add(node, f"templates may not use .{name}: join texts with ~, or use |format with a quoted pattern")
    elif name in _INTERNALS:
        add(node, f"templates may not use Python's internals (here: {name})")


def _check_attribute_name(node: nodes.Node, arg: nodes.Expr | None, what: str, add) -> None:
    if arg is None:
        return
    if not (isinstance(arg, nodes.Const) and isinstance(arg.value, str)):
        add(node, f"{what} takes a quoted name ({_COMPUTED})")
        return
    for part in arg.value.split("."):
        _check_name(node, part, add)


def _check_filter(node: nodes.Filter | nodes.Test, add) -> None:
    kind = "filter" if isinstance(node, nodes.Filter) else "test"
    if node.name.startswith("_"):
        add(node, f"{_UNDERSCORE} (here: the {kind} {node.name})")
        return
    if kind == "test":
        return
    args = node.args
    keyword: dict[str, nodes.Expr] = {str(kw.key): kw.value for kw in node.kwargs}
    if node.name == "attr":
        _check_attribute_name(node, args[0] if args else None, "|attr", add)
    elif node.name == "format":
        pattern = node.node
        if not (isinstance(pattern, nodes.Const) and isinstance(pattern.value, str)):
            add(node, "|format takes a quoted pattern: 'Total: %s'|format(totals.amount)")
        elif any(key.startswith("_") or conversion in "cra" for key, conversion in _PERCENT.findall(pattern.value)):
            add(node, "|format patterns may not use %(_…), %c, %r or %a (they build names or show Python's internals)")
        for given in [*args, *keyword.values()]:
            if isinstance(given, nodes.Const) and isinstance(given.value, str) and given.value.startswith("_"):
                add(node, f"{_UNDERSCORE} (here: {given.value!r} given to |format)")
    elif node.name == "map":
        if args:
            name = args[0]
            if not (isinstance(name, nodes.Const) and isinstance(name.value, str)):
                add(node, "|map takes a quoted filter name")
            elif name.value == "attr":
                _check_attribute_name(node, args[1] if len(args) > 1 else None, "|map('attr', …)", add)
            elif name.value.startswith("_"):
                add(node, f"{_UNDERSCORE} (here: the filter {name.value})")
        _check_attribute_name(node, keyword.get("attribute"), "attribute= of |map", add)
    elif node.name in _ATTRIBUTE_ARGS:
        index = _ATTRIBUTE_ARGS[node.name]
        named = keyword.get("attribute")
        if named is None and index is not None and len(args) > index:
            named = args[index]
        _check_attribute_name(node, named, f"the attribute of |{node.name}", add)


def _number_names(ast: nodes.Template) -> set[str]:
    """Names the template only ever sets to numbers: loop targets over ``range``, ``{% set i = 0 %}``."""
    values: dict[str, list[nodes.Expr | None]] = {}
    node: Any
    for node in ast.find_all((nodes.Assign, nodes.For)):
        target = node.target
        if isinstance(target, nodes.Name):
            if isinstance(node, nodes.For):
                over_range = (
                    isinstance(node.iter, nodes.Call)
                    and isinstance(node.iter.node, nodes.Name)
                    and node.iter.node.name == "range"
                )
                values.setdefault(target.name, []).append(nodes.Const(0) if over_range else None)
            else:
                values.setdefault(target.name, []).append(node.node)
        else:
            for name in target.find_all(nodes.Name):
                values.setdefault(name.name, []).append(None)
    for macro in ast.find_all(nodes.Macro):
        for arg in macro.args:
            values.setdefault(arg.name, []).append(None)
    numbers: set[str] = set()
    changed, passes = True, 0
    while changed and passes < 8:  # a name set from another number name is a number too (a few levels deep)
        changed, passes = False, passes + 1
        for name, sources in values.items():
            if name not in numbers and all(s is not None and _is_number(s, numbers) for s in sources):
                numbers.add(name)
                changed = True
    return numbers


def _is_number(node: nodes.Expr, numbers: set[str]) -> bool:
    if isinstance(node, nodes.Const):
        return isinstance(node.value, (int, float))
    if isinstance(node, nodes.Name):
        return node.name in numbers
    if isinstance(node, nodes.Getattr):  # loop.index, totals.count, invoice.days_overdue
        if isinstance(node.node, nodes.Name) and node.node.name == "loop":
            return node.attr in _LOOP_NUMBERS
        return node.attr in _NUMBER_FIELDS
    if isinstance(node, (nodes.Add, nodes.Sub, nodes.Mul, nodes.FloorDiv, nodes.Mod)):
        return _is_number(node.left, numbers) and _is_number(node.right, numbers)
    if isinstance(node, (nodes.Neg, nodes.Pos)):
        return _is_number(node.node, numbers)
    if isinstance(node, nodes.Filter):
        return node.name in _NUMBER_FILTERS
    if isinstance(node, nodes.CondExpr):
        return _is_number(node.expr1, numbers) and (node.expr2 is None or _is_number(node.expr2, numbers))
    return False


# --- limits decided by literals alone ------------------------------------------------------------------


class _NotConstant(Exception):
    pass


_FAILED = object()
_OPERATORS: dict[type, str] = {nodes.Add: "+", nodes.Mul: "*", nodes.Pow: "**", nodes.Mod: "%"}
_FOLDED_FILTERS = frozenset({"center", "indent", "format", "replace", "join", "wordwrap", "batch", "slice", "list"})


def static_limits(ast: nodes.Template, env: BoundedEnvironment) -> list[Problem]:
    """What would go past the render-time limits whatever the variables: ``'x' * 10**8``,
    ``range(10**9)``, loops over big ranges nested. Computed with the limits' own measured
    operations, so nothing big is built here either."""
    problems: list[Problem] = []
    folder = _Folder(env, problems)
    previous = begin(None)  # one budget for the whole template: what is folded is kept until the end
    try:
        for node in ast.find_all((nodes.BinExpr, nodes.Concat, nodes.Call, nodes.Filter, nodes.List, nodes.Tuple)):
            try:
                folder.value(node)
            except _NotConstant:
                pass
            if folder.exhausted:
                break
        _loops(ast, 1, folder, problems)
    finally:
        end(previous)
    return problems


class _Folder:
    """The value of an expression made of literals, measured; a limit it hits becomes a problem."""

    def __init__(self, env: BoundedEnvironment, problems: list[Problem]):
        self.env, self.problems = env, problems
        self.memo: dict[int, Any] = {}
        self.exhausted = False  # the template's literals add up past MAX_TOTAL: no more folding

    def value(self, node: nodes.Node) -> Any:
        key = id(node)
        if key not in self.memo:
            self.memo[key] = _FAILED
            if self.exhausted:
                raise _NotConstant
            try:
                value = self._fold(node)
                current().build(0)
                current().built += weight(value, MAX_SIZE)  # every folded value is kept: charged as such
                self.memo[key] = value
            except RenderLimitError as exc:
                self.problems.append((node.lineno, f"too big to render: {exc}"))
                self.exhausted = current().built > MAX_TOTAL
            except (_NotConstant, ArithmeticError, TypeError, ValueError, LookupError, RecursionError):
                pass
        if self.memo[key] is _FAILED:
            raise _NotConstant
        return self.memo[key]

    def _fold(self, node: nodes.Node) -> Any:
        if isinstance(node, nodes.Const):
            return node.value
        if isinstance(node, (nodes.List, nodes.Tuple)):
            items = [self.value(item) for item in node.items]
            return sized(items if isinstance(node, nodes.List) else tuple(items))
        if isinstance(node, nodes.Neg):
            return -self.value(node.node)
        if isinstance(node, nodes.Pos):
            return +self.value(node.node)
        if isinstance(node, nodes.BinExpr) and type(node) in _OPERATORS:
            return binop(_OPERATORS[type(node)], self.value(node.left), self.value(node.right))
        if isinstance(node, nodes.Concat):
            parts = [self.value(part) for part in node.nodes]
            current().build(sum(len(p) if isinstance(p, str) else weight(p) for p in parts))
            return "".join(map(str, parts))
        if isinstance(node, nodes.Call) and isinstance(node.node, nodes.Name) and node.node.name == "range":
            if node.kwargs or node.dyn_args or node.dyn_kwargs:
                raise _NotConstant
            return bounded_range(*(self.value(arg) for arg in node.args))
        if isinstance(node, nodes.Filter) and node.name in _FOLDED_FILTERS and node.node is not None:
            if node.dyn_args or node.dyn_kwargs:
                raise _NotConstant
            value = self.value(node.node)
            args = [self.value(arg) for arg in node.args]
            kwargs: dict[str, Any] = {str(kw.key): self.value(kw.value) for kw in node.kwargs}
            return self.env.call_filter(node.name, value, args, kwargs, eval_ctx=EvalContext(self.env))
        raise _NotConstant


def _loops(node: nodes.Node, runs: int, folder: _Folder, problems: list[Problem]) -> None:
    """Nested loops whose literal ranges multiply past MAX_ITERATIONS."""
    for child in node.iter_child_nodes():
        if isinstance(child, nodes.For):
            inner = runs
            try:
                inner = runs * len(folder.value(child.iter))
            except (_NotConstant, TypeError):
                pass
            if inner > MAX_ITERATIONS >= runs:
                problems.append(
                    (
                        child.lineno,
                        f"too big to render: these loops would run {inner:,} times, "
                        f"over the limit of {MAX_ITERATIONS:,} for one email",
                    )
                )
            _loops(child, inner, folder, problems)
        else:
            _loops(child, runs, folder, problems)
