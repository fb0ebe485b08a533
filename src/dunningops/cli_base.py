"""What every command module shares: the `cli` group, common options, opening the store, tables.

The command modules (cli.py, cli_ledger.py, cli_cycle.py, cli_templates.py) import this module
and never each other, so any of them can be imported first.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from dunningops import __version__
from dunningops.errors import DunningOpsError

if TYPE_CHECKING:  # the store's modules load only when a command needs them (start-up time)
    from sqlalchemy.orm import Session

    from dunningops.store import Store

CONFIG_HELP = "Config directory (default: ./config, or $DUNNINGOPS_CONFIG)."
DB_HELP = "SQLAlchemy URL of the store (default: sqlite:///<repo>/.dunningops/state.db, or $DUNNINGOPS_DATABASE_URL)."


class Cli(click.Group):
    """Turns DunningOpsError into one clear message and exit code; --debug keeps the traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except DunningOpsError as exc:
            if (ctx.obj or {}).get("debug"):
                raise
            click.echo(f"Error: {exc}", err=True)
            ctx.exit(exc.exit_code)


def config_option(f):
    return click.option(
        "--config", "config_dir", type=click.Path(file_okay=False, path_type=Path),
        default=lambda: os.environ.get("DUNNINGOPS_CONFIG", "config"), help=CONFIG_HELP,
    )(f)


def database_option(f):
    return click.option("--database-url", envvar="DUNNINGOPS_DATABASE_URL", help=DB_HELP)(f)


def address_options(f):
    f = click.option("--exclude", multiple=True, metavar="KIND.ID", help="Leave this object out (repeatable).")(f)
    return click.option("--target", multiple=True, metavar="KIND.ID", help="Limit to this object and what it references (repeatable).")(f)


@click.group(cls=Cli, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--debug", is_flag=True, envvar="DUNNINGOPS_DEBUG", help="Show tracebacks of errors.")
@click.version_option(__version__, prog_name="dunningops")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """dunningops: dunning configuration as code.

    Keep sender aliases, contact functions, dunning plans and email templates as
    YAML in git; `plan` shows what would change in the store, `apply` makes it so.
    """
    ctx.obj = {"debug": debug}


@contextmanager
def _store(config_dir: Path, database_url: str | None) -> Iterator[Store]:
    """The store for this config (its URL from the option, the environment or the default), closed after."""
    from dunningops.store import open_store
    from dunningops.store.engine import url_from_env_or_default

    store = open_store(url_from_env_or_default(database_url, config_dir))
    try:
        yield store
    finally:
        store.dispose()


@contextmanager
def _session(config_dir: Path, database_url: str | None) -> Iterator[Session]:
    """One transaction on the store, for commands that read or change a few rows."""
    with _store(config_dir, database_url) as store, store.session() as session:
        yield session


def render_table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> str:
    """Plain aligned columns: readable in a terminal, stable in logs and snapshots."""
    if not rows:
        return "(none)\n"
    cells = [[title for _, title in columns]] + [["" if r.get(k) is None else str(r[k]) for k, _ in columns] for r in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in cells) + "\n"


def to_json(data: Any) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n"


def transport_factory(config_dir: Path):
    """The transport named in settings.sending.transport; relative paths are relative to the repo root."""
    from dunningops.store.engine import repo_root_of
    from dunningops.transport.base import open_transport

    return lambda config: open_transport(config.settings.sending.transport, repo_root_of(config_dir), os.environ)
