"""The built-in filters, bounded: each one looks at the clock and is charged what it returns; the
ones that can return far more than they are given (``center``, ``indent``, ``format``, ``join``,
``replace``, ``batch``, …) are measured before they run. See limits.py.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from time import monotonic
from typing import Any

from jinja2 import filters as jf
from jinja2 import pass_environment, pass_eval_context
from markupsafe import soft_str

from dunningops.render.limits import MAX_SIZE, MAX_TOTAL, as_width, check_percent, current, str_method, weight


def _timed(f: Callable) -> Callable:
    """A filter that looks at the clock first, and charges the text or list it returns."""

    @functools.wraps(f)
    def timed(*args: Any, **kwargs: Any) -> Any:
        budget = current()
        if monotonic() > budget.deadline:
            budget.check_time()
        result = f(*args, **kwargs)
        if isinstance(result, (str, list, tuple, dict)):
            size = len(result)
            budget.built += size
            if size > MAX_SIZE or budget.built > MAX_TOTAL:
                budget.built -= size
                budget.build(size, "text" if isinstance(result, str) else "list")
        return result

    return timed


def _center(value: Any, width: int = 80) -> str:
    current().build(max(len(soft_str(value)), as_width(width)))
    return jf.do_center(value, width)


def _indent(s: Any, width: int | str = 4, first: bool = False, blank: bool = False) -> str:
    text = soft_str(s)
    current().build(len(text) + (text.count("\n") + 2) * max(as_width(width), 0))
    return jf.do_indent(s, width, first, blank)


def _format(value: Any, *args: Any, **kwargs: Any) -> str:
    check_percent(soft_str(value), kwargs or args)
    return jf.do_format(value, *args, **kwargs)


@pass_eval_context
def _replace(eval_ctx: Any, s: Any, old: Any, new: Any, count: int | None = None) -> str:
    str_method(soft_str(s), "replace", (soft_str(old), soft_str(new), -1 if count is None else count), {})
    return jf.do_replace(eval_ctx, s, old, new, count)


@pass_eval_context
def _join(eval_ctx: Any, value: Iterable, d: str = "", attribute: str | int | None = None) -> str:
    items = list(value)
    if attribute is not None:
        items = list(map(jf.make_attrgetter(eval_ctx.environment, attribute), items))
    current().build(sum(weight(i) for i in items) + len(soft_str(d)) * len(items))
    return jf.sync_do_join(eval_ctx, items, d)


@pass_environment
def _wordwrap(
    env: Any, s: str, width: int = 79, break_long_words: bool = True, wrapstring: str | None = None, break_on_hyphens: bool = True
) -> str:
    text = soft_str(s)
    joint = len(wrapstring) if isinstance(wrapstring, str) else 1
    current().build(len(text) + (len(text) // max(as_width(width), 1) + text.count("\n") + 1) * joint)
    return jf.do_wordwrap(env, s, width, break_long_words, wrapstring, break_on_hyphens)


@pass_eval_context
def _urlize(
    eval_ctx: Any,
    value: str,
    trim_url_limit: int | None = None,
    nofollow: bool = False,
    target: str | None = None,
    rel: str | None = None,
    extra_schemes: Iterable[str] | None = None,
) -> str:
    text = soft_str(value)
    extra = len(soft_str(target or "")) + len(soft_str(rel or "")) + 40
    current().build(3 * len(text) + (len(text) // 4 + 1) * extra)
    return jf.do_urlize(eval_ctx, value, trim_url_limit, nofollow, target, rel, extra_schemes)


def _batch(value: Iterable, linecount: int, fill_with: Any = None) -> Any:
    items = list(value)
    current().build(len(items) + (max(int(linecount), 0) * weight(fill_with) if fill_with is not None else 0), "list")
    return list(jf.do_batch(items, linecount, fill_with))


def _slice(value: Iterable, slices: int, fill_with: Any = None) -> Any:
    items = list(value)
    fill = weight(fill_with) if fill_with is not None else 0
    current().build(len(items) + max(int(slices), 0) * (1 + fill), "list")
    return list(jf.sync_do_slice(items, slices, fill_with))


@pass_environment
def _sum(env: Any, iterable: Iterable, attribute: str | int | None = None, start: Any = 0) -> Any:
    items = list(iterable)
    if attribute is not None:
        items = list(map(jf.make_attrgetter(env, attribute), items))
    if not all(isinstance(i, (int, float)) for i in (start, *items)):  # adding lists copies them over and over
        current().build((weight(start) + sum(weight(i) for i in items)) * max(len(items), 1) // 2, "list")
    return sum(items, start)


@pass_eval_context
def _tojson(eval_ctx: Any, value: Any, indent: int | None = None) -> Any:
    current().build(weight(value) * (6 + max(as_width(indent or 0), 0)))
    return jf.do_tojson(eval_ctx, value, indent)


def _pprint(value: Any) -> str:
    current().build(weight(value) * 6)
    return jf.do_pprint(value)


# Filters that can make much more than they are given: measured before they run.
_BOUNDED: dict[str, Callable] = {
    "center": _center,
    "indent": _indent,
    "format": _format,
    "replace": _replace,
    "join": _join,
    "wordwrap": _wordwrap,
    "urlize": _urlize,
    "batch": _batch,
    "slice": _slice,
    "sum": _sum,
    "tojson": _tojson,
    "pprint": _pprint,
}


# Filters that answer a number, or one of the objects they are given, at once: left as they are
# (``length`` and ``default`` are in most templates).
_AS_IS = frozenset({"length", "count", "default", "d", "first", "attr", "abs", "int", "float", "round"})


def bounded_filters(filters: dict[str, Callable]) -> dict[str, Callable]:
    """``filters`` with each one timed and charged, the ones that amplify measured first."""
    return {name: f if name in _AS_IS else _timed(_BOUNDED.get(name, f)) for name, f in filters.items()}
