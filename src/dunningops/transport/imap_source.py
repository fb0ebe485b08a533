"""Reading replies and bounces from an IMAP mailbox, with ``imapclient``.

One connection per source, logged in once. Listing and fetching select the
folder read-only (``EXAMINE``), so nothing the import reads changes the
mailbox: bodies are fetched with ``BODY.PEEK[]``, which never sets ``\\Seen``.
Only ``mark_handled`` selects a folder read-write, and it touches the given
UIDs only: the mailbox may be shared with another organisation, so it never
runs a plain ``EXPUNGE``.

Listing and fetching read the server's answers with a small reader of their
own (``parse_sizes``, ``parse_bodies``) instead of imapclient's parser, which
costs more than the transfer (see ``ImapSource._uid_fetch``); everything else,
and any answer of a shape that reader does not know, goes through imapclient.

Every failure becomes a ``MailSourceError`` of one line naming host:port and
the folder. A failure of the connection itself (refused, TLS, login, dropped)
also sets ``fatal``: the source is then done, and says so again without
touching the network.
"""

from __future__ import annotations

import contextlib
import imaplib
import logging
import ssl
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal
from urllib.parse import quote

from imapclient import IMAPClient
from imapclient.exceptions import LoginError

from dunningops.errors import UnavailableError
from dunningops.transport.imap_response import Body, parse_bodies, parse_sizes, parse_uids, uid_set
from dunningops.transport.sources import FetchedMail, FolderCursor, MailRef, MailSourceError

if TYPE_CHECKING:
    from dunningops.transport.base import Secret

__all__ = ["ImapSource"]

log = logging.getLogger(__name__)

Security = Literal["ssl", "starttls", "none"]
# A folder is listed in windows of this many UIDs (one UID FETCH of the sizes each), so that listing a
# mailbox of a million messages holds one window's sizes at a time, not every one.
LIST_WINDOW = 50_000
FETCH_ITEMS = "(BODY.PEEK[] INTERNALDATE RFC822.SIZE)"
DELETED = b"\\Deleted"


def _one_line(exc: BaseException) -> str:
    """What the server or the socket said, as one short line."""
    text = str(exc) or type(exc).__name__
    # imaplib quotes server text as a bytes repr ("b'[AUTHENTICATIONFAILED] ...'"): unwrap it.
    for quote_char in ("'", '"'):
        if text.startswith(f"b{quote_char}") and text.endswith(quote_char):
            text = text[2:-1]
    text = " ".join(text.split())
    return text[:300] + ("…" if len(text) > 300 else "")


def _key_uidvalidity(key: str) -> int | None:
    head, sep, _ = key.partition(":")
    return int(head) if sep and head.isdigit() else None


