"""What commands print: aligned tables, JSON, and the exit-code contract every format shares."""

from __future__ import annotations

import json
from typing import Any

import click

# One contract for every command and every --format (documented in `dunningops --help`).
EXIT_OK = 0
EXIT_ERROR = 1  # an error, or work that finished with some part failed (e.g. reminders that did not render)
EXIT_CHANGES = 2  # plan --detailed-exitcode: there are changes
EXIT_UNAVAILABLE = 3  # a server the work needs (store, SMTP) cannot be used


def render_table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> str:
    """Plain aligned columns: readable in a terminal, stable in logs and snapshots."""
    if not rows:
        return "(none)\n"
    cells = [[title for _, title in columns]] + [["" if r.get(k) is None else str(r[k]) for k, _ in columns] for r in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in cells) + "\n"


def to_json(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n"


def echo_json(data: Any) -> None:
    click.echo(to_json(data), nl=False)


def finish(errors: list[str] | tuple[str, ...] = (), code: int | None = None) -> None:
    """End a command by the contract: errors go to stderr, one line each, and set exit 1 (or ``code``)."""
    for error in errors:
        click.echo(f"Error: {error}", err=True)
    if code is None:
        code = EXIT_ERROR if errors else EXIT_OK
    if code:
        click.get_current_context().exit(code)


def more_line(shown: int, total: int, what: str = "rows") -> str | None:
    """Never truncate silently: say how many were left out, and how to see them."""
    if total <= shown:
        return None
    return f"… and {total - shown:,} more {what} not shown (of {total:,}; use --limit and --offset)."
