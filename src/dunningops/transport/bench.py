"""Sending throughput against Postfix ``smtp-sink``, with its anchors measured in the same run.

``python -m dunningops.transport.bench [--count 10000] [--connections 10]``
prints one JSON object: messages/s for

* ``build``: ``to_bytes`` vs ``EmailMessage`` + ``as_bytes()`` for the same content;
* ``pool``: ``SmtpTransport`` (building the bytes included) with N connections,
  the whole list in one ``send`` and in the send cycle's batches of 200;
* ``smtplib``: anchor (1), bare ``sendmail`` of prebuilt bytes over N threads;
* ``smtp_source``: anchor (2), ``smtp-source -m COUNT -s N -l 2000``;

and the pool's ratios to both anchors (goal, performance.md: ≥ 0.5× smtplib),
each the median of interleaved rounds.
Each function takes a host, a port and messages, so the project benchmark
can call them on its own data. Servers are started as direct children on a
free loopback port (shared/design/servers.md).
"""

from __future__ import annotations

import argparse
import contextlib
import email.policy
import email.utils
import json
import os
import pwd
import resource
import shutil
import smtplib
import socket
import statistics
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from email.headerregistry import Address as HeaderAddress
from email.message import EmailMessage

from dunningops.transport.message import Address, OutgoingMessage, envelope_sender, new_message_id, recipients, to_bytes
from dunningops.transport.smtp import SmtpTransport

HOST = "127.0.0.1"


# --- data ------------------------------------------------------------------------------


def sample_messages(count: int, domain: str = "acme.example") -> list[OutgoingMessage]:
    """``count`` reminders shaped like the send cycle's: French text and HTML (~1.7 KB), one recipient."""
    text = (
        "Bonjour {name},\n\nSauf erreur de notre part, la facture F-2026-{n:05d} d'un montant de 1 200,00 € "
        "arrivée à échéance le 15/10/2026 reste impayée.\nÉchéance dépassée de 38 jours.\n\n"
        "Merci de procéder au règlement ou de nous indiquer la date prévue.\n\nCordialement,\nService recouvrement\n"
    )
    html = (
        "<html><body><p>Bonjour {name},</p><p>Sauf erreur de notre part, la facture <b>F-2026-{n:05d}</b> "
        "d'un montant de <b>1 200,00 €</b> arrivée à échéance le 15/10/2026 reste impayée.</p>"
        "<table><tr><th>Facture</th><th>Échéance</th><th>Montant</th></tr>"
        "<tr><td>F-2026-{n:05d}</td><td>15/10/2026</td><td>1 200,00 €</td></tr></table>"
        "<p>Cordialement,<br>Service recouvrement</p></body></html>\n"
    )
    sender = Address(f"relances@{domain}", "Société Exemple – Recouvrement")
    return [
        OutgoingMessage(
            message_id=new_message_id(domain),
            from_=sender,
            to=[Address(f"compta{n}@client{n % 997}.example", f"Client Numéro {n}")],
            reply_to=Address(f"compta@{domain}"),
            subject=f"Relance : facture F-2026-{n:05d} échue",
            text=text.format(name=f"Client Numéro {n}", n=n),
            html=html.format(name=f"Client Numéro {n}", n=n),
            headers={"Auto-Submitted": "auto-generated", "X-Dunningops-Customer": f"C{n:06d}"},
        )
        for n in range(count)
    ]


def email_message_bytes(msg: OutgoingMessage) -> bytes:
    """The same message through the standard library's ``EmailMessage`` (the slow way, for comparison)."""
    em = EmailMessage(policy=email.policy.SMTP)
    em["Date"] = email.utils.formatdate()
    em["From"] = HeaderAddress(msg.from_.name or "", addr_spec=msg.from_.email)
    em["To"] = [HeaderAddress(a.name or "", addr_spec=a.email) for a in msg.to]
    if msg.reply_to:
        em["Reply-To"] = HeaderAddress(msg.reply_to.name or "", addr_spec=msg.reply_to.email)
    em["Subject"] = msg.subject
    em["Message-ID"] = msg.message_id
    for name, value in msg.headers.items():
        em[name] = value
    em.set_content(msg.text)
    if msg.html is not None:
        em.add_alternative(msg.html, subtype="html")
    return em.as_bytes()


# --- measures --------------------------------------------------------------------------


