"""The `dunningops` group: one clear line per error, one exit-code contract, `--debug`."""

from __future__ import annotations

import gc
import os
import sys

import click

from dunningops import __version__
from dunningops.cli.output import EXIT_ERROR, EXIT_UNAVAILABLE
from dunningops.errors import DunningOpsError


class Cli(click.Group):
    """Turns every error into one clear message and the exit code of its kind.

    * ``DunningOpsError``: its message and its kind's exit code (errors.py);
    * usage errors (a wrong option or argument): click's message, exit 1 like any error, so that
      exit 2 means only "changes present" (``plan --detailed-exitcode``), as in Terraform;
    * a store that fails under us (locked, gone): one line, exit 3;
    * anything else is a bug: one line saying so; ``--debug`` (or ``DUNNINGOPS_DEBUG=1``) shows
      the traceback of any of them.
    """

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.Abort:
            click.echo("Aborted.", err=True)
            code = EXIT_ERROR
        except click.ClickException as exc:
            exc.show()
            code = EXIT_ERROR
        if not standalone_mode:
            return code
        sys.exit(code if isinstance(code, int) else 0)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.exceptions.Abort):
            raise
        except DunningOpsError as exc:
            self._fail(ctx, exc, str(exc), exc.exit_code)
        except BrokenPipeError:
            # The reader of stdout went away (`dunningops plan | head`): no one is left to tell, and the
            # interpreter's flush at exit must not fail again on the closed pipe. Exit 1: output was lost.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            ctx.exit(EXIT_ERROR)
        except Exception as exc:
            from sqlalchemy.exc import DBAPIError

            if isinstance(exc, DBAPIError):
                from dunningops.store.engine import store_error

                app = (ctx.obj or {}).get("app")
                known = store_error(app.url if app is not None else "", exc)
                if known is not None:
                    self._fail(ctx, exc, str(known), known.exit_code)
                reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
                self._fail(ctx, exc, f"the store failed: {reason}", EXIT_UNAVAILABLE)
            self._fail(
                ctx,
                exc,
                f"unexpected {type(exc).__name__}: {exc} (a bug: run with --debug for the traceback and report it)",
                EXIT_ERROR,
            )

    @staticmethod
    def _fail(ctx: click.Context, exc: BaseException, message: str, code: int) -> None:
        if (ctx.obj or {}).get("debug"):
            raise exc
        click.echo(f"Error: {message}", err=True)
        ctx.exit(code)


@click.group(cls=Cli, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--debug", is_flag=True, envvar="DUNNINGOPS_DEBUG", help="Show tracebacks of errors.")
@click.version_option(__version__, prog_name="dunningops")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """dunningops: dunning configuration as code.

    Keep sender aliases, contact functions, dunning plans and email templates as
    YAML in git; `plan` shows what would change in the store, `apply` makes it so.

    Exit codes: 0 done, 1 error (also when part of the work failed), 2 changes
    present (`plan --detailed-exitcode`), 3 a server (store, SMTP) unavailable,
    4 an impact gate exceeded (`plan --max-added`, `--max-moved-earlier`).
    """
    ctx.obj = {"debug": debug}


def main() -> None:
    # A short-lived CLI: collect garbage less often, and skip the full collection at exit
    # (1.5 s of a 10,000-object plan was the interpreter freeing its objects one by one).
    gc.set_threshold(50_000, 20, 20)
    try:
        cli(prog_name="dunningops")
    finally:
        gc.freeze()
