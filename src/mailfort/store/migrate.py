"""Versioned schema migrations: numbered SQL files per engine, applied in order, once each.

SQLite records the version in `PRAGMA user_version`. A store migrated by a newer mailfort than this
one is refused with `SchemaTooNew`, so an old node can never write a schema it does not understand.
"""

from __future__ import annotations

import contextlib
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


def _statements(sql: str) -> list[str]:
    """Split a migration into statements, so they can run inside our own transaction.

    `executescript` would commit whatever transaction is open first, releasing the lock that
    keeps two processes from migrating the same fresh file at once."""
    found: list[str] = []
    pending = ""
    for line in sql.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            found.append(pending)
            pending = ""
    if pending.strip():
        found.append(pending)  # a trailing comment runs as nothing; a broken statement fails
    return found


def apply_sqlite_migrations(conn: sqlite3.Connection) -> None:
    # The version is read under the write lock: two nodes (or a node and the CLI) opening a fresh
    # file at once must not both apply migration 1.
    conn.execute("BEGIN IMMEDIATE")
    try:
        current = sqlite_schema_version(conn)
        known = latest_version("sqlite")
        if current > known:
            raise SchemaTooNew(
                f"the store has schema version {current}, this mailfort knows up to {known};"
                " upgrade mailfort before starting it on this data"
            )
        for version, sql in migrations("sqlite"):
            if version > current:
                for statement in _statements(sql):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {version}")
        conn.execute("COMMIT")
    except BaseException:
        # SQLite may have rolled back already; the original error is the one worth reporting.
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise
