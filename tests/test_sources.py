"""The mail sources the import cycle reads: IMAP against a real Dovecot, and a maildir on disk.

R7: a mailbox may be shared by two organisations, so a source lists and reads
without changing anything, and flags or moves exactly the messages it is given.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from dunningops.errors import UnavailableError
from dunningops.spec.models import Inbox
from dunningops.transport import imap_response, imap_source
from dunningops.transport.base import Secret
from dunningops.transport.imap_source import ImapSource
from dunningops.transport.maildir_source import MaildirSource
from dunningops.transport.sources import FetchedMail, FolderCursor, MailRef, MailSource, MailSourceError, open_source
from imap_fixtures import PASSWORD_ENV, USER_ENV, ImapMailbox
from servers import DovecotServer
from smtp_fixtures import client_ssl_context


def message(n: int, subject: str = "Re: Relance facture", body: str = "Bien reçu, nous payons demain.") -> bytes:
    return (
        f"From: client{n}@example.com\r\n"
        f"To: ar@acme.fr\r\n"
        f"Subject: {subject} {n}\r\n"
        f"Message-ID: <reply-{n}@example.com>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "Content-Transfer-Encoding: 8bit\r\n"
        "\r\n"
        f"{body}\r\n"
    ).encode()


def everything(source: MailSource, folder: str = "INBOX", since: FolderCursor | None = None, batch: int = 500) -> list[MailRef]:
    return [ref for refs in source.list_new(folder, since, batch) for ref in refs]


@pytest.fixture
def imap(imap_mailbox: ImapMailbox) -> Iterator[ImapSource]:
    """An open IMAP source on the test's own mailbox (folders INBOX and Replies)."""
    source = open_source(imap_mailbox.settings(folders=["INBOX", "Replies"]), Path("/nonexistent"), imap_mailbox.env)
    assert isinstance(source, ImapSource)
    yield source
    source.close()


def assert_one_clear_line(error: BaseException, *must_contain: str) -> None:
    text = str(error)
    assert "\n" not in text, text
    assert "secret" not in text and "wrong-Pa55" not in text, text
    for part in must_contain:
        assert part in text, text


def closed_port() -> int:
    # Bound then closed at once: nothing listens there (the kernel answers a connect with RST).
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- IMAP: listing and fetching -----------------------------------------------------------


def test_imap_lists_and_fetches_in_uid_order(imap_mailbox: ImapMailbox, imap: ImapSource) -> None:
    raws = [message(n) for n in range(1, 6)]
    uids = imap_mailbox.append_many(raws)
    uidvalidity = imap_mailbox.uidvalidity()

    assert imap.cursor("INBOX") == FolderCursor(uidvalidity, 0)
    batches = list(imap.list_new("INBOX", None, batch_size=2))
    assert [[ref.uid for ref in refs] for refs in batches] == [uids[0:2], uids[2:4], uids[4:5]]
    refs = [ref for refs in batches for ref in refs]
    assert [ref.key for ref in refs] == [f"{uidvalidity}:{uid}" for uid in uids]
    assert [ref.size for ref in refs] == [len(raw) for raw in raws]  # RFC822.SIZE of CRLF messages: their length
    assert {ref.folder for ref in refs} == {"INBOX"}

    fetched = imap.fetch(refs)
    assert [f.ref for f in fetched] == refs
    assert [f.raw for f in fetched] == raws  # the bytes as delivered, 8-bit body included
    for f in fetched:
        assert isinstance(f.internal_date, datetime) and f.internal_date.utcoffset() is not None


def test_imap_big_message_comes_whole_with_its_size_listed_first(imap_mailbox: ImapMailbox, imap: ImapSource) -> None:
    attachment = b"".join(b"%076d\r\n" % n for n in range(40_000))  # ~3 MB of 78-byte lines
    big = message(1, body="Voir la pièce jointe.") + attachment
    imap_mailbox.append_many([message(0), big, message(2)])
    refs = everything(imap)
    assert [ref.size for ref in refs] == [len(message(0)), len(big), len(message(2))]  # before anything is read
    assert [f.raw for f in imap.fetch(refs)] == [message(0), big, message(2)]


def test_imap_source_key_names_user_host_and_port_but_no_secret(imap_mailbox: ImapMailbox, imap: ImapSource) -> None:
    assert imap.key == f"imap://{imap_mailbox.user}@127.0.0.1:{imap_mailbox.port}"
    assert imap.folders() == ["INBOX", "Replies"]
    assert imap.fatal is None


def test_imap_n_plus_one_quirk_lists_nothing_after_the_last_message(imap_mailbox: ImapMailbox, imap: ImapSource) -> None:
    first, last = imap_mailbox.append_many([message(1), message(2)])
    # The quirk is real: the server answers "UID last+1:*" with the last message ("*" is the highest UID),
    # to a SEARCH and to the FETCH that list_new sends alike.
    with imap_mailbox.connect() as client:
        client.select_folder("INBOX", readonly=True)
        assert client.search(["UID", f"{last + 1}:*"]) == [last]
        typ, data = client._imap.uid("FETCH", f"{last + 1}:*", "(RFC822.SIZE)")
        assert typ == "OK" and [line.split(b" RFC822.SIZE")[0] for line in data] == [f"2 (UID {last}".encode()]

    uidvalidity = imap.cursor("INBOX").uidvalidity
    assert everything(imap, since=FolderCursor(uidvalidity, last)) == []
    assert [ref.uid for ref in everything(imap, since=FolderCursor(uidvalidity, first))] == [last]
    # Mail arriving later is listed after the cursor, and only that.
    third = imap_mailbox.append(message(3))
    assert [ref.uid for ref in everything(imap, since=FolderCursor(uidvalidity, last))] == [third]


def test_imap_listing_crosses_uid_windows(imap_mailbox: ImapMailbox, imap: ImapSource, monkeypatch: pytest.MonkeyPatch) -> None:
    uids = imap_mailbox.append_many([message(n) for n in range(1, 8)])
    monkeypatch.setattr(imap_source, "LIST_WINDOW", 2)  # 7 messages: windows 1:2, 3:4, 5:6, 7:*
    assert [ref.uid for ref in everything(imap, batch=3)] == uids
    uidvalidity = imap.cursor("INBOX").uidvalidity
    assert [ref.uid for ref in everything(imap, since=FolderCursor(uidvalidity, uids[2]))] == uids[3:]
    assert everything(imap, since=FolderCursor(uidvalidity, uids[-1])) == []


def test_imap_listing_starts_at_the_first_message_not_at_uid_1(
    imap_mailbox: ImapMailbox, imap: ImapSource, monkeypatch: pytest.MonkeyPatch
) -> None:
    uids = imap_mailbox.append_many([message(n) for n in range(1, 11)])
    with imap_mailbox.connect() as client:  # the old mail was deleted: the folder's UIDs start at the 9th
        client.select_folder("INBOX")
        client.delete_messages(uids[:8])
        client.uid_expunge(uids[:8])
    monkeypatch.setattr(imap_source, "LIST_WINDOW", 2)
    windows: list[str] = []
    original = imap._uid_fetch

    def counting(client, uid_set: str, items: str):
        windows.append(uid_set)
        return original(client, uid_set, items)

    monkeypatch.setattr(imap, "_uid_fetch", counting)
    assert [ref.uid for ref in everything(imap)] == uids[8:]
    assert windows == [f"{uids[8]}:*"]  # one window, not four empty ones first


def test_imap_internal_date_is_the_servers_aware_utc(imap_mailbox: ImapMailbox, imap: ImapSource) -> None:
    when = datetime(2026, 11, 30, 9, 15, 42, tzinfo=timezone(timedelta(hours=1)))
    imap_mailbox.append(message(1), msg_time=when)
    [fetched] = imap.fetch(everything(imap))
    assert fetched.internal_date == when
    assert fetched.internal_date is not None and fetched.internal_date.utcoffset() == timedelta(0)


def test_imap_fetch_falls_back_to_imapclient_for_an_unknown_shape(
    imap_mailbox: ImapMailbox, imap: ImapSource, monkeypatch: pytest.MonkeyPatch
) -> None:
    raws = [message(1), message(2)]
    imap_mailbox.append_many(raws)
    refs = everything(imap)
    fast = imap.fetch(refs)
    # As if the server had sent every body as a quoted string: the fast reader reads none of them.
    monkeypatch.setattr(imap_source, "parse_bodies", lambda data: ({}, {ref.uid for ref in refs}))
    slow = imap.fetch(refs)
    assert [f.raw for f in slow] == [f.raw for f in fast] == raws
    assert [f.internal_date for f in slow] == [f.internal_date for f in fast]
    assert [f.ref for f in slow] == [f.ref for f in fast] == refs


