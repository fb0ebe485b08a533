"""What every request handler starts from: the ``App`` (store, clock, config) and the daemon's metrics."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dunningops.app import App
    from dunningops.daemon.metrics import Metrics
    from dunningops.dunning.runconfig import RunConfig


@dataclass
class WebContext:
    """Shared by the routes of one server. Thread-safe: uvicorn runs sync handlers in a thread pool."""

    app: App
    metrics: Metrics | None = None
    _config: RunConfig | None = field(default=None, init=False, repr=False)
    _config_serial: int | None = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def config(self) -> RunConfig:
        """The applied config, read again after each apply (the latest apply's id tells)."""
        from sqlalchemy import func, select

        from dunningops.dunning.runconfig import RunConfig
        from dunningops.store.schema import ApplyRow

        with self.app.session() as session:
            serial = session.scalar(select(func.max(ApplyRow.id))) or 0
            with self._lock:
                if self._config is None or serial != self._config_serial:
                    self._config, self._config_serial = RunConfig.from_store(session), serial
                return self._config
