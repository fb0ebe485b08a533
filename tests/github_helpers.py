"""A local stand-in for GitHub's REST API: issue comments in memory, on 127.0.0.1.

It checks the Authorization header, pages lists with ``Link: rel="next"`` (``page_size``), and
can answer the next requests with given error statuses (``faults``) to exercise the retries.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

TOKEN = "ghs_test-token-0123456789abcdef"
REPO = "acme/credit-config"


@dataclass
class FakeGitHub:
    token: str = TOKEN
    page_size: int = 30
    comments: dict[int, list[dict[str, Any]]] = field(default_factory=dict)  # issue number -> comments
    faults: list[tuple[int, str]] = field(default_factory=list)  # (status, message) for the next requests
    requests: list[tuple[str, str]] = field(default_factory=list)
    url: str = ""
    _next_id: int = 1000
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, number: int, body: str, user: str = "someone-else[bot]") -> dict[str, Any]:
        with self._lock:
            self._next_id += 1
            comment = {
                "id": self._next_id,
                "body": body,
                "user": {"login": user},
                "html_url": f"https://github.com/{REPO}/pull/{number}#issuecomment-{self._next_id}",
            }
            self.comments.setdefault(number, []).append(comment)
            return comment

    def bodies(self, number: int) -> list[str]:
        return [c["body"] for c in self.comments.get(number, [])]


def _handler(gh: FakeGitHub) -> type[BaseHTTPRequestHandler]:
    list_or_post = re.compile(rf"^/repos/{REPO}/issues/(\d+)/comments$")
    one = re.compile(rf"^/repos/{REPO}/issues/comments/(\d+)$")

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # quiet test output
            pass

        def _send(self, status: int, data: Any, headers: dict[str, str] | None = None) -> None:
            raw = json.dumps(data).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(raw)

        def _body(self) -> dict[str, Any]:
            length = int(self.headers.get("Content-Length") or 0)
            return json.loads(self.rfile.read(length) or b"{}")

        def _serve(self, method: str) -> None:
            parts = urlsplit(self.path)
            gh.requests.append((method, self.path))
            payload = self._body() if method in ("POST", "PATCH") else {}
            if self.headers.get("Authorization") != f"Bearer {gh.token}":
                return self._send(401, {"message": "Bad credentials"})
            if gh.faults:
                status, message = gh.faults.pop(0)
                return self._send(status, {"message": message}, {"Retry-After": "0"} if status == 429 else None)
            if m := list_or_post.match(parts.path):
                number = int(m.group(1))
                if method == "GET":
                    page = int(parse_qs(parts.query).get("page", ["1"])[0])
                    items = gh.comments.get(number, [])
                    start = (page - 1) * gh.page_size
                    headers = {}
                    if start + gh.page_size < len(items):
                        nxt = f"{gh.url}{parts.path}?per_page={gh.page_size}&page={page + 1}"
                        headers["Link"] = f'<{nxt}>; rel="next"'
                    return self._send(200, items[start : start + gh.page_size], headers)
                if method == "POST":
                    if len(payload.get("body", "")) > 65_536:
                        return self._send(422, {"message": "Validation Failed: body is too long (maximum is 65536 characters)"})
                    return self._send(201, gh.add(number, payload["body"], user="github-actions[bot]"))
            if (m := one.match(parts.path)) and method == "PATCH":
                for comments in gh.comments.values():
                    for comment in comments:
                        if comment["id"] == int(m.group(1)):
                            if len(payload.get("body", "")) > 65_536:
                                return self._send(422, {"message": "Validation Failed: body is too long"})
                            comment["body"] = payload["body"]
                            return self._send(200, comment)
            return self._send(404, {"message": "Not Found"})

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

        def do_PATCH(self) -> None:
            self._serve("PATCH")

    return Handler


def start_fake_github() -> tuple[FakeGitHub, ThreadingHTTPServer]:
    gh = FakeGitHub()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(gh))
    gh.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return gh, server
