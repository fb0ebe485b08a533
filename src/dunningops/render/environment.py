"""The Jinja2 environments templates run in: sandboxed, strict about undefined names.

Two environments: autoescape on (HTML bodies) and off (text bodies, subjects,
block texts, which are escaped as a whole when they go into HTML).
"""

from __future__ import annotations

from collections import ChainMap
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, Template, nodes, pass_eval_context
from jinja2.nodes import EvalContext
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError
from jinja2.utils import missing
from jinja2.visitor import NodeTransformer
from markupsafe import Markup, escape

from dunningops.render.escaping import escape_text
from dunningops.render.filters import bounded_filters
from dunningops.render.limits import (
    binop,
    bounded_range,
    call_checked,
    concat_output,
    concat_parts,
    copied,
    loop_guard,
    sized,
)
from dunningops.render.variables import Vars

# Attributes a template may not read even where the sandbox would allow them (``'{0.x}'.format``
# reaches attributes through a back door; ``mro`` lists a class's ancestors).
REFUSED_ATTRIBUTES = frozenset({"format", "format_map", "mro"})
# The filters the compiled code calls where the template wrote a loop, ``~`` or a literal (see _Bound).
_LOOP, _CONCAT, _SIZED, _COPY = "_dno_loop", "_dno_concat", "_dno_sized", "_dno_copy"


# Mappings whose items a template reads as attributes, and every attribute their type has (an
# attribute wins over an item of the same name in Jinja: those names take Jinja's way).
_MAPPINGS = (Vars, dict)
_MAPPING_ATTRIBUTES = frozenset(dir(Vars)) | frozenset(dir(dict))


class NamedUndefined(StrictUndefined):
    """StrictUndefined whose message names the variable in full: ``customer.portal_ur is undefined``."""

    __slots__ = ()

    @property
    def _undefined_message(self) -> str:
        if self._undefined_hint:
            return self._undefined_hint
        if self._undefined_obj is missing:
            return f"{self._undefined_name} is undefined"
        path = getattr(self._undefined_obj, "_path", None)
        if path and isinstance(self._undefined_name, str):
            return f"{path}.{self._undefined_name} is undefined"
        return super()._undefined_message


def _finalize(value: object) -> object:
    # Documented fields that are unknown (a contact without a name) are None: print nothing.
    return "" if value is None else value


@pass_eval_context
def invoice_list(eval_ctx: EvalContext, invoices: list) -> str:
    """@INVOICELIST@ (T7): reference, due date and outstanding amount, with the document's link."""
    if eval_ctx.autoescape:
        items = []
        for inv in invoices:
            number = escape(inv["number"])
            if inv["document_url"]:
                number = Markup('<a href="{}">{}</a>').format(inv["document_url"], inv["number"])
            items.append(
                Markup('<li style="margin:0 0 4px;">{} – {} – {}</li>').format(number, inv["due_date"], inv["outstanding"])
            )
        return Markup('<ul style="margin:0 0 16px; padding-left:20px;">') + Markup("").join(items) + Markup("</ul>")
    lines = []
    for inv in invoices:
        lines.append(f"• {inv['number']} – {inv['due_date']} – {inv['outstanding']}")
        if inv["document_url"]:
            lines.append(f"  {inv['document_url']}")
    return "\n".join(lines)


