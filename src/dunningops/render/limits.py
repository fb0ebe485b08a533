"""Bounds on what rendering one email may cost: time, output, sizes, loop iterations, nesting.

A template is untrusted input (whoever can open a pull request writes it). The sandbox keeps it
away from Python's internals; these bounds keep it from exhausting the process, whatever it
does: ``range(100000)`` loops nested, ``'x' * 10**8``, a macro calling itself, a string doubled
in a loop. Everything a template builds in one step (operators ``*`` ``**`` ``%`` ``+`` ``~``,
literal lists, calls, filters, the output) is measured before or as it is built, and charged to a
per-email budget; loops count their iterations; calls count their nesting; and each of these
checks the deadline. Nothing runs per node on the hot path beyond a counter or a comparison.

The same functions serve the validate-time checks (``safety.static_limits``), which run them on
what a template computes from literals alone.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from math import inf
from time import monotonic
from typing import Any

from jinja2 import pass_eval_context
from jinja2.exceptions import TemplateRuntimeError
from jinja2.runtime import Namespace, markup_join, str_join

MAX_SECONDS = 2.0  # wall time of one email: a reminder renders in well under a millisecond
MAX_OUTPUT = 1_000_000  # characters of one rendered subject, body or block text
MAX_SIZE = 1_000_000  # characters of one text, or items of one list (nested ones included), built in one step
MAX_TOTAL = 20_000_000  # characters and items built in all while rendering one email
MAX_RANGE = 100_000  # numbers in one range(), as in Jinja's own sandbox
MAX_ITERATIONS = 1_000_000  # loop iterations in one email
MAX_DEPTH = 50  # calls nested in one another (a macro calling itself without end)
MAX_INT_BITS = 10_000  # about 3,000 digits
_SHORT_LOOP = 64  # loops up to this long are counted when they start, not item by item


class RenderLimitError(TemplateRuntimeError):
    """A template went past one of the bounds; the message names it."""


class Budget:
    """What one email's rendering has spent so far, and until when it may run."""

    __slots__ = ("built", "deadline", "depth", "iterations")

    def __init__(self, seconds: float | None = MAX_SECONDS):
        self.deadline = monotonic() + seconds if seconds is not None else inf
        self.built = 0
        self.iterations = 0
        self.depth = 0

    def check_time(self) -> None:
        if monotonic() > self.deadline:
            raise RenderLimitError(f"rendering took longer than {MAX_SECONDS:g} seconds, the limit for one email")

    def build(self, size: int, what: str = "text") -> None:
        """Charge ``size`` characters (a text) or items (a list) about to be built."""
        if size > MAX_SIZE:
            made = f"a text of {size:,} characters" if what == "text" else f"a list of {size:,} items (nested ones included)"
            raise RenderLimitError(f"{made} is over the limit of {MAX_SIZE:,}")
        self.built += size
        if self.built > MAX_TOTAL:
            raise RenderLimitError(f"the template built more than {MAX_TOTAL:,} characters and items for one email")
        self.check_time()

    def count(self, iterations: int) -> None:
        self.iterations += iterations
        if self.iterations > MAX_ITERATIONS:
            raise RenderLimitError(f"loops ran more than {MAX_ITERATIONS:,} times for one email")
        self.check_time()


class _Local(threading.local):
    budget: Budget | None = None


_local = _Local()


def current() -> Budget:
    """The budget of the email being rendered on this thread (outside a render: a fresh one, no deadline)."""
    budget = _local.budget
    return budget if budget is not None else Budget(None)


def begin(seconds: float | None = MAX_SECONDS) -> Budget | None:
    """Start one email's budget; returns the one it replaces, for ``end``."""
    previous = _local.budget
    _local.budget = Budget(seconds)
    return previous


def end(previous: Budget | None) -> None:
    _local.budget = previous


# --- sizes ------------------------------------------------------------------------------


