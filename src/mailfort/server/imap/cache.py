"""Per-node cache of what FETCH derives from a message: ENVELOPE, BODYSTRUCTURE, BODY, headers.

A stored message never changes (UIDs are never reused), so (mailbox id, UID) is a safe key;
parsing a message once serves every later FETCH of its envelope or structure without reading the
body again, which is what clients do on every sync.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class MessageMeta:
    envelope: bytes
    bodystructure: bytes
    body: bytes  # BODYSTRUCTURE without extension data
    header: bytes  # the top-level header block, for HEADER and HEADER.FIELDS fetches


class MetaCache:
    def __init__(self, max_bytes: int = 64 * 1024 * 1024) -> None:
        self._items: OrderedDict[tuple[int, int], MessageMeta] = OrderedDict()
        self._bytes = 0
        self._max = max_bytes
        self.hits = 0
        self.misses = 0

    @staticmethod
    def _size(meta: MessageMeta) -> int:
        return len(meta.envelope) + len(meta.bodystructure) + len(meta.body) + len(meta.header) + 64

    def get(self, mailbox_id: int, uid: int) -> MessageMeta | None:
        meta = self._items.get((mailbox_id, uid))
        if meta is None:
            self.misses += 1
            return None
        self._items.move_to_end((mailbox_id, uid))
        self.hits += 1
        return meta

    def put(self, mailbox_id: int, uid: int, meta: MessageMeta) -> None:
        key = (mailbox_id, uid)
        old = self._items.pop(key, None)
        if old is not None:
            self._bytes -= self._size(old)
        self._items[key] = meta
        self._bytes += self._size(meta)
        while self._bytes > self._max and self._items:
            _, evicted = self._items.popitem(last=False)
            self._bytes -= self._size(evicted)
