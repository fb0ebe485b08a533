"""Rendering reminders: Jinja2 (sandboxed) templates, the branded layout, blocks, locale formatting.

Imports nothing of dunningops but ``errors``. The send cycle fills an
``EmailContext`` with raw values; a ``Renderer`` built once per run formats
and renders them into a ``RenderedEmail`` (subject, HTML, plain text).
Validate-time checks (``check_template``, ``check_blocks``) live here too, so
that what validates is what renders.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dunningops.render.checks import check_blocks, check_template
    from dunningops.render.context import EmailContext, InvoiceData
    from dunningops.render.errors import RenderError
    from dunningops.render.html_text import html_to_text
    from dunningops.render.renderer import RenderedEmail, Renderer
    from dunningops.render.tags import TAGS
    from dunningops.render.variables import VARIABLES, template_vars_text

# Loaded on first use: checking one changed body at plan time needs the checker only, not the
# renderer, its layouts and Babel (start-up is most of a plan's cost).
_WHERE = {
    "check_blocks": "checks",
    "check_template": "checks",
    "EmailContext": "context",
    "InvoiceData": "context",
    "RenderError": "errors",
    "html_to_text": "html_text",
    "RenderedEmail": "renderer",
    "Renderer": "renderer",
    "TAGS": "tags",
    "VARIABLES": "variables",
    "template_vars_text": "variables",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "TAGS",
    "VARIABLES",
    "EmailContext",
    "InvoiceData",
    "RenderError",
    "RenderedEmail",
    "Renderer",
    "check_blocks",
    "check_template",
    "html_to_text",
    "template_vars_text",
]
