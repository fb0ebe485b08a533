"""The sticky plan comment: find ours on the pull request by its hidden marker, edit it, else post one."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from dunningops.errors import InvalidInputError
from dunningops.github.body import marker_comment
from dunningops.github.client import DEFAULT_API_URL, GitHubClient


@dataclass(frozen=True)
class Target:
    """Where the comment goes, from the Actions environment (or the options that override it)."""

    api_url: str
    repository: str
    number: int
    run_url: str | None


@dataclass(frozen=True)
class Posted:
    action: str  # "created" | "updated"
    id: int
    url: str


def _pull_request_number(event_path: str | None) -> int:
    """The pull request's number from the event payload a runner writes at ``GITHUB_EVENT_PATH``."""
    if not event_path:
        raise InvalidInputError("GITHUB_EVENT_PATH is not set: run this in a pull request's workflow, or pass --pr")
    try:
        event = json.loads(Path(event_path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidInputError(f"{event_path}: not a readable event payload: {exc}") from None
    for holder in (event.get("pull_request"), event.get("issue"), event):
        if isinstance(holder, dict) and isinstance(holder.get("number"), int):
            return holder["number"]
    raise InvalidInputError(f"{event_path}: this event is not about a pull request: pass --pr")


def target_from_env(env: Mapping[str, str] = os.environ, *, number: int | None = None) -> Target:
    """The API, repository, pull request and run of this job, from ``GITHUB_*`` variables."""
    repository = env.get("GITHUB_REPOSITORY", "")
    if repository.count("/") != 1:
        raise InvalidInputError("GITHUB_REPOSITORY is not set to owner/name")
    run_id = env.get("GITHUB_RUN_ID")
    server = env.get("GITHUB_SERVER_URL", "https://github.com").rstrip("/")
    return Target(
        api_url=env.get("GITHUB_API_URL") or DEFAULT_API_URL,
        repository=repository,
        number=number if number is not None else _pull_request_number(env.get("GITHUB_EVENT_PATH")),
        run_url=f"{server}/{repository}/actions/runs/{run_id}" if run_id else None,
    )


def upsert_comment(client: GitHubClient, target: Target, body: str, marker: str) -> Posted:
    """Edit the pull request's comment that carries ``marker`` (the oldest, if several), else post one."""
    base = f"/repos/{target.repository}/issues"
    tag = marker_comment(marker)
    ours = next(
        (c for c in client.paginate(f"{base}/{target.number}/comments?per_page=100") if tag in (c.get("body") or "")),
        None,
    )
    if ours is not None:
        data = client.request("PATCH", f"{base}/comments/{ours['id']}", json={"body": body}).json()
        return Posted("updated", data["id"], data.get("html_url", ""))
    data = client.request("POST", f"{base}/{target.number}/comments", json={"body": body}).json()
    return Posted("created", data["id"], data.get("html_url", ""))
