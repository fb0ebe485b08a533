"""A small client of GitHub's REST API: a token, timeouts, retries on 5xx/429, one-line errors.

The token goes in the Authorization header only: it is never printed and never in an error.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from dunningops import __version__
from dunningops.errors import (
    DunningOpsError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
    UnavailableError,
)

DEFAULT_API_URL = "https://api.github.com"
TIMEOUT_S = 20.0
ATTEMPTS = 4
BACKOFF_S = 0.5  # doubled each attempt when GitHub gives no Retry-After
MAX_WAIT_S = 60.0  # a Retry-After longer than this is not worth holding the job for


def _error_kind(status: int) -> type[DunningOpsError]:
    if status in (401, 403):
        return PermissionDeniedError
    if status == 404:
        return NotFoundError
    if status >= 500 or status == 429:
        return UnavailableError
    return InvalidInputError


def _message(response: httpx.Response) -> str:
    """GitHub's own message (``{"message": ...}``), else the start of the body."""
    try:
        data = response.json()
    except ValueError:
        return response.text.strip().splitlines()[0][:200] if response.text.strip() else response.reason_phrase
    if isinstance(data, dict) and data.get("message"):
        return str(data["message"]).splitlines()[0]
    return response.reason_phrase


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


@dataclass
class GitHubClient:
    """Calls to one GitHub (``api_url``) with one token."""

    token: str
    api_url: str = DEFAULT_API_URL
    sleep: Callable[[float], None] = time.sleep
    backoff_s: float = BACKOFF_S
    transport: httpx.BaseTransport | None = None
    _http: httpx.Client = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not self.token:
            raise InvalidInputError("GITHUB_TOKEN is not set: give the step `env: GITHUB_TOKEN: ${{ github.token }}`")
        self._http = httpx.Client(
            base_url=self.api_url.rstrip("/"),
            timeout=TIMEOUT_S,
            transport=self.transport,
            headers={
                "Authorization": f"Bearer {self.token}",
                "Accept": "application/vnd.github+json",
                "X-GitHub-Api-Version": "2022-11-28",
                "User-Agent": f"dunningops/{__version__}",
            },
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> GitHubClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, url: str, *, json: Mapping[str, Any] | None = None) -> httpx.Response:
        """One call, retried on 5xx, 429 and network errors; any other error status raises one line."""
        path = url.removeprefix(self.api_url.rstrip("/"))
        for attempt in range(1, ATTEMPTS + 1):
            last = attempt == ATTEMPTS
            try:
                response = self._http.request(method, url, json=json)
            except httpx.TransportError as exc:
                if last:
                    raise UnavailableError(f"GitHub API: {method} {path}: {type(exc).__name__}: {exc}") from None
                self.sleep(self.backoff_s * 2 ** (attempt - 1))
                continue
            if response.status_code < 400:
                return response
            if (response.status_code >= 500 or response.status_code == 429) and not last:
                wait = _retry_after(response)
                self.sleep(min(MAX_WAIT_S, wait if wait is not None else self.backoff_s * 2 ** (attempt - 1)))
                continue
            kind = _error_kind(response.status_code)
            raise kind(f"GitHub API: {method} {path}: {response.status_code} {_message(response)}")
        raise AssertionError("unreachable")  # the loop returns or raises

    def paginate(self, url: str) -> Iterator[Any]:
        """Every item of a list endpoint, following ``Link: rel="next"``."""
        next_url: str | None = url
        while next_url:
            response = self.request("GET", next_url)
            items = response.json()
            if not isinstance(items, list):
                raise UnavailableError(f"GitHub API: GET {url}: expected a list, got {type(items).__name__}")
            yield from items
            next_url = response.links.get("next", {}).get("url")
