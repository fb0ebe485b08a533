"""`dunningops template vars|preview|proof|send`. Thin."""

from __future__ import annotations

import re
import webbrowser
from pathlib import Path

import click

from dunningops.app import App
from dunningops.cli.main import cli
from dunningops.cli.options import ACTOR, pass_app


def _file_part(value: str) -> str:
    # A customer id or template name may hold "/" or "..": never let it pick the directory.
    return re.sub(r"[^A-Za-z0-9_-]+", "_", value).strip("_") or "_"


@cli.group()
def template() -> None:
    """Email templates: variables, previews, proofs, sending on demand."""


@template.command("vars")
def template_vars() -> None:
    """The variables a template can use, with examples (and the @TAG@s of the source product)."""
    from dunningops.render.variables import template_vars_text

    click.echo(template_vars_text(), nl=False)


@template.command("preview")
@pass_app
@click.argument("name")
@click.option("--customer", "external_id", required=True, help="A customer's external id.")
@click.option("--locale", "language", help="The template language (default: the customer's).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path(".dunningops/preview"), show_default=True)
@click.option("--open", "open_", is_flag=True, help="Open the HTML in a browser.")
def template_preview(app: App, name, external_id, language, out, open_) -> None:
    """Render template NAME for a customer; write the HTML and the text version."""
    from dunningops.dunning.ondemand import prepare
    from dunningops.dunning.runconfig import RunConfig

    with app.session() as session:
        p = prepare(session, RunConfig.from_store(session), name, external_id, app.now(), language)
    out.mkdir(parents=True, exist_ok=True)
    stem = ".".join(_file_part(part) for part in (name, external_id, p.language))
    html, text = out / f"{stem}.html", out / f"{stem}.txt"
    html.write_text(p.email.html, encoding="utf-8")
    text.write_text(f"Subject: {p.email.subject}\n\n{p.email.text}", encoding="utf-8")
    click.echo(f"Subject: {p.email.subject}\nWrote {html} and {text}")
    if open_:
        webbrowser.open(html.resolve().as_uri())


@template.command("proof")
@pass_app
@click.argument("name")
@click.option("--to", "to", multiple=True, required=True, help="Where the proof goes (repeatable).")
@click.option("--customer", "external_id", required=True, help="Whose data fills the template.")
@click.option("--locale", "language")
def template_proof(app: App, name, to, external_id, language) -> None:
    """Send template NAME as a test to chosen addresses, before it goes to customers."""
    from dunningops.dunning.ondemand import prepare, send_prepared
    from dunningops.dunning.runconfig import RunConfig

    at = app.now()
    with app.session() as session:
        config = RunConfig.from_store(session)
        p = prepare(session, config, name, external_id, at, language)
    lines = send_prepared(
        app.store,
        config,
        [(p, list(to))],
        kind="proof",
        at=at,
        transport_factory=app.transport,
        template_id=name,
        subject_prefix="[Proof] ",
    )
    click.echo("\n".join(lines))


@template.command("send")
@pass_app
@click.argument("name")
@click.option("--customer", "customers", multiple=True, required=True, help="A customer's external id (repeatable).")
@click.option("--from", "sender", help="alias.<id>, member.<id> or account_manager (default: the fallback sender).")
@click.option(
    "--again", is_flag=True, help="Send even if the last send of NAME to a customer was interrupted and may already have arrived."
)
@ACTOR
def template_send(app: App, name, customers, sender, again, actor) -> None:
    """Send template NAME now to customers (their primary contact), within the sending caps.

    Needs a member whose role may send on demand (owner, admin, or a role given `send`).
    """
    from dunningops.dunning.ondemand import check_caps, prepare, send_prepared
    from dunningops.dunning.runconfig import RunConfig
    from dunningops.errors import ConflictError
    from dunningops.permissions import require, who_acts

    at = app.now()
    with app.session() as session:
        config = RunConfig.from_store(session)
        # T1/T5: the applied config says who may send on demand. Proofs (T3) go to colleagues: open to all.
        who = who_acts(app.config_dir, actor)
        require(config.members, config.settings.roles, who, "send", f"sending template {name} on demand")
        items = []
        for external_id in customers:
            p = prepare(session, config, name, external_id, at, sender_ref=sender)
            primary = [c.email for c in p.contacts if c.is_primary] or [c.email for c in p.contacts][:1]
            if not primary:
                raise ConflictError(f"customer {external_id} has no valid contact")
            items.append((p, primary))
    check_caps(app.store, config, at, len(items))
    lines = send_prepared(
        app.store, config, items, kind="on_demand", at=at, transport_factory=app.transport, template_id=name, again=again
    )
    click.echo("\n".join(lines))
