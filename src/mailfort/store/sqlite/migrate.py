"""Schema migrations on SQLite: the version is `PRAGMA user_version`, applied under the write lock.

A store migrated by a newer mailfort than this one is refused with `SchemaTooNew`. The version is
read under the write lock: two nodes (or a node and the CLI) opening a fresh file at once must not
both apply migration 1.
"""

from __future__ import annotations

import contextlib
import sqlite3

from mailfort.store import migrate as shipped

ENGINE = "sqlite"


def schema_version(conn: sqlite3.Connection) -> int:
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


def apply_migrations(conn: sqlite3.Connection) -> None:
    # The version is read under the write lock: two nodes (or a node and the CLI) opening a fresh
    # file at once must not both apply migration 1.
    conn.execute("BEGIN IMMEDIATE")
    try:
        current = schema_version(conn)
        shipped.refuse_newer(ENGINE, current, store="the store", data="this data")
        for version, sql in shipped.migrations(ENGINE):
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
