"""What one send cycle runs with, built once per run and handed to each of its steps."""

from __future__ import annotations

import dataclasses
import threading
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from dunningops.dunning.calendar import SendingCalendar
from dunningops.dunning.render_worker import RenderWorker
from dunningops.dunning.report import CycleReport
from dunningops.dunning.runconfig import RunConfig
from dunningops.render import Renderer
from dunningops.spec.models import Settings
from dunningops.transport.base import Transport

BATCH = 200


def message_domain(settings: Settings) -> str:
    """The right-hand side of our Message-IDs: the deliverability domain, else the fallback sender's."""
    return settings.deliverability.domain or settings.deliverability.fallback_sender.split("@")[1]


@dataclass(frozen=True)
class RunContext:
    """A run's config, renderer, calendar, instant and local day, batch size, transport and report."""

    config: RunConfig
    renderer: Renderer
    calendar: SendingCalendar
    at: datetime
    today: date  # ``at``'s date in the company's time zone
    domain: str
    batch_size: int
    report: CycleReport
    transport: Transport | None = None
    runner: Any = None  # store.runners.Runner: who claims the steps (None in a dry run)
    stop: threading.Event | None = None  # set: claim nothing more, give the unsent back

    @classmethod
    def build(
        cls, config: RunConfig, at: datetime, report: CycleReport, batch_size: int = BATCH, *, render_worker: bool = False
    ) -> RunContext:
        """``render_worker``: a large run's batches render in a process of their own (render_worker.py);
        the caller then ``close()``s the context."""
        calendar = SendingCalendar(config.settings)
        # The dry run shows outcomes, not bodies: the plain-text alternative of html emails (the
        # largest single cost, and a pure function that cannot fail) is left out there.
        company, plain_text = config.settings.company.model_dump(), not report.dry_run
        renderer = (
            RenderWorker(config.templates, company, plain_text=plain_text)
            if render_worker
            else Renderer(config.templates, company=company, plain_text=plain_text)
        )
        return cls(
            config=config,
            renderer=renderer,
            calendar=calendar,
            at=at,
            today=calendar.local(at).date(),
            domain=message_domain(config.settings),
            batch_size=batch_size,
            report=report,
        )

    def with_transport(self, transport: Transport) -> RunContext:
        return dataclasses.replace(self, transport=transport)

    def with_runner(self, runner: Any, stop: threading.Event | None) -> RunContext:
        return dataclasses.replace(self, runner=runner, stop=stop)

    def close(self) -> None:
        """Stops the render worker's process, if there is one."""
        if isinstance(self.renderer, RenderWorker):
            self.renderer.close()