def test_imap_fast_reader_knows_the_shapes_imaplib_returns() -> None:
    data = [
        (b'1 (UID 11 INTERNALDATE "01-Dec-2026 10:35:00 +0100" RFC822.SIZE 3 BODY[] {3}', b"abc"),
        b")",
        b"4 (FLAGS (\\Seen))",  # another client's change, sent along unasked
        (b"2 (BODY[] {2}", b"de"),
        b' UID 12 INTERNALDATE " 2-Jan-2027 00:00:01 -0230" RFC822.SIZE 2)',  # items after the literal
        b'3 (UID 13 RFC822.SIZE 1 BODY[] "f")',  # a quoted body: left to imapclient
    ]
    found, unparsed = imap_response.parse_bodies(data)
    assert found == {
        11: (b"abc", datetime(2026, 12, 1, 9, 35, tzinfo=UTC), 3),
        12: (b"de", datetime(2027, 1, 2, 2, 30, 1, tzinfo=UTC), 2),
    }
    assert unparsed == {13}
    assert imap_response.parse_sizes([b"1 (UID 11 RFC822.SIZE 3)", b"4 (FLAGS ())", b"2 (RFC822.SIZE 9 UID 12)"]) == {
        11: 3,
        12: 9,
    }
    assert imap_response.uid_set([9, 3, 4, 5, 7, 8, 12]) == "3:5,7:9,12"
    assert imap_response.internaldate(b'INTERNALDATE "31-Foo-2026 10:00:00 +0000"') is None


def test_imap_empty_folder_lists_nothing(imap_mailbox: ImapMailbox, imap: ImapSource) -> None:
    imap_mailbox.create_folder("Replies")
    assert everything(imap, "Replies") == []
    assert everything(imap, "Replies", since=FolderCursor(imap.cursor("Replies").uidvalidity, 7)) == []
    assert imap.fetch([]) == []


def test_imap_uidvalidity_change_lists_everything_again(imap_mailbox: ImapMailbox) -> None:
    uids = imap_mailbox.append_many([message(n) for n in range(1, 4)])
    settings, env = imap_mailbox.settings(), imap_mailbox.env
    source = open_source(settings, Path("."), env)
    try:
        before = source.cursor("INBOX")
        seen = FolderCursor(before.uidvalidity, uids[-1])
        assert everything(source, since=seen) == []
        old_refs = everything(source)
    finally:
        source.close()

    imap_mailbox.set_uidvalidity()
    source = open_source(settings, Path("."), env)
    try:
        now = source.cursor("INBOX")
        assert now.uidvalidity != before.uidvalidity
        # The saved cursor is of another UIDVALIDITY: every message again, under keys of the new one.
        refs = everything(source, since=seen)
        assert [ref.uid for ref in refs] == uids
        assert [ref.key for ref in refs] == [f"{now.uidvalidity}:{uid}" for uid in uids]
        # A ref of the old UIDVALIDITY names nothing any more: fetching it gives nothing, flagging it touches nothing.
        assert source.fetch(old_refs) == []
        source.mark_handled("INBOX", old_refs, "flag", flag="\\Flagged", move_to=None)
        assert all("\\Flagged" not in flags for flags in imap_mailbox.flags().values())
    finally:
        source.close()


def test_imap_fetch_does_not_set_seen(imap_mailbox: ImapMailbox, imap: ImapSource) -> None:
    imap_mailbox.append_many([message(1), message(2)])
    fetched = imap.fetch(everything(imap))
    assert len(fetched) == 2
    flags = imap_mailbox.flags()
    assert len(flags) == 2
    assert all("\\Seen" not in f for f in flags.values()), flags


def test_imap_fetch_leaves_out_a_message_expunged_meanwhile(imap_mailbox: ImapMailbox, imap: ImapSource) -> None:
    uids = imap_mailbox.append_many([message(1), message(2), message(3)])
    refs = everything(imap)
    # Someone else removes the middle message between our listing and our fetch.
    with imap_mailbox.connect() as client:
        client.select_folder("INBOX")
        client.delete_messages([uids[1]])
        client.uid_expunge([uids[1]])
    assert [f.ref.uid for f in imap.fetch(refs)] == [uids[0], uids[2]]


