"""The conformance suite runs every test once per engine.

To add an engine (PostgreSQL), write an `Engine` subclass and add it to `ENGINES`; the tests
target `mailfort.store.api.Store` only. Engine-specific facts the interface does not expose (how
many bodies are stored, group-commit counters) are answered by the `Engine`, not by the tests.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import closing
from pathlib import Path

import pytest

from mailfort.store.api import Store
from mailfort.store.sqlite import SqliteStore


class Engine:
    """One database the suite may open several `Store`s on (like several nodes would)."""

    name: str

    def new_store(self) -> Store:
        raise NotImplementedError

    def blob_count(self) -> int:
        """How many message bodies are stored, referenced or not."""
        raise NotImplementedError

    def commit_stats(self, store: Store) -> tuple[int, int] | None:
        """(commits, jobs committed) when the engine group-commits, else None."""
        return None


class SqliteEngine(Engine):
    name = "sqlite"

    def __init__(self, root: Path) -> None:
        self.path = root / "store.sqlite3"

    def new_store(self) -> Store:
        return SqliteStore(self.path)

    def blob_count(self) -> int:
        with closing(sqlite3.connect(self.path)) as conn:
            return int(conn.execute("SELECT count(*) FROM blobs").fetchone()[0])

    def commit_stats(self, store: Store) -> tuple[int, int] | None:
        assert isinstance(store, SqliteStore)
        return store.writer.commits, store.writer.committed_jobs


ENGINES: dict[str, Callable[[Path], Engine]] = {
    "sqlite": SqliteEngine,
}


@pytest.fixture(params=sorted(ENGINES))
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Engine:
    return ENGINES[request.param](tmp_path)


@pytest.fixture
async def store(engine: Engine) -> AsyncIterator[Store]:
    opened = engine.new_store()
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()
