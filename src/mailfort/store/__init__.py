"""The store: the only place where state that matters lives.

Holds: the role protocols every consumer depends on (`roles`: accounts, mailboxes and messages,
acceptance, queue, cluster, locks, status records, mail health, commit load), the records they
speak in (`records`), their composition with a lifecycle for wiring code (`api.Store`), and one
subpackage per engine (`sqlite/`, `postgres/`) mirroring the roles file by file, over the row
mapping both share (`rows`, `flags`) and the migrations (`migrate`, `migrations/<engine>/`).
May import: the stdlib, the database drivers (inside the engines only), `mailfort.errors`; never
anything above it (`mail/`, `queue/`, `delivery/`, `server/`, `status/`, `cluster/`, `auth/`).
Promises: a write is durable when its coroutine returns; driver errors reach callers only as
`mailfort.errors.StoreError` subclasses; both engines pass one conformance suite
(`tests/store/`); `open_store` accepts the same URLs as ever.
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
