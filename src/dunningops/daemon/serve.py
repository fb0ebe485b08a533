"""`dunningops daemon`: the store's daemon lock, the listening socket (bound before anything
starts, so that a port in use is one clear line), logs, the uvicorn server in a thread, the loop.

uvicorn installs no signal handlers outside the main thread, so SIGTERM and SIGINT reach ours,
which stop the loop (daemon/loop.py); the HTTP server stops once the loop has ended.
"""

from __future__ import annotations

import signal
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import make_url

from dunningops.daemon import logs
from dunningops.daemon.loop import Daemon
from dunningops.daemon.metrics import Metrics
from dunningops.errors import DunningOpsError, UnavailableError

if TYPE_CHECKING:
    from dunningops.app import App

__all__ = ["run_daemon"]

HTTP_STOP_S = 10.0


def run_daemon(
    app: App, *, host: str | None = None, port: int | None = None, once: bool = False, json_logs: bool | None = None
) -> int:
    """`dunningops daemon`: the loop and the HTTP server until SIGTERM or SIGINT; the exit code.

    ``host`` and ``port`` override ``settings.daemon``; ``once`` runs each due cycle once, without
    the HTTP server.

    Raises:
        LockError: another daemon runs on this SQLite store.
        UnavailableError: the port cannot be listened on.
    """
    from dunningops.store.lock import daemon_lock

    with daemon_lock(app.store):
        settings = _daemon_settings(app)
        host, port = host or settings.host, port or settings.port
        listening = None if once else _listen(host, port)
        logs.configure(json=json_logs)
        logs.add_secrets([make_url(app.url).password])
        metrics = Metrics()
        daemon = Daemon(app, metrics=metrics)
        server = None if listening is None else _HttpServer(app, metrics, listening)
        with _signals(daemon):
            if server is not None:
                server.start()
            try:
                return daemon.run(once=once, http=None if once else f"{host}:{port}")
            finally:
                if server is not None:
                    server.stop()


def _daemon_settings(app: App) -> Any:
    """``settings.daemon`` as applied; its defaults when nothing is applied yet (the loop then waits)."""
    from dunningops.dunning.runconfig import RunConfig
    from dunningops.spec.models import Daemon as DaemonSettings

    try:
        with app.session() as session:
            return RunConfig.from_store(session).settings.daemon
    except DunningOpsError:
        return DaemonSettings()


def _listen(host: str, port: int) -> socket.socket:
    """The server's socket, bound now: a port in use or an unknown host is one clear line."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise UnavailableError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise UnavailableError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock


class _HttpServer:
    """uvicorn serving the one web application, in a thread of its own."""

    def __init__(self, app: App, metrics: Metrics, sock: socket.socket):
        import uvicorn

        from dunningops.web import create_app

        self.sock = sock
        config = uvicorn.Config(
            create_app(app, metrics=metrics),
            log_config=None,  # its records go through our handler (logs.configure)
            access_log=False,  # public links carry tokens in their paths
            lifespan="off",
            server_header=False,
            timeout_graceful_shutdown=5,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, name="http", daemon=True)

    def start(self) -> None:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise UnavailableError("the HTTP server did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(HTTP_STOP_S)
        self.sock.close()


@contextmanager
def _signals(daemon: Daemon) -> Iterator[None]:
    """SIGTERM and SIGINT stop the loop (after the cycle in flight); the previous handlers come back after."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread (a test's daemon is stopped directly)
        return

    def handle(signum: int, _frame: object) -> None:
        daemon.stop(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
