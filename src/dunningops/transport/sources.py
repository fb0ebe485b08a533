"""What every mail source promises (``MailSource``, ``MailRef``, ``FetchedMail``), and ``open_source`` from settings.

A mail source is where the import cycle reads customers' replies and bounces:
an IMAP mailbox (``imap_source``) or a local Maildir (``maildir_source``, the
embedded default the demo writes into). Sources only read, and change only the
messages they are told to (``mark_handled``): two organisations may share one
mailbox, each keeping its own position in it.

Where a folder's import stands is the importer's to keep (a ``FolderCursor``
per source key and folder, in its store); a source only says what is there.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

from dunningops.errors import UnavailableError
from dunningops.transport.base import Secret, _is_loopback

if TYPE_CHECKING:
    from dunningops.spec import models

__all__ = [
    "DEFAULT_IMAP_PORTS",
    "FetchedMail",
    "FolderCursor",
    "MailRef",
    "MailSource",
    "MailSourceError",
    "open_source",
]

HandledAction = Literal["flag", "move"]
DEFAULT_IMAP_PORTS = {"ssl": 993, "starttls": 143, "none": 143}


@dataclass(frozen=True, slots=True)
class FolderCursor:
    """Where a folder's import stands, persisted by the importer in its store.

    ``uidvalidity`` is 0 for a maildir (no UIDs there); ``last_uid`` is 0 when
    nothing was seen yet. A different ``uidvalidity`` than the folder's current
    one means every UID the importer remembers is void: it rescans.
    """

    uidvalidity: int
    last_uid: int


@dataclass(frozen=True, slots=True)
class MailRef:
    """A message found in a folder, not yet read.

    ``key`` is stable within the source: IMAP ``"UIDVALIDITY:UID"``, a
    maildir's unique file name (the part before ``":2,"``, which survives a
    move from new/ to cur/ and any flag change). ``uid`` is the IMAP UID (0 for
    a maildir). ``size`` is RFC822.SIZE or the file size, None when unknown.
    """

    folder: str
    key: str
    uid: int
    size: int | None


@dataclass(frozen=True, slots=True)
class FetchedMail:
    """One message read from its folder: its bytes as stored, and when it arrived (aware, UTC)."""

    ref: MailRef
    raw: bytes
    internal_date: datetime | None


class MailSource(Protocol):
    """Reads one mailbox; one instance per import run, ``close()`` when done.

    Every method raises ``MailSourceError`` (one line, never a secret) when it
    cannot do its work. ``fatal`` is None until the source as a whole cannot
    work any more (unreachable, login refused, connection lost, the maildir
    unreadable): it then holds that error, every later call raises it again
    without trying, and the importer stops the run. An error that concerns one
    folder (missing, not selectable) is raised without setting ``fatal``, so
    the other folders can still be read.
    """

    key: str
    fatal: UnavailableError | None

    def folders(self) -> list[str]:
        """The folders to import, as configured (``settings.inbox.folders``)."""
        ...

    def cursor(self, folder: str) -> FolderCursor:
        """The folder's *current* UIDVALIDITY (``last_uid`` unused, 0), to detect a change."""
        ...

    def list_new(self, folder: str, since: FolderCursor | None, batch_size: int = 500) -> Iterator[list[MailRef]]:
        """The messages after ``since`` in ascending order, in batches of at most ``batch_size``.

        IMAP: every message when ``since`` is None or of another UIDVALIDITY (a
        rescan; the importer de-duplicates), else the UIDs above
        ``since.last_uid``. A maildir lists every message, sorted by key: the
        importer leaves out the keys it knows.
        """
        ...

    def fetch(self, refs: Sequence[MailRef]) -> list[FetchedMail]:
        """The messages of ``refs`` (one folder), in one round-trip, without setting ``\\Seen``.

        A message that vanished since it was listed is absent from the result.
        """
        ...

    def mark_handled(
        self, folder: str, refs: Sequence[MailRef], action: HandledAction, *, flag: str, move_to: str | None
    ) -> None:
        """Flag or move exactly these messages, never any other (a shared mailbox)."""
        ...

    def close(self) -> None:
        """Log out and release the connection; the source is not used again."""
        ...


class MailSourceError(UnavailableError):
    """The mail source cannot be read as configured: unreachable, login refused, folder missing, settings wrong.

    Its message is one line naming the server (host:port or the maildir path)
    and the folder, never a password.
    """


def _from_env(env: Mapping[str, str], variable: str, what: str) -> str:
    # The message names the variable, never a value (the config names variables only).
    value = env.get(variable)
    if not value:
        state = "is empty" if value == "" else "is not set"
        raise MailSourceError(f"settings.inbox: the IMAP {what} is read from the environment variable {variable}, which {state}")
    return value


def open_source(
    settings: models.Inbox, base_dir: Path, env: Mapping[str, str] = os.environ, *, connect: bool = True
) -> MailSource:
    """The mail source described by ``settings.inbox``.

    Args:
        settings: the ``Inbox`` settings model.
        base_dir: what a relative maildir ``path`` is relative to (the repo root).
        env: where ``username_env`` / ``password_env`` are looked up; secrets
            come from there only, never from the config.
        connect: connect and log in now (IMAP), or check the maildir now, so
            that a wrong setting fails here; False defers that to first use.

    Raises:
        MailSourceError: a credential variable is missing, a password would
            cross the network in clear text, a maildir cannot keep the
            configured flag, or (``connect``) the server or maildir refuses.
    """
    if settings.kind == "maildir":
        from dunningops.transport.maildir_source import MaildirSource

        path = Path(settings.path)
        return MaildirSource(
            path if path.is_absolute() else base_dir / path,
            folders=list(settings.folders),
            check_flag=settings.flag if settings.after_import == "flag" else None,
            create=connect,
        )

    from dunningops.transport.imap_source import ImapSource

    assert settings.host  # the model requires a host for imap
    if not (settings.username_env and settings.password_env):
        raise MailSourceError(
            "settings.inbox: an imap inbox needs username_env and password_env (the environment variables holding the login)"
        )
    username = _from_env(env, settings.username_env, "username")
    password = Secret(_from_env(env, settings.password_env, "password"))
    # A password in clear text is only acceptable on this machine's loopback (the same rule as SMTP).
    if settings.security == "none" and not _is_loopback(settings.host):
        raise MailSourceError(
            f"settings.inbox: refusing to send the IMAP password to {settings.host} without encryption "
            "(security: none); use ssl or starttls"
        )
    source = ImapSource(
        settings.host,
        settings.port or DEFAULT_IMAP_PORTS[settings.security],
        security=settings.security,
        username=username,
        password=password,
        timeout=settings.timeout_seconds,
        folders=list(settings.folders),
    )
    if connect:
        source.connect()
    return source
