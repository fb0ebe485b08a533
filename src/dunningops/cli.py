"""The command line: parse arguments, call one function, print. Nothing here a test needs to reach."""

from __future__ import annotations

import gc
import json
import sys
from pathlib import Path

import click

from dunningops import clock
from dunningops.cli_base import _session, _store, address_options, cli, config_option, database_option

@cli.command()
@config_option
def validate(config_dir: Path) -> None:
    """Check the config: every error with its file:line, all at once (exit 1 on errors)."""
    from dunningops.spec import load_config

    state = load_config(config_dir)
    click.echo(
        f"The config in {config_dir} is valid: {len(state.members)} members, {len(state.aliases)} aliases, "
        f"{len(state.contact_functions)} contact functions, {len(state.templates)} templates, {len(state.plans)} plans."
    )


@cli.command()
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Write to this file instead of stdout.")
def schema(out: Path | None) -> None:
    """Print the JSON Schema of a config file, for editors.

    Save it (e.g. `dunningops schema --out .dunningops/schema.json`) and put
    `# yaml-language-server: $schema=../.dunningops/schema.json` at the top of a
    config file: editors with the YAML language server then complete and check it.
    """
    from dunningops.spec.schema import json_schema

    text = json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
        click.echo(f"Wrote {out}", err=True)
    else:
        click.echo(text, nl=False)


@cli.command()
@config_option
@click.option("--check", is_flag=True, help="Change nothing; exit 1 if a file is not in canonical form (for CI).")
def fmt(config_dir: Path, check: bool) -> None:
    """Rewrite the config's YAML in canonical form (key order, indentation), keeping comments."""
    from dunningops.spec.fmt import format_config

    changed = format_config(config_dir, write=not check)
    for path in changed:
        click.echo(("would reformat " if check else "reformatted ") + str(path))
    if check and changed:
        sys.exit(1)
    if not changed:
        click.echo("All files are in canonical form.", err=True)


@cli.command()
@config_option
@database_option
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Save the plan for `apply FILE`.")
@click.option("--format", "fmt_", type=click.Choice(["text", "markdown", "json"]), default="text", show_default=True)
@click.option("--detailed-exitcode", is_flag=True, help="Exit 0 when there are no changes, 2 when there are, 1 on error.")
@address_options
def plan(config_dir, database_url, out, fmt_, detailed_exitcode, target, exclude) -> None:
    """Show what apply would change in the store."""
    from dunningops.reconcile import build_plan
    from dunningops.reconcile.render import RENDERERS
    from dunningops.reconcile.saved import save_plan
    from dunningops.spec import load_config
    from dunningops.store.config_objects import read_actual

    desired = load_config(config_dir)
    with _session(config_dir, database_url) as session:
        result = build_plan(desired, read_actual(session), targets=target, excludes=exclude)
    click.echo(RENDERERS[fmt_](result), nl=False)
    if out:
        save_plan(result, out)
        click.echo(f"Saved the plan to {out}; apply it with `dunningops apply {out}`.", err=True)
    if detailed_exitcode and not result.empty:
        sys.exit(2)


@cli.command()
@config_option
@database_option
@click.argument("planfile", required=False, type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--auto-approve", is_flag=True, help="Apply without asking for confirmation.")
@click.option("--allow-destroy", is_flag=True, help="Allow destroying or replacing more than settings.safety.max_destroy_share.")
@click.option("--lock-timeout", type=float, default=30.0, show_default=True, help="Seconds to wait for another apply.")
@address_options
def apply(config_dir, database_url, planfile, auto_approve, allow_destroy, lock_timeout, target, exclude) -> None:
    """Apply the config to the store (or a plan saved with `plan --out`)."""
    from dunningops.reconcile.apply import apply_config
    from dunningops.reconcile.render import render_text
    from dunningops.reconcile.saved import load_plan
    from dunningops.spec import load_config

    expected = load_plan(planfile) if planfile else None
    if expected is not None and (target or exclude):
        raise click.UsageError("--target/--exclude come from the saved plan; do not pass them with PLANFILE")
    desired = load_config(config_dir)

    def confirm(p) -> bool:
        click.echo(render_text(p), nl=False)
        if auto_approve or expected is not None:
            return True
        if not sys.stdin.isatty():
            raise click.UsageError("no terminal to confirm on: pass --auto-approve, or apply a saved plan")
        return click.confirm("Apply these changes?", default=False)

    with _store(config_dir, database_url) as store:
        result = apply_config(
            store, desired, now=clock.now(), expected=expected, targets=target, excludes=exclude,
            allow_destroy=allow_destroy, confirm=confirm, lock_timeout_s=lock_timeout,
        )
    if result.plan.empty:
        click.echo(result.plan.summary_line())
    elif not result.applied:
        click.echo("Apply cancelled; nothing was changed.")
    else:
        s = result.plan.summary()
        click.echo(
            f"Apply complete! Resources: {s['add']} added, {s['change']} changed, "
            f"{s['replace']} replaced, {s['destroy']} destroyed. (apply #{result.apply_id})"
        )
        for item in result.outbox:
            click.echo(f"Queued: confirmation email to {item['payload']['email']} for {item['ref']} (A3).")


@cli.command()
@config_option
@database_option
@click.option("--format", "fmt_", type=click.Choice(["text", "json"]), default="text", show_default=True)
def show(config_dir, database_url, fmt_) -> None:
    """List the applied config in the store, with actual-only state (verification, timestamps)."""
    from dunningops.reconcile.show import render_state
    from dunningops.store.config_objects import read_actual

    with _session(config_dir, database_url) as session:
        actual = read_actual(session)
    click.echo(render_state(actual, fmt_), nl=False)


@cli.command()
@config_option
@database_option
@click.option("--limit", type=int, default=50, show_default=True)
@click.option("--format", "fmt_", type=click.Choice(["text", "json"]), default="text", show_default=True)
def history(config_dir, database_url, limit, fmt_) -> None:
    """List past applies: when, who, which commit, what changed."""
    from dunningops.reconcile.show import render_history
    from dunningops.store.audit import list_applies

    with _session(config_dir, database_url) as session:
        rows = list_applies(session, limit)
    click.echo(render_history(rows, fmt_), nl=False)


@cli.group()
def db() -> None:
    """The store's schema."""


@db.command("upgrade")
@config_option
@database_option
def db_upgrade(config_dir, database_url) -> None:
    """Bring the store's schema to the latest migration (also done automatically on first use)."""
    from dunningops.store import migrate

    with _store(config_dir, database_url) as store:  # opening upgrades
        click.echo(f"The store is at schema revision {migrate.current(store.engine)}.")


@cli.command()
@click.argument("directory", required=False, type=click.Path(file_okay=False, path_type=Path))
def demo(directory: Path | None) -> None:
    """Run a round on the example config in DIRECTORY (default: a new temporary directory)."""
    from dunningops.demo import run_demo

    run_demo(directory, click.echo)


def main() -> None:
    # A short-lived CLI: collect garbage less often, and skip the full collection at exit
    # (1.5 s of a 10,000-object plan was the interpreter freeing its objects one by one).
    gc.set_threshold(50_000, 20, 20)
    try:
        cli(prog_name="dunningops")
    finally:
        gc.freeze()


# Commands of other stages live in their own modules; importing them registers them on `cli`.
from dunningops import cli_cycle, cli_ledger, cli_templates  # noqa: E402,F401

if __name__ == "__main__":  # pragma: no cover
    main()
