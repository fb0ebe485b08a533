"""The cycles: `run` (both), `run send`, `status`, `alias …`, `messages`. Thin (`todo …`: todos.py)."""

from __future__ import annotations

import json
from json.encoder import encode_basestring
from typing import IO

import click

from dunningops.app import App
from dunningops.cli.main import cli
from dunningops.cli.options import AT, LIMIT, format_option, pass_app
from dunningops.cli.output import DECISION_COLUMNS, echo_json, finish, render_table, to_json

FORMAT = format_option("table", "json")


LOCK_TIMEOUT = click.option(
    "--lock-timeout",
    type=click.FloatRange(0, 3600),
    default=30.0,
    show_default=True,
    help="Seconds to wait for a cycle of the same kind already running on this store.",
)


@cli.group(invoke_without_command=True)
@click.pass_context
@pass_app
@AT
@LOCK_TIMEOUT
def run(app: App, ctx: click.Context, at_, lock_timeout) -> None:
    """Run the cycles once (from CI or cron): without a command, the import cycle, then the send cycle.

    Replies are read first, so that a customer who has just answered is not chased in the same run.
    """
    if ctx.invoked_subcommand is not None:
        given = [p.name for p in ctx.command.params if ctx.get_parameter_source(p.name) == click.core.ParameterSource.COMMANDLINE]
        if given:
            raise click.UsageError(
                f"put the options after the cycle's name, e.g. `dunningops run {ctx.invoked_subcommand} --at …`"
            )
        return
    from dunningops.cli.inbox import echo_import_report, run_import_cycle
    from dunningops.dunning.cycle import run_send

    at = at_ or app.now()
    imported = run_import_cycle(app, at, lock_timeout)
    echo_import_report(imported)
    report = run_send(app.store, at=at, transport_factory=app.transport, lock_timeout_s=lock_timeout, keep_messages=False)
    _echo_send(app, report, dry_run=False)
    errors = imported.errors + ([str(imported.fatal)] if imported.fatal else []) + report.errors
    finish(errors, code=max(imported.exit_code, report.exit_code))


@run.command("send")
@pass_app
@AT
@click.option("--dry-run", is_flag=True, help="Show what is due and what would happen; write and send nothing.")
@click.option(
    "--decide-only",
    is_flag=True,
    help="With --dry-run: only what is due and why the rest waits, fast on a large ledger; recipients and "
    "templates are not checked (a full dry run shows the steps that would find nobody to write to or fail to render).",
)
@LOCK_TIMEOUT
@FORMAT
def run_send_command(app: App, at_, dry_run, decide_only, lock_timeout, fmt_) -> None:
    """The send cycle: send due automatic emails, turn manual steps into to-dos."""
    from dunningops.dunning.cycle import run_send

    if decide_only and not dry_run:
        raise click.UsageError("--decide-only goes with --dry-run (a real run prepares every step it sends)")

    with _Spool(fmt_) as decisions:
        report = run_send(
            app.store,
            at=at_ or app.now(),
            transport_factory=app.transport,
            dry_run=dry_run,
            decide_only=decide_only,
            lock_timeout_s=lock_timeout,
            on_decisions=decisions.add,
            keep_messages=False,  # the CLI prints counts, not each message
        )
        announced = _announce(app, report)
        if fmt_ == "json":
            _echo_send_json(report, dry_run, announced, decisions)
            finish(code=report.exit_code)  # the same contract as the table
            return
        decisions.echo_table()
    _echo_send(app, report, dry_run=dry_run, announced=announced)
    if decide_only:
        click.echo("Recipients and templates were not checked (--decide-only).")
    finish(report.errors, code=report.exit_code)


def _echo_send_json(report, dry_run: bool, announced: dict[str, int], decisions: _Spool) -> None:
    """The report as ``echo_json`` prints it, the decisions copied from the spool into their place."""
    text = to_json(
        {
            "at": report.at.isoformat(),
            "dry_run": dry_run,
            "ok": report.ok,
            "decisions": [],
            "sent": report.sent,
            "failed": report.failed,
            "deferred": report.deferred,
            "unconfirmed": report.unconfirmed,
            "todos": report.todos,
            "unknown": report.unknown,
            "pauses_ended": [e.to_dict() for e in report.pauses_ended],
            "alerts": report.alert_ids,
            "announced": announced,
            "errors": report.errors,
        }
    )
    if not decisions.count:
        click.echo(text, nl=False)
        return
    # The one place of the empty list: a key at the top level, on a line of its own (a string's
    # newlines are escaped, so no value can hold this line).
    head, tail = text.split(_EMPTY_DECISIONS, 1)
    click.echo(head + '\n  "decisions": [\n', nl=False)
    decisions.copy_to_stdout()
    click.echo("\n  ],\n" + tail, nl=False)