def test_imap_fetch_refuses_refs_of_two_folders(imap: ImapSource) -> None:
    with pytest.raises(ValueError, match="one folder"):
        imap.fetch([MailRef("INBOX", "1:1", 1, None), MailRef("Replies", "1:1", 1, None)])


# --- IMAP: flag and move, only what was given --------------------------------------------------


def _spy(monkeypatch: pytest.MonkeyPatch, source: ImapSource, *names: str) -> list[str]:
    """Record which imapclient commands the source uses (the client is connected by then)."""
    calls: list[str] = []
    client = source._client
    assert client is not None
    for name in names:
        original = getattr(client, name)

        def record(*args, _name=name, _original=original, **kwargs):
            calls.append(_name)
            return _original(*args, **kwargs)

        monkeypatch.setattr(client, name, record)
    return calls


def test_r7_imap_flag_touches_only_the_given_uids(imap_mailbox: ImapMailbox, imap: ImapSource) -> None:
    uids = imap_mailbox.append_many([message(n) for n in range(1, 5)])
    refs = everything(imap)
    ours = [refs[0], refs[2]]
    imap.mark_handled("INBOX", ours, "flag", flag="$Dunningops", move_to=None)
    flags = imap_mailbox.flags()
    assert {uid for uid, f in flags.items() if "$Dunningops" in f} == {uids[0], uids[2]}
    assert all("\\Seen" not in f for f in flags.values())
    # A system flag works the same way; listing/fetching afterwards still works (read-only again).
    imap.mark_handled("INBOX", [refs[3]], "flag", flag="\\Flagged", move_to=None)
    assert imap_mailbox.flags()[uids[3]] == {"\\Flagged"}
    assert len(imap.fetch(everything(imap))) == 4


def test_r7_imap_move_uses_move_and_leaves_others_deleted_mail(
    imap_mailbox: ImapMailbox, imap: ImapSource, monkeypatch: pytest.MonkeyPatch
) -> None:
    raws = [message(n) for n in range(1, 4)]
    uids = imap_mailbox.append_many(raws)
    # Another organisation sharing the mailbox marked a message \Deleted and has not expunged it yet.
    others = imap_mailbox.append(message(9, subject="Not ours"), flags=["\\Deleted"])
    refs = everything(imap)
    assert imap._server_can("MOVE")
    calls = _spy(monkeypatch, imap, "move", "copy", "uid_expunge", "expunge")

    imap.mark_handled("INBOX", [refs[0], refs[2]], "move", flag="$Dunningops", move_to="Handled")

    assert calls == ["move"]
    assert imap_mailbox.uids() == [uids[1], others]
    assert "\\Deleted" in imap_mailbox.flags()[others]
    assert sorted(imap_mailbox.bodies("Handled").values()) == sorted([raws[0], raws[2]])  # created, then filled


def test_r7_imap_move_without_move_capability_expunges_only_our_uids(
    imap_mailbox: ImapMailbox, imap: ImapSource, monkeypatch: pytest.MonkeyPatch
) -> None:
    raws = [message(n) for n in range(1, 4)]
    uids = imap_mailbox.append_many(raws)
    others = imap_mailbox.append(message(9, subject="Not ours"), flags=["\\Deleted"])
    imap_mailbox.create_folder("Handled")  # exists already this time
    refs = everything(imap)
    calls = _spy(monkeypatch, imap, "move", "copy", "uid_expunge", "expunge")
    monkeypatch.setattr(imap, "_server_can", lambda capability: capability != "MOVE")

    imap.mark_handled("INBOX", [refs[0], refs[2]], "move", flag="$Dunningops", move_to="Handled")

    assert calls == ["copy", "uid_expunge"]  # never a plain EXPUNGE
    assert imap_mailbox.uids() == [uids[1], others]
    assert "\\Deleted" in imap_mailbox.flags()[others]
    assert "\\Deleted" not in imap_mailbox.flags()[uids[1]]
    assert sorted(imap_mailbox.bodies("Handled").values()) == sorted([raws[0], raws[2]])


