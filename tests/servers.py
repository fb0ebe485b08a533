"""Real local servers for the test suite (and, later, the benchmarks).

``PostgresServer`` runs a throwaway PostgreSQL cluster: ``initdb`` into a fresh
temporary directory, ``postgres`` on 127.0.0.1 on a free port, stopped and
deleted again by ``stop()``.  See shared/design/servers.md for why it is done
this way on our machines (root, no orphan reaping, root-only pytest tmp dirs).

``DovecotServer`` runs a throwaway Dovecot IMAP server the same way: a config
file in a fresh temporary directory, ``dovecot -F`` on 127.0.0.1 on a free
port, any user name logging in with the password ``secret``.

Only the standard library, psycopg 3 and (for Dovecot, imported when used)
imapclient are used, so the module can be imported by benchmarks as well as by
``conftest.py``.
"""

from __future__ import annotations

import atexit
import glob
import grp
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


# =============================================================================
# Dovecot (IMAP)
# =============================================================================

DOVECOT_INSTALL_HINT = "install it with `apt-get install dovecot-imapd`"
DOVECOT_PASSWORD = "secret"  # the static passdb: every user name logs in with it

# shared/design/servers.md's throwaway config, plus four settings for speed (each says why).
# Every `{` block spans several lines: Dovecot rejects a one-line block.
_DOVECOT_CONF = """\
base_dir = {dir}/run
state_dir = {dir}/state
log_path = {dir}/dovecot.log
info_log_path = {dir}/dovecot.log
protocols = imap
listen = 127.0.0.1
{ssl}
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = {user}
default_internal_group = {group}
default_login_user = {user}
mail_location = maildir:{dir}/mail/%u
# A throwaway server: durability is pointless, and an fsync per APPEND dominates filling a mailbox.
mail_fsync = never
# The wrong-password tests would otherwise wait 2 s for every refusal.
auth_failure_delay = 0
# Tests and benchmarks open several connections per user from 127.0.0.1 (default: 10).
mail_max_userip_connections = 100
passdb {{
  driver = static
  args = password={password}
}}
userdb {{
  driver = static
  args = uid={user} gid={group} home={dir}/home/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {ssl_port}
  }}
}}
service anvil {{
  chroot =
  # No auth penalty (Dovecot's documented switch): else, after a wrong-password test, every login
  # from 127.0.0.1, so every later test, would wait seconds.
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service stats {{
  unix_listener stats-reader {{
    mode = 0600
  }}
  unix_listener stats-writer {{
    mode = 0600
  }}
}}
"""


class DovecotServerError(RuntimeError):
    """Dovecot could not be found or started, or a helper command failed."""


def find_dovecot() -> Path:
    """The ``dovecot`` master binary, with the IMAP service it starts."""
    found = shutil.which("dovecot") or shutil.which("dovecot", path="/usr/sbin:/usr/local/sbin")
    if not found:
        raise DovecotServerError(f"no `dovecot` binary on PATH or in /usr/sbin: {DOVECOT_INSTALL_HINT}")
    if not Path("/usr/lib/dovecot/imap").exists():
        raise DovecotServerError(f"dovecot is installed without its IMAP server: {DOVECOT_INSTALL_HINT}")
    return Path(found)


