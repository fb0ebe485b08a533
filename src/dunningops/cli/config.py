"""Config as code: `validate`, `schema`, `fmt`, `plan`, `apply`, `show`, `history`, `db upgrade`. Thin."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click
from click.core import ParameterSource

from dunningops.app import App
from dunningops.cli.forecast import days_option
from dunningops.cli.main import cli
from dunningops.cli.options import ACTOR, AT, LIMIT, address_options, format_option, pass_app
from dunningops.cli.output import EXIT_CHANGES, EXIT_IMPACT_GATE, finish

if TYPE_CHECKING:
    from dunningops.spec.state import DesiredState
    from dunningops.store.state import AppliedObject


@cli.command()
@pass_app(database=False)
def validate(app: App) -> None:
    """Check the config: every error with its file:line, all at once (exit 1 on errors)."""
    state = app.load_config()
    click.echo(
        f"The config in {app.config_dir} is valid: {len(state.members)} members, {len(state.aliases)} aliases, "
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
@pass_app(database=False)
@click.option("--check", is_flag=True, help="Change nothing; exit 1 if a file is not in canonical form (for CI).")
def fmt(app: App, check: bool) -> None:
    """Rewrite the config's YAML in canonical form (key order, indentation), keeping comments."""
    from dunningops.spec.fmt import format_config

    changed = format_config(app.config_dir, write=not check)
    for path in changed:
        click.echo(("would reformat " if check else "reformatted ") + str(path))
    if not changed:
        click.echo("All files are in canonical form.", err=True)
    finish(code=1 if check and changed else 0)


# plan --max-added / --max-moved-earlier exceeded (EXIT_IMPACT_GATE, 4). It wins over
# --detailed-exitcode's 2: a CI step that gates on the impact must fail whether or not the plan has changes.
GATE_COUNT = click.IntRange(0, 10**9)


def impact_gates(impact, max_added: int | None, max_moved_earlier: int | None) -> list[str]:
    """One line per gate the impact exceeds (reminder emails added, moved earlier)."""
    lines = []
    for change, limit, option, verb in (
        ("added", max_added, "--max-added", "be added"),
        ("earlier", max_moved_earlier, "--max-moved-earlier", "move earlier"),
    ):
        count = impact.count(change)
        if limit is not None and count > limit:
            noun = "reminder" if count == 1 else "reminders"
            lines.append(f"impact gate: {count:,} {noun} would {verb}, more than {option} {limit:,}")
    return lines


@cli.command()
@pass_app
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="Save the plan for `apply FILE`.")
@format_option("text", "markdown", "json")
@click.option("--detailed-exitcode", is_flag=True, help="Exit 0 when there are no changes, 2 when there are, 1 on error.")
@address_options
@click.option(
    "--impact",
    is_flag=True,
    help="Also show what the change does to customers: reminders and to-dos added, removed, moved, changed.",
)
@days_option("Days the impact covers, from the day of --at.")
@AT
@click.option(
    "--max-added", type=GATE_COUNT, metavar="N", help="Exit 4 when more than N reminders would be added (implies --impact)."
)
@click.option(
    "--max-moved-earlier",
    type=GATE_COUNT,
    metavar="N",
    help="Exit 4 when more than N reminders would move earlier (implies --impact).",
)
@ACTOR
@click.pass_context
def plan(
    ctx: click.Context,
    app: App,
    out,
    fmt_,
    detailed_exitcode,
    target,
    exclude,
    impact,
    days,
    at_,
    max_added,
    max_moved_earlier,
    actor,
) -> None:
    """Show what apply would change in the store.

    With --impact, also what the change does to customers over the next --days days:
    the send cycle simulated with the applied config and with this one (assuming no
    payment arrives and nobody replies). --out saves the plan alone.

    Exit codes: 0 done, 1 error, 2 changes present (with --detailed-exitcode), 3 the
    store cannot be used, 4 an impact gate exceeded (--max-added, --max-moved-earlier:
    the output is printed first, and 4 wins over 2).
    """
    from dunningops.reconcile import build_plan
    from dunningops.reconcile.render import RENDERERS
    from dunningops.reconcile.saved import save_plan

    gated = max_added is not None or max_moved_earlier is not None
    impact = impact or gated
    if not impact and (at_ is not None or ctx.get_parameter_source("days") is not ParameterSource.DEFAULT):
        raise click.UsageError("--days and --at are for --impact")
    if impact and (target or exclude):
        raise click.UsageError("--impact shows the whole config's effect on customers: do not pass --target/--exclude with it")
    desired, actual = load_against_store(app)
    result = build_plan(desired, actual, targets=target, excludes=exclude)
    refused = _refusal(app, result, actual, actor)
    gates: list[str] = []
    if impact:
        from dunningops.forecast.render import render_plan_with_impact
        from dunningops.forecast.run import impact as impact_of

        effect = impact_of(app.store, desired, at=at_ or app.now(), days=days)
        click.echo(render_plan_with_impact(result, effect, fmt_), nl=False)
        gates = impact_gates(effect, max_added, max_moved_earlier)
    else:
        click.echo(RENDERERS[fmt_](result), nl=False)
    if out:
        save_plan(result, out)
        click.echo(f"Saved the plan to {out}; apply it with `dunningops apply {out}`.", err=True)
    if refused:
        click.echo(f"warning: {refused}; apply will refuse this plan", err=True)
    for line in gates:
        click.echo(line, err=True)
    if gates:
        finish(code=EXIT_IMPACT_GATE)
    finish(code=EXIT_CHANGES if detailed_exitcode and not result.empty else 0)


