"""The store: the only place where state that matters lives.

Owns: the async interface (`api.Store`), its engines, and their migrations.
Must not import: anything above it (`mail/`, `queue/`, `delivery/`, `server/`).
"""

from __future__ import annotations

from pathlib import Path

from mailfort.store.api import Store


def open_store(url: str, data_dir: Path) -> Store:
    """Build (not yet open) the store a URL names; an empty URL is the embedded default."""
    from mailfort.errors import ConfigError

    if url in ("", "sqlite:", "sqlite://"):
        from mailfort.store.sqlite import SqliteStore

        return SqliteStore(data_dir / "mailfort.sqlite3")
    if url.startswith("sqlite:///"):
        from mailfort.store.sqlite import SqliteStore

        return SqliteStore(Path(url.removeprefix("sqlite:///")))
    if url.startswith(("postgresql://", "postgres://")):
        from mailfort.store.postgres import PostgresStore

        return PostgresStore(url)
    raise ConfigError(
        "store.url",
        f"unsupported store URL {url!r} (use sqlite:///PATH or postgresql://USER@HOST:PORT/DB)",
    )
