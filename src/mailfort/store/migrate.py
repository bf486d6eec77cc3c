"""Versioned schema migrations: numbered SQL files per engine, applied in order, once each.

SQLite records the version in `PRAGMA user_version`. A store migrated by a newer mailfort than this
one is refused with `SchemaTooNew`, so an old node can never write a schema it does not understand.
"""

from __future__ import annotations

import re
import sqlite3
from importlib import resources

from mailfort.errors import SchemaTooNew

_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


def migrations(engine: str) -> list[tuple[int, str]]:
    """(version, sql) pairs shipped with this mailfort, in order."""
    folder = resources.files("mailfort.store.migrations").joinpath(engine)
    found = []
    for entry in folder.iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry.read_text(encoding="utf-8")))
    return sorted(found)


def latest_version(engine: str) -> int:
    return max(v for v, _ in migrations(engine))


def sqlite_schema_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def apply_sqlite_migrations(conn: sqlite3.Connection) -> None:
    current = sqlite_schema_version(conn)
    known = latest_version("sqlite")
    if current > known:
        raise SchemaTooNew(
            f"the store has schema version {current}, this mailfort knows up to {known};"
            " upgrade mailfort before starting it on this data"
        )
    for version, sql in migrations("sqlite"):
        if version > current:
            conn.executescript(
                f"BEGIN IMMEDIATE;\n{sql}\nPRAGMA user_version = {version};\nCOMMIT;"
            )