_EMPTY_DECISIONS = '\n  "decisions": [],\n'


class _Spool:
    """The decisions of a send cycle, written to a temporary file batch by batch as they are final
    (memory flat at any ledger size), then printed exactly as ``to_json`` or ``render_table`` prints
    the whole list (the table needs every row's width first)."""

    def __init__(self, fmt: str):
        self.fmt, self.count = fmt, 0
        self.file: IO[str] | None = None
        self.widths = [len(title) for _, title in DECISION_COLUMNS]
        self._keys: dict[str, str] = {}
        self._shape: tuple[str, ...] | None = None
        self._template = ""

    def __enter__(self) -> _Spool:
        import tempfile  # only a send cycle pays for it (`--help`, `plan` do not)

        self.file = tempfile.TemporaryFile("w+", encoding="utf-8", newline="")
        return self

    def __exit__(self, *exc) -> None:
        if self.file is not None:
            self.file.close()

    def add(self, batch: list) -> None:
        assert self.file is not None
        write = self.file.write
        if self.fmt == "json":
            if batch:
                # One write per batch (a decision's object each, comma-separated, as the whole list prints).
                write(("" if not self.count else ",\n") + ",\n".join([self._json(d.row()) for d in batch]))
                self.count += len(batch)
            return
        for d in batch:
            row = d.row()
            cells = ["" if row.get(k) is None else str(row[k]) for k, _ in DECISION_COLUMNS]
            self.widths = [max(w, len(c)) for w, c in zip(self.widths, cells, strict=True)]
            write(json.dumps(cells, ensure_ascii=False) + "\n")
            self.count += 1

    def _json(self, row: dict) -> str:
        """One decision as ``json.dumps(..., indent=2, ensure_ascii=False)`` prints it inside the report."""
        if self._shape == tuple(row):
            try:
                # The usual row (the keys in their order, every value a string): one format of
                # C-encoded strings (encode_basestring refuses anything else, which goes the long way).
                return self._template % tuple(map(encode_basestring, row.values()))
            except TypeError:
                pass
        elif self._shape is None:
            self._shape = tuple(row)
            self._template = "    {\n" + ",\n".join(f"      {encode_basestring(k)}: %s" for k in row) + "\n    }"
            return self._json(row)
        keys = self._keys
        lines = []
        for k, v in row.items():
            key = keys.get(k)
            if key is None:
                key = keys[k] = f"      {encode_basestring(k)}: "
            lines.append(key + (encode_basestring(v) if isinstance(v, str) else json.dumps(v, ensure_ascii=False, default=str)))
        return "    {\n" + ",\n".join(lines) + "\n    }"

    def copy_to_stdout(self) -> None:
        assert self.file is not None
        self.file.seek(0)
        while chunk := self.file.read(1 << 20):
            click.echo(chunk, nl=False)

    def echo_table(self) -> None:
        """``render_table(rows, DECISION_COLUMNS)``, a line at a time."""
        assert self.file is not None
        if not self.count:
            click.echo(render_table([], DECISION_COLUMNS), nl=False)
            return

        def line(cells: list[str]) -> str:
            return "  ".join(c.ljust(w) for c, w in zip(cells, self.widths, strict=True)).rstrip()

        out = [line([title for _, title in DECISION_COLUMNS])]
        self.file.seek(0)
        for text in self.file:
            out.append(line(json.loads(text)))
            if len(out) >= 1000:
                click.echo("\n".join(out) + "\n", nl=False)
                out = []
        if out:
            click.echo("\n".join(out) + "\n", nl=False)


def _announce(app: App, report) -> dict[str, int]:
    """Announce the alerts a send cycle raised (a broken promise to pay, a recipient refused), and any
    earlier one still waiting for a channel, once the cycle has committed."""
    if report.dry_run:
        return {}
    from dunningops.alerts.channels import announce_recorded
    from dunningops.alerts.store import pending

    with app.session() as session:
        ids = pending(session)
    if not ids:
        return {}
    done = announce_recorded(app.store, ids, at=report.at, transport_factory=app.transport, env=app.env)
    for problem in done.problems:
        click.echo(f"Warning: {problem}", err=True)
    return dict(done.counts)