def weight(value: Any, limit: int = MAX_SIZE) -> int:
    """How big ``value`` is written out: characters of texts, items of lists and mappings (a list
    that appears twice counts twice), about a third of a number's bits. Stops past ``limit``."""
    total = 0
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            total += len(v)
        elif isinstance(v, (list, tuple, set, frozenset, dict, Namespace)):
            if isinstance(v, Namespace):
                v = object.__getattribute__(v, "_Namespace__attrs")
            total += len(v) + 1
            if total > limit:
                return total
            if isinstance(v, dict):
                stack.extend(v.keys())
                stack.extend(v.values())
            else:
                stack.extend(v)
        elif isinstance(v, range):
            total += len(v)
        elif isinstance(v, int):
            total += v.bit_length() // 3 + 1
        else:
            total += 1
        if total > limit:
            return total
    return total


def _kind(value: Any) -> str:
    return "text" if isinstance(value, str) else "list"


def _int_bits(bits: int) -> None:
    if bits > MAX_INT_BITS:
        raise RenderLimitError(f"a number of more than {MAX_INT_BITS // 10 * 3:,} digits is over the limit")


# printf-style conversions: %(key)flags width .precision conversion
_PERCENT = re.compile(r"%(?:\([^)]*\))?[#0 +-]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?([a-zA-Z%])")


def check_percent(template: str, args: Any) -> None:
    """Refuse a ``'%…' % args`` (or ``|format``) whose result would be over the size limit."""
    widths, specs = 0, 0
    for width, precision, conversion in _PERCENT.findall(template):
        if "*" in (width, precision):
            raise RenderLimitError("a format with * for its width or precision is not allowed in a template")
        widths += int(width or 0) + int(precision or 0)
        specs += conversion != "%"
    current().build(len(template) + widths + specs * weight(args), "text")


def binop(operator: str, left: Any, right: Any) -> Any:
    """``left <operator> right`` for ``*``, ``**``, ``%`` and ``+``, measured before it is computed."""
    if operator == "*":
        if isinstance(right, int) and isinstance(left, (str, list, tuple)):
            current().build(weight(left) * max(right, 0), _kind(left))
        elif isinstance(left, int) and isinstance(right, (str, list, tuple)):
            current().build(weight(right) * max(left, 0), _kind(right))
        elif isinstance(left, int) and isinstance(right, int):
            _int_bits(left.bit_length() + right.bit_length())
        return left * right
    if operator == "**":
        if isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1:
            _int_bits((left.bit_length() - 1) * right + 1)
        return left**right
    if operator == "%":
        if isinstance(left, str):
            check_percent(left, right)
        return left % right
    if operator == "+":
        if isinstance(left, str) and isinstance(right, str):
            current().build(len(left) + len(right))
        elif isinstance(left, (list, tuple)) and isinstance(right, (list, tuple)):
            current().build(weight(left) + weight(right), "list")
        return left + right
    raise TemplateRuntimeError(f"unknown operator {operator}")


# --- what the compiled template calls (see environment.bound_template) -----------------------------


def concat_output(pieces: Iterable[str]) -> str:
    """The environment's ``concat``: joins what a template (or a macro, a block) writes, up to MAX_OUTPUT.

    Pieces are taken 32 at a time (a reminder's body is a few dozen): measured at C speed, with
    the clock looked at between two batches.
    """
    batch = list(islice(pieces, 32))
    size = sum(map(len, batch))
    budget = _local.budget or Budget(None)
    if len(batch) < 32 and size <= MAX_OUTPUT and budget.built + size <= MAX_TOTAL:  # most calls
        budget.built += size
        return "".join(batch)
    out = batch
    while len(batch) == 32 and size <= MAX_OUTPUT:
        budget.check_time()
        batch = list(islice(pieces, 32))
        size += sum(map(len, batch))
        out += batch
    if size > MAX_OUTPUT:
        raise RenderLimitError(f"the rendered text is longer than {MAX_OUTPUT:,} characters, the limit")
    budget.built += size
    if budget.built > MAX_TOTAL:
        budget.build(0)
    return "".join(out)


@pass_eval_context
def concat_parts(eval_ctx: Any, parts: tuple) -> str:
    """``a ~ b ~ c``: measured, then joined as Jinja does (escaping when autoescape is on)."""
    current().build(sum(len(p) if isinstance(p, str) else weight(p) for p in parts))
    return markup_join(parts) if eval_ctx.autoescape or eval_ctx.volatile else str_join(parts)


