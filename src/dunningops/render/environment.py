"""The Jinja2 environments templates run in: sandboxed, strict about undefined names.

Two environments: autoescape on (HTML bodies) and off (text bodies, subjects,
block texts, which are escaped as a whole when they go into HTML).
"""

from __future__ import annotations

from functools import lru_cache

from jinja2 import StrictUndefined, Template, pass_eval_context
from jinja2.nodes import EvalContext
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import missing
from markupsafe import Markup, escape


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
            items.append(Markup('<li style="margin:0 0 4px;">{} – {} – {}</li>').format(number, inv["due_date"], inv["outstanding"]))
        return Markup('<ul style="margin:0 0 16px; padding-left:20px;">') + Markup("").join(items) + Markup("</ul>")
    lines = []
    for inv in invoices:
        lines.append(f"• {inv['number']} – {inv['due_date']} – {inv['outstanding']}")
        if inv["document_url"]:
            lines.append(f"  {inv['document_url']}")
    return "\n".join(lines)


@lru_cache(maxsize=2)
def environment(autoescape: bool) -> ImmutableSandboxedEnvironment:
    """The shared environment (autoescaping or not); built once per process."""
    env = ImmutableSandboxedEnvironment(undefined=NamedUndefined, autoescape=autoescape, finalize=_finalize)
    env.filters["invoice_list"] = invoice_list
    return env


def compile_template(env: ImmutableSandboxedEnvironment, source: str, filename: str) -> Template:
    """Compile ``source``; ``filename`` names it in tracebacks, which is how errors find their line."""
    code = env.compile(source, name=filename, filename=filename)
    return env.template_class.from_code(env, code, env.make_globals(None), None)
