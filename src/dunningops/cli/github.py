"""The pull-request workflow's steps: `github comment` (the sticky plan comment), `github summary`. Thin."""

from __future__ import annotations

import os
from pathlib import Path

import click

from dunningops.cli.main import cli
from dunningops.errors import InvalidInputError
from dunningops.github.body import DEFAULT_MARKER, check_marker, errors_markdown

BODY_FILE = click.option(
    "--body-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The markdown plan (`dunningops plan --format markdown > FILE`).",
)
ERRORS_FILE = click.option(
    "--errors-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="What `dunningops validate` printed on error; when not empty, it is shown instead of the plan.",
)


def _read(path: Path | None) -> str:
    if path is None or not path.exists():
        return ""
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"{path}: cannot read it: {exc}") from None


def content_of(body_file: Path | None, errors_file: Path | None) -> str:
    """The config's errors if `validate` found any (the plan then was not run), else the plan."""
    errors = _read(errors_file)
    if errors.strip():
        return errors_markdown(errors)
    if body_file is None:
        raise click.UsageError("give --body-file (and --errors-file when validate may have failed)")
    if not body_file.exists():
        raise InvalidInputError(f"{body_file}: no such file")
    return _read(body_file)


def _marker(ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        return check_marker(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@cli.group()
def github() -> None:
    """Steps of a GitHub Actions workflow: the plan as a pull-request comment and in the job summary."""


@github.command("comment")
@BODY_FILE
@ERRORS_FILE
@click.option(
    "--marker",
    default=DEFAULT_MARKER,
    show_default=True,
    callback=_marker,
    help="Hidden tag that finds the comment again; one per workflow keeps their comments apart.",
)
@click.option("--pr", "number", type=click.IntRange(1), help="The pull request (default: from $GITHUB_EVENT_PATH).")
def github_comment(body_file: Path | None, errors_file: Path | None, marker: str, number: int | None) -> None:
    """Post the plan on the pull request as one comment, edited in place on every push.

    Reads GITHUB_TOKEN, GITHUB_REPOSITORY, GITHUB_EVENT_PATH, GITHUB_API_URL and GITHUB_RUN_ID from
    the environment, as GitHub Actions sets them (give the step `GITHUB_TOKEN: ${{ github.token }}`
    and the job `pull-requests: write`). A plan too long for a comment is cut, with a link to the
    job summary.
    """
    from dunningops.github.body import comment_body
    from dunningops.github.client import GitHubClient
    from dunningops.github.comment import target_from_env, upsert_comment

    content = content_of(body_file, errors_file)
    target = target_from_env(os.environ, number=number)
    body = comment_body(content, marker=marker, run_url=target.run_url)
    with GitHubClient(os.environ.get("GITHUB_TOKEN", ""), target.api_url) as client:
        posted = upsert_comment(client, target, body, marker)
    click.echo(f"{posted.action.capitalize()} the plan comment on pull request #{target.number}: {posted.url}")


@github.command("summary")
@BODY_FILE
@ERRORS_FILE
def github_summary(body_file: Path | None, errors_file: Path | None) -> None:
    """Append the plan to the job summary ($GITHUB_STEP_SUMMARY), cut to its 1 MiB limit."""
    from dunningops.github.summary import append_summary

    path = append_summary(content_of(body_file, errors_file), os.environ)
    click.echo(f"Wrote the plan to the job summary ({path.name}).", err=True)
