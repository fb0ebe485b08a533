"""The applied config as plain values, without the ORM: what `plan` compares the YAML with.

``config_objects.read_actual`` builds ORM objects with the actual-only fields too (timestamps,
verification, last send) for `show` and the send cycle. A plan needs only the desired fields:
reading them here, column by column into plain dicts, leaves the ORM and the full schema out of
`plan`'s start-up (a sixth of it) and builds no object per row. The values are the same, in the
same canonical shape (a test compares them with read_actual's), so a plan's ``actual_digest``
matches the one ``apply`` computes under its lock.

A SQLite store file at the latest revision is read with the standard library's sqlite3
(``read_applied_sqlite``): importing SQLAlchemy alone was a fifth of a plan. Anything else (another
URL, a store to migrate, read-only, damaged) goes the usual way, ``open_store`` then
``read_applied``, which migrate, check and report as always. Imports SQLAlchemy Core when used.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from dunningops.store.migrate import HEAD

if TYPE_CHECKING:
    from sqlalchemy import Engine

# The store's schema revision these columns are read at. A store at another revision is opened the
# usual way (migrated first, or refused when newer).
SCHEMA_REVISION = HEAD

# The columns that hold desired fields one to one, as in config_objects.FIELDS (a test keeps them equal).
FIELDS: dict[str, tuple[str, ...]] = {
    "member": ("email", "name", "role"),
    "alias": ("email", "display_name", "signature"),
    "contact_function": ("label", "labels"),
    "template": ("name", "design", "locales"),
    "plan": ("name", "level", "assign", "min_contact_delay", "reply_to", "entry", "group_invoices", "track_opens"),
}
# A step's canonical keys → its columns (config_objects, the ORM reader, uses these too).
STEP_COLUMNS = {
    "id": "id",
    "at": "at",
    "action": "action",
    "send": "send",
    "from": "sender",
    "to": "to_functions",
    "cc": "cc_functions",
    "bcc": "bcc_functions",
    "template": "template_id",
    "assignee": "assignee",
}
# Columns that decode (JSON text on SQLite, 0/1 booleans); the others read as they are.
_JSON = frozenset({"data", "labels", "locales", "assign", "to_functions", "cc_functions", "bcc_functions"})
_BOOLEAN = frozenset({"group_invoices", "track_opens"})
_TABLES = {
    "settings": "settings",
    "member": "members",
    "alias": "aliases",
    "contact_function": "contact_functions",
    "template": "templates",
    "plan": "plans",
}


class Applied(Protocol):
    """What a plan reads of an applied object: this module's AppliedObject, or config_objects.ActualObject."""

    @property
    def kind(self) -> str: ...

    @property
    def id(self) -> str: ...

    @property
    def fields(self) -> dict: ...


@dataclass(frozen=True)
class AppliedObject:
    kind: str
    id: str
    fields: dict

    @property
    def address(self) -> str:
        return self.kind if self.kind == "settings" else f"{self.kind}.{self.id}"


def _table(name: str, *columns: str) -> Any:
    from sqlalchemy import JSON, Boolean, Integer, String, Text, column, table

    def typed(name: str) -> Any:
        if name in _JSON:
            return JSON
        if name in _BOOLEAN:
            return Boolean
        return Integer if name == "position" else String if name == "id" else Text

    return table(name, *(column(c, typed(c)) for c in columns))


def read_applied(engine: Engine) -> dict[str, AppliedObject]:
    """Every applied config object's desired fields, by address, in one read-only transaction.

    Seven queries whatever the size, each of the columns it needs only.
    """
    from sqlalchemy import select

    with engine.connect() as connection:  # one transaction: a consistent snapshot (rolled back on exit)
        settings = _table(_TABLES["settings"], "id", "data")
        settings_rows = list(connection.execute(select(settings.c.id, settings.c.data)))
        steps = _table("plan_steps", "plan_id", "position", *STEP_COLUMNS.values())
        query = select(steps.c.plan_id, *(steps.c[col] for col in STEP_COLUMNS.values()))
        step_rows = list(connection.execute(query.order_by(steps.c.plan_id, steps.c.position)))
        rows = {}
        for kind, columns in FIELDS.items():
            t = _table(_TABLES[kind], "id", *columns)
            rows[kind] = list(connection.execute(select(t.c.id, *(t.c[c] for c in columns)).order_by(t.c.id)))
    return _objects(settings_rows, step_rows, rows)