class ImapSource:
    """An IMAP mailbox as a ``MailSource``.

    Args:
        host, port: the server.
        security: ``ssl`` (TLS from the first byte), ``starttls`` (refused if
            the server does not offer it) or ``none`` (clear text; ``open_source``
            allows it on the loopback only).
        username, password: the login (the password stays a ``Secret``).
        timeout: socket timeout in seconds, for connecting and for each read.
        folders: the folders to import.
        ssl_context: defaults to ``ssl.create_default_context()``, which
            verifies the certificate and the host name.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        security: Security,
        username: str,
        password: Secret,
        timeout: float,
        folders: Sequence[str] = ("INBOX",),
        ssl_context: ssl.SSLContext | None = None,
    ):
        self.host, self.port, self.security = host, port, security
        self.username, self._password, self.timeout = username, password, timeout
        self._folders = list(folders)
        self._ssl_context = ssl_context
        # The user name is quoted so that "billing@acme.fr" keeps the key unambiguous; no secret in it.
        self.key = f"imap://{quote(username, safe='')}@{host.lower()}:{port}"
        self.fatal: UnavailableError | None = None
        self._client: IMAPClient | None = None
        # The selected folder and how (read-only or not), its UIDVALIDITY and PERMANENTFLAGS.
        self._selected: tuple[str, bool] | None = None
        self._uidvalidity = 0
        self._uidnext: int | None = None
        self._exists = 0
        self._permanent_flags: tuple[bytes, ...] | None = None

    # --- connection ---------------------------------------------------------------

    def _where(self, folder: str | None = None) -> str:
        return f"IMAP {self.host}:{self.port}" + (f", folder {folder!r}" if folder is not None else "")

    def _error(self, text: str) -> MailSourceError:
        # Belt and braces: neither imaplib nor Dovecot echo a LOGIN's arguments, but a server might.
        # (A password of under 4 characters is left: masking it would garble every message.)
        secret = self._password.reveal()
        return MailSourceError(text.replace(secret, "***") if len(secret) >= 4 else text)

    def _broken(self, doing: str, exc: BaseException, folder: str | None = None) -> MailSourceError:
        """The connection is unusable: remember why (``fatal``) and drop it."""
        self.fatal = self._error(f"{self._where(folder)}: {doing}: {_one_line(exc)}")
        self._drop()
        return self.fatal

    def connect(self) -> None:
        """Connect, secure the connection as configured, and log in (done on first use otherwise)."""
        if self.fatal is not None:
            raise self.fatal
        if self._client is not None:
            return
        context = self._ssl_context or ssl.create_default_context()
        try:
            client = IMAPClient(
                self.host,
                self.port,
                use_uid=True,
                ssl=self.security == "ssl",
                ssl_context=context if self.security == "ssl" else None,
                timeout=self.timeout,
            )
        except (OSError, imaplib.IMAP4.error) as exc:  # refused, unreachable, timeout, TLS handshake, no greeting
            raise self._broken("cannot connect", exc) from exc
        self._client = client
        # Aware datetimes: INTERNALDATE with its zone, instead of naive local time.
        client.normalise_times = False
        if self.security == "starttls":
            try:
                offered = client.has_capability("STARTTLS")
                if offered:
                    client.starttls(context)
            except (OSError, imaplib.IMAP4.error) as exc:  # a TLS handshake or certificate failure
                raise self._broken("cannot start TLS", exc) from exc
            if not offered:
                self.fatal = self._error(
                    f"{self._where()}: the server does not offer STARTTLS (security: starttls); "
                    "refusing to log in without encryption"
                )
                self._drop()
                raise self.fatal
        try:
            client.login(self.username, self._password.reveal())
        except LoginError as exc:
            raise self._broken(f"login refused for {self.username!r}", exc) from None
        except (OSError, imaplib.IMAP4.error) as exc:
            raise self._broken("cannot log in", exc) from exc

    def _connected(self) -> IMAPClient:
        self.connect()
        assert self._client is not None
        return self._client

    @contextlib.contextmanager
    def _talking(self, doing: str, folder: str | None = None) -> Iterator[IMAPClient]:
        """Turn what imapclient, the socket or TLS raise into one-line ``MailSourceError``s."""
        client = self._connected()
        try:
            yield client
        except MailSourceError:
            raise
        except (OSError, imaplib.IMAP4.abort) as exc:  # the connection is gone (abort: BYE or a protocol error)
            raise self._broken(doing, exc, folder) from exc
        except imaplib.IMAP4.error as exc:  # a NO or BAD to one command: the connection is still usable
            self._selected = None  # a failed SELECT leaves no folder selected
            raise self._error(f"{self._where(folder)}: {doing}: {_one_line(exc)}") from exc

    def _drop(self) -> None:
        client, self._client, self._selected = self._client, None, None
        if client is not None:
            with contextlib.suppress(Exception):
                client.shutdown()

    def close(self) -> None:
        """Log out (politely, when the connection still works) and close the socket."""
        client, self._client, self._selected = self._client, None, None
        if client is None:
            return
        try:
            client.logout()
        except Exception:  # closing a broken connection: nothing more to do
            with contextlib.suppress(Exception):
                client.shutdown()

    def __enter__(self) -> ImapSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _select(self, client: IMAPClient, folder: str, *, readonly: bool, fresh: bool = False) -> int:
        """Select ``folder`` and return its UIDVALIDITY.

        The selection is reused when it allows the work, unless ``fresh``: a
        server need not tell a session that keeps a folder selected about mail
        that arrived since (Dovecot does not, before a NOOP), so a listing
        starts with a new SELECT, which also brings UIDNEXT up to date.
        """
        if not fresh and (self._selected == (folder, readonly) or (readonly and self._selected == (folder, False))):
            return self._uidvalidity
        self._selected = None
        info = client.select_folder(folder, readonly=readonly)
        self._uidvalidity = int(info[b"UIDVALIDITY"])
        uidnext = info.get(b"UIDNEXT")
        self._uidnext = int(uidnext) if uidnext is not None else None
        self._permanent_flags = info.get(b"PERMANENTFLAGS")
        self._exists = int(info.get(b"EXISTS", 0))
        self._selected = (folder, readonly)
        return self._uidvalidity

    def _server_can(self, capability: str) -> bool:
        # A method of its own so that tests can take MOVE away from a server that has it.
        assert self._client is not None
        return bool(self._client.has_capability(capability))

    # --- MailSource -------------------------------------------------------------------

    def folders(self) -> list[str]:
        return list(self._folders)

    def cursor(self, folder: str) -> FolderCursor:
        with self._talking("cannot open the folder", folder) as client:
            return FolderCursor(self._select(client, folder, readonly=True, fresh=True), 0)

    def list_new(self, folder: str, since: FolderCursor | None, batch_size: int = 500) -> Iterator[list[MailRef]]:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        with self._talking("cannot open the folder", folder) as client:
            uidvalidity = self._select(client, folder, readonly=True, fresh=True)
            uidnext, exists = self._uidnext, self._exists
            if not exists:
                return
            # The first message's UID: windows start there, not at 1, so that a folder whose old mail was
            # deleted (UIDs in the millions) is not walked through thousands of empty windows.
            first = parse_uids(self._fetch_by_sequence(client, "1", "(UID)"))
        # A cursor of another UIDVALIDITY says nothing about these UIDs: list everything (a rescan).
        low = since.last_uid + 1 if since is not None and since.uidvalidity == uidvalidity else 1
        low = max(low, min(first, default=1))
        while True:
            high = low + LIST_WINDOW - 1
            last = uidnext is None or high >= uidnext - 1
            with self._talking("cannot list the messages", folder) as client:
                if self._select(client, folder, readonly=True) != uidvalidity:
                    raise self._error(f"{self._where(folder)}: the folder's UIDVALIDITY changed while listing it; run again")
                # One UID FETCH of the sizes lists the window's messages and sizes at once (the importer leaves
                # the too-large ones unread). The last window is open-ended ("n:*") so that mail that arrived
                # since the SELECT is listed too. "*" is the highest UID in the folder, so the server answers
                # "n:*" with the last message even when all are below n (RFC 3501 §6.4.8: "n:*" is "*:n"):
                # keep only the UIDs really in the window.
                sizes = parse_sizes(self._uid_fetch(client, f"{low}:*" if last else f"{low}:{high}", "(RFC822.SIZE)"))
            uids = sorted(uid for uid in sizes if uid >= low and (last or uid <= high))
            for start in range(0, len(uids), batch_size):
                yield [MailRef(folder, f"{uidvalidity}:{uid}", uid, sizes[uid]) for uid in uids[start : start + batch_size]]
            if last:
                return
            low = high + 1

    def fetch(self, refs: Sequence[MailRef]) -> list[FetchedMail]:
        if not refs:
            return []
        folder = refs[0].folder
        if any(ref.folder != folder for ref in refs):
            raise ValueError("fetch() takes the refs of one folder at a time")
        with self._talking("cannot fetch the messages", folder) as client:
            uidvalidity = self._select(client, folder, readonly=True)
            # A ref of another UIDVALIDITY names some other message now: it has vanished, as far as we know.
            wanted = [ref for ref in refs if ref.uid > 0 and _key_uidvalidity(ref.key) == uidvalidity]
            if not wanted:
                return []
            found, unparsed = parse_bodies(self._uid_fetch(client, uid_set([ref.uid for ref in wanted]), FETCH_ITEMS))
            if unparsed - found.keys():
                # A shape the fast reader does not know (a body sent as a quoted string): let imapclient read those.
                found.update(self._fetch_with_imapclient(client, sorted(unparsed - found.keys())))
        fetched = []
        for ref in wanted:
            item = found.get(ref.uid)
            if item is None:  # expunged since it was listed
                continue
            raw, internal_date, size = item
            if ref.size is None:
                ref = replace(ref, size=size if size is not None else len(raw))
            # The bytes object imaplib read the literal into, handed on as it is (no copy).
            fetched.append(FetchedMail(ref, raw, internal_date))
        return fetched

    def _uid_fetch(self, client: IMAPClient, uid_set: str, items: str) -> list[bytes | tuple[bytes, bytes]]:
        """``UID FETCH`` through imapclient's imaplib connection, answered as imaplib's raw list.

        imapclient's response parser is pure Python and token by token: on 10,000
        small messages it costs more than the transfer itself (a bare BODY.PEEK[]
        fetch with it runs at about half the speed of this), and the import cycle's
        goal is a ratio to that bare fetch. The answers asked for here have a fixed,
        simple shape that ``parse_sizes`` / ``parse_bodies`` read with anchored
        regular expressions. ``_imap`` is how imapclient itself sends commands.
        """
        typ, data = client._imap.uid("FETCH", uid_set, items)
        if typ != "OK":
            raise imaplib.IMAP4.error(f"UID FETCH failed: {_one_line(Exception(data[-1] if data else typ))}")
        return [item for item in data if item is not None]

    def _fetch_by_sequence(self, client: IMAPClient, sequence_set: str, items: str) -> list[bytes | tuple[bytes, bytes]]:
        typ, data = client._imap.fetch(sequence_set, items)
        if typ != "OK":
            raise imaplib.IMAP4.error(f"FETCH failed: {_one_line(Exception(data[-1] if data else typ))}")
        return [item for item in data if item is not None]

    def _fetch_with_imapclient(self, client: IMAPClient, uids: list[int]) -> dict[int, Body]:
        found: dict[int, Body] = {}
        for uid, item in client.fetch(uids, [b"BODY.PEEK[]", b"INTERNALDATE", b"RFC822.SIZE"]).items():
            raw = item.get(b"BODY[]")
            if raw is None:
                continue
            when = item.get(b"INTERNALDATE")
            size = item.get(b"RFC822.SIZE")
            found[uid] = (
                raw,
                when.astimezone(UTC) if isinstance(when, datetime) and when.tzinfo else None,
                int(size) if size is not None else None,
            )
        return found

    def mark_handled(
        self, folder: str, refs: Sequence[MailRef], action: Literal["flag", "move"], *, flag: str, move_to: str | None
    ) -> None:
        """Flag (``STORE +FLAGS``) or move exactly these messages.

        A move uses ``MOVE`` when the server has it, else ``COPY``, ``\\Deleted``
        and ``UID EXPUNGE`` of these UIDs only (UIDPLUS); without either it
        refuses, since a plain ``EXPUNGE`` would also remove what someone else
        marked deleted. ``move_to`` is created when missing. Refs of an older
        UIDVALIDITY are left alone (their UIDs now name other messages).
        """
        if action not in ("flag", "move"):
            raise ValueError(f"unknown action {action!r}")
        if action == "move" and not move_to:
            raise self._error(f"{self._where(folder)}: after_import: move needs move_to")
        if action == "move" and move_to == folder:
            raise self._error(f"{self._where(folder)}: move_to is the folder being imported")
        if not refs:
            return
        doing = "cannot flag the messages" if action == "flag" else f"cannot move the messages to {move_to!r}"
        with self._talking(doing, folder) as client:
            uidvalidity = self._select(client, folder, readonly=False)
            uids = sorted({ref.uid for ref in refs if ref.uid > 0 and _key_uidvalidity(ref.key) == uidvalidity})
            if len(uids) < len(refs):
                log.warning(
                    "%s: %d message(s) of another UIDVALIDITY left as they are", self._where(folder), len(refs) - len(uids)
                )
            if not uids:
                return
            if action == "flag":
                self._check_flag_is_kept(folder, flag)
                client.add_flags(uids, [flag], silent=True)
                return
            assert move_to is not None
            self._ensure_folder(client, move_to)
            if self._server_can("MOVE"):
                client.move(uids, move_to)
            elif self._server_can("UIDPLUS"):
                client.copy(uids, move_to)
                client.add_flags(uids, [DELETED], silent=True)
                client.uid_expunge(uids)  # UID EXPUNGE: these UIDs only, whatever else is marked \Deleted
            else:
                raise self._error(
                    f"{self._where(folder)}: the server has neither MOVE nor UIDPLUS, so it cannot remove only "
                    "the imported messages; use after_import: flag"
                )

    def _check_flag_is_kept(self, folder: str, flag: str) -> None:
        # PERMANENTFLAGS lists the flags the folder keeps; "\*" means any new keyword. Absent: assume it does.
        permanent = {f.lower() for f in self._permanent_flags or ()}
        if self._permanent_flags is not None and flag.encode().lower() not in permanent and b"\\*" not in permanent:
            raise self._error(
                f"{self._where(folder)}: the server does not keep the flag {flag!r} in this folder (PERMANENTFLAGS)"
            )

    def _ensure_folder(self, client: IMAPClient, folder: str) -> None:
        if client.folder_exists(folder):
            return
        try:
            client.create_folder(folder)
        except imaplib.IMAP4.error:
            # Another client (the other organisation) may have created it meanwhile.
            if not client.folder_exists(folder):
                raise
