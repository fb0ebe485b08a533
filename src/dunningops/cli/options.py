"""Options every command shares, declared once, and parameter types with sane bounds.

``@pass_app`` gives a command ``--config`` and ``--database-url`` and hands it the ``App``
built from them (and the environment); ``@format_option`` the ``--format`` choice. Numbers and
instants from the command line are bounded, so that a typo (``--limit 99999999999999999999``,
``--at 9999-12-31``) is one clear usage error instead of an overflow deep in the engine.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from dunningops import clock
from dunningops.app import App
from dunningops.errors import InvalidInputError

CONFIG_HELP = "Config directory (default: ./config, or $DUNNINGOPS_CONFIG)."
DB_HELP = "SQLAlchemy URL of the store (default: sqlite:///<repo>/.dunningops/state.db, or $DUNNINGOPS_DATABASE_URL)."

# Bounds a user would expect; beyond them the value is a typo.
MAX_LIMIT = 1_000_000
MAX_ID = 2**63 - 1  # the stores' BIGINT
MAX_DAYS = 36_500  # a hundred years

LIMIT = click.IntRange(1, MAX_LIMIT)
OFFSET = click.IntRange(0, 10**9)
ROW_ID = click.IntRange(1, MAX_ID)
DAYS = click.IntRange(0, MAX_DAYS)


class Instant(click.ParamType):
    """An ISO 8601 instant; an offset is honoured, none means UTC; years 1970–2199."""

    name = "timestamp"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            return clock.parse_instant(str(value), "value")
        except InvalidInputError as exc:
            self.fail(str(exc).removeprefix("value: "), param, ctx)


INSTANT = Instant()


def _config_option(f: Callable) -> Callable:
    return click.option(
        "--config",
        "config_dir",
        type=click.Path(file_okay=False, path_type=Path),
        default=lambda: os.environ.get("DUNNINGOPS_CONFIG", "config"),
        help=CONFIG_HELP,
    )(f)


def _database_option(f: Callable) -> Callable:
    return click.option("--database-url", envvar="DUNNINGOPS_DATABASE_URL", help=DB_HELP)(f)


def pass_app(f: Callable | None = None, *, database: bool = True) -> Callable:
    """Add ``--config`` (and ``--database-url`` unless ``database=False``) and pass the ``App`` first.

    The app is closed (its store disposed) when the command ends, whatever the outcome.
    """

    def decorate(f: Callable) -> Callable:
        @functools.wraps(f)
        def wrapper(*args: Any, config_dir: Path, database_url: str | None = None, **kwargs: Any) -> Any:
            app = App.from_env(config_dir, database_url)
            ctx = click.get_current_context()
            ctx.call_on_close(app.close)
            if isinstance(ctx.obj, dict):
                ctx.obj["app"] = app  # for the error handler: which store a driver error came from
            return f(app, *args, **kwargs)

        # Applied innermost first, so --config is listed before --database-url in --help.
        wrapped = _database_option(wrapper) if database else wrapper
        return _config_option(wrapped)

    return decorate(f) if f is not None else decorate


def format_option(*choices: str) -> Callable:
    """``--format`` with these choices, the first the default; the value arrives as ``fmt_``."""
    return click.option(
        "--format",
        "fmt_",
        type=click.Choice(list(choices)),
        default=choices[0],
        show_default=True,
        help="Output format (JSON on stdout; messages on stderr).",
    )


def address_options(f: Callable) -> Callable:
    f = click.option("--exclude", multiple=True, metavar="KIND.ID", help="Leave this object out (repeatable).")(f)
    return click.option(
        "--target", multiple=True, metavar="KIND.ID", help="Limit to this object and what it references (repeatable)."
    )(f)


MEMBER = click.option("--as", "member", envvar="DUNNINGOPS_MEMBER", help="The member doing it, e.g. alice.")
# T1: who applies or sends on demand; unset: DUNNINGOPS_ACTOR, the git author in CI, git's user.email (permissions.who_acts).
ACTOR = click.option(
    "--actor",
    "actor",
    metavar="MEMBER",
    help="Who does it: a member's id or email (default: $DUNNINGOPS_ACTOR, the commit's author in CI, git's user.email).",
)
AT = click.option("--at", "at_", type=INSTANT, metavar="TIMESTAMP", help="The instant to run at (ISO 8601; default: now).")