def load_against_store(app: App) -> tuple[DesiredState, dict[str, AppliedObject]]:
    """The config, checked, and the applied objects, read once (plain rows, no ORM: store/state.py).

    The store is read only once the config's files parse and validate (an invalid config fails
    first, as with `validate`); the template bodies and subjects it holds were checked by the apply
    that wrote them, so only new or changed ones are parsed again. `validate` checks them all.
    A SQLite store at the latest revision is read without SQLAlchemy; any other is opened (and
    migrated) as usual.
    """
    from dunningops.spec import load_config
    from dunningops.store.state import checked_sources, read_applied, read_applied_sqlite

    read: list[dict[str, AppliedObject]] = []

    def applied() -> dict[str, AppliedObject]:
        fast = read_applied_sqlite(app.url)
        return fast if fast is not None else read_applied(app.store.engine)

    def known_good() -> set[tuple[str, str]]:
        read.append(applied())
        return checked_sources(read[0])

    desired = load_config(app.config_dir, known_good=known_good)
    return desired, read[0] if read else applied()


def _refusal(app: App, plan, actual, actor: str | None) -> str | None:
    """T1: why the actor could not apply ``plan``, or None."""
    from dunningops.errors import PermissionDeniedError
    from dunningops.permissions import who_acts
    from dunningops.reconcile.permissions import authorize

    try:
        authorize(plan, actual, who_acts(app.config_dir, actor))
    except PermissionDeniedError as exc:
        return str(exc)
    return None


@cli.command()
@pass_app
@click.argument("planfile", required=False, type=click.Path(dir_okay=False, exists=True, path_type=Path))
@click.option("--auto-approve", is_flag=True, help="Apply without asking for confirmation.")
@click.option("--allow-destroy", is_flag=True, help="Allow destroying or replacing more than settings.safety.max_destroy_share.")
@click.option(
    "--lock-timeout", type=click.FloatRange(0, 3600), default=30.0, show_default=True, help="Seconds to wait for another apply."
)
@address_options
@ACTOR
def apply(app: App, planfile, auto_approve, allow_destroy, lock_timeout, target, exclude, actor) -> None:
    """Apply the config to the store (or a plan saved with `plan --out`).

    Changes to templates and notification settings need a member whose role allows them, and
    members and roles are changed by owners and admins only: the applied config says who.
    """
    from dunningops.permissions import who_acts
    from dunningops.reconcile.apply import apply_config
    from dunningops.reconcile.render import render_text
    from dunningops.reconcile.saved import load_plan

    expected = load_plan(planfile) if planfile else None
    if expected is not None and (target or exclude):
        raise click.UsageError("--target/--exclude come from the saved plan; do not pass them with PLANFILE")
    # apply_config reads the store again under its lock: this read only spares checking again
    # the bodies already applied (an applied body was checked by the apply that wrote it).
    desired, _ = load_against_store(app)

    def confirm(p) -> bool:
        click.echo(render_text(p), nl=False)
        if auto_approve or expected is not None:
            return True
        if not sys.stdin.isatty():
            raise click.UsageError("no terminal to confirm on: pass --auto-approve, or apply a saved plan")
        return click.confirm("Apply these changes?", default=False)

    result = apply_config(
        app.store,
        desired,
        now=app.now(),
        expected=expected,
        targets=target,
        excludes=exclude,
        allow_destroy=allow_destroy,
        confirm=confirm,
        actor=who_acts(app.config_dir, actor),
        lock_timeout_s=lock_timeout,
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
            click.echo(f"Queued: confirmation email to {item['payload']['email']} for {item['ref']}.")


@cli.command()
@pass_app
@format_option("text", "json")
def show(app: App, fmt_) -> None:
    """List the applied config in the store, with actual-only state (verification, timestamps)."""
    from dunningops.reconcile.show import render_state
    from dunningops.store.config_objects import read_actual

    with app.session() as session:
        actual = read_actual(session)
    click.echo(render_state(actual, fmt_), nl=False)


@cli.command()
@pass_app
@click.option("--limit", type=LIMIT, default=50, show_default=True)
@format_option("text", "json")
def history(app: App, limit, fmt_) -> None:
    """List past applies: when, who, which commit, what changed."""
    from dunningops.reconcile.show import render_history
    from dunningops.store.audit import list_applies

    with app.session() as session:
        rows = list_applies(session, limit)
    click.echo(render_history(rows, fmt_), nl=False)


@cli.group()
def db() -> None:
    """The store's schema."""


@db.command("upgrade")
@pass_app
def db_upgrade(app: App) -> None:
    """Bring the store's schema to the latest migration (also done automatically on first use)."""
    from dunningops.store import migrate

    click.echo(f"The store is at schema revision {migrate.current(app.store.engine)}.")  # opening upgrades


@cli.command()
@click.argument("directory", required=False, type=click.Path(file_okay=False, path_type=Path))
def demo(directory: Path | None) -> None:
    """Run a round on the example config in DIRECTORY (default: a new temporary directory)."""
    from dunningops.demo import run_demo

    run_demo(directory, click.echo)
