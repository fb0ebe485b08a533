"""The anchor of the import-cycle benchmark: a bare imapclient fetch of every message from a real Dovecot.

``python -m benchmarks.import_fetch [--messages 10000] [--repeat 3] [--fill maildir|multiappend] [--out DIR]``

performance.md states the import cycle's goal as a ratio to this anchor, measured
in the same run on the same machine: ``bare_fetch`` logs in, selects the folder
read-only, searches ``ALL`` and fetches ``BODY.PEEK[]`` of every message in
batches of 500 UIDs, keeping the bytes and doing nothing else with them. It is
measured warm: one untimed pass first, so Dovecot's index and cache are built and
the files are in the page cache, as they are for a mailbox the importer reads
every few minutes.

``fill_mailbox`` puts the messages in place. By default it writes them straight
into the user's maildir under Dovecot's ``mail_location`` (``tmp/`` then rename
into ``new/``, owned by the mail account: what a local delivery agent does) and
lets Dovecot index them on the next SELECT; ``--fill multiappend`` sends them over
IMAP with MULTIAPPEND (RFC 3502) in chunks of 500. Seen here at 10,000 messages
of ~1 KB: maildir files 0.5 to 4 s (as busy as the disk is), MULTIAPPEND 3.5 to
4.5 s, one APPEND at a time ~35 s (two round-trips each, so not offered).

The JSON (``<out>/import-fetch-<timestamp>.json``; a summary on stdout) follows the other
benchmarks: the median of the measured runs with every sample, at the stated
size and at a tenth of it (growth). Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

from benchmarks.report import git_info, machine_info, timestamp, write_json

TESTS = Path(__file__).resolve().parent.parent / "tests"
DEFAULT_OUT = Path(__file__).resolve().parent / "results"
SCHEMA = "dunningops-benchmarks/import-fetch/1"
BATCH = 500  # UIDs per FETCH, as the importer's batches
FillMethod = Literal["maildir", "multiappend"]

_names = itertools.count(1)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def sample_messages(n: int, *, body_lines: int = 12) -> Iterator[bytes]:
    """``n`` small customer replies (~1 KB each) in CRLF, as they arrive: headers of a reply, a short quoted body."""
    for i in range(n):
        body = "Bonjour,\r\n\r\nNous avons bien reçu votre relance, le virement part demain.\r\n\r\nCordialement,\r\n"
        quoted = "".join(f"> Ligne {k} de la relance de la facture F-{i:06d}.\r\n" for k in range(body_lines))
        yield (
            f"Return-Path: <compta{i}@client{i % 97}.example>\r\n"
            f"From: Compta Client {i} <compta{i}@client{i % 97}.example>\r\n"
            "To: Ateliers Acme <ar@acme.fr>\r\n"
            f"Subject: Re: Relance facture F-{i:06d}\r\n"
            f"Date: Mon, 30 Nov 2026 {8 + i % 10:02d}:{i % 60:02d}:00 +0100\r\n"
            f"Message-ID: <reply-{i}@client{i % 97}.example>\r\n"
            f"In-Reply-To: <dun-{i}@acme.fr>\r\n"
            f"References: <dun-{i}@acme.fr>\r\n"
            "MIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n"
            "Content-Transfer-Encoding: 8bit\r\n"
            "\r\n"
            f"{body}\r\n{quoted}"
        ).encode()


def fill_mailbox(
    server: Any, user: str, messages: Iterable[bytes], *, folder: str = "INBOX", method: FillMethod = "maildir"
) -> int:
    """Put ``messages`` into ``user``'s ``folder`` on a running ``tests/servers.py`` ``DovecotServer``; their count.

    ``maildir``: files written into Dovecot's maildir for that user (tmp/ then
    new/, owned by the mail account), then one SELECT so Dovecot indexes them
    and assigns UIDs. ``multiappend``: IMAP MULTIAPPEND over one connection.
    Either way the count Dovecot reports (EXISTS) is checked.
    """
    with server.connect(user) as client:
        before = int(client.folder_status(folder, [b"MESSAGES"])[b"MESSAGES"]) if client.folder_exists(folder) else 0
    count = 0
    if method == "maildir":
        directory = server.ensure_maildir(user, folder)
        stat = os.stat(directory)
        tmp, new = os.fspath(directory / "tmp"), os.fspath(directory / "new")
        stem = f"{int(time.time())}.P{os.getpid()}"
        for raw in messages:
            name = f"{stem}Q{next(_names)}.bench"
            path = os.path.join(tmp, name)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                view = memoryview(raw)
                while view:
                    view = view[os.write(fd, view) :]
                os.fchown(fd, stat.st_uid, stat.st_gid)  # the mail processes run as that account, not root
            finally:
                os.close(fd)
            os.rename(path, os.path.join(new, name))
            count += 1
    else:
        with server.connect(user) as client:
            if folder.upper() != "INBOX" and not client.folder_exists(folder):
                client.create_folder(folder)
            chunk: list[bytes] = []
            for raw in messages:
                chunk.append(raw)
                if len(chunk) == BATCH:
                    client.multiappend(folder, chunk)
                    count, chunk = count + len(chunk), []
            if chunk:
                client.multiappend(folder, chunk)
                count += len(chunk)
    with server.connect(user) as client:
        exists = int(client.select_folder(folder, readonly=True)[b"EXISTS"])  # indexes new maildir files
    if exists != before + count:
        raise RuntimeError(f"{folder} of {user} holds {exists} messages, expected {before + count}")
    return count


def bare_fetch(host: str, port: int, user: str, password: str, folder: str = "INBOX") -> tuple[int, float]:
    """One timed pass: connect, log in, EXAMINE, UID SEARCH ALL, UID FETCH BODY.PEEK[] by 500; (messages, seconds).

    Call it once untimed first for the warm figure (``measure_bare_fetch`` does).
    """
    from imapclient import IMAPClient

    start = time.perf_counter()
    count = size = 0
    with IMAPClient(host, port, ssl=False, timeout=60) as client:
        client.login(user, password)
        client.select_folder(folder, readonly=True)
        uids = sorted(client.search("ALL"))
        for i in range(0, len(uids), BATCH):
            for data in client.fetch(uids[i : i + BATCH], [b"BODY.PEEK[]"]).values():
                size += len(data[b"BODY[]"])
                count += 1
    seconds = time.perf_counter() - start
    if count != len(uids) or not size:
        raise RuntimeError(f"fetched {count} of {len(uids)} messages")
    return count, seconds


def measure_bare_fetch(host: str, port: int, user: str, password: str, *, repeat: int, folder: str = "INBOX") -> dict:
    bare_fetch(host, port, user, password, folder)  # warm-up: Dovecot's cache, the page cache
    samples = [bare_fetch(host, port, user, password, folder) for _ in range(repeat)]
    seconds = [s for _, s in samples]
    count = samples[0][0]
    median = statistics.median(seconds)
    return {
        "what": "imapclient: login, EXAMINE, UID SEARCH ALL, UID FETCH BODY.PEEK[] in batches of 500 (warm)",
        "messages": count,
        "absolute_s": round(median, 4),
        "min_s": round(min(seconds), 4),
        "max_s": round(max(seconds), 4),
        "samples_s": [round(s, 4) for s in seconds],
        "messages_per_s": round(count / median),
    }


def bench_size(server: Any, n: int, *, repeat: int, method: FillMethod) -> dict:
    user = f"bench{n}"
    log(f"[{n:,} messages] filling ({method})")
    messages = list(sample_messages(n))
    start = time.perf_counter()
    fill_mailbox(server, user, messages, method=method)
    fill_s = time.perf_counter() - start
    log(f"[{n:,} messages] filled in {fill_s:.2f} s; bare fetch ×{repeat}")
    anchor = measure_bare_fetch(server.host, server.port, user, server.password, repeat=repeat)
    return {
        "n": n,
        "mean_message_bytes": sum(map(len, messages)) // max(1, n),
        "fill": {"method": method, "seconds": round(fill_s, 3), "note": "set-up, not a figure"},
        "bare_fetch": anchor,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.import_fetch", description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=10_000, help="goal size; growth from N/10 (default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=3, help="measured passes per size after one warm-up (default: %(default)s)")
    parser.add_argument("--fill", choices=["maildir", "multiappend"], default="maildir", help="how the mailbox is filled")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for the JSON result (default: %(default)s)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sys.path.insert(0, str(TESTS))
    from servers import DovecotServer  # type: ignore[import-not-found]

    result: dict = {"schema": SCHEMA, "timestamp": timestamp(), "git": git_info(), "machine": machine_info()}
    with DovecotServer() as server:
        version = subprocess.run([str(server.binary), "--version"], capture_output=True, text=True).stdout.strip()
        settings = "tests/servers.py: maildir, mail_fsync=never, plain IMAP on 127.0.0.1"
        result["dovecot"] = {"version": version, "settings": settings}
        sizes = sorted({max(1, args.messages // 10), args.messages})
        result["sizes"] = [bench_size(server, n, repeat=args.repeat, method=args.fill) for n in sizes]
    if len(result["sizes"]) == 2:
        small, large = result["sizes"]
        result["growth"] = {
            "from_n": small["n"],
            "to_n": large["n"],
            "time_ratio": round(large["bare_fetch"]["absolute_s"] / small["bare_fetch"]["absolute_s"], 2),
        }
    result["machine"]["loadavg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    path = write_json(result, args.out, "import-fetch")
    for size in result["sizes"]:
        b = size["bare_fetch"]
        print(
            f"{size['n']:>7,} messages (~{size['mean_message_bytes']} B): bare fetch {b['absolute_s']:.3f} s "
            f"= {b['messages_per_s']:,} messages/s (min {b['min_s']:.3f} s); fill ({size['fill']['method']}) "
            f"{size['fill']['seconds']:.2f} s"
        )
    print(f"Wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