def test_r7_imap_move_refused_without_move_or_uidplus(
    imap_mailbox: ImapMailbox, imap: ImapSource, monkeypatch: pytest.MonkeyPatch
) -> None:
    uids = imap_mailbox.append_many([message(1)])
    refs = everything(imap)
    monkeypatch.setattr(imap, "_server_can", lambda capability: False)
    with pytest.raises(MailSourceError, match="neither MOVE nor UIDPLUS") as caught:
        imap.mark_handled("INBOX", refs, "move", flag="$Dunningops", move_to="Handled")
    assert_one_clear_line(caught.value, f"127.0.0.1:{imap_mailbox.port}", "'INBOX'")
    assert imap_mailbox.uids() == uids


# --- IMAP: users, folders, errors -----------------------------------------------------------


def test_r7_two_users_and_two_folders_are_apart(dovecot: DovecotServer, imap_mailbox: ImapMailbox) -> None:
    other = ImapMailbox(dovecot, imap_mailbox.user + "b")
    imap_mailbox.append_many([message(1), message(2)])
    imap_mailbox.append(message(3), folder="Replies")
    other.append(message(4))
    sources = [open_source(box.settings(folders=["INBOX", "Replies"]), Path("."), box.env) for box in (imap_mailbox, other)]
    try:
        mine, theirs = sources
        assert mine.key != theirs.key
        assert [b"<reply-1@" in f.raw or b"<reply-2@" in f.raw for f in mine.fetch(everything(mine))] == [True, True]
        assert [f.raw for f in mine.fetch(everything(mine, "Replies"))] == [message(3)]
        assert [f.raw for f in theirs.fetch(everything(theirs))] == [message(4)]
        # Interleaving folders on one connection: each listing selects its folder again.
        assert len(everything(mine, "INBOX")) == 2 and len(everything(mine, "Replies")) == 1
        with pytest.raises(MailSourceError, match=r"does(n.t| not) exist"):
            everything(theirs, "Replies")
    finally:
        for source in sources:
            source.close()


def test_imap_missing_folder_is_one_clear_line_and_the_source_goes_on(imap_mailbox: ImapMailbox, imap: ImapSource) -> None:
    imap_mailbox.append(message(1))
    with pytest.raises(MailSourceError) as caught:
        imap.cursor("Nope")
    assert_one_clear_line(caught.value, f"IMAP 127.0.0.1:{imap_mailbox.port}", "folder 'Nope'")
    assert isinstance(caught.value, UnavailableError)
    assert imap.fatal is None  # a folder's problem: the other folders can still be read
    assert len(everything(imap)) == 1


def test_imap_wrong_password_is_one_clear_line_without_the_password(imap_mailbox: ImapMailbox) -> None:
    env = {USER_ENV: imap_mailbox.user, PASSWORD_ENV: "wrong-Pa55"}
    with pytest.raises(MailSourceError) as caught:
        open_source(imap_mailbox.settings(), Path("."), env)
    assert_one_clear_line(caught.value, f"IMAP 127.0.0.1:{imap_mailbox.port}", "login refused", imap_mailbox.user)


def test_imap_closed_port_is_one_clear_line_and_fatal(imap_mailbox: ImapMailbox) -> None:
    port = closed_port()
    source = open_source(imap_mailbox.settings(port=port), Path("."), imap_mailbox.env, connect=False)
    with pytest.raises(MailSourceError) as caught:
        source.cursor("INBOX")
    assert_one_clear_line(caught.value, f"IMAP 127.0.0.1:{port}", "cannot connect")
    assert source.fatal is caught.value
    # Once fatal, the source says so again without trying.
    with pytest.raises(MailSourceError) as again:
        list(source.list_new("INBOX", None))
    assert again.value is caught.value
    source.close()


def test_imap_connection_dropped_by_the_server_is_fatal(
    dovecot: DovecotServer, imap_mailbox: ImapMailbox, imap: ImapSource
) -> None:
    imap_mailbox.append(message(1))
    assert len(everything(imap)) == 1
    dovecot.doveadm("kick", imap_mailbox.user)  # the server closes every session of the user
    with pytest.raises(MailSourceError) as caught:
        everything(imap)
    assert_one_clear_line(caught.value, f"IMAP 127.0.0.1:{imap_mailbox.port}", "'INBOX'")
    assert imap.fatal is caught.value


