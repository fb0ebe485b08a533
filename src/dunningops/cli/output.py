"""What commands print: aligned tables (tables.py), JSON, and the exit-code contract every format shares."""

from __future__ import annotations

import json
from typing import Any

import click

from dunningops.tables import DECISION_COLUMNS, render_table

__all__ = [
    "DECISION_COLUMNS",
    "EXIT_CHANGES",
    "EXIT_ERROR",
    "EXIT_IMPACT_GATE",
    "EXIT_OK",
    "EXIT_UNAVAILABLE",
    "echo_json",
    "finish",
    "more_line",
    "render_table",
    "to_json",
]

# One contract for every command and every --format (documented in `dunningops --help`).
EXIT_OK = 0
EXIT_ERROR = 1  # an error, or work that finished with some part failed (e.g. reminders that did not render)
EXIT_CHANGES = 2  # plan --detailed-exitcode: there are changes
EXIT_UNAVAILABLE = 3  # a server the work needs (store, SMTP) cannot be used
EXIT_IMPACT_GATE = 4  # plan --max-added / --max-moved-earlier: the change does more to customers than allowed


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
