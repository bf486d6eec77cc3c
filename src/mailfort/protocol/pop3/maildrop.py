"""One session's view of a maildrop: message numbers, sizes, unique ids and deletion marks.

RFC 1939 §5: at login the maildrop is fixed for the session. Messages are numbered from 1 in
the order given (the server gives UID order, oldest first); numbers never change during the
session, a deleted message keeps its number and may not be named again until RSET.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from mailfort.protocol.pop3 import replies as R


@dataclass(frozen=True, slots=True, kw_only=True)
class Entry:
    uid: int  # the store's UID; the core only hands it back in events
    size: int  # octets RETR sends, before dot-stuffing (`response.wire_size`)
    unique_id: str  # the UIDL value: 1–70 characters 0x21–0x7E (RFC 1939 §7)


class MessageError(Exception):
    """The named message does not exist or is deleted: answer `-ERR <text>`."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


class Maildrop:
    def __init__(self, entries: Sequence[Entry]) -> None:
        for entry in entries:
            uid = entry.unique_id
            if not 1 <= len(uid) <= 70 or not all(0x21 <= ord(ch) <= 0x7E for ch in uid):
                raise ValueError(f"invalid unique-id {uid!r}")  # our bug, not the client's
        self._entries = tuple(entries)
        self._deleted: set[int] = set()  # message numbers
        self._total = sum(e.size for e in self._entries)
        self._deleted_octets = 0

    @property
    def count(self) -> int:
        return len(self._entries) - len(self._deleted)

    @property
    def octets(self) -> int:
        return self._total - self._deleted_octets

    def get(self, number: int) -> Entry:
        if not 1 <= number <= len(self._entries):
            raise MessageError(R.NO_SUCH_MESSAGE)
        if number in self._deleted:
            raise MessageError(R.ALREADY_DELETED.format(number=number))
        return self._entries[number - 1]

    def delete(self, number: int) -> None:
        entry = self.get(number)
        self._deleted.add(number)
        self._deleted_octets += entry.size

    def reset(self) -> None:
        self._deleted.clear()
        self._deleted_octets = 0

    def listing(self) -> Iterator[tuple[int, Entry]]:
        """(number, entry) of every message not marked deleted, in number order."""
        for number, entry in enumerate(self._entries, 1):
            if number not in self._deleted:
                yield number, entry

    def deleted_uids(self) -> list[int]:
        return sorted(self._entries[n - 1].uid for n in self._deleted)