def test_imap_starttls_required_but_not_offered(imap_mailbox: ImapMailbox) -> None:
    with pytest.raises(MailSourceError, match="does not offer STARTTLS") as caught:
        open_source(imap_mailbox.settings(security="starttls"), Path("."), imap_mailbox.env)
    assert_one_clear_line(caught.value, f"IMAP 127.0.0.1:{imap_mailbox.port}")


def test_imap_ssl_against_a_plain_server_fails_cleanly(imap_mailbox: ImapMailbox) -> None:
    with pytest.raises(MailSourceError) as caught:
        open_source(imap_mailbox.settings(security="ssl", timeout_seconds=5), Path("."), imap_mailbox.env)
    assert_one_clear_line(caught.value, f"IMAP 127.0.0.1:{imap_mailbox.port}", "cannot connect")


@pytest.mark.parametrize("security", ["ssl", "starttls"])
def test_imap_tls_verifies_the_certificate(dovecot_tls: DovecotServer, security: str) -> None:
    box = ImapMailbox(dovecot_tls, f"tls{os.getpid()}{security}")
    box.append(message(1))
    port = dovecot_tls.ssl_port if security == "ssl" else dovecot_tls.port
    assert port is not None
    # A self-signed certificate is refused by default (ssl.create_default_context()).
    with pytest.raises(MailSourceError, match="certificate verify failed") as caught:
        open_source(box.settings(security=security, port=port), Path("."), box.env)
    assert_one_clear_line(caught.value, f"IMAP 127.0.0.1:{port}")
    # Trusting it, the same server is read over TLS.
    source = ImapSource(
        "127.0.0.1",
        port,
        security=security,
        username=box.user,
        password=Secret("secret"),
        timeout=10,
        ssl_context=client_ssl_context(),
    )
    with source:
        assert [f.raw for f in source.fetch(everything(source))] == [message(1)]


def test_imap_credentials_come_from_the_environment_only() -> None:
    settings = Inbox(kind="imap", host="imap.example.com", username_env="INBOX_USER", password_env="INBOX_PASSWORD")
    with pytest.raises(MailSourceError, match="INBOX_PASSWORD, which is not set") as caught:
        open_source(settings, Path("."), {"INBOX_USER": "ar@acme.fr"})
    assert_one_clear_line(caught.value)
    with pytest.raises(MailSourceError, match="INBOX_USER, which is empty"):
        open_source(settings, Path("."), {"INBOX_USER": "", "INBOX_PASSWORD": "x"})
    with pytest.raises(MailSourceError, match="needs username_env and password_env"):
        open_source(Inbox(kind="imap", host="imap.example.com"), Path("."), {})


def test_imap_clear_text_password_only_on_the_loopback() -> None:
    settings = Inbox(kind="imap", host="imap.example.com", security="none", username_env="U", password_env="P")
    with pytest.raises(MailSourceError, match="without encryption") as caught:
        open_source(settings, Path("."), {"U": "ar", "P": "hunter2"}, connect=False)
    assert "hunter2" not in str(caught.value)
    loopback = Inbox(kind="imap", host="127.0.0.1", security="none", username_env="U", password_env="P")
    source = open_source(loopback, Path("."), {"U": "ar@acme.fr", "P": "hunter2"}, connect=False)
    assert source.key == "imap://ar%40acme.fr@127.0.0.1:143"  # the default port; the user quoted, no secret
    assert "hunter2" not in repr(vars(source))


# --- maildir ---------------------------------------------------------------------------------


@pytest.fixture
def maildir(tmp_path: Path) -> MaildirSource:
    source = open_source(Inbox(kind="maildir", path="inbox", folders=["INBOX", "Bounces"]), tmp_path, {})
    assert isinstance(source, MaildirSource)
    return source


def test_maildir_open_creates_it_relative_to_the_repo(tmp_path: Path, maildir: MaildirSource) -> None:
    assert maildir.key == f"maildir:{tmp_path / 'inbox'}"
    assert all((tmp_path / "inbox" / sub).is_dir() for sub in ("tmp", "new", "cur"))
    assert maildir.cursor("INBOX") == FolderCursor(0, 0)
    assert maildir.folders() == ["INBOX", "Bounces"]
    assert everything(maildir) == []


