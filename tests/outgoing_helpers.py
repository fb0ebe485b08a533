"""Helpers for the at-most-once tests: the email of each kind sent by a separate process (which a
test can kill -9 mid-transaction), the store they start from, counting what a server received.

Run as a script, this module is that process:

    python tests/outgoing_helpers.py KIND DATABASE_URL HOST PORT [--lock-timeout S] [--go FILE]

KIND is reminder | manual | on_demand | proof | confirmation | outbox. It sends through a real
``SmtpTransport`` to HOST:PORT and ends as the CLI does: a user error prints one line on stderr
and exits with the error's code; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

TESTS = Path(__file__).resolve().parent
if str(TESTS) not in sys.path:
    sys.path.insert(0, str(TESTS))

from cycle_helpers import paris  # noqa: E402

LEDGER = dict(
    customers="C1,Boulangerie Martin SARL,FR,fr_FR,EUR,bob,\nC2,Müller GmbH,DE,de_DE,EUR,,\n",
    contacts="C1,paul@martin.fr,Paul Martin,,,payer,true\nC2,hans@mueller.de,Hans Müller,,,,true\n",
    invoices="I1,C1,FA-1,2026-11-01,2026-12-07,1200.00,,EUR,,\nI3,C2,FA-3,2026-11-01,2026-12-07,80.00,,EUR,,\n",
)
COURTESY = paris(2026, 12, 4)  # the courtesy reminders are due (a Friday, in the window)
OVERDUE = paris(2026, 12, 14)  # the manual overdue step makes its to-do
NOTHING_DUE = paris(2026, 11, 24)  # only the apply's alias confirmations wait
PROOF_TO = "me@acme.fr"


def smtp_factory(host: str, port: int, *, timeout: float = 60.0):
    from dunningops.transport.smtp import SmtpTransport

    # One connection, one try: the order of messages is the order given, and nothing is retried.
    return lambda config: SmtpTransport(host, port, security="none", pool_size=1, max_attempts=1, backoff_base=0.01,
                                        timeout=timeout, local_hostname="client.test")


def sent_at(kind: str) -> datetime:
    return {"reminder": COURTESY, "confirmation": NOTHING_DUE, "outbox": NOTHING_DUE}.get(kind, paris(2026, 12, 14, 10))


def run_kind(kind: str, url: str, host: str, port: int, *, lock_timeout_s: float = 30.0) -> str:
    """Send the email(s) of ``kind``; returns a line saying what happened."""
    from dunningops.dunning.aliases import deliver_outbox
    from dunningops.dunning.cycle import run_send
    from dunningops.dunning.manual import send_todo
    from dunningops.dunning.ondemand import prepare, send_prepared
    from dunningops.dunning.runconfig import RunConfig
    from dunningops.store import open_store

    store = open_store(url)
    factory, at = smtp_factory(host, port), sent_at(kind)
    if kind in ("reminder", "confirmation"):
        report = run_send(store, at=at, transport_factory=factory, lock_timeout_s=lock_timeout_s)
        return f"sent {report.sent} confirmations {report.confirmations} exit {report.exit_code}"
    if kind == "outbox":  # the confirmations alone, without the run lock: only the claims keep them apart
        with store.session() as session:
            config = RunConfig.from_store(session)
        transport = factory(config)
        try:
            return f"confirmations {deliver_outbox(store, config, transport, at)}"
        finally:
            transport.close()
    if kind == "manual":
        return send_todo(store, manual_todo_id(store), at=at, sender=None, member="alice", transport_factory=factory)
    with store.session() as session:
        config = RunConfig.from_store(session)
        p = prepare(session, config, "courtesy", "C1", at)
    if kind == "proof":
        lines = send_prepared(store, config, [(p, [PROOF_TO])], kind="proof", at=at, transport_factory=factory,
                              template_id="courtesy", subject_prefix="[Proof] ")
    else:
        lines = send_prepared(store, config, [(p, ["paul@martin.fr"])], kind="on_demand", at=at, transport_factory=factory,
                              template_id="courtesy")
    return "\n".join(lines)


def manual_todo_id(store) -> int:
    from sqlalchemy import select

    from dunningops.store.schema import CustomerRow, TodoRow

    with store.session() as session:
        return session.scalar(select(TodoRow.id).join(CustomerRow, CustomerRow.id == TodoRow.customer_id)
                              .where(TodoRow.step_id == "overdue", CustomerRow.external_id == "C1"))


def prepare_store(store, v1: Path, tmp: Path, kind: str, *, confirmations_sent: bool = True) -> None:
    """The v1 config applied, the small ledger, and what ``kind`` needs before it is sent."""
    from sqlalchemy import update

    from cycle_helpers import setup_store
    from dunningops.dunning.cycle import run_send
    from dunningops.store.schema import OutboxRow
    from dunningops.transport.maildir import MaildirTransport

    setup_store(store, v1, tmp, **LEDGER)
    if kind in ("confirmation", "outbox"):
        return
    if confirmations_sent:
        with store.session() as s:  # the aliases' confirmations went out earlier
            s.execute(update(OutboxRow).values(delivered_at=paris(2026, 11, 21)))
    if kind == "manual":  # the courtesy reminders, then the overdue to-dos, through a maildir
        for at in (COURTESY, OVERDUE):
            run_send(store, at=at, transport_factory=lambda c: MaildirTransport(tmp / "earlier"))


# --- driving the process ------------------------------------------------------------------


def start(kind: str, url: str, server, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(Path(__file__)), kind, url, server.host, str(server.port), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def kill_while_held(process: subprocess.Popen, server, *, timeout: float = 90.0) -> str:
    """Wait until ``server`` holds a whole message without answering, then kill -9 the sender.

    Returns the Message-ID held: the bytes reached the server, the sender never heard back.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        held = [d for d in server.deliveries if d.complete and d.reply is None]
        if held:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=30)
            return held[0].message_id
        if process.poll() is not None:
            raise AssertionError(f"the sender ended before the server held a message:\n{process.communicate()}")
        time.sleep(0.02)
    process.kill()
    raise AssertionError(f"no message reached the server within {timeout:g}s:\n{process.communicate()}")


def release_together(go: Path, processes: int, timeout: float = 60.0) -> None:
    """Once every process waits at the ``--go`` barrier (imports done), let them all go at once."""
    deadline = time.monotonic() + timeout
    while len(list(go.parent.glob(f"{go.name}.ready.*"))) < processes:
        if time.monotonic() > deadline:
            raise AssertionError("the processes never reached the barrier")
        time.sleep(0.01)
    go.touch()


def finished(process: subprocess.Popen, timeout: float = 120.0) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def accepted(server) -> list:
    """The deliveries the server answered 250 to, or held without answering (a recipient may have them)."""
    return [d for d in server.deliveries if d.complete and d.reply in (250, None)]


def main(argv: list[str]) -> int:
    from dunningops.errors import DunningOpsError

    kind, url, host, port, *rest = argv
    options = dict(zip(rest[::2], rest[1::2], strict=True))
    if "--go" in options:  # a barrier: start together with the other process
        go = Path(options["--go"])
        go.with_name(f"{go.name}.ready.{os.getpid()}").touch()
        while not go.exists():
            time.sleep(0.005)
    try:
        print(run_kind(kind, url, host, int(port), lock_timeout_s=float(options.get("--lock-timeout", 30))))
    except DunningOpsError as exc:  # what the CLI does with a user error: one line, the kind's exit code
        print(f"Error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