def sized(value: Any) -> Any:
    """A literal list, tuple or mapping: measured as written out (``[a, a, a]`` with a big ``a`` is big)."""
    current().build(weight(value), "list")
    return value


def copied(value: Any) -> Any:
    """A slice (``s[1:]``): a copy, charged by its length."""
    if isinstance(value, (str, list, tuple)):
        current().build(len(value), _kind(value))
    return value


class _Counted:
    """An iterable whose iterations are charged to the email's budget (a loop's ``length`` still works)."""

    __slots__ = ("_items",)

    def __init__(self, items: Any):
        self._items = items

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator:
        return _counting(self._items)


def _counting(items: Iterable) -> Iterator:
    budget = current()
    for item in items:
        budget.iterations += 1
        if budget.iterations > MAX_ITERATIONS or monotonic() > budget.deadline:
            budget.count(0)  # raises the one that applies
        yield item


def loop_guard(items: Any) -> Any:
    """What a ``{% for %}`` iterates: its iterations are counted (and the clock looked at).

    A short list (a reminder's invoices) is counted at once and iterated as it is: nested short
    loops still look at the clock every few dozen iterations, each time an inner loop starts.
    """
    if hasattr(items, "__len__"):
        size = len(items)
        if size <= _SHORT_LOOP:
            current().count(size)
            return items
        return _Counted(items)
    return _counting(items)


def bounded_range(*args: int) -> range:
    """``range`` with at most MAX_RANGE numbers."""
    numbers = range(*args)
    if len(numbers) > MAX_RANGE:
        raise RenderLimitError(f"range() of {len(numbers):,} numbers is over the limit of {MAX_RANGE:,}")
    return numbers


# --- calls --------------------------------------------------------------------------------


def as_width(value: Any) -> int:
    """How wide a width argument makes a text: a number, or the length of a text (indent takes either)."""
    return len(value) if isinstance(value, str) else int(value) if isinstance(value, (int, float)) else 0


def str_method(text: str, name: str, args: tuple, kwargs: dict) -> None:
    """Measure a call of one of the str methods that can make a text much longer than it is."""
    budget = current()
    if name in ("center", "ljust", "rjust", "zfill"):
        budget.build(max(len(text), as_width(args[0] if args else kwargs.get("width", 0))))
    elif name == "expandtabs":
        tab = args[0] if args else kwargs.get("tabsize", 8)
        budget.build(len(text) + text.count("\t") * max(as_width(tab), 0))
    elif name == "replace" and len(args) >= 2 and isinstance(args[0], str) and isinstance(args[1], str):
        found = len(text) + 1 if args[0] == "" else text.count(args[0])
        if len(args) > 2 and isinstance(args[2], int) and args[2] >= 0:
            found = min(found, args[2])
        budget.build(len(text) + found * len(args[1]))
    elif name == "translate" and args and isinstance(args[0], dict):
        longest = max((len(v) for v in args[0].values() if isinstance(v, str)), default=1)
        budget.build(len(text) * max(longest, 1))


_STR_METHODS = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs", "replace", "translate", "join"})


def call_checked(call: Callable[..., Any], obj: Any, args: tuple, kwargs: dict) -> Any:
    """Run a template's call of ``obj``: nesting counted, big texts measured first, results charged."""
    budget = current()
    budget.check_time()
    owner = getattr(obj, "__self__", None)
    if isinstance(owner, str) and getattr(obj, "__name__", None) in _STR_METHODS:
        if obj.__name__ == "join" and args:
            items = list(args[0])
            budget.build(sum(weight(i) for i in items) + len(owner) * len(items))
            args = (items, *args[1:])
        else:
            str_method(owner, obj.__name__, args, kwargs)
    budget.depth += 1
    try:
        if budget.depth > MAX_DEPTH:
            raise RenderLimitError(
                f"calls are nested more than {MAX_DEPTH} deep (a macro or a recursive loop calling itself without end?)"
            )
        result = call(obj, *args, **kwargs)
    finally:
        budget.depth -= 1
    if isinstance(result, (list, tuple, dict, set, frozenset, Namespace)):
        budget.build(weight(result), "list")
    return result
