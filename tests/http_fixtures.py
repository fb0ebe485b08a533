"""A local stand-in for a Slack incoming webhook: ``http.server`` on 127.0.0.1, recording what it receives.

``WebhookServer`` runs a ``ThreadingHTTPServer`` on a free loopback port in its thread. Every
request is recorded (method, path, headers, raw body, the JSON body when it parses) and answered
as Slack documents for incoming webhooks: ``200`` with the text ``ok``; ``respond(status, text)``
sets the answer of the next requests (``times=None``: until told otherwise), ``delay`` holds the
answer back (to test timeouts). Never the real Slack (shared/design/servers.md).

Fixture (register in conftest.py with ``from http_fixtures import slack_webhook  # noqa: F401``):

* ``slack_webhook``: a started ``WebhookServer``; ``.url`` (``http://127.0.0.1:PORT/services/T/B/X``),
  ``.received`` (a list of ``Request``), ``.respond(status, text="", times=1, delay=0)``. Stopped after the test.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

HOST = "127.0.0.1"
PATH = "/services/T000/B000/XXXXXXXX"  # the shape of a webhook URL's path: the secret part


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None


@dataclass
class _Answer:
    status: int
    text: str
    times: int | None  # None: every request from now on
    delay: float


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        stand_in = self.server.stand_in
        stand_in._record(Request("POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body))
        answer = stand_in._next_answer()
        if answer.delay:
            time.sleep(answer.delay)
        payload = answer.text.encode()
        try:
            self.send_response(answer.status)
            self.send_header("Content-Type", "text/html")  # what Slack's webhooks answer with
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up waiting (a timeout test)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: the tests read `received`


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    stand_in: WebhookServer


class WebhookServer:
    """An incoming-webhook stand-in on 127.0.0.1; ``start()``, then POST to ``url``; ``stop()``."""

    def __init__(self) -> None:
        self.received: list[Request] = []
        self._answers: list[_Answer] = []
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self._server is not None, "not started"
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}{PATH}"

    def start(self) -> WebhookServer:
        self._server = _Server((HOST, 0), _Handler)
        self._server.stand_in = self
        self._thread = threading.Thread(target=self._server.serve_forever, name="webhook-stand-in", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def respond(self, status: int, text: str = "", *, times: int | None = 1, delay: float = 0.0) -> None:
        """Answer the next ``times`` requests (None: all of them from now on) with ``status`` and ``text``."""
        with self._lock:
            self._answers.append(_Answer(status, text, times, delay))

    def _record(self, request: Request) -> None:
        with self._lock:
            self.received.append(request)

    def _next_answer(self) -> _Answer:
        with self._lock:
            if not self._answers:
                return _Answer(200, "ok", None, 0.0)
            answer = self._answers[0]
            if answer.times is not None:
                answer.times -= 1
                if answer.times <= 0:
                    self._answers.pop(0)
            return answer

    def texts(self) -> list[str]:
        """The ``text`` of every JSON body received, in order."""
        return [r.json["text"] for r in self.received if isinstance(r.json, dict) and "text" in r.json]


@pytest.fixture
def slack_webhook() -> Iterator[WebhookServer]:
    server = WebhookServer().start()
    try:
        yield server
    finally:
        server.stop()
