"""The Renderer: built once per run from the applied templates; renders one email per call.

Each (template, language) is compiled on first use and kept: per message,
only the variables are built and the compiled code runs (nothing re-parsed).
"""

from __future__ import annotations

import re
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

from jinja2 import Template, TemplateError, TemplateSyntaxError, UndefinedError
from jinja2.sandbox import SecurityError

from dunningops.render import limits
from dunningops.render.blocks import BlockError, CompiledBlock, constant_field, parse_blocks, render_blocks
from dunningops.render.context import EmailContext, by_fields
from dunningops.render.environment import compile_template, environment, render
from dunningops.render.errors import RenderError
from dunningops.render.html_text import html_to_text
from dunningops.render.labels import labels
from dunningops.render.layout import Shell, brand_colour, shell, text_to_html
from dunningops.render.tags import expand_tags
from dunningops.render.variables import template_vars

__all__ = ["RenderError", "RenderRequest", "RenderedEmail", "Renderer"]

_UNDEFINED = re.compile(r"^(\S+) is undefined$")
_LINE_SPACE = re.compile(r"[ \t\r\n\f\v]+")  # not no-break spaces: "1 200,00 €" stays in one piece
# What a template's own mistakes raise at render time (beyond Jinja's errors): a RenderError, not a crash.
# RecursionError and MemoryError too: the limits stop a template long before them, but whatever
# it does, a template ends in a RenderError, never in a traceback.
_TEMPLATE_BUGS = (TemplateError, BlockError, TypeError, ValueError, ArithmeticError, LookupError, RecursionError, MemoryError)
_TOO_DEEP = "the template nests too deeply (a macro or a recursive loop calling itself without end?)"
_TOO_DEEP_SYNTAX = "expressions are nested too deeply"


RenderRequest = tuple[str, str, EmailContext]  # (template_id, language, ctx)


@dataclass(frozen=True, slots=True)
class RenderedEmail:
    subject: str
    html: str
    text: str

    def __reduce__(self):
        return by_fields(self)  # the render worker's answers


@dataclass(frozen=True)
class _Compiled:
    template: str
    language: str
    design: str
    subject: Template
    body: Template | None  # text and html designs
    blocks: tuple[CompiledBlock, ...]  # blocks design
    shell: Shell | None  # text and blocks designs: the branded layout