class DovecotServer:
    """A throwaway Dovecot IMAP server running as a direct child process.

    Plain IMAP (no TLS unless ``tls`` is given) on 127.0.0.1, a free port; mail in Maildir++ under
    ``mail_dir(user)``, owned by the unprivileged account the server runs
    its mail processes as (``nobody``); any user name logs in with
    ``password``. Usage::

        with DovecotServer() as server:
            uid = server.append("alice", "INBOX", b"Subject: hi\\r\\n\\r\\nbody\\r\\n")
            with server.connect("alice") as client:
                ...
    """

    host = "127.0.0.1"
    password = DOVECOT_PASSWORD
    account = "nobody"  # owns the mail; Dovecot refuses mail users below first_valid_uid (500), root included

    def __init__(self, binary: Path | str | None = None, start_timeout: float = 30.0, *, tls: tuple[Path, Path] | None = None):
        self.binary = Path(binary) if binary else None
        self.start_timeout = start_timeout
        # (certificate, key) PEM files: the IMAP port then offers STARTTLS, and ``ssl_port`` speaks TLS from the start.
        self.tls = tls
        self.port: int | None = None
        self.ssl_port: int | None = None
        self.tmpdir: Path | None = None
        self.proc: subprocess.Popen | None = None
        self._log_file = None

    # -- public API ---------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def url(self, user: str) -> str:
        self._require_running()
        return f"imap://{user}@{self.host}:{self.port}"

    @property
    def config_file(self) -> Path:
        self._require_running()
        assert self.tmpdir is not None
        return self.tmpdir / "dovecot.conf"

    def mail_dir(self, user: str) -> Path:
        """The user's maildir (folder INBOX); other folders are ``.Name`` inside it (Maildir++)."""
        self._require_running()
        assert self.tmpdir is not None
        return self.tmpdir / "mail" / user

    def folder_dir(self, user: str, folder: str) -> Path:
        return self.mail_dir(user) if folder.upper() == "INBOX" else self.mail_dir(user) / f".{folder}"

    def ensure_maildir(self, user: str, folder: str = "INBOX") -> Path:
        """Create the user's maildir folder (tmp, new, cur), owned by the mail account, for writing files into it."""
        uid, gid = self._account_ids()
        directory = self.folder_dir(user, folder)
        for path in (self.mail_dir(user), directory):
            for sub in ("", "tmp", "new", "cur"):
                (path / sub).mkdir(mode=0o700, exist_ok=True)
                os.chown(path / sub, uid, gid)
        if directory != self.mail_dir(user):
            (directory / "maildirfolder").touch()
            os.chown(directory / "maildirfolder", uid, gid)
        return directory

    def connect(self, user: str):
        """A logged-in ``imapclient.IMAPClient`` for ``user`` (use it as a context manager: it logs out)."""
        from imapclient import IMAPClient

        self._require_running()
        client = IMAPClient(self.host, self.port, ssl=False, timeout=30)
        try:
            client.login(user, self.password)
        except BaseException:
            client.shutdown()
            raise
        return client

    def append(self, user: str, folder: str, raw: bytes, flags: tuple[str, ...] | list[str] = (), msg_time=None) -> int:
        """APPEND one message (as a real mail server delivers over IMAP) and return its UID."""
        with self.connect(user) as client:
            if folder.upper() != "INBOX" and not client.folder_exists(folder):
                client.create_folder(folder)
            response = client.append(folder, raw, flags=flags, msg_time=msg_time)
        return appenduid(response)

    def create_folder(self, user: str, folder: str) -> None:
        with self.connect(user) as client:
            client.create_folder(folder)

    def uidvalidity(self, user: str, folder: str = "INBOX") -> int:
        with self.connect(user) as client:
            return int(client.folder_status(folder, [b"UIDVALIDITY"])[b"UIDVALIDITY"])

    def set_uidvalidity(self, user: str, folder: str = "INBOX", value: int | None = None) -> int:
        """Give ``folder`` a new UIDVALIDITY (default: the current one + 1), as a server does after rebuilding it.

        Uses ``doveadm mailbox update --uid-validity``: the messages stay, every
        UID a client remembers becomes void. Close your own connections first.
        """
        if value is None:
            value = self.uidvalidity(user, folder) + 1
        self.doveadm("mailbox", "update", "-u", user, "--uid-validity", str(value), folder)
        return value

    def doveadm(self, *args: str) -> str:
        """Run ``doveadm`` against this server's config (as root; it switches to the mail account itself)."""
        result = subprocess.run(
            ["doveadm", "-c", str(self.config_file), *args],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if result.returncode != 0:
            raise DovecotServerError(f"doveadm {' '.join(args)} failed (exit {result.returncode}): {result.stderr.strip()}")
        return result.stdout

    def log(self) -> str:
        """Dovecot's log, then what it printed before it opened its log (config errors, a taken port)."""
        texts = []
        for name in ("dovecot.log", "stdout.log"):
            try:
                assert self.tmpdir is not None
                texts.append((self.tmpdir / name).read_text(errors="replace"))
            except (OSError, AssertionError):
                pass
        return "".join(texts) or "(no server log)"

    def start(self) -> DovecotServer:
        if self.running:
            return self
        if self.binary is None:
            self.binary = find_dovecot()
        self.tmpdir = Path(tempfile.mkdtemp(prefix="dunningops-dovecot-"))
        try:
            uid, gid = self._account_ids()
            # mkdtemp makes it 0700; the mail processes (running as `nobody`) must reach their maildirs below it.
            os.chmod(self.tmpdir, 0o755)
            for sub in ("run", "state", "mail", "home"):
                (self.tmpdir / sub).mkdir()
            for sub in ("mail", "home"):
                os.chown(self.tmpdir / sub, uid, gid)
            # The free port may be taken before Dovecot binds it: try a few.
            for attempt in range(3):
                self.port = free_port()
                self.ssl_port = free_port() if self.tls else None
                self._write_config()
                self._spawn()
                if self._wait_until_ready():
                    break
                if attempt == 2 or "in use" not in self.log():
                    raise DovecotServerError("Dovecot did not start:\n" + self.log()[-4000:])
        except BaseException:
            self.stop()
            raise
        atexit.register(self.stop)
        return self

    def stop(self) -> None:
        """Shut the server down, wait for it, and delete its directory (mail included)."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            # The master's own processes (log, stats, ...) may outlive it by a moment, as orphans: note
            # them, so that stop() returns only once they are gone too (the directory is deleted next).
            services = _child_pids(proc.pid)
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
            _wait_until_exited(services, timeout=10)
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self.tmpdir is not None:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            self.tmpdir = None
        atexit.unregister(self.stop)

    def __enter__(self) -> DovecotServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- internals ----------------------------------------------------------

    def _require_running(self) -> None:
        if self.port is None or not self.running:
            raise DovecotServerError("Dovecot is not running")

    def _account_ids(self) -> tuple[int, int]:
        try:
            pw = pwd.getpwnam(self.account)
        except KeyError:
            raise DovecotServerError(f"there is no `{self.account}` OS account to run Dovecot's mail processes as") from None
        return pw.pw_uid, pw.pw_gid

    def _write_config(self) -> None:
        assert self.tmpdir is not None
        _, gid = self._account_ids()
        if self.tls:
            cert, key = self.tls
            ssl_setting = f"ssl = yes\nssl_cert = <{cert}\nssl_key = <{key}"
        else:
            ssl_setting = "ssl = no"
        text = _DOVECOT_CONF.format(
            dir=self.tmpdir,
            user=self.account,
            group=grp.getgrgid(gid).gr_name,
            port=self.port,
            ssl_port=self.ssl_port or 0,
            ssl=ssl_setting,
            password=self.password,
        )
        (self.tmpdir / "dovecot.conf").write_text(text)

    def _spawn(self) -> None:
        assert self.tmpdir is not None and self.binary is not None
        if self._log_file is not None:
            self._log_file.close()
        # Dovecot logs to log_path itself; this catches what it prints before that (config errors).
        self._log_file = open(self.tmpdir / "stdout.log", "w")
        self.proc = subprocess.Popen(
            [str(self.binary), "-F", "-c", str(self.tmpdir / "dovecot.conf")],
            cwd=self.tmpdir,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            # Own session: a Ctrl-C reaches pytest, which stops the server in teardown.
            start_new_session=True,
        )

    def _wait_until_ready(self) -> bool:
        """Poll until the server greets with ``* OK``; False if it exited (e.g. the port was taken)."""
        assert self.proc is not None and self.port is not None
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.proc = None
                return False
            try:
                with socket.create_connection((self.host, self.port), timeout=2) as sock:
                    if sock.recv(200).startswith(b"* OK"):
                        return True
            except OSError:
                pass
            time.sleep(0.05)
        raise DovecotServerError(f"Dovecot did not greet within {self.start_timeout}s:\n" + self.log()[-4000:])


def _child_pids(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except (OSError, ValueError):
        return []


def _wait_until_exited(pids: list[int], timeout: float) -> None:
    """Wait until each process has exited (gone, or a zombie waiting for PID 1 to reap it)."""
    deadline = time.monotonic() + timeout
    for pid in pids:
        while time.monotonic() < deadline:
            try:
                state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
            except (OSError, IndexError):
                break  # gone
            if state in ("Z", "X"):
                break
            time.sleep(0.02)


def appenduid(response: bytes | str) -> int:
    """The UID in an APPEND answer: ``[APPENDUID <uidvalidity> <uid>] ...`` (UIDPLUS, RFC 4315)."""
    text = response.decode() if isinstance(response, bytes) else str(response)
    found = re.search(r"\[APPENDUID \d+ (\d+)\]", text)
    if not found:
        raise DovecotServerError(f"no APPENDUID in the APPEND answer: {text!r}")
    return int(found.group(1))
