"""The embedded transport: each message becomes a file in a local Maildir (the demo's default).

Delivery follows the Maildir convention so that any mail reader (mutt,
Dovecot, Python's ``mailbox``) can open the folder: write into ``tmp/``
under a unique name, then rename into ``new/``, so a reader never sees a
half-written file.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import socket
import time
from collections.abc import Sequence
from pathlib import Path

from dunningops.transport.base import SendResult, TransportError
from dunningops.transport.message import OutgoingMessage, envelope_sender, recipients, to_bytes

__all__ = ["MaildirTransport"]

_counter = itertools.count(1)

# The folder itself is wrong (not writable, read-only, gone, not a directory): no later message
# can fare better, so the transport stops. A full disk or an I/O error only defers the message.
_FOLDER_ERRORS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOENT, errno.ENOTDIR})


def _hostname() -> str:
    # Maildir names may not contain "/" or ":" (":" starts the flags in cur/).
    return socket.gethostname().replace("/", "\\057").replace(":", "\\072") or "localhost"


class MaildirTransport:
    """Writes messages into ``path/new`` (creating ``cur``, ``new`` and ``tmp``).

    Each file gets the two lines a local delivery agent would prepend:
    ``Return-Path`` (the envelope sender) and ``X-Envelope-To`` (every
    envelope recipient, Bcc included), so the demo shows who would have
    received the message. Lines end in LF, the Maildir convention.

    Args:
        path: the Maildir folder.
        fsync: flush every file to disk before it appears in ``new/``. Off by
            default: this is the demo and development transport, and an fsync
            per message would cost more than everything else in the send.

    ``fatal`` is None until the folder cannot be written at all (permission
    denied, read-only, removed): that and every later message then comes back
    ``deferred``, and ``fatal`` holds the ``TransportError`` to stop the run with.
    """

    fatal: TransportError | None

    def __init__(self, path: Path, *, fsync: bool = False):
        self.path = Path(path)
        self.fsync = fsync
        try:
            for sub in ("tmp", "new", "cur"):
                (self.path / sub).mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise TransportError(f"cannot create the maildir {self.path}: {exc.strerror}") from exc
        self._tmp = os.fspath(self.path / "tmp")
        self._new = os.fspath(self.path / "new")
        self._host = _hostname()
        self.fatal = None

    def send(self, messages: Sequence[OutgoingMessage]) -> list[SendResult]:
        return [self._deliver(msg) for msg in messages]

    def close(self) -> None:
        """Nothing to release: every file is complete once ``send`` returns."""

    def _deliver(self, msg: OutgoingMessage) -> SendResult:
        if self.fatal is not None:
            return SendResult(msg.message_id, "deferred", None, str(self.fatal))
        try:
            data = to_bytes(msg)
        except ValueError as exc:
            return SendResult(msg.message_id, "failed", None, f"cannot write this message: {exc}")
        trace = f"Return-Path: <{envelope_sender(msg)}>\nX-Envelope-To: {', '.join(recipients(msg))}\n"
        data = trace.encode("ascii") + data.replace(b"\r\n", b"\n")
        now = time.time()
        # The classic unique name: seconds, microseconds, pid and a per-process counter, host.
        name = f"{int(now)}.M{int(now % 1 * 1_000_000)}P{os.getpid()}Q{next(_counter)}.{self._host}"
        tmp = os.path.join(self._tmp, name)
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                if self.fsync:
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, os.path.join(self._new, name))
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            # Nothing was delivered (the file never reached new/), so a later try is safe.
            detail = f"cannot write to the maildir {self.path}: {exc.strerror}"
            if exc.errno in _FOLDER_ERRORS:
                self.fatal = TransportError(f"{detail}; check settings.sending.transport.path and its permissions")
            return SendResult(msg.message_id, "deferred", None, detail)
        return SendResult(msg.message_id, "sent")
