"""Helpers for the daemon's tests: a fake clock the sleeper advances, the config's daemon settings,
an App on a prepared store, and the daemon's log lines captured as JSON."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import httpx

from dunningops.app import App
from dunningops.daemon import logs
from dunningops.daemon.loop import Daemon
from dunningops.transport.maildir_source import MaildirSource
from dunningops.transport.smtp import SmtpTransport


class FakeClock:
    """The "now" of a test, moved on only by the daemon's sleeper (and by a test)."""

    def __init__(self, start: datetime):
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def set_settings(config: Path, **sections: str) -> None:
    """Put ``name: {flow mapping}`` lines into the config's settings (replacing a section of that name)."""
    path = config / "dunningops.yaml"
    text = path.read_text()
    for name, value in sections.items():
        line = f"  {name}: {value}\n"
        # The section as one line (flow style) or as a block of deeper-indented lines.
        text, n = re.subn(rf"^  {name}:(?: .*)?\n(?:    .*\n)*", line, text, flags=re.MULTILINE)
        if not n:
            text = text.replace("settings:\n", f"settings:\n{line}", 1)
    path.write_text(text)


def set_caps(config: Path, per_day: int) -> None:
    path = config / "dunningops.yaml"
    path.write_text(
        path.read_text().replace("caps: {per_day: 300, per_month: 1000}", f"caps: {{per_day: {per_day}, per_month: 1000}}")
    )


def smtp_factory(server, *, pool_size: int = 2, timeout: float = 10.0) -> Callable:
    return lambda config: SmtpTransport(
        server.host, server.port, security="none", pool_size=pool_size, max_attempts=2, backoff_base=0.01, timeout=timeout
    )


def make_app(url: str, config: Path, tmp: Path, clock: FakeClock, transport_factory=None, source_factory=None, env=None) -> App:
    """An App on ``url`` with the fake clock, an empty maildir inbox unless told otherwise."""
    inbox = tmp / "inbox"
    return App(
        config,
        url,
        env=env or {},
        clock=clock,
        transport_factory=transport_factory,
        source_factory=source_factory or (lambda c: MaildirSource(inbox)),
    )


def run_until(daemon: Daemon, clock: FakeClock, end: datetime, *, during: Callable[[datetime], None] | None = None) -> None:
    """Run the loop on simulated time until ``end``: its sleeper advances the clock instead of waiting."""

    def sleep(seconds: float) -> None:
        clock.advance(seconds)
        if during is not None:
            during(clock.now)
        if clock.now >= end:
            daemon.stop("the test is over")

    daemon._sleep = sleep
    daemon.run()


class LogLines:
    """The daemon's log configured as JSON lines into a buffer."""

    def __init__(self) -> None:
        self.buffer = io.StringIO()
        logs.configure(json=True, stream=self.buffer)

    @property
    def text(self) -> str:
        return self.buffer.getvalue()

    def events(self, name: str | None = None) -> list[dict]:
        lines = [json.loads(line) for line in self.text.splitlines() if line.strip()]
        ours = [e for e in lines if e.get("logger", "").startswith("dunningops")]  # not aiosmtpd's, say
        return [e for e in ours if name is None or e["event"] == name]


# --- the real process ----------------------------------------------------------------------


def start_daemon(config: Path, url: str, log: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """`dunningops daemon` in a process of its own; its stderr (the JSON log lines) goes to ``log``."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DUNNINGOPS_")}
    environment.update(env or {})
    with log.open("w") as err:
        return subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from dunningops.cli import main; main()",
                "daemon",
                "--config",
                str(config),
                "--database-url",
                url,
                *args,
            ],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env=environment,
        )


def wait_for(check: Callable[[], object], *, timeout: float = 60.0, what: str = "the daemon", process=None):
    """Poll ``check`` until it returns something true (an exception counts as not yet)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            found = check()
        except (httpx.HTTPError, OSError):
            found = None
        if found:
            return found
        if process is not None and process.poll() is not None:
            raise AssertionError(f"{what}: the process ended early with {process.returncode}")
        time.sleep(0.05)
    raise AssertionError(f"{what}: not within {timeout:g}s")


def json_lines(log: Path) -> list[dict]:
    """Every line of the log, parsed: each must be one JSON object."""
    return [json.loads(line) for line in log.read_text().splitlines()]


def ledger(n: int) -> dict[str, str]:
    """``n`` customers with one payer each and one invoice due Thursday 10 December 2026."""
    return dict(
        customers="".join(f"C{i},Customer {i},FR,fr_FR,EUR,,\n" for i in range(1, n + 1)),
        contacts="".join(f"C{i},payer{i}@example.fr,Payer {i},,,payer,true\n" for i in range(1, n + 1)),
        invoices="".join(f"I{i},C{i},FA-{i},2026-11-01,2026-12-10,100.00,,EUR,,\n" for i in range(1, n + 1)),
    )