def _echo_send(app: App, report, *, dry_run: bool, announced: dict[str, int] | None = None) -> None:
    counts = report.outcomes()
    line = ", ".join(f"{counts[k]} {k}" for k in ("send", "todo", "error", "wait", "skip") if counts[k]) or "nothing due"
    verb = "would end" if dry_run else "ended"
    for ending in report.pauses_ended:
        click.echo(f"Pause {verb}: {ending.customer}{' ' + ending.invoice if ending.invoice else ''}: {ending.summary}")
    if dry_run:
        click.echo(f"Dry run at {report.at:%Y-%m-%d %H:%M} UTC: {line}. Nothing was written or sent.")
        return
    click.echo(
        f"Send cycle at {report.at:%Y-%m-%d %H:%M} UTC: {report.sent} sent, {report.failed} failed, "
        f"{report.deferred} deferred, {report.todos} to-dos ({line})."
    )
    if announced is None:
        announced = _announce(app, report)
    told = ", ".join(f"{n} {c}" for c, n in sorted(announced.items()) if c != "in_app")
    if announced:
        click.echo(
            f"Alerts: {announced.get('in_app', 0)} in the list (`dunningops alerts list`)"
            + (f"; announced: {told}." if told else ".")
        )
    if report.confirmations:
        click.echo(f"{report.confirmations} alias confirmation emails sent.")
    if report.nothing_delivered:
        click.echo(
            f"Warning: none of the {report.deferred} due emails could be delivered now (see `dunningops messages "
            "--status deferred` for the server's answers); they go out on the next run.",
            err=True,
        )
    if report.unconfirmed:
        click.echo(
            f"Warning: {report.unconfirmed} emails got no clear answer from the server: they may or may not "
            "have arrived, and are not sent again (see `dunningops messages --status unknown`).",
            err=True,
        )
    if report.unknown:
        click.echo(
            f"Warning: {report.unknown} messages of an interrupted run are now 'unknown' (see `dunningops status`).", err=True
        )


@cli.command()
@pass_app
def status(app: App) -> None:
    """Messages by status (with the `unknown` ones of an interrupted run), open to-dos, pending outbox."""
    from dunningops.dunning.status import collect_status

    with app.session() as session:
        data = collect_status(session)
    click.echo("Messages: " + (", ".join(f"{n} {s}" for s, n in sorted(data["messages"].items())) or "none"))
    click.echo("Open to-dos: " + (", ".join(f"{n} {k}" for k, n in sorted(data["todos"].items())) or "none"))
    click.echo(f"Alias confirmations waiting to be sent: {data['outbox']}")
    if data.get("running"):
        click.echo(f"A send cycle is running ({data['running']}).")
    for m in data["unknown"]:
        click.echo(
            f"unknown: {m['message_id']} to {', '.join(m['to_addresses'])} ({m['subject']}) at {m['created_at']}: "
            "sending was interrupted or got no clear answer; it may or may not have left. It will not be sent again."
        )


@cli.group()
def alias() -> None:
    """Sender aliases: verification."""


# Codes issued before they were made shell-safe may begin with "-": take the argument as it comes.
@alias.command("verify", context_settings={"ignore_unknown_options": True})
@pass_app
@click.argument("token")
def alias_verify(app: App, token) -> None:
    """Verify an alias with the code from its confirmation email."""
    from dunningops.dunning.aliases import verify

    with app.session() as session:
        alias_id = verify(session, token, app.now())
    click.echo(f"Alias {alias_id} is verified: reminders can now be sent from it.")


@alias.command("resend")
@pass_app
@click.argument("alias_id")
def alias_resend(app: App, alias_id) -> None:
    """Queue a new confirmation email for an unverified alias (sent by the next `run send`)."""
    from dunningops.dunning.aliases import resend

    with app.session() as session:
        email = resend(session, alias_id, app.now())
    click.echo(f"A new confirmation email to {email} is queued; `dunningops run send` delivers it.")


@cli.command()
@pass_app
@click.option("--customer", help="A customer's external id.")
@click.option("--status", "status_", type=click.Choice(["sending", "sent", "unknown", "failed", "deferred"]))
@click.option("--limit", type=LIMIT, default=50, show_default=True)
@FORMAT
def messages(app: App, customer, status_, limit, fmt_) -> None:
    """The history of emails: status, automatic or manual, sender, who sent it."""
    from dunningops.dunning.status import message_history

    with app.session() as session:
        rows = message_history(session, customer=customer, status=status_, limit=limit)
    if fmt_ == "json":
        echo_json(rows)
        return
    for r in rows:
        r["when"] = f"{r['created_at']:%Y-%m-%d %H:%M}"
        r["how"] = "auto" if r["automatic"] else f"manual ({r['performed_by']})" if r["performed_by"] else "manual"
        r["step"] = f"{r['plan_id']}.{r['step_id']}" if r["plan_id"] else r["kind"]
        r["to"] = ", ".join(r["to_addresses"])
        if r.get("opened_at"):  # E6: its tracking pixel was loaded (a plan with track_opens)
            r["status"] = f"{r['status']}, opened"
    click.echo(
        render_table(
            rows,
            [
                ("id", "#"),
                ("when", "WHEN (UTC)"),
                ("customer", "CUSTOMER"),
                ("step", "STEP"),
                ("how", "HOW"),
                ("sender_ref", "SENDER"),
                ("to", "TO"),
                ("status", "STATUS"),
            ],
        ),
        nl=False,
    )
