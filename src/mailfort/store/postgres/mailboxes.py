"""Mailboxes and messages on PostgreSQL (role `Mailboxes`); each write is one transaction.

The same rules as on SQLite: every change bumps the mailbox's HIGHESTMODSEQ once per transaction
and stamps the changed rows with it; expunged UIDs are kept with their MODSEQ; every new message
row, whichever path brings it (acceptance, queued delivery, a status notice, APPEND, COPY/MOVE), is
numbered by `place`. A writer first locks the mailbox row (`SELECT … FOR UPDATE`, several in id
order), so UIDNEXT and MODSEQ advance one transaction at a time across every node; other nodes
hear of each change after commit (`connection.Announcer`).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from mailfort.errors import AlreadyExists, NotFound, OverQuota
from mailfort.store import rows
from mailfort.store.flags import flags_text, plan_flag_changes
from mailfort.store.postgres.connection import Conn
from mailfort.store.postgres.engine import PostgresEngine
from mailfort.store.records import (
    JUNK,
    JUNK_USE,
    AppendItem,
    AppendResult,
    CopyResult,
    FlagMode,
    Mailbox,
    MailboxChanges,
    MailboxStatus,
    MessageRow,
    StoredMessage,
)
from mailfort.store.rows import MessageCopy

_DELETED = " \\Deleted "
# A changed message's columns, as the UPDATE that changed it returns them.
_RETURNED = ", ".join(f"m.{col}" for col in rows.MESSAGE_COLS.split(", "))
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


async def drop_blob(c: Conn, blob_id: int) -> None:
    """Delete a body nothing refers to any more."""
    await c.execute(
        "DELETE FROM blobs WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM messages"
        " WHERE blob_id = $1) AND NOT EXISTS (SELECT 1 FROM envelopes WHERE blob_id = $1)",
        blob_id,
    )


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
    found = await c.fetch(
        f"SELECT {rows.MESSAGE_COLS} FROM messages WHERE mailbox_id = $1 AND mailbox_id IN"
        " (SELECT id FROM mailboxes WHERE account_id = $2) ORDER BY uid",
        mailbox_id,
        account_id,
    )
    return [rows.message(r) for r in found]


async def changed_since(c: Conn, mailbox_id: int, since: int) -> tuple[list[MessageRow], list[int]]:
    changed = [
        rows.message(r)
        for r in await c.fetch(
            f"SELECT {rows.MESSAGE_COLS} FROM messages WHERE mailbox_id = $1 AND modseq > $2"
            " ORDER BY uid",
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
    return rows.mailbox_status(box, counts)


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


# The numbering rule as one statement (one round trip): the UPDATE takes the mailbox's row lock
# until commit, so concurrent inserts get distinct UIDs in commit order; the copies ($4..$8, in
# order `n`) take UIDs from the old UIDNEXT on and the one new MODSEQ; $9 is their total size.
_PLACE = (
    "WITH b AS (UPDATE mailboxes SET uidnext = uidnext + $3, highestmodseq = highestmodseq + 1"
    "  WHERE account_id = $1 AND name = $2 RETURNING id, uidnext - $3 AS first, highestmodseq),"
    " m AS (INSERT INTO messages(mailbox_id, uid, modseq, flags, internal_date, size, blob_id,"
    "  prefix) SELECT b.id, b.first + t.n - 1, b.highestmodseq, t.flags, t.internal_date,"
    "  t.size, t.blob_id, t.prefix FROM b, {copies} AS t(blob_id, size, internal_date, flags,"
    "  prefix, n)),"
    " a AS (UPDATE accounts SET used_bytes = used_bytes + $9"
    "  WHERE id = $1 AND EXISTS (SELECT 1 FROM b))"
    " SELECT id, first FROM b"
)
# One copy (every delivery) binds plain values: arrays cost the client and the planner more.
_PLACE_ONE = _PLACE.format(
    copies="(VALUES ($4::bigint, $5::bigint, $6::float8, $7::text, $8::bytea, 1::bigint))"
)
_PLACE_MANY = _PLACE.format(
    copies="unnest($4::bigint[], $5::bigint[], $6::float8[], $7::text[], $8::bytea[])"
    " WITH ORDINALITY"
)


async def place(
    c: Conn, account_id: int, mailbox: str, copies: Sequence[MessageCopy]
) -> tuple[int, int] | None:
    """Insert new messages into a mailbox by the numbering rule (DESIGN.md "Mailbox numbering").

    The copies take the next UIDs in order, all stamped with one new MODSEQ; UIDNEXT,
    HIGHESTMODSEQ and the account's quota use advance in the same transaction. Every insert path
    comes through here. Returns (mailbox id, first UID), or None when there is no such mailbox."""
    if len(copies) == 1:
        (m,) = copies
        values: tuple[object, ...] = (m.blob_id, m.size, m.internal_date, m.flags, m.prefix)
        sql = _PLACE_ONE
    else:
        values = tuple(
            [getattr(m, f) for m in copies]
            for f in ("blob_id", "size", "internal_date", "flags", "prefix")
        )
        sql = _PLACE_MANY
    total = sum(m.size for m in copies)
    r = await c.fetchrow(sql, account_id, mailbox, len(copies), *values, total)
    if r is None:
        return None
    return int(r[0]), int(r[1])


async def junk_mailbox(c: Conn, account_id: int) -> str | None:
    """The name of the account's Junk mailbox (special use \\Junk, else one named Junk), made
    when it has none; None when there is no such account."""
    name = await c.fetchval(
        "SELECT name FROM mailboxes WHERE account_id = $1 AND special_use = $2 ORDER BY id LIMIT 1",
        account_id,
        JUNK_USE,
    )
    if name is not None:
        return str(name)
    if await c.fetchval(
        "SELECT 1 FROM mailboxes WHERE account_id = $1 AND name = $2", account_id, JUNK
    ):
        return JUNK
    # Locks the account, as CREATE does: a concurrent delete cannot slip in between.
    if await c.fetchval("SELECT 1 FROM accounts WHERE id = $1 FOR SHARE", account_id) is None:
        return None
    await insert_mailbox(c, account_id, JUNK, JUNK_USE)
    return JUNK


async def append(
    c: Conn, account_id: int, mailbox: str, items: Sequence[AppendItem]
) -> AppendResult:
    mailbox_id, _, uidvalidity = await _mailbox_for(c, account_id, mailbox)
    if not items:  # nothing appended, nothing changed: no MODSEQ bump
        return AppendResult(mailbox_id=mailbox_id, uidvalidity=uidvalidity, uids=())
    await _check_quota(c, account_id, sum(len(item.data) for item in items))
    # Identity values are drawn in insertion order, which ORDER BY n fixes: sorted ids map to items.
    blob_ids = sorted(
        r[0]
        for r in await c.fetch(
            "INSERT INTO blobs(data, size) SELECT d, length(d) FROM unnest($1::bytea[])"
            " WITH ORDINALITY AS t(d, n) ORDER BY n RETURNING id",
            [item.data for item in items],
        )
    )
    copies = [
        MessageCopy(b, len(item.data), item.internal_date, flags=flags_text(item.flags))
        for item, b in zip(items, blob_ids, strict=True)
    ]
    placed = await place(c, account_id, mailbox, copies)
    assert placed is not None  # locked above, in this same transaction
    uids = tuple(range(placed[1], placed[1] + len(copies)))
    return AppendResult(mailbox_id=mailbox_id, uidvalidity=uidvalidity, uids=uids)


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
        f" WHERE m.mailbox_id = $2 AND m.uid = u.uid RETURNING {_RETURNED}",
        modseq,
        mailbox_id,
        [uid for uid, _ in updates],
        [text for _, text in updates],
    )
    return sorted((rows.message(r) for r in changed), key=lambda m: m.uid), sorted(failed)


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


async def _uids_where(
    c: Conn, account_id: int, mailbox_id: int, where: str, arg: object
) -> list[int]:
    """Lock the mailbox; the UIDs of its messages that match `where` (on $2), ascending."""
    await lock_mailboxes(c, account_id, (mailbox_id,))
    return [
        r[0]
        for r in await c.fetch(
            f"SELECT uid FROM messages WHERE mailbox_id = $1 AND {where} ORDER BY uid",
            mailbox_id,
            arg,
        )
    ]


async def expunge(c: Conn, account_id: int, mailbox_id: int, uids: list[int] | None) -> list[int]:
    where = "strpos(' ' || flags || ' ', $2) > 0"
    found = await _uids_where(c, account_id, mailbox_id, where, _DELETED)
    if uids is not None:
        wanted = set(uids)
        found = [uid for uid in found if uid in wanted]
    await _remove(c, account_id, mailbox_id, found)
    return found


async def delete_messages(c: Conn, account_id: int, mailbox_id: int, uids: list[int]) -> list[int]:
    where = "uid = ANY($2::bigint[])"
    found = await _uids_where(c, account_id, mailbox_id, where, sorted(set(uids)))
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
    target_id, _, uidvalidity = await _mailbox_for(c, account_id, target)
    sources = await c.fetch(
        "SELECT uid, flags, internal_date, size, blob_id, prefix FROM messages"
        " WHERE mailbox_id = $1 AND uid = ANY($2::bigint[]) ORDER BY uid",
        mailbox_id,
        uids,
    )
    if not sources or (target_id == mailbox_id and move):
        return CopyResult(mailbox_id=target_id, uidvalidity=uidvalidity, pairs=[])
    if not move:
        await _check_quota(c, account_id, sum(s[3] for s in sources))
    # Copies share the bodies but count against the quota like any message; a move's _remove
    # takes the sources' share off again, so a move leaves usage unchanged.
    placed = await place(
        c,
        account_id,
        target,
        [
            MessageCopy(blob_id=s[4], size=s[3], internal_date=s[2], flags=s[1], prefix=s[5])
            for s in sources
        ],
    )
    assert placed is not None  # locked above, in this same transaction
    pairs = [(s[0], placed[1] + i) for i, s in enumerate(sources)]
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


async def _changes(c: Conn, account_id: int, mailbox_id: int, since: int) -> MailboxChanges | None:
    r = await c.fetchrow(
        f"SELECT {rows.MAILBOX_COLS} FROM mailboxes WHERE id = $1 AND account_id = $2",
        mailbox_id,
        account_id,
    )
    if r is None:
        return None
    box = rows.mailbox(r)
    if box.highestmodseq <= since:
        return MailboxChanges(mailbox=box, changed=[], expunged=[])
    changed, expunged = await changed_since(c, mailbox_id, since)
    return MailboxChanges(mailbox=box, changed=changed, expunged=expunged)


async def _create(c: Conn, account_id: int, name: str, special_use: str | None) -> Mailbox:
    # Locks the account: a concurrent delete_account cannot slip between check and insert.
    if await c.fetchval("SELECT 1 FROM accounts WHERE id = $1 FOR SHARE", account_id) is None:
        raise NotFound(f"no account with id {account_id}")
    if await c.fetchval(
        "SELECT 1 FROM mailboxes WHERE account_id = $1 AND name = $2", account_id, name
    ):
        raise AlreadyExists(f"mailbox {name} already exists")
    mailbox_id = await insert_mailbox(c, account_id, name, special_use)
    r = await c.fetchrow(f"SELECT {rows.MAILBOX_COLS} FROM mailboxes WHERE id = $1", mailbox_id)
    return rows.mailbox(r)


async def _subscribe(c: Conn, account_id: int, name: str, subscribed: bool) -> None:
    if subscribed:
        await c.execute(
            "INSERT INTO subscriptions(account_id, name) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            account_id,
            name,
        )
    else:
        await c.execute(
            "DELETE FROM subscriptions WHERE account_id = $1 AND name = $2", account_id, name
        )


class PostgresMailboxes(PostgresEngine):
    async def list_mailboxes(self, account_id: int) -> list[Mailbox]:
        found = await self.db.fetch(
            f"SELECT {rows.MAILBOX_COLS} FROM mailboxes WHERE account_id = $1 ORDER BY id",
            account_id,
        )
        return [rows.mailbox(r) for r in found]

    async def get_mailbox(self, account_id: int, name: str) -> Mailbox | None:
        found = await self.db.fetch(
            f"SELECT {rows.MAILBOX_COLS} FROM mailboxes WHERE account_id = $1 AND name = $2",
            account_id,
            name,
        )
        return rows.mailbox(found[0]) if found else None

    async def create_mailbox(
        self, account_id: int, name: str, special_use: str | None = None
    ) -> Mailbox:
        return await self.db.run(lambda c: _create(c, account_id, name, special_use))

    async def rename_mailbox(self, account_id: int, old: str, new: str, delimiter: str) -> None:
        changed = await self.db.run(lambda c: rename(c, account_id, old, new, delimiter))
        self._changed(changed)

    async def delete_mailbox(self, account_id: int, name: str) -> None:
        mailbox_id = await self.db.run(lambda c: delete(c, account_id, name))
        self._changed((mailbox_id,))

    async def subscriptions(self, account_id: int) -> set[str]:
        found = await self.db.fetch(
            "SELECT name FROM subscriptions WHERE account_id = $1", account_id
        )
        return {r[0] for r in found}

    async def subscribe(self, account_id: int, name: str, subscribed: bool) -> None:
        await self.db.run(lambda c: _subscribe(c, account_id, name, subscribed))

    async def messages(self, account_id: int, mailbox_id: int) -> list[MessageRow]:
        return await self.db.read_one(lambda c: messages(c, account_id, mailbox_id))

    async def changes(self, account_id: int, mailbox_id: int, since: int) -> MailboxChanges | None:
        # One snapshot, so the mailbox row and the changes agree.
        return await self.db.read(
            lambda c: _changes(c, account_id, mailbox_id, since), snapshot=True
        )

    async def mailbox_status(self, account_id: int, mailbox_id: int) -> MailboxStatus | None:
        # One snapshot, so UIDNEXT and MESSAGES describe the same commit.
        return await self.db.read(lambda c: status(c, account_id, mailbox_id), snapshot=True)

    async def list_messages(self, account_id: int, mailbox: str) -> list[StoredMessage]:
        found = await self.db.fetch(
            "SELECT m.uid, m.modseq, m.flags, m.internal_date, m.size FROM messages m"
            " JOIN mailboxes b ON b.id = m.mailbox_id"
            " WHERE b.account_id = $1 AND b.name = $2 ORDER BY m.uid",
            account_id,
            mailbox,
        )
        return [rows.message(r) for r in found]

    async def message_bytes(self, account_id: int, mailbox: str, uid: int) -> bytes | None:
        found = await self.db.fetch(
            "SELECT m.prefix, bl.data FROM messages m"
            " JOIN mailboxes b ON b.id = m.mailbox_id JOIN blobs bl ON bl.id = m.blob_id"
            " WHERE b.account_id = $1 AND b.name = $2 AND m.uid = $3",
            account_id,
            mailbox,
            uid,
        )
        return bytes(found[0][0]) + bytes(found[0][1]) if found else None

    async def bodies(self, account_id: int, mailbox_id: int, uids: list[int]) -> dict[int, bytes]:
        return await self.db.read_one(lambda c: bodies(c, account_id, mailbox_id, uids))

    async def append(
        self, account_id: int, mailbox: str, items: Sequence[AppendItem]
    ) -> AppendResult:
        result = await self.db.run(lambda c: append(c, account_id, mailbox, items))
        self._changed((result.mailbox_id,))
        return result

    async def set_flags(
        self,
        account_id: int,
        mailbox_id: int,
        uids: list[int],
        mode: FlagMode,
        flags: frozenset[str],
        unchanged_since: int | None = None,
    ) -> tuple[list[MessageRow], list[int]]:
        result = await self.db.run(
            lambda c: set_flags(c, account_id, mailbox_id, uids, mode, flags, unchanged_since)
        )
        if result[0]:
            self._changed((mailbox_id,))
        return result

    async def expunge(self, account_id: int, mailbox_id: int, uids: list[int] | None) -> list[int]:
        result = await self.db.run(lambda c: expunge(c, account_id, mailbox_id, uids))
        if result:
            self._changed((mailbox_id,))
        return result

    async def delete_messages(self, account_id: int, mailbox_id: int, uids: list[int]) -> list[int]:
        result = await self.db.run(lambda c: delete_messages(c, account_id, mailbox_id, uids))
        if result:
            self._changed((mailbox_id,))
        return result

    async def copy(
        self, account_id: int, mailbox_id: int, uids: list[int], target: str, *, move: bool
    ) -> CopyResult:
        result = await self.db.run(lambda c: copy(c, account_id, mailbox_id, uids, target, move))
        self._changed((result.mailbox_id, mailbox_id) if move else (result.mailbox_id,))
        return result
