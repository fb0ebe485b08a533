"""`forecast`: what the send cycle will do over the next days with the applied config. Thin."""

from __future__ import annotations

import click

from dunningops.app import App
from dunningops.cli.main import cli
from dunningops.cli.options import AT, format_option, pass_app

# forecast.simulate's DEFAULT_DAYS and MAX_DAYS, not imported here: that loads the whole engine
# for every command's start (tests/test_forecast_output.py checks they agree).
DEFAULT_DAYS = 30
FORECAST_DAYS = click.IntRange(1, 366)


def days_option(help_text: str):
    return click.option("--days", type=FORECAST_DAYS, default=DEFAULT_DAYS, show_default=True, metavar="N", help=help_text)


@cli.command("forecast")
@pass_app
@days_option("Days to simulate, from the day of --at.")
@AT
@format_option("text", "markdown", "json")
def forecast_command(app: App, days: int, at_, fmt_) -> None:
    """Show what the send cycle will do with the applied config, day by day.

    Simulates the send cycles the daemon runs (every settings.daemon.send_every_minutes
    inside the sending window, on working days) and writes nothing: the reminders and
    to-dos of each day, what the caps hold back, and the totals by plan and step. It
    assumes that no payment arrives and that nobody replies or acts on the to-dos.
    """
    from dunningops.forecast.render import FORECAST_RENDERERS
    from dunningops.forecast.run import forecast

    result = forecast(app.store, at=at_ or app.now(), days=days)
    click.echo(FORECAST_RENDERERS[fmt_](result), nl=False)
