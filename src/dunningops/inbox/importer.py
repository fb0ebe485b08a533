"""The import cycle: read new mail from the organisation's source, classify, match, act.

Per folder, the store keeps the UIDVALIDITY and the last UID imported. A run lists the UIDs
above it (a maildir, having no UIDs, lists its files and leaves out the ones imported), reads
them a batch at a time, and writes each batch, its effects and the folder's new position in
one transaction: a crash mid-batch loses nothing and imports nothing twice. When UIDVALIDITY
changes, the folder is read again from the start and every message is de-duplicated on its
Message-ID plus a digest of its raw bytes (``dedupe_key``), which the store keeps unique.

A message that cannot be parsed is quarantined with its raw bytes and the reason, reported,
and never blocks the others. Alerts are recorded with the batch and announced (email, Slack)
once it has committed; handled mail is flagged or moved only after that too, and only the
messages this organisation took (R7: a shared mailbox keeps the other organisations' mail).
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import select, update

from dunningops.dunning.runconfig import RunConfig
from dunningops.errors import DunningOpsError
from dunningops.inbox.act import act, known_dedupe_keys, known_keys
from dunningops.inbox.batch import Effects, Incoming
from dunningops.inbox.match import match_batch
from dunningops.inbox.parse import MAX_MESSAGE_BYTES, ParsedMail, UnparseableMessageError, parse_message
from dunningops.store.lock import import_cycle_lock
from dunningops.store.meta import organisation_tag
from dunningops.store.schema import InboxFolderRow, InboxMessageRow
from dunningops.transport.sources import FetchedMail, FolderCursor, MailRef, MailSource

if TYPE_CHECKING:
    from dunningops.store import Store
    from dunningops.transport.base import Transport

folders_table, inbox = InboxFolderRow.__table__, InboxMessageRow.__table__

BATCH = 500
PLURALS = {"reply": "replies", "auto_reply": "auto-replies", "bounce": "bounces", "complaint": "complaints"}


@dataclass
class FolderReport:
    folder: str
    read: int = 0
    duplicates: int = 0
    rescanned: bool = False
    last_uid: int = 0


@dataclass
class ImportReport:
    at: datetime
    source: str
    folders: list[FolderReport] = field(default_factory=list)
    effects: Effects = field(default_factory=Effects)
    alert_ids: list[int] = field(default_factory=list)
    announced: dict[str, int] = field(default_factory=dict)
    handled: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    fatal: DunningOpsError | None = None
    stopped: bool = False  # asked to stop: ended after a committed batch; the next run goes on from there

    @property
    def imported(self) -> int:
        e = self.effects
        return e.linked + e.ignored + e.quarantined

    @property
    def ok(self) -> bool:
        return self.fatal is None and not self.errors

    @property
    def exit_code(self) -> int:
        if self.fatal is not None:
            return self.fatal.exit_code
        return 0 if self.ok else 1

    def line(self) -> str:
        e = self.effects
        kinds = ", ".join(_count(n, k.replace("_", "-"), PLURALS[k]) for k, n in sorted(e.by_kind.items())) or "none"
        parts = [
            f"{_count(self.imported, 'new message')} ({kinds})",
            f"{e.linked} linked to customers",
            f"{e.ignored} ignored",
        ]
        if e.quarantined:
            parts.append(f"{e.quarantined} quarantined")
        if e.reply_todos:
            parts.append(_count(e.reply_todos, "reply to-do"))
        if e.invalidated:
            parts.append(_count(e.invalidated, "contact") + " marked invalid")
        if e.temporary_customers:
            parts.append(_count(e.temporary_customers, "temporary customer"))
        if self.alert_ids:
            told = ", ".join(f"{n} {channel}" for channel, n in sorted(self.announced.items()) if channel != "in_app")
            parts.append(_count(len(self.alert_ids), "alert") + (f" (announced: {told})" if told else ""))
        return "Import cycle: " + ", ".join(parts) + "."


def _count(n: int, word: str, plural: str | None = None) -> str:
    return f"{n} {word if n == 1 else plural or word + 's'}"


def dedupe_key(message_id: str | None, raw: bytes) -> str:
    """Message-ID plus a digest of the raw bytes: the same message under a new UID is the same message."""
    digest = hashlib.sha256()
    digest.update((message_id or "").encode("utf-8", "surrogateescape"))
    digest.update(b"\0")
    digest.update(raw)
    return digest.hexdigest()


def _parse(source: str, fetched: FetchedMail) -> Incoming:
    try:
        parsed: ParsedMail | None = parse_message(fetched.raw)
        problem = None
    except UnparseableMessageError as exc:
        parsed, problem = None, str(exc)
    ref = fetched.ref
    return Incoming(
        source, ref.folder, ref.key, dedupe_key(parsed.message_id if parsed else None, fetched.raw), fetched.raw, parsed, problem
    )


def _too_large(source: str, ref: MailRef) -> Incoming:
    # Not fetched at all: kept in the mailbox, recorded (without its bytes) so that it is reported once.
    problem = f"message of {ref.size:,} bytes is larger than the {MAX_MESSAGE_BYTES:,} bytes an import reads"
    return Incoming(source, ref.folder, ref.key, dedupe_key(f"too-large:{source}:{ref.key}", b""), None, None, problem)


class Importer:
    """One run of the import cycle over one source."""

    def __init__(
        self,
        store: Store,
        source: MailSource,
        config: RunConfig,
        *,
        at: datetime,
        batch_size: int = BATCH,
        stop: threading.Event | None = None,
    ):
        self.store, self.source, self.config, self.at, self.batch_size = store, source, config, at, batch_size
        self.stop = stop
        self.report = ImportReport(at, source.key)
        with store.session() as session:
            self.organisation = organisation_tag(session)

    def _cursor(self, folder: str) -> tuple[FolderCursor | None, FolderCursor]:
        current = self.source.cursor(folder)
        with self.store.session() as session:
            row = session.execute(
                select(folders_table.c.uidvalidity, folders_table.c.last_uid).where(
                    folders_table.c.source == self.source.key, folders_table.c.folder == folder
                )
            ).first()
        saved = FolderCursor(row.uidvalidity, row.last_uid) if row else None
        return saved, current

    def _save_cursor(self, session, folder: str, uidvalidity: int, last_uid: int, exists: bool) -> None:
        values = {"uidvalidity": uidvalidity, "last_uid": last_uid, "updated_at": self.at}
        if exists:
            session.execute(
                update(folders_table)
                .where(folders_table.c.source == self.source.key, folders_table.c.folder == folder)
                .values(**values)
            )
        else:
            session.execute(folders_table.insert().values(source=self.source.key, folder=folder, **values))

    def import_folder(self, folder: str) -> FolderReport:
        saved, current = self._cursor(folder)
        report = FolderReport(folder, rescanned=saved is not None and saved.uidvalidity != current.uidvalidity)
        since = saved if saved is not None and not report.rescanned else None
        report.last_uid = since.last_uid if since else 0
        exists = saved is not None
        inbox_settings = self.config.settings.inbox
        for refs in self.source.list_new(folder, since, self.batch_size):
            with self.store.session(write_lock=True) as session:
                if refs and refs[0].uid == 0:  # a maildir: leave out the files imported already
                    seen = known_keys(session, self.source.key, folder, [r.key for r in refs])
                    refs = [r for r in refs if r.key not in seen]
                big = [r for r in refs if r.size is not None and r.size > MAX_MESSAGE_BYTES]
                small = [r for r in refs if r not in big]
                items = [_too_large(self.source.key, r) for r in big]
                items += [_parse(self.source.key, f) for f in (self.source.fetch(small) if small else [])]
                report.read += len(items)
                # De-duplicate against the store (a rescan) and within the batch (a message copied twice).
                known = known_dedupe_keys(session, [i.dedupe_key for i in items])
                fresh: dict[str, Incoming] = {}
                for item in items:
                    if item.dedupe_key not in known and item.dedupe_key not in fresh:
                        fresh[item.dedupe_key] = item
                report.duplicates += len(items) - len(fresh)
                batch = list(fresh.values())
                parsed = [i for i in batch if i.parsed is not None]
                matches = match_batch(
                    session,
                    [i.parsed for i in parsed if i.parsed is not None],
                    organisation=self.organisation,
                    accept_to=inbox_settings.accept_to,
                    import_all=self.config.settings.replies.import_ == "all",
                )
                for item, found in zip(parsed, matches, strict=True):
                    item.match = found
                effects = act(session, self.config, batch, at=self.at)
                if refs:
                    report.last_uid = max(report.last_uid, max(r.uid for r in refs))
                self._save_cursor(session, folder, current.uidvalidity, report.last_uid, exists)
                exists = True
                if effects.alerts:
                    from dunningops.alerts.store import record

                    self.report.alert_ids += record(session, effects.alerts, at=self.at)
            self.report.effects.add(effects)
            if self.stop is not None and self.stop.is_set():
                self.report.stopped = True  # the batch in hand is committed; the folder's position says where to go on
                break
        if not exists:  # an empty folder: remember its UIDVALIDITY, so that a later change is seen
            with self.store.session(write_lock=True) as session:
                self._save_cursor(session, folder, current.uidvalidity, 0, False)
        self.report.folders.append(report)
        return report

    def handle_pending(self) -> None:
        """Flag or move the messages this organisation took and has not handled yet (after commit)."""
        settings = self.config.settings.inbox
        if settings.after_import == "keep":
            return
        with self.store.session() as session:
            rows = session.execute(
                select(inbox.c.id, inbox.c.folder, inbox.c.source_key).where(
                    inbox.c.source == self.source.key, inbox.c.handled == "pending"
                )
            ).all()
        by_folder: dict[str, list] = {}
        for row in rows:
            by_folder.setdefault(row.folder, []).append(row)
        done = "moved" if settings.after_import == "move" else "flagged"
        for folder, items in by_folder.items():
            refs = [_ref(folder, r.source_key) for r in items]
            try:
                self.source.mark_handled(folder, refs, settings.after_import, flag=settings.flag, move_to=settings.move_to)
            except DunningOpsError as exc:
                self.report.errors.append(f"{folder}: could not {settings.after_import} the imported messages: {exc}")
                continue
            with self.store.session() as session:
                session.execute(update(inbox).where(inbox.c.id.in_([r.id for r in items])).values(handled=done))
            self.report.handled[done] = self.report.handled.get(done, 0) + len(items)


def _ref(folder: str, key: str) -> MailRef:
    uid = key.partition(":")[2]
    return MailRef(folder, key, int(uid) if uid.isdigit() else 0, None)


def run_import(
    store: Store,
    source_factory: Callable[[RunConfig], MailSource],
    *,
    at: datetime,
    transport_factory: Callable[[RunConfig], Transport] | None = None,
    env: Mapping[str, str] | None = None,
    batch_size: int = BATCH,
    lock_timeout_s: float = 30.0,
    stop: threading.Event | None = None,
) -> ImportReport:
    """One import cycle: every configured folder, then alerts announced and handled mail flagged or moved.

    A set ``stop`` (the daemon stopping) ends the import after the batch in hand, committed; mail
    left to flag or move is handled by the next run.
    """
    with store.session() as session:
        config = RunConfig.from_store(session)
    with import_cycle_lock(store, timeout_s=lock_timeout_s):
        source = source_factory(config)
        try:
            importer = Importer(store, source, config, at=at, batch_size=batch_size, stop=stop)
            try:
                for folder in config.settings.inbox.folders:
                    if importer.report.stopped:
                        break
                    importer.import_folder(folder)
            except DunningOpsError as exc:
                importer.report.fatal = exc  # what was committed stays; the report says where it stopped
            if importer.report.fatal is None and not importer.report.stopped:
                importer.handle_pending()
        finally:
            source.close()
    report = importer.report
    if report.alert_ids:
        from dunningops.alerts.channels import announce_recorded

        announced = announce_recorded(store, report.alert_ids, at=at, transport_factory=transport_factory, env=env or {})
        report.announced = dict(announced.counts)
        report.warnings += announced.problems  # Slack being down does not fail the import: the alert is listed
    return report
