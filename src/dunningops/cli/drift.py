"""`dunningops drift`: what changed in the store outside apply. Thin."""

from __future__ import annotations

import click

from dunningops.app import App
from dunningops.cli.main import cli
from dunningops.cli.options import format_option, pass_app
from dunningops.cli.output import EXIT_CHANGES, finish


@cli.command()
@pass_app
@format_option("text", "markdown", "json")
@click.option("--detailed-exitcode", is_flag=True, help="Exit 0 when there is no drift, 2 when there is, 1 on error.")
def drift(app: App, fmt_: str, detailed_exitcode: bool) -> None:
    """Show what changed in the store outside apply since the last apply.

    A row edited, created or deleted by hand (or by a migration) shows as a
    change, in the words of `plan`. Verification, send times and other values
    the store keeps for itself are not drift. Run it on a schedule with
    --detailed-exitcode; `dunningops apply` puts the config back.
    """
    from dunningops.reconcile.drift import RENDERERS, find_drift

    with app.session() as session:
        result = find_drift(session)
    click.echo(RENDERERS[fmt_](result), nl=False)
    finish(code=EXIT_CHANGES if detailed_exitcode and not result.empty else 0)
