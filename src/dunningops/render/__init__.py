"""Rendering reminders: Jinja2 (sandboxed) templates, the branded layout, blocks, locale formatting.

Imports nothing of dunningops but ``errors``. The send cycle fills an
``EmailContext`` with raw values; a ``Renderer`` built once per run formats
and renders them into a ``RenderedEmail`` (subject, HTML, plain text).
Validate-time checks (``check_template``, ``check_blocks``) live here too, so
that what validates is what renders.
"""

from dunningops.render.checks import check_blocks, check_template
from dunningops.render.context import EmailContext, InvoiceData
from dunningops.render.errors import RenderError
from dunningops.render.html_text import html_to_text
from dunningops.render.renderer import RenderedEmail, Renderer
from dunningops.render.tags import TAGS
from dunningops.render.variables import VARIABLES, template_vars_text

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
