"""The application core: what every entry point (the CLI, `demo`, next the daemon and its web
pages) starts from.

An ``App`` is built from the config directory, the database URL, the environment and the
clock. It owns the store (opened, and migrated, on first use) and the factories of what talks
to the outside: the transport that sends mail and the source the import cycle reads. The
engine's functions take what they need from it as arguments; they never import the CLI.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from dunningops import clock as clocks

if TYPE_CHECKING:  # the store's modules load only when a command needs them (start-up time)
    from sqlalchemy.orm import Session

    from dunningops.dunning.runconfig import RunConfig
    from dunningops.spec.state import DesiredState
    from dunningops.store import Store
    from dunningops.transport.base import Transport
    from dunningops.transport.sources import MailSource

__all__ = ["App"]

ENV_CONFIG = "DUNNINGOPS_CONFIG"


@dataclass
class App:
    """One organisation's dunningops: its config directory, its store, its clock and its ways out.

    Args:
        config_dir: the YAML config directory.
        database_url: the store's SQLAlchemy URL; None: ``$DUNNINGOPS_DATABASE_URL``, else the
            SQLite file beside the config's repository.
        env: where secrets (SMTP credentials) and ``DUNNINGOPS_*`` settings are read.
        clock: "now"; defaults to the wall clock, or ``$DUNNINGOPS_NOW`` when set.
        transport_factory: builds the transport for a run from its config; defaults to the
            one named in ``settings.sending.transport``.
        source_factory: opens the mail source the import cycle reads; defaults to the one
            named in ``settings.inbox``.
    """

    config_dir: Path
    database_url: str | None = None
    env: Mapping[str, str] = field(default_factory=lambda: os.environ)
    clock: Callable[[], datetime] | None = None
    transport_factory: Callable[[RunConfig], Transport] | None = None
    source_factory: Callable[[RunConfig], MailSource] | None = None
    _store: Store | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.config_dir = Path(self.config_dir)
        if self.clock is None:
            self.clock = clocks.from_env(self.env)  # a malformed DUNNINGOPS_NOW fails here, in one line
        if self.transport_factory is None:
            self.transport_factory = self._transport_from_settings
        if self.source_factory is None:
            self.source_factory = self._source_from_settings

    @classmethod
    def from_env(
        cls, config_dir: Path | str | None = None, database_url: str | None = None, env: Mapping[str, str] = os.environ, **kwargs
    ) -> App:
        """The app as the CLI builds it: explicit values first, then the environment, then defaults."""
        return cls(Path(config_dir or env.get(ENV_CONFIG) or "config"), database_url, env, **kwargs)

    # --- time ----------------------------------------------------------------------------

    def now(self) -> datetime:
        assert self.clock is not None
        return self.clock()

    # --- the store -----------------------------------------------------------------------

    @property
    def url(self) -> str:
        from dunningops.store.engine import ENV_URL, default_database_url

        return self.database_url or self.env.get(ENV_URL) or default_database_url(self.config_dir)

    @property
    def store(self) -> Store:
        """The store, opened (and migrated) on first use."""
        if self._store is None:
            from dunningops.store import open_store

            self._store = open_store(self.url)
        return self._store

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction on the store, for work that reads or changes a few rows."""
        with self.store.session() as session:
            yield session

    # --- the desired config --------------------------------------------------------------

    def load_config(self) -> DesiredState:
        from dunningops.spec import load_config

        return load_config(self.config_dir)

    # --- the ways out --------------------------------------------------------------------

    @property
    def repo_root(self) -> Path:
        from dunningops.store.engine import repo_root_of

        return repo_root_of(self.config_dir)

    def _transport_from_settings(self, config: RunConfig) -> Transport:
        # Relative maildir paths are relative to the repo root; secrets come from self.env only.
        from dunningops.transport.base import open_transport

        return open_transport(config.settings.sending.transport, self.repo_root, self.env)

    def transport(self, config: RunConfig) -> Transport:
        """The transport for one run of ``config`` (what every command hands the engine as its factory)."""
        assert self.transport_factory is not None
        return self.transport_factory(config)

    def _source_from_settings(self, config: RunConfig) -> MailSource:
        from dunningops.transport.sources import open_source

        return open_source(config.settings.inbox, self.repo_root, self.env)

    def source(self, config: RunConfig) -> MailSource:
        """The mail source for one import run of ``config`` (R7: each organisation's own settings)."""
        assert self.source_factory is not None
        return self.source_factory(config)

    # --- lifetime ------------------------------------------------------------------------

    def close(self) -> None:
        if self._store is not None:
            self._store.dispose()
            self._store = None

    def __enter__(self) -> App:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
