"""Members' console passwords: `member set-password`, `member list`. Thin."""

from __future__ import annotations

import sys

import click

from dunningops.app import App
from dunningops.cli.main import cli
from dunningops.cli.options import format_option, pass_app
from dunningops.cli.output import echo_json, render_table

FORMAT = format_option("table", "json")


@cli.group()
def member() -> None:
    """Members of the team console: their passwords."""


@member.command("set-password")
@pass_app
@click.argument("member_id", metavar="MEMBER")
@click.option(
    "--password-stdin", is_flag=True, help="Read the password from the first line of stdin (for scripts) instead of asking."
)
def member_set_password(app: App, member_id, password_stdin) -> None:
    """Set the console password of MEMBER (an id or email of the applied config's members).

    Asked twice, without showing it; at least 12 characters. It is stored hashed
    (argon2id), and the member's open console sessions end.
    """
    from dunningops.dunning.runconfig import RunConfig
    from dunningops.errors import NotFoundError
    from dunningops.store.activity import record_activity
    from dunningops.web.console.credentials import check_password, find_member, set_password

    with app.session() as session:
        config = RunConfig.from_store(session)
    target = find_member(config, member_id)
    if target is None:  # refused before the password is typed
        raise NotFoundError(f"no member {member_id!r} in the applied config (members are set in the config, then applied)")
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt(f"New password for {target}", hide_input=True, confirmation_prompt="Once more", err=True)
    check_password(password)
    now = app.now()
    with app.store.session(write_lock=True) as session:
        result = set_password(session, config, target, password, now=now)
        record_activity(session, member=None, via="cli", action="member.set_password", at=now, target=f"member:{target}")
    ended = result["sessions_ended"]
    click.echo(
        f"The console password of {target} ({config.members[target]['name']}) is set"
        + (f"; {ended} open session{'s' if ended != 1 else ''} ended." if ended else ".")
    )


@member.command("list")
@pass_app
@FORMAT
def member_list(app: App, fmt_) -> None:
    """List the applied config's members: who has a console password, and open sessions."""
    from dunningops.dunning.runconfig import RunConfig
    from dunningops.web.console.credentials import members_and_passwords

    with app.session() as session:
        rows = members_and_passwords(session, RunConfig.from_store(session), now=app.now())
    if fmt_ == "json":
        echo_json(rows)
        return
    for r in rows:
        r["password"] = f"set {r['password_set_at']:%Y-%m-%d}" if r["password_set_at"] else "none"
    click.echo(
        render_table(
            rows,
            [
                ("id", "ID"),
                ("name", "NAME"),
                ("email", "EMAIL"),
                ("role", "ROLE"),
                ("password", "PASSWORD"),
                ("sessions", "SESSIONS"),
            ],
        ),
        nl=False,
    )
