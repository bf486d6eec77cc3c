"""Fixtures the unit tests share."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mailfort.store.sqlite import SqliteStore


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    """A fresh SQLite store of the test's own (a module may define its own `store`)."""
    opened = SqliteStore(tmp_path / "store.sqlite3")
    await opened.open()
    try:
        yield opened
    finally:
        await opened.close()
