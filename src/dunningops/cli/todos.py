"""`todo …`: the to-dos the send and import cycles leave for people (E1): list, show, letter, done, dismiss, send. Thin."""

from __future__ import annotations

import os
from pathlib import Path

import click

from dunningops.app import App
from dunningops.cli.main import cli
from dunningops.cli.options import MEMBER, ROW_ID, format_option, pass_app
from dunningops.cli.output import echo_json, render_table, to_json
from dunningops.errors import ConflictError, InvalidInputError

FORMAT = format_option("table", "json")


@cli.group()
def todo() -> None:
    """To-dos for people: manual emails, calls, letters, replies."""


@todo.command("list")
@pass_app
@click.option(
    "--status", "status_", type=click.Choice(["open", "done", "dismissed", "sent", "all"]), default="open", show_default=True
)
@click.option("--assignee", help="A member id.")
@click.option("--kind", type=click.Choice(["email", "call", "letter", "reply", "bounce", "no_recipient", "promise_broken"]))
@FORMAT
def todo_list(app: App, status_, assignee, kind, fmt_) -> None:
    """List to-dos."""
    from dunningops.dunning.todos import list_todos

    with app.session() as session:
        rows = list_todos(session, status=None if status_ == "all" else status_, assignee=assignee, kind=kind)
    if fmt_ == "json":
        echo_json(rows)
        return
    click.echo(
        render_table(
            rows,
            [
                ("id", "#"),
                ("kind", "KIND"),
                ("status", "STATUS"),
                ("customer", "CUSTOMER"),
                ("plan_id", "PLAN"),
                ("step_id", "STEP"),
                ("assignee", "ASSIGNEE"),
                ("reason", "WHY"),
            ],
        ),
        nl=False,
    )


@todo.command("show")
@pass_app
@click.argument("todo_id", type=ROW_ID)
def todo_show(app: App, todo_id) -> None:
    """Show a to-do with its prepared email, letter or phone numbers."""
    from dunningops.dunning.todos import get

    with app.session() as session:
        data = get(session, todo_id)
    payload = data.pop("payload")
    click.echo(to_json(data), nl=False)
    if data["kind"] == "reply":
        click.echo(f"\nReply from {payload.get('from') or 'an unknown sender'}: {payload.get('subject') or '(no subject)'}")
        count = payload.get("replies", 1)
        click.echo(f"({count} replies; the latest is shown)" if count > 1 else "")
        click.echo(f"{payload.get('excerpt', '')}\n")
        click.echo(
            f"Answer it with `dunningops todo send {data['id']} --text answer.txt --as MEMBER`, or close it with "
            f"`dunningops todo done {data['id']}` (the whole message: `dunningops inbox show {payload.get('inbox_message_id')}`)."
        )
    elif payload.get("subject"):
        if data["kind"] != "letter":
            click.echo(
                f"\nFrom: {payload.get('from_name', '')} <{payload.get('from', '')}>  (sender {payload.get('sender', '-')})"
            )
        if payload.get("to"):
            click.echo(f"To: {', '.join(payload['to'])}")
        click.echo(f"Subject: {payload['subject']}\n\n{payload.get('text', '')}")
    elif payload.get("phones") is not None:
        click.echo(
            "\nPhone numbers: " + (", ".join(f"{p['name'] or p['email']}: {p['phone']}" for p in payload["phones"]) or "none")
        )
    if payload.get("problem"):
        click.echo(f"\nProblem: {payload['problem']}")
    if data["kind"] == "letter":
        click.echo(f"\n{_letter_line(app, data['id'])}")


def _letter_line(app: App, todo_id: int) -> str:
    from dunningops.dunning.letters import describe

    with app.session() as session:
        doc = describe(session, todo_id)
    if doc is None:
        return f"Document: not made yet; `dunningops todo letter {todo_id}` makes the letter as a PDF (A4) and saves it."
    return (
        f"Document: {doc['name']} ({doc['size'] // 1024 + 1} KB, made {doc['created_at']:%Y-%m-%d %H:%M} UTC, "
        f"sha256 {doc['sha256'][:12]}…); save it with `dunningops todo letter {todo_id}`."
    )


@todo.command("letter")
@pass_app
@click.argument("todo_id", type=ROW_ID)
@click.option(
    "--out",
    "out",
    type=click.Path(dir_okay=False, allow_dash=True),
    help="Where to save the PDF (- for standard output). Default: the letter's name in the current directory.",
)
@click.option("--force", is_flag=True, help="Replace the file if it exists.")
def todo_letter(app: App, todo_id, out, force) -> None:
    """Save a letter to-do's letter as a PDF, to print and post.

    An A4 page: the company's letterhead, the customer's postal address where a window envelope
    shows it, the date, the subject and the letter. Made on first request and kept: every later
    download is the same document.
    """
    from dunningops.dunning.letters import document

    doc = document(app.store, todo_id, app.now())
    if out == "-":
        click.echo(doc.data, nl=False)  # bytes: written to the binary stream as they are
        return
    written = save_file(Path(out or doc.name), doc.data, force=force)
    click.echo(f"Letter of to-do #{todo_id} saved to {written} ({len(doc.data) // 1024 + 1} KB).")


def save_file(path: Path, data: bytes, *, force: bool) -> Path:
    """Write ``data`` to ``path`` whole or not at all (a temporary file renamed); never over a file unless ``force``."""
    if path.exists() and not force:
        raise ConflictError(f"{path} already exists (use --force to replace it)")
    if path.is_dir():
        raise InvalidInputError(f"{path} is a directory")
    partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        partial.write_bytes(data)
        os.replace(partial, path)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise InvalidInputError(f"{path}: cannot write the file: {exc.strerror or exc}") from exc
    return path


def _close(app: App, todo_id, status_, member) -> None:
    from dunningops.dunning.todos import close

    with app.session() as session:
        close(session, todo_id, status_, member, app.now())
    click.echo(f"To-do #{todo_id} is {status_}.")


@todo.command("done")
@pass_app
@click.argument("todo_id", type=ROW_ID)
@MEMBER
def todo_done(app: App, todo_id, member) -> None:
    """Mark a to-do done (the call was made, the letter posted)."""
    _close(app, todo_id, "done", member)


@todo.command("dismiss")
@pass_app
@click.argument("todo_id", type=ROW_ID)
@MEMBER
def todo_dismiss(app: App, todo_id, member) -> None:
    """Dismiss a to-do (a dismissed reply to-do lets the plan go on)."""
    _close(app, todo_id, "dismissed", member)


@todo.command("send")
@pass_app
@click.argument("todo_id", type=ROW_ID)
@click.option("--from", "sender", help="Change the sender: alias.<id>, member.<id> or account_manager.")
@click.option(
    "--text",
    "text_file",
    type=click.File("r", encoding="utf-8"),
    metavar="FILE",
    help="A reply to-do: the answer to send to the customer (a text file, or - for stdin).",
)
@MEMBER
def todo_send(app: App, todo_id, sender, text_file, member) -> None:
    """Send the prepared email of a manual-email to-do (the sender can be changed), or answer a reply to-do."""
    from dunningops.dunning.manual import MAX_ANSWER, send_todo

    text = text_file.read(MAX_ANSWER + 1) if text_file is not None else None
    result = send_todo(app.store, todo_id, at=app.now(), sender=sender, member=member, transport_factory=app.transport, text=text)
    click.echo(f"To-do #{todo_id}: {result}")
