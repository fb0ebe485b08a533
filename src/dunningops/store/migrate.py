"""Alembic, driven from code: the migrations ship inside the package (store/migrations).

Checking the schema is one SELECT against a constant: alembic itself is only
imported when a migration has to run (it was a tenth of `plan`'s start-up).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from dunningops.errors import StoreError

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy import Engine

MIGRATIONS = Path(__file__).with_name("migrations")
# The newest revision in migrations/versions; a test checks it against alembic's own view.
HEAD = "0010"


def alembic_config(engine: Engine | None = None) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def head() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current(engine: Engine) -> str | None:
    from sqlalchemy import inspect, text  # here: plan of a current SQLite store never imports SQLAlchemy

    with engine.connect() as connection:
        if not inspect(connection).has_table("alembic_version"):
            return None
        return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()


def is_current(engine: Engine) -> bool:
    return current(engine) == HEAD


def is_known(revision: str) -> bool:
    """Whether ``revision`` is one of our migrations (else a newer dunningops wrote the store)."""
    from alembic.script import ScriptDirectory

    # Exact ids: alembic's own lookup also takes a prefix ("000" would match 0001).
    return revision in {script.revision for script in ScriptDirectory.from_config(alembic_config()).walk_revisions()}


def upgrade(engine: Engine) -> None:
    """Bring the store to head; a store at an unknown revision is refused first (StoreError)."""
    revision = current(engine)
    if revision is not None and not is_known(revision):
        raise StoreError(f"the store was written by a newer dunningops (revision {revision}); upgrade dunningops")
    from alembic import command

    command.upgrade(alembic_config(engine), "head")


def upgrade_if_needed(engine: Engine) -> bool:
    """Upgrade to head when behind; returns whether anything ran."""
    if is_current(engine):
        return False
    upgrade(engine)
    return True
