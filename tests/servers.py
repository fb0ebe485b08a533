"""Real local servers for the test suite (and, later, the benchmarks).

``PostgresServer`` runs a throwaway PostgreSQL cluster: ``initdb`` into a fresh
temporary directory, ``postgres`` on 127.0.0.1 on a free port, stopped and
deleted again by ``stop()``.  See shared/design/servers.md for why it is done
this way on our machines (root, no orphan reaping, root-only pytest tmp dirs).

Only the standard library and psycopg 3 are used, so the module can be imported
by benchmarks as well as by ``conftest.py``.
"""

from __future__ import annotations

import atexit
import glob
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg
from psycopg import sql

INSTALL_HINT = "install it with `apt-get install postgresql`"


class PostgresServerError(RuntimeError):
    """The server could not be found, initialised or started."""


def find_postgres_bindir() -> Path:
    """Return the bin directory of the highest installed PostgreSQL version.

    Debian/Ubuntu install the server binaries under /usr/lib/postgresql/N/bin,
    which is not on PATH.
    """
    candidates = [
        Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")
    ]
    candidates = [d for d in candidates if (d / "postgres").exists()]
    if not candidates:
        raise PostgresServerError(
            f"no PostgreSQL server under /usr/lib/postgresql/*/bin: {INSTALL_HINT}"
        )

    def version_key(bindir: Path) -> tuple[int, ...]:
        # "/usr/lib/postgresql/15/bin" -> (15,); non-numeric parts sort first.
        return tuple(int(n) for n in re.findall(r"\d+", bindir.parent.name))

    return max(candidates, key=version_key)


