"""The sticky comment's body: a hidden marker, the summary first, cut below GitHub's limit.

GitHub refuses an issue comment over 65,536 characters, and a job summary over 1 MiB. A plan
that does not fit is cut at a line, its open code block and folded section are closed (so the
rest of the page still renders), and a last line points to where the whole plan is.
"""

from __future__ import annotations

import re

COMMENT_LIMIT = 65_536  # characters, GitHub's limit on an issue comment's body
SUMMARY_LIMIT = 1024 * 1024  # bytes, GitHub's limit on one step's job summary
DEFAULT_MARKER = "dunningops-plan"
MARKER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# Room kept under a limit for the closing of open blocks and the pointer line.
ROOM = 600


def marker_comment(name: str) -> str:
    """``<!-- name -->``: invisible on the page, found again on the next push."""
    return f"<!-- {name} -->"


def check_marker(name: str) -> str:
    if not MARKER_NAME.match(name):
        raise ValueError("letters, digits, '.', '_' or '-', at most 64, starting with a letter or digit")
    return name


def errors_markdown(errors: str) -> str:
    """What `validate` printed, when the config has errors: the plan is then not run."""
    text = errors.strip().removeprefix("Error: ")
    fence = "````" if "```" in text else "```"
    headline = "The config is not valid: the plan was not run." if "in the config" in text else "The plan could not be made."
    return "\n".join(
        [
            "### dunningops plan",
            "",
            f"**{headline}**",
            "",
            fence,
            text,
            fence,
            "",
        ]
    )


def _closings(kept: str) -> list[str]:
    """The lines that close what ``kept`` leaves open: a code fence, folded sections."""
    lines: list[str] = []
    if sum(1 for line in kept.splitlines() if line.lstrip().startswith("```")) % 2:
        lines.append("```")
    lines.extend(["</details>"] * max(0, kept.count("<details>") - kept.count("</details>")))
    return lines


def cut(text: str, limit: int, pointer: str, *, size=len) -> str:
    """``text`` if it fits in ``limit`` (as measured by ``size``), else its first lines and ``pointer``."""
    if size(text) <= limit:
        return text
    budget = limit - size(pointer) - ROOM
    kept: list[str] = []
    used = 0
    for line in text.splitlines(keepends=True):
        if used + size(line) > budget:
            break
        kept.append(line)
        used += size(line)
    head = "".join(kept)
    if not kept and budget > 0:  # one enormous line: cut inside it rather than show nothing
        head = text[: max(0, budget)]
        while size(head) > budget:
            head = head[: len(head) - max(1, (size(head) - budget) // 4)]
    return "\n".join([head.rstrip("\n"), *_closings(head), "", pointer, ""])


def comment_body(content: str, *, marker: str = DEFAULT_MARKER, run_url: str | None = None) -> str:
    """The whole comment: the marker, then ``content`` (whose summary comes first), cut to fit."""
    where = f"the [job summary]({run_url})" if run_url else "this run's job summary"
    pointer = f"_The plan is too long for a comment and is cut here: the whole plan is in {where}._"
    head = marker_comment(marker) + "\n"
    return head + cut(content if content.endswith("\n") else content + "\n", COMMENT_LIMIT - len(head), pointer)


def summary_text(content: str, already: int = 0) -> str:
    """``content`` cut to fit the job summary's 1 MiB, of which ``already`` bytes are used."""
    pointer = "_The plan is too long for the job summary and is cut here: run `dunningops plan` for the whole plan._"
    limit = max(0, SUMMARY_LIMIT - already)
    text = content if content.endswith("\n") else content + "\n"
    return cut(text, limit, pointer, size=lambda s: len(s.encode("utf-8")))