def read_applied_sqlite(url: str) -> dict[str, AppliedObject] | None:
    """``read_applied`` of a SQLite store file at SCHEMA_REVISION, with the standard library only.

    None when the URL is not a plain ``sqlite:///path``, the file is missing or one ``open_store``
    would refuse (read-only: the checks of engine._check_sqlite_file), its revision is another, or
    SQLite reports any error: the caller then opens the store the usual way, and whatever is wrong
    is reported as before. The values are those of ``read_applied`` (a test compares them).
    """
    path = _plain_sqlite_path(url)
    if path is None or not _writable_store_file(path):
        return None
    try:
        # mode=rw: never creates a file; WAL and locking as for any other connection of the store.
        connection = sqlite3.connect(f"{path.absolute().as_uri()}?mode=rw", uri=True, timeout=30.0, isolation_level=None)
    except sqlite3.Error:
        return None
    try:
        connection.execute("BEGIN")  # one read transaction: a consistent snapshot
        revision = connection.execute("SELECT version_num FROM alembic_version").fetchall()
        if revision != [(SCHEMA_REVISION,)]:
            return None
        settings_rows = _decoded(connection.execute("SELECT id, data FROM settings"), ("id", "data"))
        columns = ("plan_id", *STEP_COLUMNS.values())
        step_rows = _decoded(
            connection.execute(f"SELECT {', '.join(columns)} FROM plan_steps ORDER BY plan_id, position"), columns
        )
        rows = {}
        for kind, fields in FIELDS.items():
            names = ("id", *fields)
            rows[kind] = _decoded(connection.execute(f"SELECT {', '.join(names)} FROM {_TABLES[kind]} ORDER BY id"), names)
        return _objects(settings_rows, step_rows, rows)
    except (sqlite3.Error, ValueError):  # ValueError: JSON that does not decode (then SQLAlchemy says so)
        return None
    finally:
        connection.close()  # rolls the read transaction back


def _plain_sqlite_path(url: str) -> Path | None:
    # Only the plain form; any query, URI filename, in-memory database or escape is left to SQLAlchemy.
    for prefix in ("sqlite:///", "sqlite+pysqlite:///"):
        if url.startswith(prefix):
            name = url[len(prefix) :]
            if not name or name == ":memory:" or name.startswith("file:") or any(c in name for c in "?%#"):
                return None
            return Path(name)
    return None


def _writable_store_file(path: Path) -> bool:
    # What open_store requires of a SQLite file before connecting (engine._check_sqlite_file).
    if not path.is_file() or not os.access(path.parent, os.W_OK):
        return False
    companions = (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm"))
    return all(os.access(p, os.W_OK) for p in companions if p.exists())


def _decoded(rows: Iterable[tuple], columns: tuple[str, ...]) -> list[tuple]:
    """sqlite3 rows with the values SQLAlchemy's JSON and Boolean types give."""
    decoders = [json.loads if c in _JSON else bool if c in _BOOLEAN else None for c in columns]
    return [
        tuple(v if v is None or decode is None else decode(v) for v, decode in zip(row, decoders, strict=True)) for row in rows
    ]


def _objects(settings_rows: Iterable, step_rows: Iterable, rows: Mapping[str, Iterable]) -> dict[str, AppliedObject]:
    objects: dict[str, AppliedObject] = {}
    for _, data in settings_rows:
        objects["settings"] = AppliedObject("settings", "settings", data)
    steps: dict[str, list[dict]] = {}
    for plan_id, *values in step_rows:
        steps.setdefault(plan_id, []).append(dict(zip(STEP_COLUMNS, values, strict=True)))
    for kind, columns in FIELDS.items():
        for ident, *values in rows[kind]:
            fields = dict(zip(columns, values, strict=True))
            if kind == "plan":
                fields["steps"] = steps.get(ident, [])
            obj = AppliedObject(kind, ident, fields)
            objects[obj.address] = obj
    return objects


def checked_sources(applied: Mapping[str, Applied]) -> set[tuple[str, str]]:
    """The template sources the store holds, as (design, text): apply checked each of them
    (spec.checks.read_template_bodies), so a plan need not parse them again."""
    sources: set[tuple[str, str]] = set()
    for obj in applied.values():
        if obj.kind != "template":
            continue
        design = obj.fields.get("design")
        for locale in (obj.fields.get("locales") or {}).values():
            if isinstance(design, str) and isinstance(locale.get("body"), str):
                sources.add((design, locale["body"]))
            if isinstance(locale.get("subject"), str):
                sources.add(("subject", locale["subject"]))
    return sources
