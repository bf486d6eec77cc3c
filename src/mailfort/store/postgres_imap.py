"""SQL for what IMAP does to mailboxes on PostgreSQL; each function runs inside one transaction.

The same rules as `sqlite_imap`: every change bumps the mailbox's HIGHESTMODSEQ once per
transaction and stamps the changed rows with it; expunged UIDs are kept with their MODSEQ. A writer
first locks the mailbox row (`SELECT … FOR UPDATE`, several in id order), so UIDNEXT and MODSEQ
advance one transaction at a time across every node; each change is announced with `pg_notify`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import asyncpg

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
from mailfort.store.postgres_conn import Conn
from mailfort.store.postgres_queue import drop_blob

_ROW = "uid, modseq, flags, internal_date, size"
_DELETED = " \\Deleted "
_SEEN = " \\Seen "


async def next_uidvalidity(c: Conn) -> int:
    """A UIDVALIDITY never handed out before in this store, even for a re-created name."""
    value = await c.fetchval(
        "INSERT INTO meta(key, value) VALUES ('uidvalidity', $1::bigint::text)"
        " ON CONFLICT (key) DO UPDATE SET value ="
        " greatest(excluded.value::bigint, meta.value::bigint + 1)::text RETURNING value",
        int(time.time()),
    )
    return int(value)


async def insert_mailbox(c: Conn, account_id: int, name: str, special_use: str | None) -> int:
    mailbox_id: int = await c.fetchval(
        "INSERT INTO mailboxes(account_id, name, special_use, uidvalidity)"
        " VALUES ($1, $2, $3, $4) RETURNING id",
        account_id,
        name,
        special_use,
        await next_uidvalidity(c),
    )
    # A new mailbox starts subscribed (clients then list it without asking).
    await c.execute(
        "INSERT INTO subscriptions(account_id, name) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        account_id,
        name,
    )
    return mailbox_id


def row(r: asyncpg.Record) -> MessageRow:
    return MessageRow(uid=r[0], modseq=r[1], flags=flag_set(r[2]), internal_date=r[3], size=r[4])


async def lock_mailboxes(c: Conn, account_id: int, mailbox_ids: Sequence[int]) -> None:
    """Row-lock the account's mailboxes, in id order; NotFound when one is gone."""
    ids = sorted(set(mailbox_ids))
    found = await c.fetch(
        "SELECT id FROM mailboxes WHERE id = ANY($1::bigint[]) AND account_id = $2"
        " ORDER BY id FOR UPDATE",
        ids,
        account_id,
    )
    if len(found) != len(ids):
        raise NotFound("mailbox no longer exists")


async def bump_modseq(c: Conn, mailbox_id: int) -> int:
    value = await c.fetchval(
        "UPDATE mailboxes SET highestmodseq = highestmodseq + 1 WHERE id = $1"
        " RETURNING highestmodseq",
        mailbox_id,
    )
    if value is None:
        raise NotFound("mailbox no longer exists")
    return int(value)


async def messages(c: Conn, account_id: int, mailbox_id: int) -> list[MessageRow]:
    rows = await c.fetch(
        f"SELECT {_ROW} FROM messages WHERE mailbox_id = $1 AND mailbox_id IN"
        " (SELECT id FROM mailboxes WHERE account_id = $2) ORDER BY uid",
        mailbox_id,
        account_id,
    )
    return [row(r) for r in rows]


async def changed_since(c: Conn, mailbox_id: int, since: int) -> tuple[list[MessageRow], list[int]]:
    changed = [
        row(r)
        for r in await c.fetch(
            f"SELECT {_ROW} FROM messages WHERE mailbox_id = $1 AND modseq > $2 ORDER BY uid",
            mailbox_id,
            since,
        )
    ]
    expunged = [
        r[0]
        for r in await c.fetch(
            "SELECT uid FROM expunged WHERE mailbox_id = $1 AND modseq > $2 ORDER BY uid",
            mailbox_id,
            since,
        )
    ]
    return changed, expunged


async def status(c: Conn, account_id: int, mailbox_id: int) -> MailboxStatus | None:
    box = await c.fetchrow(
        "SELECT uidnext, uidvalidity, highestmodseq FROM mailboxes"
        " WHERE id = $1 AND account_id = $2",
        mailbox_id,
        account_id,
    )
    if box is None:
        return None
    counts = await c.fetchrow(
        "SELECT count(*), coalesce(sum(size), 0)::bigint,"
        " count(*) FILTER (WHERE strpos(' ' || flags || ' ', $2) = 0),"
        " count(*) FILTER (WHERE strpos(' ' || flags || ' ', $3) > 0)"
        " FROM messages WHERE mailbox_id = $1",
        mailbox_id,
        _SEEN,
        _DELETED,
    )
    return MailboxStatus(
        messages=counts[0],
        size=counts[1],
        unseen=counts[2],
        deleted=counts[3],
        uidnext=box[0],
        uidvalidity=box[1],
        highestmodseq=box[2],
    )


async def _mailbox_for(c: Conn, account_id: int, name: str) -> tuple[int, int, int]:
    """Lock the named mailbox and return (id, uidnext, uidvalidity)."""
    r = await c.fetchrow(
        "SELECT id, uidnext, uidvalidity FROM mailboxes WHERE account_id = $1 AND name = $2"
        " FOR UPDATE",
        account_id,
        name,
    )
    if r is None:
        raise NotFound(f"no mailbox {name}")
    return int(r[0]), int(r[1]), int(r[2])


async def _check_quota(c: Conn, account_id: int, adding: int) -> None:
    r = await c.fetchrow("SELECT quota_bytes, used_bytes FROM accounts WHERE id = $1", account_id)
    if r is None:
        raise NotFound("no such account")
    if r[0] > 0 and r[1] + adding > r[0]:
        raise OverQuota(f"quota of {r[0]} bytes exceeded")


async def _add_usage(c: Conn, account_id: int, size: int) -> None:
    await c.execute(
        "UPDATE accounts SET used_bytes = greatest(0, used_bytes + $1) WHERE id = $2",
        size,
        account_id,
    )


async def append(
    c: Conn, account_id: int, mailbox: str, items: Sequence[AppendItem]
) -> AppendResult:
    mailbox_id, uid, uidvalidity = await _mailbox_for(c, account_id, mailbox)
    if not items:  # nothing appended, nothing changed: no MODSEQ bump
        return AppendResult(mailbox_id=mailbox_id, uidvalidity=uidvalidity, uids=())
    total = sum(len(item.data) for item in items)
    await _check_quota(c, account_id, total)
    modseq = await bump_modseq(c, mailbox_id)
    # Identity values are drawn in insertion order, which ORDER BY n fixes: sorted ids map to items.
    blob_ids = sorted(
        r[0]
        for r in await c.fetch(
            "INSERT INTO blobs(data, size) SELECT d, length(d) FROM unnest($1::bytea[])"
            " WITH ORDINALITY AS t(d, n) ORDER BY n RETURNING id",
            [item.data for item in items],
        )
    )
    uids = list(range(uid, uid + len(items)))
    await c.executemany(
        "INSERT INTO messages(mailbox_id, uid, modseq, flags, internal_date, size, blob_id)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7)",
        [
            (mailbox_id, u, modseq, flags_text(item.flags), item.internal_date, len(item.data), b)
            for u, item, b in zip(uids, items, blob_ids, strict=True)
        ],
    )
    await c.execute("UPDATE mailboxes SET uidnext = $1 WHERE id = $2", uid + len(items), mailbox_id)
    await _add_usage(c, account_id, total)
    return AppendResult(mailbox_id=mailbox_id, uidvalidity=uidvalidity, uids=tuple(uids))


async def set_flags(
    c: Conn,
    account_id: int,
    mailbox_id: int,
    uids: list[int],
    mode: FlagMode,
    flags: frozenset[str],
    unchanged_since: int | None,
) -> tuple[list[MessageRow], list[int]]:
    await lock_mailboxes(c, account_id, (mailbox_id,))
    current = await c.fetch(
        "SELECT uid, modseq, flags FROM messages WHERE mailbox_id = $1 AND uid = ANY($2::bigint[])",
        mailbox_id,
        uids,
    )
    updates, failed = plan_flag_changes(current, mode, flags, unchanged_since)
    if not updates:
        return [], sorted(failed)
    modseq = await bump_modseq(c, mailbox_id)
    changed = await c.fetch(
        "UPDATE messages m SET flags = u.flags, modseq = $1"
        " FROM unnest($3::bigint[], $4::text[]) AS u(uid, flags)"
        f" WHERE m.mailbox_id = $2 AND m.uid = u.uid RETURNING m.{', m.'.join(_ROW.split(', '))}",
        modseq,
        mailbox_id,
        [uid for uid, _ in updates],
        [text for _, text in updates],
    )
    return sorted((row(r) for r in changed), key=lambda m: m.uid), sorted(failed)


async def _remove(c: Conn, account_id: int, mailbox_id: int, uids: list[int]) -> None:
    """Delete messages, record them as expunged, release quota and orphaned bodies."""
    if not uids:
        return
    modseq = await bump_modseq(c, mailbox_id)
    gone = await c.fetch(
        "DELETE FROM messages WHERE mailbox_id = $1 AND uid = ANY($2::bigint[])"
        " RETURNING size, blob_id",
        mailbox_id,
        uids,
    )
    await c.execute(
        "INSERT INTO expunged(mailbox_id, uid, modseq) SELECT $1, u, $2 FROM unnest($3::bigint[]) u"
        " ON CONFLICT (mailbox_id, uid) DO UPDATE SET modseq = excluded.modseq",
        mailbox_id,
        modseq,
        uids,
    )
    await _add_usage(c, account_id, -sum(r[0] for r in gone))
    for blob_id in sorted({r[1] for r in gone}):
        await drop_blob(c, blob_id)


async def expunge(c: Conn, account_id: int, mailbox_id: int, uids: list[int] | None) -> list[int]:
    await lock_mailboxes(c, account_id, (mailbox_id,))
    found = [
        r[0]
        for r in await c.fetch(
            "SELECT uid FROM messages WHERE mailbox_id = $1"
            " AND strpos(' ' || flags || ' ', $2) > 0 ORDER BY uid",
            mailbox_id,
            _DELETED,
        )
    ]
    if uids is not None:
        wanted = set(uids)
        found = [uid for uid in found if uid in wanted]
    await _remove(c, account_id, mailbox_id, found)
    return found


async def delete_messages(c: Conn, account_id: int, mailbox_id: int, uids: list[int]) -> list[int]:
    await lock_mailboxes(c, account_id, (mailbox_id,))
    found = [
        r[0]
        for r in await c.fetch(
            "SELECT uid FROM messages WHERE mailbox_id = $1 AND uid = ANY($2::bigint[])"
            " ORDER BY uid",
            mailbox_id,
            sorted(set(uids)),
        )
    ]
    await _remove(c, account_id, mailbox_id, found)
    return found


async def copy(
    c: Conn, account_id: int, mailbox_id: int, uids: list[int], target: str, move: bool
) -> CopyResult:
    r = await c.fetchrow(
        "SELECT id FROM mailboxes WHERE account_id = $1 AND name = $2", account_id, target
    )
    if r is None:
        await lock_mailboxes(c, account_id, (mailbox_id,))  # a vanished source says so first
        raise NotFound(f"no mailbox {target}")
    await lock_mailboxes(c, account_id, (mailbox_id, r[0]))
    target_id, uidnext, uidvalidity = await _mailbox_for(c, account_id, target)
    sources = await c.fetch(
        "SELECT uid, flags, internal_date, size, blob_id, prefix FROM messages"
        " WHERE mailbox_id = $1 AND uid = ANY($2::bigint[]) ORDER BY uid",
        mailbox_id,
        uids,
    )
    if not sources or (target_id == mailbox_id and move):
        return CopyResult(mailbox_id=target_id, uidvalidity=uidvalidity, pairs=[])
    total = sum(s[3] for s in sources)
    if not move:
        await _check_quota(c, account_id, total)
    modseq = await bump_modseq(c, target_id)
    pairs = [(s[0], uidnext + i) for i, s in enumerate(sources)]
    await c.executemany(
        "INSERT INTO messages(mailbox_id, uid, modseq, flags, internal_date, size, blob_id, prefix)"
        " VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        [
            (target_id, new_uid, modseq, s[1], s[2], s[3], s[4], s[5])
            for s, (_, new_uid) in zip(sources, pairs, strict=True)
        ],
    )
    await c.execute(
        "UPDATE mailboxes SET uidnext = $1 WHERE id = $2", uidnext + len(sources), target_id
    )
    # Copies share the bodies but count against the quota like any message; a move's _remove
    # takes the sources' share off again, so a move leaves usage unchanged.
    await _add_usage(c, account_id, total)
    if move:
        await _remove(c, account_id, mailbox_id, [s[0] for s in sources])
    return CopyResult(mailbox_id=target_id, uidvalidity=uidvalidity, pairs=pairs)


async def bodies(c: Conn, account_id: int, mailbox_id: int, uids: list[int]) -> dict[int, bytes]:
    found: dict[int, bytes] = {}
    for uid, prefix, data in await c.fetch(
        "SELECT m.uid, m.prefix, b.data FROM messages m JOIN blobs b ON b.id = m.blob_id"
        " WHERE m.mailbox_id = $1 AND m.uid = ANY($2::bigint[]) AND m.mailbox_id IN"
        " (SELECT id FROM mailboxes WHERE account_id = $3)",
        mailbox_id,
        uids,
        account_id,
    ):
        found[uid] = bytes(prefix) + bytes(data) if prefix else bytes(data)
    return found


async def rename(c: Conn, account_id: int, old: str, new: str, delimiter: str) -> list[int]:
    """Returns the ids of mailboxes whose messages changed (INBOX and its new sibling)."""
    source_id, _, _ = await _mailbox_for(c, account_id, old)
    if await c.fetchval(
        "SELECT 1 FROM mailboxes WHERE account_id = $1 AND name = $2", account_id, new
    ):
        raise AlreadyExists(f"mailbox {new} already exists")
    if old == "INBOX":
        # RFC 9051 6.3.6: renaming INBOX moves its messages to the new name; INBOX stays, empty,
        # and keeps its children. So "INBOX/old" is a fine new name (no hierarchy moves).
        target_id = await insert_mailbox(c, account_id, new, None)
        uids = [
            r[0] for r in await c.fetch("SELECT uid FROM messages WHERE mailbox_id = $1", source_id)
        ]
        await copy(c, account_id, source_id, uids, new, True)
        return [source_id, target_id] if uids else []
    if new.startswith(old + delimiter):
        raise NotFound(f"cannot rename {old} into itself")
    children = await c.fetch(
        "SELECT id, name FROM mailboxes WHERE account_id = $1 AND starts_with(name, $2)"
        " ORDER BY id FOR UPDATE",
        account_id,
        old + delimiter,
    )
    await c.execute("UPDATE mailboxes SET name = $1 WHERE id = $2", new, source_id)
    for child_id, name in children:
        await c.execute(
            "UPDATE mailboxes SET name = $1 WHERE id = $2", new + name[len(old) :], child_id
        )
    return []


async def delete(c: Conn, account_id: int, name: str) -> int:
    """Returns the id of the deleted mailbox (sessions that selected it must learn it is gone)."""
    mailbox_id, _, _ = await _mailbox_for(c, account_id, name)
    uids = [
        r[0] for r in await c.fetch("SELECT uid FROM messages WHERE mailbox_id = $1", mailbox_id)
    ]
    await _remove(c, account_id, mailbox_id, uids)
    await c.execute("DELETE FROM mailboxes WHERE id = $1", mailbox_id)
    return mailbox_id