def test_maildir_deliver_writes_into_new_atomically(tmp_path: Path, maildir: MaildirSource) -> None:
    key = maildir.deliver(message(1))
    root = tmp_path / "inbox"
    assert os.listdir(root / "tmp") == []
    assert os.listdir(root / "new") == [key]
    assert (root / "new" / key).read_bytes() == message(1)
    assert ":" not in key and "/" not in key


def test_maildir_lists_new_and_cur_sorted_by_key(tmp_path: Path, maildir: MaildirSource) -> None:
    root = tmp_path / "inbox"
    keys = [maildir.deliver(message(n)) for n in range(1, 4)]
    # A mail reader has seen one message already: it lives in cur/ with flags.
    os.rename(root / "new" / keys[1], root / "cur" / f"{keys[1]}:2,S")
    batches = list(maildir.list_new("INBOX", None, batch_size=2))
    assert [len(b) for b in batches] == [2, 1]
    refs = [ref for refs in batches for ref in refs]
    assert [ref.key for ref in refs] == sorted(keys)
    assert {ref.uid for ref in refs} == {0}
    assert {ref.key: ref.size for ref in refs} == {k: len(message(n)) for n, k in enumerate(keys, 1)}
    fetched = {f.ref.key: f for f in maildir.fetch(refs)}
    assert {k: f.raw for k, f in fetched.items()} == {k: message(n) for n, k in enumerate(keys, 1)}
    assert all(f.internal_date is not None and f.internal_date.utcoffset() is not None for f in fetched.values())


def test_maildir_key_survives_new_to_cur_with_flags(tmp_path: Path, maildir: MaildirSource) -> None:
    root = tmp_path / "inbox"
    key = maildir.deliver(message(1))
    [ref] = everything(maildir)
    assert ref.key == key
    # After the listing, another reader moves it to cur/ and flags it: the key, and fetching by it, hold.
    os.rename(root / "new" / key, root / "cur" / f"{key}:2,RS")
    assert [r.key for r in everything(maildir)] == [key]
    [fetched] = maildir.fetch([ref])
    assert fetched.raw == message(1)


def test_maildir_fetch_leaves_out_a_vanished_file(tmp_path: Path, maildir: MaildirSource) -> None:
    keys = [maildir.deliver(message(n)) for n in (1, 2)]
    refs = everything(maildir)
    os.unlink(tmp_path / "inbox" / "new" / keys[0])
    assert [f.ref.key for f in maildir.fetch(refs)] == [keys[1]]


def test_r7_maildir_flag_sets_standard_letters_only_on_the_given_files(tmp_path: Path, maildir: MaildirSource) -> None:
    root = tmp_path / "inbox"
    keys = [maildir.deliver(message(n)) for n in range(1, 4)]
    refs = {ref.key: ref for ref in everything(maildir)}
    maildir.mark_handled("INBOX", [refs[keys[0]]], "flag", flag="\\Seen", move_to=None)
    assert sorted(os.listdir(root / "cur")) == [f"{keys[0]}:2,S"]
    maildir.mark_handled("INBOX", [refs[keys[0]], refs[keys[2]]], "flag", flag="\\Flagged", move_to=None)
    assert sorted(os.listdir(root / "cur")) == sorted([f"{keys[0]}:2,FS", f"{keys[2]}:2,F"])
    assert os.listdir(root / "new") == [keys[1]]
    # Flagging again changes nothing; the keys stay what they were.
    maildir.mark_handled("INBOX", [refs[keys[0]]], "flag", flag="\\Seen", move_to=None)
    assert sorted(r.key for r in everything(maildir)) == sorted(keys)
    with pytest.raises(MailSourceError, match="cannot be kept in a maildir"):
        maildir.mark_handled("INBOX", [refs[keys[1]]], "flag", flag="$Dunningops", move_to=None)
    # A mail reader took the last one to cur/ since our listing: it is found there and flagged all the same.
    os.rename(root / "new" / keys[1], root / "cur" / f"{keys[1]}:2,R")
    maildir.mark_handled("INBOX", [refs[keys[1]]], "flag", flag="\\Seen", move_to=None)
    assert f"{keys[1]}:2,RS" in os.listdir(root / "cur")
    assert os.listdir(root / "new") == []


