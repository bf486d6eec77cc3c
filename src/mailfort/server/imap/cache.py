"""Per-node cache of what FETCH derives from a message: ENVELOPE, BODYSTRUCTURE, BODY, headers.

A stored message never changes (UIDs are never reused), so (mailbox id, UID) is a safe key;
parsing a message once serves every later FETCH of its envelope or structure without reading the
body again, which is what clients do on every sync.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from mailfort.store.records import MessageRow


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


class SnapshotCache:
    """The message rows of recently selected mailboxes, valid while HIGHESTMODSEQ is unchanged.

    SELECT needs every row of a mailbox; clients that connect, select and leave (phones,
    webmail, POP-like polling) would each load thousands of rows. Any change bumps the
    mailbox's HIGHESTMODSEQ, so a snapshot taken at the same HIGHESTMODSEQ is still exact.
    """

    def __init__(self, max_rows: int = 2_000_000) -> None:
        self._items: OrderedDict[int, tuple[int, list[MessageRow]]] = OrderedDict()
        self._rows = 0
        self._max = max_rows

    def get(self, mailbox_id: int, highestmodseq: int) -> list[MessageRow] | None:
        item = self._items.get(mailbox_id)
        if item is None or item[0] != highestmodseq:
            return None
        self._items.move_to_end(mailbox_id)
        return item[1]

    def put(self, mailbox_id: int, highestmodseq: int, rows: list[MessageRow]) -> None:
        old = self._items.pop(mailbox_id, None)
        if old is not None:
            self._rows -= len(old[1])
        if len(rows) > self._max // 4:
            return  # one huge mailbox must not push every other one out
        self._items[mailbox_id] = (highestmodseq, rows)
        self._rows += len(rows)
        while self._rows > self._max and self._items:
            _, (_, evicted) = self._items.popitem(last=False)
            self._rows -= len(evicted)
