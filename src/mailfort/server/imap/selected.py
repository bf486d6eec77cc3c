"""The selected mailbox as one session sees it: sequence numbers, flags, and what it was told.

IMAP sequence numbers are per session: a message keeps its number until this session is told
(EXPUNGE) that it is gone. So the session keeps its own UID list and applies the store's changes
only when the protocol allows it to tell the client (RFC 9051 7.5.1: no EXPUNGE during FETCH,
STORE or SEARCH by sequence number).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable

from mailfort.protocol.imap.commands import SequenceSet
from mailfort.store.records import MailboxChanges, MessageRow


class SelectedMailbox:
    def __init__(
        self,
        *,
        mailbox_id: int,
        name: str,
        readonly: bool,
        uidvalidity: int,
        uidnext: int,
        highestmodseq: int,
        rows: list[MessageRow],
    ) -> None:
        self.mailbox_id = mailbox_id
        self.name = name
        self.readonly = readonly
        self.uidvalidity = uidvalidity
        self.uidnext = uidnext
        self.highestmodseq = highestmodseq
        self.uids: list[int] = [r.uid for r in rows]
        self.rows: dict[int, MessageRow] = {r.uid: r for r in rows}
        # Expunged in the store but not yet reported to this client.
        self.pending_expunge: set[int] = set()
        self.saved_search: list[int] = []  # SEARCHRES `$` (RFC 5182), as UIDs

    @property
    def exists(self) -> int:
        return len(self.uids)

    def seq(self, uid: int) -> int:
        """The 1-based sequence number of a UID this session knows."""
        return bisect.bisect_left(self.uids, uid) + 1

    def resolve(self, seqset: SequenceSet, *, uid: bool) -> list[int]:
        """UIDs named by a sequence set, ascending, limited to messages this session knows."""
        if seqset.saved:
            known = set(self.uids)
            return [u for u in self.saved_search if u in known]
        if not self.uids:
            return []
        found: set[int] = set()
        if uid:
            largest = self.uids[-1]
            for lo, hi in seqset.bounds(largest):
                start = bisect.bisect_left(self.uids, lo)
                end = bisect.bisect_right(self.uids, hi)
                found.update(self.uids[start:end])
        else:
            largest = len(self.uids)
            for lo, hi in seqset.bounds(largest):
                lo, hi = max(lo, 1), min(hi, largest)
                found.update(self.uids[lo - 1 : hi])
        return sorted(found)

    def update_rows(self, rows: Iterable[MessageRow]) -> None:
        for r in rows:
            if r.uid in self.rows:
                self.rows[r.uid] = r

    def apply(
        self, changes: MailboxChanges, *, allow_expunge: bool
    ) -> tuple[list[int], int | None, list[MessageRow]]:
        """Fold store changes in. Returns (sequence numbers to report expunged, in the order to
        send them; the new EXISTS count or None; rows whose flags changed, to report)."""
        box = changes.mailbox
        self.uidnext = box.uidnext
        self.highestmodseq = max(self.highestmodseq, box.highestmodseq)
        known = self.rows
        self.pending_expunge.update(u for u in changes.expunged if u in known)
        expunged_seqs: list[int] = []
        if allow_expunge and self.pending_expunge:
            # Highest first, so every number sent is still valid when the client applies it.
            for uid in sorted(self.pending_expunge, reverse=True):
                index = bisect.bisect_left(self.uids, uid)
                if index < len(self.uids) and self.uids[index] == uid:
                    expunged_seqs.append(index + 1)
                    del self.uids[index]
                    del self.rows[uid]
            self.pending_expunge.clear()
        flag_changes: list[MessageRow] = []
        added = False
        last = self.uids[-1] if self.uids else 0
        for r in changes.changed:
            if r.uid in self.pending_expunge:
                continue
            if r.uid in known:
                if known[r.uid].flags != r.flags:
                    flag_changes.append(r)
                known[r.uid] = r
            elif r.uid > last:
                self.uids.append(r.uid)
                known[r.uid] = r
                last = r.uid
                added = True
        return expunged_seqs, (len(self.uids) if added else None), flag_changes