def test_maildir_keyword_flag_is_refused_when_opened(tmp_path: Path) -> None:
    settings = Inbox(kind="maildir", path="inbox", after_import="flag", flag="$Dunningops")
    with pytest.raises(MailSourceError, match=r"\$Dunningops.*\\Seen, \\Flagged and \\Answered") as caught:
        open_source(settings, tmp_path, {})
    assert_one_clear_line(caught.value, "maildir ")
    # The same default flag is fine when nothing is flagged, and a standard flag is fine.
    assert open_source(Inbox(kind="maildir", path="inbox"), tmp_path, {}).fatal is None
    assert open_source(Inbox(kind="maildir", path="inbox", after_import="flag", flag="\\Seen"), tmp_path, {}).fatal is None


def test_r7_maildir_move_into_a_maildirplusplus_subfolder(tmp_path: Path, maildir: MaildirSource) -> None:
    root = tmp_path / "inbox"
    keys = [maildir.deliver(message(n)) for n in range(1, 4)]
    os.rename(root / "new" / keys[2], root / "cur" / f"{keys[2]}:2,S")
    refs = {ref.key: ref for ref in everything(maildir)}
    maildir.mark_handled("INBOX", [refs[keys[0]], refs[keys[2]]], "move", flag="$Dunningops", move_to="Handled")

    assert (root / ".Handled" / "maildirfolder").exists()
    assert os.listdir(root / ".Handled" / "new") == [keys[0]]
    assert os.listdir(root / ".Handled" / "cur") == [f"{keys[2]}:2,S"]  # flags and place kept
    assert [r.key for r in everything(maildir)] == [keys[1]]
    moved = everything(maildir, "Handled")
    assert sorted(r.key for r in moved) == sorted([keys[0], keys[2]])
    assert sorted(f.raw for f in maildir.fetch(moved)) == [message(1), message(3)]


def test_maildir_deliver_into_a_subfolder_and_missing_folders(tmp_path: Path, maildir: MaildirSource) -> None:
    with pytest.raises(MailSourceError, match="does not exist") as caught:
        everything(maildir, "Bounces")
    assert_one_clear_line(caught.value, str(tmp_path / "inbox"), "folder 'Bounces'")
    with pytest.raises(MailSourceError, match="does not exist"):
        maildir.cursor("Bounces")
    key = maildir.deliver(message(7), folder="Bounces")
    assert (tmp_path / "inbox" / ".Bounces" / "new" / key).exists()
    assert [f.raw for f in maildir.fetch(everything(maildir, "Bounces"))] == [message(7)]
    assert everything(maildir) == []


def test_maildir_folder_names_that_would_leave_it_are_refused(tmp_path: Path, maildir: MaildirSource) -> None:
    # Levels separated by "/" or ".", names in modified UTF-7: the Maildir++ layout Dovecot reads too.
    key = maildir.deliver(message(1), folder="Relances/Traité")
    assert (tmp_path / "inbox" / ".Relances.Trait&AOk-" / "new" / key).exists()
    assert [r.key for r in everything(maildir, "Relances.Traité")] == [key]
    for name in ("../etc", ".hidden", "a//b", "a/", "x\0y"):
        with pytest.raises(MailSourceError, match="not a folder name"):
            maildir.deliver(message(1), folder=name)
    with pytest.raises(MailSourceError, match="not a folder name"):
        open_source(Inbox(kind="maildir", path="inbox", folders=["INBOX", "../x"]), tmp_path, {})


def test_maildir_open_without_create_touches_nothing(tmp_path: Path) -> None:
    source = open_source(Inbox(kind="maildir", path=str(tmp_path / "absent")), Path("/elsewhere"), {}, connect=False)
    assert not (tmp_path / "absent").exists()
    assert source.key == f"maildir:{tmp_path / 'absent'}"
    with pytest.raises(MailSourceError, match="does not exist"):
        everything(source)


def test_fetched_mail_and_refs_are_values() -> None:
    ref = MailRef("INBOX", "1:2", 2, 10)
    assert FetchedMail(ref, b"x", None) == FetchedMail(MailRef("INBOX", "1:2", 2, 10), b"x", None)
    with pytest.raises(AttributeError):
        ref.uid = 3  # type: ignore[misc]
