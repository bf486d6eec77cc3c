"""The DKIM keys of a domain as DNS must publish them, read from the store (`DkimKeys` role)."""

from __future__ import annotations

from mailfort.ops.records import DkimPublished
from mailfort.store.api import Store


async def dkim_published(store: Store, domain: str) -> list[DkimPublished]:
    """Every key of `domain` that DNS must show: waiting to be used, signing, or retiring (kept
    so that mail signed before a rotation still verifies)."""
    del store, domain  # until the store holds DKIM keys, a domain has none
    return []