def build_rates(messages: Sequence[OutgoingMessage]) -> dict[str, float]:
    """Messages/s of ``to_bytes`` and of ``EmailMessage`` for the same messages."""
    start = time.perf_counter()
    for msg in messages:
        to_bytes(msg)
    fast = len(messages) / (time.perf_counter() - start)
    sample = messages[: max(1, len(messages) // 10)]  # the slow path on a tenth is enough
    start = time.perf_counter()
    for msg in sample:
        email_message_bytes(msg)
    slow = len(sample) / (time.perf_counter() - start)
    return {"to_bytes": round(fast), "email_message": round(slow), "ratio": round(fast / slow, 1)}


def send_with_pool(
    host: str, port: int, messages: Sequence[OutgoingMessage], connections: int = 10, batch: int | None = None
) -> float:
    """Messages/s through ``SmtpTransport`` (building included); ``batch``: send() calls of that size."""
    transport = SmtpTransport(host, port, security="none", pool_size=connections, local_hostname="bench.test")
    start = time.perf_counter()
    try:
        step = batch or len(messages)
        for i in range(0, len(messages), step):
            results = transport.send(messages[i : i + step])
            if any(r.status != "sent" for r in results):
                raise RuntimeError(f"not all sent: {next(r for r in results if r.status != 'sent')}")
    finally:
        transport.close()
    return len(messages) / (time.perf_counter() - start)


def send_bare_smtplib(host: str, port: int, payloads: Sequence[tuple[str, list[str], bytes]], connections: int = 10) -> float:
    """Anchor (1): messages/s of plain ``sendmail`` of prebuilt bytes, one connection per thread."""
    errors: list[BaseException] = []

    def worker(part: Sequence[tuple[str, list[str], bytes]]) -> None:
        try:
            with smtplib.SMTP(host, port, local_hostname="bench.test") as smtp:
                for sender, rcpts, data in part:
                    smtp.sendmail(sender, rcpts, data)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(payloads[n::connections],)) for n in range(connections)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return len(payloads) / (time.perf_counter() - start)


def send_smtp_source(host: str, port: int, count: int, sessions: int = 10, size: int = 2000) -> float:
    """Anchor (2): messages/s of Postfix ``smtp-source -m count -s sessions -l size``."""
    start = time.perf_counter()
    subprocess.run(
        [_postfix_tool("smtp-source"), "-m", str(count), "-s", str(sessions), "-l", str(size), f"{host}:{port}"],
        check=True,
        capture_output=True,
    )
    return count / (time.perf_counter() - start)


# --- the sink --------------------------------------------------------------------------


def _postfix_tool(name: str) -> str:
    path = shutil.which(name) or (f"/usr/sbin/{name}" if os.path.exists(f"/usr/sbin/{name}") else None)
    if path is None:
        raise RuntimeError(f"{name} not found: apt-get install postfix (it brings smtp-sink and smtp-source)")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def smtp_sink(port: int | None = None) -> Iterator[tuple[str, int]]:
    """Postfix ``smtp-sink`` on 127.0.0.1, a direct child (PID 1 here reaps no orphans): yields (host, port)."""
    port = port or free_port()
    command = [_postfix_tool("smtp-sink")]
    if os.geteuid() == 0:
        # smtp-sink refuses to keep root privileges: it needs an account to switch to.
        command += ["-u", _unprivileged_user()]
    command += [f"{HOST}:{port}", "1000"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while True:
            with socket.socket() as s:
                if s.connect_ex((HOST, port)) == 0:
                    break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"smtp-sink did not start: {process.stderr.read().decode() if process.stderr else ''}")
            time.sleep(0.05)
        yield HOST, port
    finally:
        process.terminate()
        process.wait(timeout=10)


def _unprivileged_user() -> str:
    for user in ("postfix", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(user)
            return user
    raise RuntimeError("no postfix or nobody account for smtp-sink to run as")


# --- the run ---------------------------------------------------------------------------


def run(count: int = 10_000, connections: int = 10, repeat: int = 3) -> dict:
    """All figures of one run, on one smtp-sink: medians of ``repeat`` interleaved rounds.

    Interleaving (anchor, pool, anchor, pool...) and medians keep a shared,
    noisy machine from favouring one side; ``client_cpu_us`` (this process's
    CPU time per message) barely depends on the machine's load at all.
    """
    messages = sample_messages(count)
    payloads = [(envelope_sender(m), recipients(m), to_bytes(m)) for m in messages]
    report: dict = {
        "count": count,
        "connections": connections,
        "repeat": repeat,
        "message_bytes": sum(len(p[2]) for p in payloads) // count,
        "build": build_rates(messages),
    }
    with smtp_sink() as (host, port):
        measures = {
            "smtplib": lambda: send_bare_smtplib(host, port, payloads, connections),
            "pool": lambda: send_with_pool(host, port, messages, connections),
            "pool_batches_of_200": lambda: send_with_pool(host, port, messages, connections, batch=200),
            "smtp_source": lambda: send_smtp_source(host, port, count, connections),
        }
        rates: dict[str, list[float]] = {name: [] for name in measures}
        cpu: dict[str, list[float]] = {name: [] for name in measures}
        for _ in range(repeat):
            for name, measure in measures.items():
                before = time.process_time()
                rates[name].append(measure())
                cpu[name].append((time.process_time() - before) / count * 1e6)
    for name in measures:
        report[name] = {"per_s": round(statistics.median(rates[name])), "samples": [round(r) for r in rates[name]]}
        if name != "smtp_source":  # its work happens in another process
            report[name]["client_cpu_us"] = round(statistics.median(cpu[name]), 1)
    report["pool_vs_smtplib"] = round(report["pool"]["per_s"] / report["smtplib"]["per_s"], 2)
    report["pool_vs_smtp_source"] = round(report["pool"]["per_s"] / report["smtp_source"]["per_s"], 2)
    report["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return report


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--count", type=int, default=10_000, help="messages per measure")
    parser.add_argument("--connections", type=int, default=10, help="SMTP connections (threads, sessions)")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved rounds; medians are reported")
    args = parser.parse_args(argv)
    print(json.dumps(run(args.count, args.connections, args.repeat), indent=2))


if __name__ == "__main__":
    main()
