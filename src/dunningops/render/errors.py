"""RenderError: a template cannot be compiled or rendered; the reminder is not sent."""

from __future__ import annotations

from dunningops.errors import DunningOpsError


class RenderError(DunningOpsError):
    """A template failed to compile or render; names the template, the language and, when known,
    the variable and the line."""

    def __init__(
        self,
        message: str,
        *,
        template: str | None = None,
        language: str | None = None,
        part: str | None = None,
        line: int | None = None,
        variable: str | None = None,
    ):
        self.template, self.language, self.part, self.line, self.variable = template, language, part, line, variable
        self._message = message
        where = ""
        if template:
            where = f"template {template!r}" + (f" ({language})" if language else "")
            if part:
                where += f", {part}" + (f" line {line}" if line else "")
            where += ": "
        super().__init__(where + message)

    def __reduce__(self):
        # Across processes (the send cycle's render worker) with its fields, not only its text.
        fields = {"template": self.template, "language": self.language, "part": self.part, "line": self.line}
        return _restore, (self._message, fields, self.variable)


def _restore(message: str, fields: dict, variable: str | None) -> RenderError:
    return RenderError(message, variable=variable, **fields)
