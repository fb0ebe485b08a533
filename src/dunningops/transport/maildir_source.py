"""Reading replies and bounces from a local Maildir: the embedded default, which the demo delivers into.

Layout (Maildir++, as Dovecot and Courier use it): the folder ``INBOX`` is the
maildir itself; any other folder ``Name`` is the sub-maildir ``.Name`` inside
it. A dot or a slash separates levels (``Archive/2026`` is ``.Archive.2026``),
and names are kept in modified UTF-7 on disk (``Traité`` is ``.Trait&AOk-``).

A message's key is its unique file name, the part before ``":2,"``: a reader
that moves it from ``new/`` to ``cur/`` or changes its flags keeps the key.

Flags: a maildir keeps the standard flags as letters after ``":2,"``
(``\\Seen`` S, ``\\Flagged`` F, ``\\Answered`` R) and nothing else. Keywords
(such as the default ``$Dunningops``) are not supported: there is no standard
place for them (Dovecot's ``dovecot-keywords`` file is its own), so asking for
one with ``after_import: flag`` is refused when the source is opened.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from imapclient.imap_utf7 import encode as encode_utf7

from dunningops.errors import UnavailableError
from dunningops.transport.maildir import _hostname
from dunningops.transport.sources import FetchedMail, FolderCursor, MailRef, MailSourceError

__all__ = ["STANDARD_FLAGS", "MaildirSource"]

# IMAP system flag (lower case) -> the maildir info letter. \Deleted (T) and \Draft (D) are left out on
# purpose: marking imported mail for deletion or as a draft is nothing an import should do.
STANDARD_FLAGS = {"\\seen": "S", "\\flagged": "F", "\\answered": "R"}
INFO = ":2,"

_counter = itertools.count(1)


def _key(name: str) -> str:
    # The unique part of a maildir file name ends where its info (":2,FLAGS") begins.
    return name.partition(":")[0]


def _letter(flag: str, where: str) -> str:
    letter = STANDARD_FLAGS.get(flag.lower())
    if letter is None:
        raise MailSourceError(
            f"{where}: settings.inbox.flag {flag!r} cannot be kept in a maildir, which keeps only "
            "\\Seen, \\Flagged and \\Answered; use one of those, after_import: move or keep, or an IMAP inbox"
        )
    return letter


class MaildirSource:
    """A local Maildir as a ``MailSource`` (and, with ``deliver``, a place to put test and demo mail).

    Args:
        path: the maildir (folder ``INBOX``).
        folders: the folders to import.
        check_flag: the flag ``after_import: flag`` will set, refused now if a
            maildir cannot keep it; None when nothing is flagged.
        create: create the maildir (``tmp``, ``new``, ``cur``) if missing, as
            the demo's first run needs; False only checks on first use.
    """

    def __init__(self, path: Path, *, folders: Sequence[str] = ("INBOX",), check_flag: str | None = None, create: bool = True):
        self.path = Path(os.path.abspath(path))
        self.key = f"maildir:{self.path}"
        self.fatal: UnavailableError | None = None
        self._folders = list(folders)
        # Per folder: key -> the file's path relative to the folder ("new/NAME" or "cur/NAME:2,FLAGS") and size,
        # as last scanned, so that fetching a batch does not list the directory again.
        self._index: dict[str, dict[str, tuple[str, int]]] = {}
        if check_flag is not None:
            _letter(check_flag, self._where())
        for folder in self._folders:
            self._dir(folder)  # a folder name a maildir cannot hold is a settings error: say so now
        if create:
            self._create(self.path)

    # --- paths --------------------------------------------------------------------

    def _where(self, folder: str | None = None) -> str:
        return f"maildir {self.path}" + (f", folder {folder!r}" if folder is not None else "")

    def _dir(self, folder: str) -> Path:
        if folder.upper() == "INBOX":
            return self.path
        # "/" and "." both separate levels ("Relances/Traité" is ".Relances.Traité"); no level may be empty, so a
        # name can never reach outside the maildir ("../x" has empty levels).
        levels = folder.replace("/", ".").split(".")
        if not all(levels) or "\0" in folder:
            raise MailSourceError(f"{self._where(folder)}: not a folder name a maildir can hold")
        # Maildir++ keeps names in modified UTF-7 on disk, as Dovecot and Courier do, so they can share it.
        return self.path / ("." + encode_utf7(".".join(levels)).decode("ascii"))

    def _create(self, directory: Path) -> None:
        try:
            for sub in ("tmp", "new", "cur"):
                (directory / sub).mkdir(parents=True, exist_ok=True, mode=0o700)
            if directory != self.path:
                # Maildir++ marks a sub-folder with this empty file (Dovecot and Courier look for it).
                (directory / "maildirfolder").touch(exist_ok=True)
        except OSError as exc:
            error = MailSourceError(f"{self._where()}: cannot create {directory}: {exc.strerror}")
            if directory == self.path:
                self.fatal = error
            raise error from exc

    def _scan(self, folder: str) -> dict[str, tuple[str, int]]:
        if self.fatal is not None:
            raise self.fatal
        directory = self._dir(folder)
        found: dict[str, tuple[str, int]] = {}
        try:
            for sub in ("new", "cur"):
                with os.scandir(directory / sub) as entries:
                    for entry in entries:
                        if entry.name.startswith("."):
                            continue
                        try:
                            if not entry.is_file():
                                continue
                            size = entry.stat().st_size
                        except FileNotFoundError:  # renamed or removed by another reader meanwhile
                            continue
                        found[_key(entry.name)] = (f"{sub}/{entry.name}", size)
        except FileNotFoundError:
            raise MailSourceError(f"{self._where(folder)}: the folder does not exist") from None
        except OSError as exc:
            error = MailSourceError(f"{self._where(folder)}: cannot read the folder: {exc.strerror}")
            if directory == self.path:
                self.fatal = error
            raise error from exc
        self._index[folder] = found
        return found

    def _locate(self, folder: str, keys: Sequence[str], *, rescan: bool = False) -> dict[str, str]:
        """key -> relative path as last scanned, for the keys there; scans again if asked or if a key is unknown.

        A file another reader renamed since the scan (new/ to cur/, new flags)
        shows as FileNotFoundError on use: the callers then ask again with ``rescan``.
        """
        index = self._index.get(folder)
        if rescan or index is None or any(k not in index for k in keys):
            index = self._scan(folder)
        return {k: index[k][0] for k in keys if k in index}

    # --- MailSource -------------------------------------------------------------------

    def folders(self) -> list[str]:
        return list(self._folders)

    def cursor(self, folder: str) -> FolderCursor:
        if self.fatal is not None:
            raise self.fatal
        directory = self._dir(folder)
        if not (directory / "cur").is_dir():
            raise MailSourceError(f"{self._where(folder)}: the folder does not exist")
        return FolderCursor(0, 0)  # no UIDs in a maildir: keys are the file names

    def list_new(self, folder: str, since: FolderCursor | None, batch_size: int = 500) -> Iterator[list[MailRef]]:
        """Every message of the folder, sorted by key: a maildir has no order the importer could resume from."""
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        found = self._scan(folder)
        keys = sorted(found)
        for start in range(0, len(keys), batch_size):
            yield [MailRef(folder, key, 0, found[key][1]) for key in keys[start : start + batch_size]]

    def fetch(self, refs: Sequence[MailRef]) -> list[FetchedMail]:
        if not refs:
            return []
        folder = refs[0].folder
        if any(ref.folder != folder for ref in refs):
            raise ValueError("fetch() takes the refs of one folder at a time")
        directory = self._dir(folder)
        paths = self._locate(folder, [ref.key for ref in refs])
        rescanned = False
        fetched = []
        for ref in refs:
            for attempt in range(2):
                relative = paths.get(ref.key)
                if relative is None:
                    break
                try:
                    with open(directory / relative, "rb") as file:
                        stat = os.fstat(file.fileno())
                        raw = file.read()
                except FileNotFoundError:  # renamed or removed by another reader since the scan
                    if attempt or rescanned:
                        break
                    paths, rescanned = self._locate(folder, [r.key for r in refs], rescan=True), True
                    continue
                except OSError as exc:
                    raise MailSourceError(f"{self._where(folder)}: cannot read {ref.key}: {exc.strerror}") from exc
                # A maildir's arrival time is the file's mtime (what Dovecot shows as INTERNALDATE).
                when = datetime.fromtimestamp(stat.st_mtime, UTC)
                fetched.append(FetchedMail(ref if ref.size is not None else MailRef(folder, ref.key, 0, len(raw)), raw, when))
                break
        return fetched

    def mark_handled(
        self, folder: str, refs: Sequence[MailRef], action: Literal["flag", "move"], *, flag: str, move_to: str | None
    ) -> None:
        """Flag: add the flag's letter to the file name (moving it to ``cur/``). Move: into the ``move_to`` sub-maildir.

        A move keeps the file's name (so its key) and its place in new/ or cur/.
        Refs whose file is gone are left out.
        """
        if action not in ("flag", "move"):
            raise ValueError(f"unknown action {action!r}")
        if not refs:
            return
        directory = self._dir(folder)
        if action == "flag":
            letter = _letter(flag, self._where(folder))
            target = None
        else:
            if not move_to:
                raise MailSourceError(f"{self._where(folder)}: after_import: move needs move_to")
            target = self._dir(move_to)
            if target == directory:
                raise MailSourceError(f"{self._where(folder)}: move_to is the folder being imported")
            self._create(target)
        keys = [ref.key for ref in refs]
        paths = self._locate(folder, keys)
        rescanned = False
        for key in keys:
            for attempt in range(2):
                relative = paths.get(key)
                if relative is None:  # gone: nothing left to mark
                    break
                if target is not None:
                    new_relative, destination = relative, target / relative
                else:
                    name = relative.partition("/")[2]
                    flags = name.partition(INFO)[2] if INFO in name else ""
                    new_relative = f"cur/{key}{INFO}{''.join(sorted(set(flags) | {letter}))}"
                    if new_relative == relative:
                        break
                    destination = directory / new_relative
                try:
                    os.rename(directory / relative, destination)
                except FileNotFoundError:  # renamed by another reader since the scan: find it again, once
                    if attempt or rescanned:
                        break
                    paths, rescanned = self._locate(folder, keys, rescan=True), True
                    continue
                except OSError as exc:
                    raise MailSourceError(f"{self._where(folder)}: cannot {action} {key}: {exc.strerror}") from exc
                index = self._index.get(folder, {})
                if target is None:
                    index[key] = (new_relative, index.get(key, ("", 0))[1])
                else:
                    index.pop(key, None)
                paths[key] = new_relative
                break

    def close(self) -> None:
        """Nothing to release."""

    # --- delivering (the demo and the tests) ----------------------------------------------

    def deliver(self, raw: bytes, folder: str = "INBOX") -> str:
        """Put a message into ``folder``'s ``new/`` as a delivery agent would, and return its key.

        Written into ``tmp/`` under a unique name, then renamed into ``new/``,
        so that a reader never sees half a message. The bytes are kept as given.
        """
        directory = self._dir(folder)
        self._create(directory)
        now = time.time()
        # The classic unique name: seconds, microseconds, pid and a per-process counter, host.
        name = f"{int(now)}.M{int(now % 1 * 1_000_000)}P{os.getpid()}Q{next(_counter)}.{_hostname()}"
        tmp = directory / "tmp" / name
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                view = memoryview(raw)
                while view:
                    view = view[os.write(fd, view) :]
            finally:
                os.close(fd)
            os.rename(tmp, directory / "new" / name)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise MailSourceError(f"{self._where(folder)}: cannot deliver: {exc.strerror}") from exc
        return name