def free_port() -> int:
    """Ask the kernel for a free TCP port on the loopback interface.

    There is a small window between closing this socket and the server binding
    the port; ``PostgresServer.start`` retries with a new port if it loses it.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    """A throwaway PostgreSQL cluster running as a direct child process.

    Usage::

        server = PostgresServer()
        server.start()
        try:
            server.create_database("app")
            engine = sqlalchemy.create_engine(server.url("app"))
            ...
        finally:
            server.stop()

    Also usable as a context manager (``with PostgresServer() as server:``).
    """

    user = "postgres"  # the database superuser created by initdb
    host = "127.0.0.1"

    def __init__(self, bindir: Path | str | None = None, start_timeout: float = 60.0):
        self.bindir = Path(bindir) if bindir else None
        self.start_timeout = start_timeout
        self.port: int | None = None
        self.tmpdir: Path | None = None
        self.proc: subprocess.Popen | None = None
        self._log_file = None

    # -- public API ---------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def url(self, dbname: str = "postgres") -> str:
        """SQLAlchemy URL (psycopg 3 driver) for database ``dbname``."""
        self._require_running()
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{dbname}"

    def dsn(self, dbname: str = "postgres") -> str:
        """libpq connection string for psycopg.connect()."""
        self._require_running()
        return f"host={self.host} port={self.port} user={self.user} dbname={dbname}"

    def create_database(self, name: str) -> None:
        # CREATE/DROP DATABASE cannot run inside a transaction: autocommit.
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    def drop_database(self, name: str) -> None:
        # WITH (FORCE) (PostgreSQL 13+) terminates sessions still connected to
        # the database, e.g. an engine pool a test forgot to dispose.
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(name)
                )
            )

    def start(self) -> "PostgresServer":
        if self.running:
            return self
        if self.bindir is None:
            self.bindir = find_postgres_bindir()
        self.tmpdir = Path(tempfile.mkdtemp(prefix="dunningops-pg-"))
        try:
            self._chown_to_server_user(self.tmpdir)
            self._initdb()
            # The free port may be taken by someone else before postgres binds
            # it; try a few different ports before giving up.
            for attempt in range(3):
                self.port = free_port()
                self._spawn()
                if self._wait_until_ready():
                    break
                if attempt == 2 or "in use" not in self._read_log():
                    raise PostgresServerError(
                        "PostgreSQL did not start:\n" + self._read_log()
                    )
        except BaseException:
            self.stop()
            raise
        # Safety net for runs interrupted outside pytest's teardown.
        atexit.register(self.stop)
        return self

    def stop(self) -> None:
        """Shut the server down, wait for it, and delete its data directory."""
        proc, self.proc = self.proc, None
        if proc is not None:
            _shutdown(proc)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self.tmpdir is not None:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            self.tmpdir = None
        atexit.unregister(self.stop)

    def __enter__(self) -> "PostgresServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- internals ----------------------------------------------------------

    def _require_running(self) -> None:
        if self.port is None or not self.running:
            raise PostgresServerError("PostgreSQL server is not running")

    @staticmethod
    def _as_root() -> bool:
        return os.geteuid() == 0

    def _server_user_kwargs(self) -> dict:
        """Popen arguments that run a child as the ``postgres`` OS account.

        PostgreSQL refuses to run as root.  Popen's user=/group= switch
        credentials in the forked child just before exec, so the server stays a
        *direct* child of this process (no runuser/su wrapper in between that
        would have to forward our shutdown signal).  As a non-root user we just
        run the server as ourselves.
        """
        if not self._as_root():
            return {}
        try:
            pw = pwd.getpwnam("postgres")
        except KeyError:
            raise PostgresServerError(
                f"running as root but there is no `postgres` OS account: {INSTALL_HINT}"
            ) from None
        env = dict(os.environ, HOME=pw.pw_dir, USER="postgres", LOGNAME="postgres")
        return {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": [], "env": env}

    def _chown_to_server_user(self, path: Path) -> None:
        if self._as_root():
            pw = pwd.getpwnam("postgres")
            os.chown(path, pw.pw_uid, pw.pw_gid)

    def _initdb(self) -> None:
        assert self.tmpdir is not None and self.bindir is not None
        result = subprocess.run(
            [
                str(self.bindir / "initdb"),
                "-D", str(self.tmpdir / "data"),
                "-A", "trust",
                "-U", self.user,
                "-E", "UTF8",
                "--no-locale",  # C collation: deterministic, independent of the host
                "--no-sync",  # throwaway cluster, no need to fsync
            ],
            cwd=self.tmpdir,  # our cwd may not be readable by postgres
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            **self._server_user_kwargs(),
        )
        if result.returncode != 0:
            raise PostgresServerError(
                f"initdb failed (exit {result.returncode}):\n{result.stdout}"
            )

    def _spawn(self) -> None:
        assert self.tmpdir is not None and self.bindir is not None
        if self._log_file is not None:
            self._log_file.close()
        # Opened by us (root) and inherited as stdout/stderr, so the server
        # never needs to open it itself.
        self._log_file = open(self.tmpdir / "postgres.log", "w")
        self.proc = subprocess.Popen(
            [
                str(self.bindir / "postgres"),
                "-D", str(self.tmpdir / "data"),
                "-p", str(self.port),
                "-k", str(self.tmpdir),  # unix socket in our dir, not /var/run
                "-c", "listen_addresses=127.0.0.1",
                # Durability is pointless for a test cluster; these make it fast.
                "-c", "fsync=off",
                "-c", "synchronous_commit=off",
                "-c", "full_page_writes=off",
            ],
            cwd=self.tmpdir,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            # Own session: a Ctrl-C in the terminal reaches pytest, which then
            # stops the server in teardown, instead of killing it mid-test.
            start_new_session=True,
            **self._server_user_kwargs(),
        )

    def _wait_until_ready(self) -> bool:
        """Poll until the server accepts connections; False if it exited."""
        assert self.proc is not None
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.proc = None
                return False
            try:
                with psycopg.connect(self.dsn(), connect_timeout=2):
                    return True
            except psycopg.OperationalError:
                time.sleep(0.1)
        raise PostgresServerError(
            f"PostgreSQL did not accept connections within {self.start_timeout}s:\n"
            + self._read_log()
        )

    def _read_log(self) -> str:
        try:
            return (self.tmpdir / "postgres.log").read_text(errors="replace")
        except (OSError, TypeError):
            return "(no server log)"


def _shutdown(proc: subprocess.Popen) -> None:
    """Stop a postmaster and reap it.

    SIGINT is PostgreSQL's "fast" shutdown: it disconnects clients and exits.
    (SIGTERM, Popen.terminate(), is "smart" shutdown and would wait forever for
    connections left open by a pooled engine.)  The postmaster waits for all
    its backends before it exits, so nothing is left behind once it is reaped.
    """
    for sig, timeout in ((signal.SIGINT, 30), (signal.SIGQUIT, 10), (signal.SIGKILL, 10)):
        if proc.poll() is not None:
            return
        try:
            proc.send_signal(sig)
            proc.wait(timeout=timeout)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue
