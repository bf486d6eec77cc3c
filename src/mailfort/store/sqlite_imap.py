"""SQL for what IMAP does to mailboxes on SQLite; each function runs inside one writer transaction.

Every change bumps the mailbox's HIGHESTMODSEQ once per transaction and stamps the changed rows
with it; expunged UIDs are kept with their MODSEQ in `expunged`, so any session can compute what
changed since the MODSEQ it last saw (RFC 7162).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable, Sequence

from mailfort.errors import AlreadyExists, NotFound, OverQuota
from mailfort.store.api import (
    AppendItem,
    AppendResult,
    CopyResult,
    FlagMode,
    MailboxStatus,
    MessageRow,
)
from mailfort.store.flags import flag_set, flags_text, plan_flag_changes


def next_uidvalidity(conn: sqlite3.Connection) -> int:
    """A UIDVALIDITY never handed out before in this store, even for a re-created name."""
    row = conn.execute("SELECT value FROM meta WHERE key = 'uidvalidity'").fetchone()
    value = max(int(time.time()), int(row[0]) + 1 if row else 0)
    conn.execute(
        "INSERT INTO meta(key, value) VALUES ('uidvalidity', ?)"
        " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        (str(value),),
    )
    return value


def next_mailbox_id(conn: sqlite3.Connection) -> int:
    """A mailbox id never handed out before in this store.

    SQLite reuses the highest rowid once its row is deleted. Sessions address a selected mailbox
    by id (and the hub wakes them by id): after DELETE and CREATE, a stale id must find nothing,
    not the new mailbox, whose UIDs would then be flagged, copied or expunged by mistake."""
    row = conn.execute("SELECT value FROM meta WHERE key = 'mailbox_id'").fetchone()
    highest = conn.execute("SELECT coalesce(max(id), 0) FROM mailboxes").fetchone()[0]
    value = max(int(row[0]) if row else 0, int(highest)) + 1
    conn.execute(
        "INSERT INTO meta(key, value) VALUES ('mailbox_id', ?)"
        " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        (str(value),),
    )
    return value


def insert_mailbox(
    conn: sqlite3.Connection, account_id: int, name: str, special_use: str | None
) -> int:
    mailbox_id = next_mailbox_id(conn)
    conn.execute(
        "INSERT INTO mailboxes(id, account_id, name, special_use, uidvalidity)"
        " VALUES (?, ?, ?, ?, ?)",
        (mailbox_id, account_id, name, special_use, next_uidvalidity(conn)),
    )
    # A new mailbox starts subscribed (clients then list it without asking).
    conn.execute(
        "INSERT OR IGNORE INTO subscriptions(account_id, name) VALUES (?, ?)", (account_id, name)
    )
    return mailbox_id


_ROW = "uid, modseq, flags, internal_date, size"
# SQLite limits host parameters per statement; chunk IN (...) lists well below it.
_CHUNK = 500


def row(r: tuple) -> MessageRow:  # type: ignore[type-arg]
    return MessageRow(uid=r[0], modseq=r[1], flags=flag_set(r[2]), internal_date=r[3], size=r[4])


def chunks(values: list[int]) -> Iterable[list[int]]:
    for i in range(0, len(values), _CHUNK):
        yield values[i : i + _CHUNK]


def _marks(values: list[int]) -> str:
    return ",".join("?" * len(values))


def bump_modseq(c: sqlite3.Connection, mailbox_id: int) -> int:
    r = c.execute(
        "UPDATE mailboxes SET highestmodseq = highestmodseq + 1 WHERE id = ?"
        " RETURNING highestmodseq",
        (mailbox_id,),
    ).fetchone()
    if r is None:
        raise NotFound("mailbox no longer exists")
    return int(r[0])


def messages(c: sqlite3.Connection, account_id: int, mailbox_id: int) -> list[MessageRow]:
    return [
        row(r)
        for r in c.execute(
            f"SELECT {_ROW} FROM messages WHERE mailbox_id = ? AND mailbox_id IN"
            " (SELECT id FROM mailboxes WHERE account_id = ?) ORDER BY uid",
            (mailbox_id, account_id),
        )
    ]


def changed_since(
    c: sqlite3.Connection, mailbox_id: int, since: int
) -> tuple[list[MessageRow], list[int]]:
    changed = [
        row(r)
        for r in c.execute(
            f"SELECT {_ROW} FROM messages WHERE mailbox_id = ? AND modseq > ? ORDER BY uid",
            (mailbox_id, since),
        )
    ]
    expunged = [
        r[0]
        for r in c.execute(
            "SELECT uid FROM expunged WHERE mailbox_id = ? AND modseq > ? ORDER BY uid",
            (mailbox_id, since),
        )
    ]
    return changed, expunged


def status(c: sqlite3.Connection, account_id: int, mailbox_id: int) -> MailboxStatus | None:
    box = c.execute(
        "SELECT uidnext, uidvalidity, highestmodseq FROM mailboxes WHERE id = ? AND account_id = ?",
        (mailbox_id, account_id),
    ).fetchone()
    if box is None:
        return None
    counts = c.execute(
        "SELECT count(*), coalesce(sum(size), 0),"
        " coalesce(sum(instr(' ' || flags || ' ', ' \\Seen ') = 0), 0),"
        " coalesce(sum(instr(' ' || flags || ' ', ' \\Deleted ') > 0), 0)"
        " FROM messages WHERE mailbox_id = ?",
        (mailbox_id,),
    ).fetchone()
    return MailboxStatus(
        messages=counts[0],
        size=counts[1],
        unseen=counts[2],
        deleted=counts[3],
        uidnext=box[0],
        uidvalidity=box[1],
        highestmodseq=box[2],
    )


def _mailbox_for(c: sqlite3.Connection, account_id: int, name: str) -> tuple[int, int, int]:
    r = c.execute(
        "SELECT id, uidnext, uidvalidity FROM mailboxes WHERE account_id = ? AND name = ?",
        (account_id, name),
    ).fetchone()
    if r is None:
        raise NotFound(f"no mailbox {name}")
    return int(r[0]), int(r[1]), int(r[2])


def _check_quota(c: sqlite3.Connection, account_id: int, adding: int) -> None:
    r = c.execute(
        "SELECT quota_bytes, used_bytes FROM accounts WHERE id = ?", (account_id,)
    ).fetchone()
    if r is None:
        raise NotFound("no such account")
    if r[0] > 0 and r[1] + adding > r[0]:
        raise OverQuota(f"quota of {r[0]} bytes exceeded")


def append(
    c: sqlite3.Connection, account_id: int, mailbox: str, items: Sequence[AppendItem]
) -> AppendResult:
    mailbox_id, uid, uidvalidity = _mailbox_for(c, account_id, mailbox)
    if not items:  # nothing appended, nothing changed: no MODSEQ bump
        return AppendResult(mailbox_id=mailbox_id, uidvalidity=uidvalidity, uids=())
    total = sum(len(item.data) for item in items)
    _check_quota(c, account_id, total)
    modseq = bump_modseq(c, mailbox_id)
    uids = []
    for item in items:
        cur = c.execute("INSERT INTO blobs(data, size) VALUES (?, ?)", (item.data, len(item.data)))
        c.execute(
            "INSERT INTO messages(mailbox_id, uid, modseq, flags, internal_date, size, blob_id)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                mailbox_id,
                uid,
                modseq,
                flags_text(item.flags),
                item.internal_date,
                len(item.data),
                cur.lastrowid,
            ),
        )
        uids.append(uid)
        uid += 1
    c.execute("UPDATE mailboxes SET uidnext = ? WHERE id = ?", (uid, mailbox_id))
    c.execute("UPDATE accounts SET used_bytes = used_bytes + ? WHERE id = ?", (total, account_id))
    return AppendResult(mailbox_id=mailbox_id, uidvalidity=uidvalidity, uids=tuple(uids))


def _owned(c: sqlite3.Connection, account_id: int, mailbox_id: int) -> None:
    if (
        c.execute(
            "SELECT 1 FROM mailboxes WHERE id = ? AND account_id = ?", (mailbox_id, account_id)
        ).fetchone()
        is None
    ):
        raise NotFound("mailbox no longer exists")


def set_flags(
    c: sqlite3.Connection,
    account_id: int,
    mailbox_id: int,
    uids: list[int],
    mode: FlagMode,
    flags: frozenset[str],
    unchanged_since: int | None,
) -> tuple[list[MessageRow], list[int]]:
    _owned(c, account_id, mailbox_id)
    current: list[tuple[int, int, str]] = []
    for part in chunks(uids):
        current.extend(
            c.execute(
                f"SELECT uid, modseq, flags FROM messages WHERE mailbox_id = ?"
                f" AND uid IN ({_marks(part)})",
                (mailbox_id, *part),
            )
        )
    updates, failed = plan_flag_changes(current, mode, flags, unchanged_since)
    if not updates:
        return [], sorted(failed)
    modseq = bump_modseq(c, mailbox_id)
    c.executemany(
        "UPDATE messages SET flags = ?, modseq = ? WHERE mailbox_id = ? AND uid = ?",
        [(text, modseq, mailbox_id, uid) for uid, text in updates],
    )
    changed: list[MessageRow] = []
    for part in chunks(sorted(uid for uid, _ in updates)):
        changed.extend(
            row(r)
            for r in c.execute(
                f"SELECT {_ROW} FROM messages WHERE mailbox_id = ? AND uid IN ({_marks(part)})"
                " ORDER BY uid",
                (mailbox_id, *part),
            )
        )
    return changed, sorted(failed)


def _remove(c: sqlite3.Connection, account_id: int, mailbox_id: int, uids: list[int]) -> None:
    """Delete messages, record them as expunged, release quota and orphaned bodies."""
    if not uids:
        return
    modseq = bump_modseq(c, mailbox_id)
    freed = 0
    blobs: set[int] = set()
    for part in chunks(uids):
        for size, blob_id in c.execute(
            f"SELECT size, blob_id FROM messages WHERE mailbox_id = ? AND uid IN ({_marks(part)})",
            (mailbox_id, *part),
        ):
            freed += size
            blobs.add(blob_id)
        c.execute(
            f"DELETE FROM messages WHERE mailbox_id = ? AND uid IN ({_marks(part)})",
            (mailbox_id, *part),
        )
    c.executemany(
        "INSERT OR REPLACE INTO expunged(mailbox_id, uid, modseq) VALUES (?, ?, ?)",
        [(mailbox_id, uid, modseq) for uid in uids],
    )
    c.execute(
        "UPDATE accounts SET used_bytes = max(0, used_bytes - ?) WHERE id = ?", (freed, account_id)
    )
    c.executemany(
        "DELETE FROM blobs WHERE id = ? AND NOT EXISTS (SELECT 1 FROM messages WHERE blob_id = ?)"
        " AND NOT EXISTS (SELECT 1 FROM envelopes WHERE blob_id = ?)",
        [(b, b, b) for b in blobs],
    )


def expunge(
    c: sqlite3.Connection, account_id: int, mailbox_id: int, uids: list[int] | None
) -> list[int]:
    _owned(c, account_id, mailbox_id)
    found = [
        r[0]
        for r in c.execute(
            "SELECT uid FROM messages WHERE mailbox_id = ?"
            " AND instr(' ' || flags || ' ', ' \\Deleted ') > 0 ORDER BY uid",
            (mailbox_id,),
        )
    ]
    if uids is not None:
        wanted = set(uids)
        found = [uid for uid in found if uid in wanted]
    _remove(c, account_id, mailbox_id, found)
    return found


def delete_messages(
    c: sqlite3.Connection, account_id: int, mailbox_id: int, uids: list[int]
) -> list[int]:
    _owned(c, account_id, mailbox_id)
    found: list[int] = []
    for part in chunks(sorted(set(uids))):
        found.extend(
            r[0]
            for r in c.execute(
                f"SELECT uid FROM messages WHERE mailbox_id = ? AND uid IN ({_marks(part)})",
                (mailbox_id, *part),
            )
        )
    found.sort()
    _remove(c, account_id, mailbox_id, found)
    return found


def copy(
    c: sqlite3.Connection,
    account_id: int,
    mailbox_id: int,
    uids: list[int],
    target: str,
    move: bool,
) -> CopyResult:
    _owned(c, account_id, mailbox_id)
    target_id, uidnext, uidvalidity = _mailbox_for(c, account_id, target)
    sources: list[tuple[int, str, float, int, int, bytes]] = []
    for part in chunks(uids):
        sources.extend(
            c.execute(
                "SELECT uid, flags, internal_date, size, blob_id, prefix FROM messages"
                f" WHERE mailbox_id = ? AND uid IN ({_marks(part)})",
                (mailbox_id, *part),
            )
        )
    sources.sort()
    if not sources:
        return CopyResult(mailbox_id=target_id, uidvalidity=uidvalidity, pairs=[])
    if target_id == mailbox_id and move:
        return CopyResult(mailbox_id=target_id, uidvalidity=uidvalidity, pairs=[])
    total = sum(s[3] for s in sources)
    if not move:
        _check_quota(c, account_id, total)
    modseq = bump_modseq(c, target_id)
    pairs = [(s[0], uidnext + i) for i, s in enumerate(sources)]
    c.executemany(
        "INSERT INTO messages(mailbox_id, uid, modseq, flags, internal_date, size, blob_id, prefix)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [
            (target_id, new_uid, modseq, s[1], s[2], s[3], s[4], s[5])
            for s, (_, new_uid) in zip(sources, pairs, strict=True)
        ],
    )
    c.execute("UPDATE mailboxes SET uidnext = ? WHERE id = ?", (uidnext + len(sources), target_id))
    # Copies share the bodies but count against the quota like any message; a move's _remove
    # takes the sources' share off again, so a move leaves usage unchanged.
    c.execute("UPDATE accounts SET used_bytes = used_bytes + ? WHERE id = ?", (total, account_id))
    if move:
        _remove(c, account_id, mailbox_id, [s[0] for s in sources])
    return CopyResult(mailbox_id=target_id, uidvalidity=uidvalidity, pairs=pairs)


def bodies(
    c: sqlite3.Connection, account_id: int, mailbox_id: int, uids: list[int]
) -> dict[int, bytes]:
    found: dict[int, bytes] = {}
    for part in chunks(uids):
        for uid, prefix, data in c.execute(
            "SELECT m.uid, m.prefix, b.data FROM messages m JOIN blobs b ON b.id = m.blob_id"
            f" WHERE m.mailbox_id = ? AND m.uid IN ({_marks(part)}) AND m.mailbox_id IN"
            " (SELECT id FROM mailboxes WHERE account_id = ?)",
            (mailbox_id, *part, account_id),
        ):
            found[uid] = bytes(prefix) + bytes(data) if prefix else bytes(data)
    return found


def rename(c: sqlite3.Connection, account_id: int, old: str, new: str, delimiter: str) -> list[int]:
    """Returns the ids of mailboxes whose messages changed (INBOX and its new sibling)."""
    source_id, _, _ = _mailbox_for(c, account_id, old)
    if c.execute(
        "SELECT 1 FROM mailboxes WHERE account_id = ? AND name = ?", (account_id, new)
    ).fetchone():
        raise AlreadyExists(f"mailbox {new} already exists")
    if old == "INBOX":
        # RFC 9051 6.3.6: renaming INBOX moves its messages to the new name; INBOX stays, empty,
        # and keeps its children. So "INBOX/old" is a fine new name (no hierarchy moves).
        target_id = insert_mailbox(c, account_id, new, None)
        uids = [
            r[0] for r in c.execute("SELECT uid FROM messages WHERE mailbox_id = ?", (source_id,))
        ]
        copy(c, account_id, source_id, uids, new, True)
        return [source_id, target_id] if uids else []
    if new.startswith(old + delimiter):
        raise NotFound(f"cannot rename {old} into itself")
    children = c.execute(
        "SELECT id, name FROM mailboxes WHERE account_id = ? AND substr(name, 1, ?) = ?",
        (account_id, len(old) + len(delimiter), old + delimiter),
    ).fetchall()
    c.execute("UPDATE mailboxes SET name = ? WHERE id = ?", (new, source_id))
    for child_id, name in children:
        c.execute("UPDATE mailboxes SET name = ? WHERE id = ?", (new + name[len(old) :], child_id))
    return []


def delete(c: sqlite3.Connection, account_id: int, name: str) -> int:
    """Returns the id of the deleted mailbox (sessions that selected it must learn it is gone)."""
    mailbox_id, _, _ = _mailbox_for(c, account_id, name)
    uids = [r[0] for r in c.execute("SELECT uid FROM messages WHERE mailbox_id = ?", (mailbox_id,))]
    _remove(c, account_id, mailbox_id, uids)
    c.execute("DELETE FROM mailboxes WHERE id = ?", (mailbox_id,))
    return mailbox_id
