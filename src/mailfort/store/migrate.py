"""Versioned schema migrations: numbered SQL files per engine (`migrations/<engine>/`), applied in
order, once each, by the engine's own `migrate` module (`sqlite.migrate`, `postgres.migrate`).

A store migrated by a newer mailfort than this one is refused with `SchemaTooNew`, so an old node
can never write a schema it does not understand.
"""

from __future__ import annotations

import re
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


def refuse_newer(engine: str, current: int, *, store: str, data: str) -> None:
    """SchemaTooNew when `store` (as people call it) is at a version this mailfort does not know."""
    known = latest_version(engine)
    if current > known:
        raise SchemaTooNew(
            f"{store} has schema version {current}, this mailfort knows up to {known};"
            f" upgrade mailfort before starting it on {data}"
        )
