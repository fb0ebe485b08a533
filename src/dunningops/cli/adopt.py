"""`dunningops import-config DIR`: adopt a store's applied state as config as code. Thin."""

from __future__ import annotations

from pathlib import Path

import click

from dunningops.app import App
from dunningops.cli.main import cli
from dunningops.cli.options import pass_app


@cli.command("import-config")
@pass_app
@click.argument("directory", metavar="DIR", type=click.Path(file_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Replace DIR if it is not empty (its current contents are deleted).")
def import_config(app: App, directory: Path, force: bool) -> None:
    """Write the store's applied config to YAML files in DIR, to keep it as code from now on.

    For a store set up by hand or by an older version: the files load with
    `dunningops validate`, and `dunningops plan --config DIR` shows no changes.
    Each template body gets a file of its own; what only the store knows
    (alias verification, when each alias or template last sent) is not written.
    DIR must be new or empty; it is written completely or not at all.
    """
    from dunningops.reconcile.adopt import adopt_store, safe_url

    result = adopt_store(app.store, directory, force=force)
    click.echo(f"Wrote {len(result.files)} files to {directory} from the store at {safe_url(app.url)}.")
    if result.changes:
        click.echo(
            f"Some stored values cannot be said exactly in this version's config: `dunningops plan --config {directory}` "
            f"shows {len(result.changes)} change(s) ({', '.join(result.changes)}); applying them settles the store.",
            err=True,
        )
    else:
        click.echo(f"`dunningops plan --config {directory}` shows no changes.")