class Renderer:
    """Renders the templates of one run.

    Args:
        templates: the store's shape, ``{template_id: {"name", "design",
            "locales": {language: {"subject", "body", "body_file"}}}}``.
        company: the company settings (name, logo_url, brand_color, …) the layout is built from.
        plain_text: build the plain-text alternative of html designs (off where only the outcome counts).
    """

    def __init__(self, templates: dict[str, dict], company: dict, *, plain_text: bool = True):
        self._plain_text = plain_text  # False: html designs get no plain-text alternative (previews of outcomes)
        self._templates = templates
        self._company = company
        self._brand = brand_colour(company)
        self._compiled: dict[tuple[str, str], _Compiled | RenderError] = {}
        self._shells: dict[str, Shell] = {}

    def render(self, template_id: str, language: str, ctx: EmailContext) -> RenderedEmail:
        """The email ``template_id`` in ``language`` for ``ctx``; RenderError if anything is missing,
        or if the template goes past one of the limits (time, size, loops, nesting: limits.py)."""
        previous = limits.begin()
        try:
            c = self.compiled(template_id, language)
            tvars = template_vars(ctx)
            subject = _LINE_SPACE.sub(" ", self._run(c, c.subject, tvars, "subject")).strip(" ")
            if c.design == "text":
                assert c.body is not None and c.shell is not None  # _compile sets both for this design
                text = self._run(c, c.body, tvars, "body").strip() + "\n"
                html = c.shell.wrap(subject, text_to_html(text))
            elif c.design == "html":
                assert c.body is not None  # _compile sets it for this design
                html = self._run(c, c.body, tvars, "body")
                text = html_to_text(html) if self._plain_text else ""
            else:
                assert c.shell is not None  # _compile sets it for the blocks design
                words = labels(language)
                try:
                    content, text = render_blocks(c.blocks, tvars, words, self._brand, self._company.get("name") or "")
                except _TEMPLATE_BUGS as exc:
                    raise self._error(c, exc, "body") from exc
                html = c.shell.wrap(subject, content)
        finally:
            limits.end(previous)
        return RenderedEmail(subject, html, text)

    def render_many(self, requests: Sequence[RenderRequest]) -> list[RenderedEmail | RenderError]:
        """Each ``(template_id, language, ctx)`` rendered, or its RenderError, in order (the send
        cycle's batches; a subclass may render them elsewhere)."""
        out: list[RenderedEmail | RenderError] = []
        for template_id, language, ctx in requests:
            try:
                out.append(self.render(template_id, language, ctx))
            except RenderError as exc:
                out.append(exc)
        return out

    def compiled(self, template_id: str, language: str) -> _Compiled:
        """Compile (once) and return ``template_id`` in ``language``; RenderError if it cannot be."""
        key = (template_id, language)
        found = self._compiled.get(key)
        if found is None:
            try:
                found = self._compile(template_id, language)
            except RenderError as exc:
                found = exc
            self._compiled[key] = found
        if isinstance(found, RenderError):
            raise found
        return found

    def _compile(self, template_id: str, language: str) -> _Compiled:
        template = self._templates.get(template_id)
        if template is None:
            raise RenderError(f"no template {template_id!r}")
        locales = template.get("locales") or {}
        if language not in locales:
            raise RenderError(f"no {language!r} version (it has: {', '.join(sorted(locales)) or 'none'})", template=template_id)
        design = template.get("design", "text")
        loc = locales[language]

        def compile_part(source: str, part: str, autoescape: bool, line: int | None = None) -> Template:
            expanded, problems = expand_tags(source)
            if problems:
                raise RenderError(problems[0][1], template=template_id, language=language, part=part, line=line or problems[0][0])
            try:
                return compile_template(environment(autoescape), expanded, f"<{template_id}:{language}:{part}>")
            except TemplateSyntaxError as exc:
                raise RenderError(
                    f"template syntax: {exc.message}", template=template_id, language=language, part=part, line=line or exc.lineno
                ) from exc
            except RecursionError:
                raise RenderError(
                    f"template syntax: {_TOO_DEEP_SYNTAX}", template=template_id, language=language, part=part, line=line
                ) from None

        subject = compile_part(loc.get("subject") or "", "subject", False)
        body: Template | None = None
        blocks: tuple[CompiledBlock, ...] = ()
        layout: Shell | None = None
        if design in ("text", "blocks"):
            layout = self._shells.get(language) or self._shells.setdefault(language, shell(self._company, language))
        if design == "blocks":
            raw, problems = parse_blocks(loc.get("body") or "")
            if problems:
                line, message = problems[0]
                raise RenderError(message, template=template_id, language=language, part="body", line=line)
            blocks = tuple(
                CompiledBlock(
                    block.type,
                    {
                        # Every field is text here: parse_blocks reported any that is not (raised above).
                        key: constant_field(
                            cast(str, value),
                            compile_part(cast(str, value), f"block {block.index} {key}", False, block.lines.get(key, block.line)),
                        )
                        for key, value in block.fields.items()
                    },
                    block.line,
                    block.lines,
                )
                for block in raw
            )
        elif design in ("text", "html"):
            body = compile_part(loc.get("body") or "", "body", design == "html")
        else:
            raise RenderError(f"unknown design {design!r}", template=template_id, language=language)
        return _Compiled(template_id, language, design, subject, body, blocks, layout)

    def _run(self, c: _Compiled, template: Template, tvars: dict, part: str) -> str:
        try:
            return render(template, tvars)
        except _TEMPLATE_BUGS as exc:
            raise self._error(c, exc, part) from exc

    @staticmethod
    def _error(c: _Compiled, exc: BaseException, rendering: str | None = None) -> RenderError:
        if isinstance(exc, RecursionError):  # past MAX_DEPTH's Python frames: one line, not 1,000 frames
            return RenderError(f"stopped: {_TOO_DEEP}", template=c.template, language=c.language, part=rendering)
        # Jinja rewrites tracebacks so that a template's own frames carry its name and line.
        part, line = None, None
        for frame, lineno in traceback.walk_tb(exc.__traceback__):
            name = frame.f_code.co_filename
            if name.startswith(f"<{c.template}:{c.language}:"):
                part, line = name[len(c.template) + len(c.language) + 3 : -1], lineno
        if part and part.startswith("block "):  # a block's field: point at its line in the body file
            _, index, key = part.split()
            block = c.blocks[int(index) - 1]
            part, line = f"body ({part})", block.lines.get(key, block.line)
        elif isinstance(exc, BlockError):
            part, line = "body", c.blocks[exc.block - 1].line
        part = part or rendering
        message, variable = str(exc), None
        if isinstance(exc, limits.RenderLimitError):
            message = f"stopped: {message}"
        elif isinstance(exc, MemoryError):
            message = "stopped: the template needs more memory than there is"
        elif isinstance(exc, UndefinedError) and not isinstance(exc, SecurityError):
            match = _UNDEFINED.match(message)
            variable = match.group(1) if match else None
            message += " (the email is not sent with a hole in it)"
        elif isinstance(exc, SecurityError):
            message = f"not allowed in a template: {message}"
        elif not isinstance(exc, (TemplateError, BlockError)):
            message = f"{type(exc).__name__}: {message}"
        return RenderError(message, template=c.template, language=c.language, part=part, line=line, variable=variable)