class BoundedEnvironment(ImmutableSandboxedEnvironment):
    """The sandbox, with every way a template can make something big or slow measured (limits.py)."""

    # Intercepted operators are not folded at compile time either: ``'x' * 10**8`` is never built.
    intercepted_binops = frozenset({"*", "**", "%", "+"})
    # What a template (or a macro, a block) writes is joined by this, up to MAX_OUTPUT; a class
    # attribute, as Jinja's own NativeEnvironment overrides it.
    concat = staticmethod(concat_output)

    def __init__(self, **options: Any):
        super().__init__(**options)
        # lipsum writes any amount of text and has no place in an email.
        self.globals.pop("lipsum", None)
        self.globals["range"] = bounded_range
        self.filters["invoice_list"] = invoice_list
        self.filters = bounded_filters(self.filters)
        self.filters.update({_LOOP: loop_guard, _CONCAT: concat_parts, _SIZED: sized, _COPY: copied})
        # The globals as one dict, for render(): set above, once, and never changed after.
        self.flat_globals: dict[str, Any] = dict(self.globals)

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        return binop(operator, left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        if not __self.is_safe_callable(__obj):
            raise SecurityError(f"{__obj!r} is not safely callable")
        return call_checked(__context.call, __obj, args, kwargs)

    def getattr(self, obj: Any, attribute: str) -> Any:
        """``obj.attribute`` in a template: Jinja's sandbox tries the attribute, then the item.

        A template's objects (``invoice.number``, ``customer.name``) are ``Vars`` mappings, whose
        fields are items: the attribute lookup fails and raises first, twice the price of the
        item. For a ``Vars`` or a plain dict and a name that is no attribute of its type (so
        Jinja would take the item too), the item is taken at once; anything else goes through
        the sandbox's own checks, unchanged.
        """
        if type(obj) in _MAPPINGS and attribute not in _MAPPING_ATTRIBUTES:
            try:
                return obj[attribute]
            except KeyError:
                pass  # undefined: the sandbox says so, in its words
        return super().getattr(obj, attribute)

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        return attr not in REFUSED_ATTRIBUTES and super().is_safe_attribute(obj, attr, value)

    def wrap_str_format(self, value: Any) -> None:
        return None  # str.format is refused outright (is_safe_attribute), not sandboxed


class _Bound(NodeTransformer):
    """Route loops, ``~``, slices and literal lists and mappings through the limits' filters."""

    def visit_For(self, node: nodes.For) -> nodes.Node:
        self.generic_visit(node)
        node.iter = _filter(node.iter, _LOOP)
        return node

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        self.generic_visit(node)
        return _filter(nodes.Tuple(node.nodes, "load", lineno=node.lineno), _CONCAT)

    def visit_Getitem(self, node: nodes.Getitem) -> nodes.Node:
        self.generic_visit(node)
        return _filter(node, _COPY) if isinstance(node.arg, nodes.Slice) and node.ctx == "load" else node

    def _literal(self, node: nodes.Expr) -> nodes.Node:
        self.generic_visit(node)
        return node if getattr(node, "ctx", "load") != "load" else _filter(node, _SIZED)

    visit_List = visit_Dict = visit_Tuple = _literal


def _filter(node: nodes.Node, name: str) -> nodes.Filter:
    # Any node: Jinja types ``For.iter`` as a plain ``Node``, though it is always an expression.
    return nodes.Filter(node, name, [], [], None, None, lineno=node.lineno)


@lru_cache(maxsize=2)
def environment(autoescape: bool) -> BoundedEnvironment:
    """The shared environment (autoescaping or not); built once per process."""
    return BoundedEnvironment(undefined=NamedUndefined, autoescape=autoescape, finalize=_finalize)


def compile_template(env: BoundedEnvironment, source: str, filename: str) -> Template:
    """Compile ``source``, bounded (see _Bound); ``filename`` names it in tracebacks, which is how
    errors find their line."""
    ast = _Bound().visit(env.parse(source, name=filename, filename=filename))
    ast.set_environment(env)
    code = env.compile(ast, name=filename, filename=filename)
    template = env.template_class.from_code(env, code, env.make_globals(None), None)
    # The compiled code escapes what it writes with the ``escape`` of its own module namespace, and
    # only joins the results (a block or macro then wraps the text in a Markup): escape_text gives
    # the same text without a Markup per value.
    template.root_render_func.__globals__["escape"] = escape_text
    return template


def render(template: Template, variables: dict) -> str:
    """``template.render(variables)``, without rebuilding the globals for every call.

    ``Template.render`` merges the template's globals (a ``ChainMap`` over the environment's)
    with the variables, a few µs of a reminder's subject; a template from ``compile_template``
    has no globals of its own, so the environment's, flattened once, give the same names.
    Errors get their template lines the same way (``handle_exception``).
    """
    env = template.environment
    chain = template.globals
    if not (
        isinstance(env, BoundedEnvironment)
        and isinstance(chain, ChainMap)
        and len(chain.maps) == 2
        and not chain.maps[0]
        and chain.maps[1] is env.globals
        and env.flat_globals == env.globals  # a few entries: cheap, and a global added later is not missed
    ):
        return template.render(variables)  # not one of ours: Jinja's way
    context = template.new_context({**env.flat_globals, **variables}, shared=True)
    try:
        return env.concat(template.root_render_func(context))
    except Exception:
        env.handle_exception()
