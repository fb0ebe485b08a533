"""The web application served for real: uvicorn on a free loopback port, in a thread.

``serve(asgi_app)`` is a context manager yielding the base URL (``http://127.0.0.1:PORT``); the
server is stopped (and its thread joined) when the block ends. Tests then talk to it over real
HTTP (httpx, Playwright), never through an in-process test client.

Fixture (register in conftest.py with ``from web_fixtures import live_server  # noqa: F401``):

* ``live_server``: a function ``live_server(asgi_app) -> base_url``; every server it started is
  stopped after the test.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import pytest
import uvicorn

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


@contextmanager
def serve(asgi_app, *, port: int | None = None) -> Iterator[str]:
    port = port or free_port()
    config = uvicorn.Config(asgi_app, host=HOST, port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name=f"uvicorn:{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the test web server did not start on {HOST}:{port}")
        time.sleep(0.01)
    try:
        yield f"http://{HOST}:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def live_server():
    with ExitStack() as stack:
        yield lambda asgi_app: stack.enter_context(serve(asgi_app))
