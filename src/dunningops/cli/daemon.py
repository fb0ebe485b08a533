"""`dunningops daemon`: the cycles on a schedule, one HTTP server, structured logs. Thin."""

from __future__ import annotations

import click

from dunningops.app import App
from dunningops.cli.main import cli
from dunningops.cli.options import pass_app


@cli.command()
@pass_app
@click.option("--host", metavar="ADDRESS", help="Listen on this address (default: settings.daemon.host, 127.0.0.1).")
@click.option("--port", type=click.IntRange(1, 65535), help="Listen on this port (default: settings.daemon.port, 8780).")
@click.option("--once", is_flag=True, help="Run each cycle that is due now once, then exit (no HTTP server).")
@click.pass_context
def daemon(ctx: click.Context, app: App, host, port, once) -> None:
    """Run the cycles on a schedule, with the console, the API and /metrics on one port.

    The import cycle runs every settings.daemon.import_every_minutes; the send cycle every
    send_every_minutes, inside the sending window only. A config applied meanwhile is used by the
    next cycle. SIGTERM or Ctrl+C stops after the emails being sent; nothing is sent twice after a
    restart. Logs go to stderr: JSON lines, or readable text on a terminal.
    """
    from dunningops.daemon.serve import run_daemon

    ctx.exit(run_daemon(app, host=host, port=port, once=once))
