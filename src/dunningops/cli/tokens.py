"""API tokens: `token create|list|revoke`. Thin (web/api/tokens.py does the work)."""

from __future__ import annotations

import click

from dunningops.app import App
from dunningops.cli.main import cli
from dunningops.cli.options import MEMBER, ROW_ID, format_option, pass_app
from dunningops.cli.output import echo_json, render_table

FORMAT = format_option("table", "json")


@cli.group()
def token() -> None:
    """Tokens for the HTTP API (/api/v1): for the systems that push the ledger or read it."""


@token.command("create")
@pass_app
@click.option("--member", "owner", required=True, metavar="ID", help="The member the token acts as (from the applied config).")
@click.option(
    "--scope",
    required=True,
    type=click.Choice(["read", "write"]),
    help="read: customers, to-dos and messages; write: also create and update the ledger.",
)
@click.option("--label", metavar="TEXT", help="What the token is for, e.g. the system that uses it.")
@MEMBER
@format_option("text", "json")
def token_create(app: App, owner, scope, label, member, fmt_) -> None:
    """Create a token and print it, once: only its digest is kept.

    Requests send it as `Authorization: Bearer <token>`. It stops working when
    revoked (`dunningops token revoke ID`) or when its member leaves the config.
    """
    from dunningops.web.api.tokens import create_token

    with app.session() as session:
        token_id, secret = create_token(session, member=owner, scope=scope, label=label, now=app.now(), by=member)
    if fmt_ == "json":
        echo_json({"id": token_id, "member": owner, "scope": scope, "label": label, "token": secret})
        return
    click.echo(secret)
    click.echo(f"Token #{token_id} for {owner} ({scope}). It is shown only this once: keep it now.", err=True)


@token.command("list")
@pass_app
@FORMAT
def token_list(app: App, fmt_) -> None:
    """List the tokens (never the tokens themselves): member, scope, label, created, last used, revoked."""
    from dunningops.web.api.tokens import list_tokens

    with app.session() as session:
        rows = list_tokens(session)
    if fmt_ == "json":
        echo_json({"tokens": rows})
        return
    for r in rows:
        r["created"] = f"{r['created_at']:%Y-%m-%d %H:%M}"
        r["used"] = f"{r['last_used_at']:%Y-%m-%d %H:%M}" if r["last_used_at"] else "never"
        r["state"] = (
            f"revoked {r['revoked_at']:%Y-%m-%d}" if r["revoked_at"] else ("active" if r["member_in_config"] else "member gone")
        )
        r["token"] = r["prefix"] + "…"
    columns = [
        ("id", "#"),
        ("token", "TOKEN"),
        ("member", "MEMBER"),
        ("scope", "SCOPE"),
        ("label", "LABEL"),
        ("created", "CREATED (UTC)"),
        ("used", "LAST USED"),
        ("state", "STATE"),
    ]
    click.echo(render_table(rows, columns), nl=False)


@token.command("revoke")
@pass_app
@click.argument("token_id", type=ROW_ID, metavar="ID")
@MEMBER
def token_revoke(app: App, token_id, member) -> None:
    """Revoke token ID now: requests with it are refused from then on."""
    from dunningops.web.api.tokens import revoke_token

    with app.session() as session:
        row = revoke_token(session, token_id, now=app.now(), by=member)
    click.echo(f"Token #{token_id} ({row['member']}, {row['scope']}) is revoked.")
