"""IMAP commands of the authenticated state: mailboxes, LIST, STATUS, APPEND, quota."""

from __future__ import annotations

import contextlib
import time

from mailfort.errors import AlreadyExists, NotFound
from mailfort.protocol.imap import commands as C
from mailfort.protocol.imap import response
from mailfort.server.imap import names
from mailfort.server.imap.flags import PERMANENT_FLAGS, SYSTEM_FLAGS, normalize_flags
from mailfort.server.imap.selected import SelectedMailbox
from mailfort.server.imap.session import CommandError, Done, Session, State, handles
from mailfort.server.offload import Pacer
from mailfort.server.spool import SpoolFile
from mailfort.store.records import AppendItem, Mailbox, MailboxStatus

_SPECIAL_USES = frozenset(
    {"\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash"}
)


def _account_id(s: Session) -> int:
    assert s.account is not None
    return s.account.id


def wire_name(s: Session, name: str) -> bytes:
    return response.astring(names.encode(name, s.utf8), utf8=s.utf8)


async def _mailbox(s: Session, raw: str) -> Mailbox:
    name = names.decode(raw, s.utf8)
    box = await s.ctx.store.get_mailbox(_account_id(s), name)
    if box is None:
        raise CommandError("NO", f"no mailbox {name}", "NONEXISTENT")
    return box


@handles(C.Select)
async def do_select(s: Session, cmd: C.Command) -> Done:
    assert isinstance(cmd, C.Select)
    if s.selected is not None:
        s.close_selected()
        # RFC 7162 3.2.11 / RFC 9051 7.1: tell the client the old mailbox is closed.
        await s.untagged("OK [CLOSED] previous mailbox closed")
    box = await _mailbox(s, cmd.mailbox)
    # The mailbox row first, then the messages: anything newer than the row is caught by the
    # next sync instead of being missed.
    rows = s.ctx.snapshots.get(box.id, box.highestmodseq)
    if rows is None:
        rows = await s.ctx.store.messages(_account_id(s), box.id)
        # Only a snapshot that is exactly the state at box.highestmodseq may be reused.
        if all(r.modseq <= box.highestmodseq for r in rows):
            s.ctx.snapshots.put(box.id, box.highestmodseq, rows)
    if cmd.condstore:
        s.condstore = True
    highest = max([box.highestmodseq, *(r.modseq for r in rows)])
    uidnext = max([box.uidnext, *(r.uid + 1 for r in rows)])
    sel = SelectedMailbox(
        mailbox_id=box.id,
        name=box.name,
        readonly=cmd.readonly,
        uidvalidity=box.uidvalidity,
        uidnext=uidnext,
        highestmodseq=box.highestmodseq,
        rows=rows,
    )
    keywords = sorted({f for r in rows for f in r.flags} - SYSTEM_FLAGS)
    flags = " ".join(sorted(SYSTEM_FLAGS) + keywords)
    out = [
        f"* {sel.exists} EXISTS",
        f"* FLAGS ({flags})",
        "* OK [PERMANENTFLAGS ()] read-only"
        if cmd.readonly
        else f"* OK [PERMANENTFLAGS ({PERMANENT_FLAGS})] flags permitted",
        f"* OK [UIDVALIDITY {box.uidvalidity}] UIDs valid",
        f"* OK [UIDNEXT {uidnext}] predicted next UID",
        f"* OK [HIGHESTMODSEQ {highest}] highest modseq",
    ]
    if not s.rev2:
        out.insert(1, "* 0 RECENT")
        unseen = next((i + 1 for i, r in enumerate(rows) if "\\Seen" not in r.flags), None)
        if unseen is not None:
            out.append(f"* OK [UNSEEN {unseen}] first unseen")
    else:
        out.append('* LIST () "/" ' + wire_name(s, box.name).decode("utf-8", "replace"))
    await s.send(("\r\n".join(out) + "\r\n").encode("utf-8", "surrogateescape"))
    s.selected = sel
    s.state = State.SELECTED
    s.watch(box.id)
    mode = "READ-ONLY" if cmd.readonly else "READ-WRITE"
    return Done(text="EXAMINE completed" if cmd.readonly else "SELECT completed", code=mode)


@handles(C.Create)
async def do_create(s: Session, cmd: C.Command) -> Done:
    assert isinstance(cmd, C.Create)
    name = names.decode(cmd.mailbox, s.utf8).rstrip(names.DELIMITER)
    names.check_new(name)
    if name == "INBOX":
        return Done("NO", "INBOX always exists", "ALREADYEXISTS")
    special = None
    if cmd.special_use:
        if len(cmd.special_use) > 1:
            return Done("NO", "one special use per mailbox", "USEATTR")
        special = next((u for u in _SPECIAL_USES if u.lower() == cmd.special_use[0].lower()), None)
        if special is None:
            return Done("NO", f"unsupported special use {cmd.special_use[0]}", "USEATTR")
    store, account_id = s.ctx.store, _account_id(s)
    existing = {b.name for b in await store.list_mailboxes(account_id)}
    if name in existing:
        return Done("NO", "mailbox already exists", "ALREADYEXISTS")
    # RFC 9051 6.3.4: create the superior names a new name needs.
    for parent in names.parents(name):
        if parent not in existing:
            with contextlib.suppress(AlreadyExists):
                await store.create_mailbox(account_id, parent)
    try:
        await store.create_mailbox(account_id, name, special)
    except AlreadyExists:
        return Done("NO", "mailbox already exists", "ALREADYEXISTS")
    return Done(text="CREATE completed")


@handles(C.Delete)
async def do_delete(s: Session, cmd: C.Command) -> Done:
    assert isinstance(cmd, C.Delete)
    name = names.decode(cmd.mailbox, s.utf8)
    if name == "INBOX":
        return Done("NO", "INBOX cannot be deleted", "CANNOT")
    if s.selected is not None and s.selected.name == name:
        s.close_selected()
    try:
        await s.ctx.store.delete_mailbox(_account_id(s), name)
    except NotFound:
        return Done("NO", f"no mailbox {name}", "NONEXISTENT")
    return Done(text="DELETE completed")


@handles(C.Rename)
async def do_rename(s: Session, cmd: C.Command) -> Done:
    assert isinstance(cmd, C.Rename)
    old = names.decode(cmd.old, s.utf8)
    new = names.decode(cmd.new, s.utf8).rstrip(names.DELIMITER)
    names.check_new(new)
    if new == "INBOX":
        return Done("NO", "INBOX already exists", "ALREADYEXISTS")
    try:
        await s.ctx.store.rename_mailbox(_account_id(s), old, new, names.DELIMITER)
    except AlreadyExists:
        return Done("NO", f"{new} already exists", "ALREADYEXISTS")
    except NotFound:
        return Done("NO", f"no mailbox {old}", "NONEXISTENT")
    if s.selected is not None and s.selected.name == old and old != "INBOX":
        s.selected.name = new
    return Done(text="RENAME completed")


@handles(C.Subscribe)
async def do_subscribe(s: Session, cmd: C.Command) -> Done:
    assert isinstance(cmd, C.Subscribe)
    name = names.decode(cmd.mailbox, s.utf8)
    await s.ctx.store.subscribe(_account_id(s), name, cmd.subscribe)
    return Done(text=("SUBSCRIBE" if cmd.subscribe else "UNSUBSCRIBE") + " completed")


def _status_items(status: MailboxStatus, items: tuple[str, ...], limit: int) -> str:
    values = {
        "MESSAGES": status.messages,
        "UIDNEXT": status.uidnext,
        "UIDVALIDITY": status.uidvalidity,
        "UNSEEN": status.unseen,
        "RECENT": 0,
        "SIZE": status.size,
        "HIGHESTMODSEQ": status.highestmodseq,
        "DELETED": status.deleted,
        "APPENDLIMIT": limit,
    }
    unknown = [i for i in items if i not in values]
    if unknown:
        raise CommandError("BAD", f"unknown STATUS item {unknown[0]}")
    return " ".join(f"{i} {values[i]}" for i in items)


@handles(C.Status)
async def do_status(s: Session, cmd: C.Command) -> Done:
    assert isinstance(cmd, C.Status)
    box = await _mailbox(s, cmd.mailbox)
    if "HIGHESTMODSEQ" in cmd.items:
        s.condstore = True
    status = await s.ctx.store.mailbox_status(_account_id(s), box.id)
    if status is None:
        return Done("NO", "no such mailbox", "NONEXISTENT")
    text = _status_items(status, cmd.items, s.ctx.max_message_size)
    await s.send(b"* STATUS " + wire_name(s, box.name) + f" ({text})\r\n".encode())
    return Done(text="STATUS completed")


@handles(C.ListCmd)
async def do_list(s: Session, cmd: C.Command) -> Done:
    assert isinstance(cmd, C.ListCmd)
    verb = "LSUB" if cmd.lsub else "LIST"
    if not cmd.extended and not cmd.lsub and cmd.patterns == ("",):
        # RFC 9051 6.3.9: an empty pattern asks for the delimiter and the root.
        await s.untagged('LIST (\\Noselect) "/" ""')
        return Done(text="LIST completed")
    try:
        reference = names.decode(cmd.reference, s.utf8)
        patterns = [names.pattern(reference, names.decode(p, s.utf8)) for p in cmd.patterns]
    except names.NameError_ as exc:
        return Done("BAD", str(exc))
    store, account_id = s.ctx.store, _account_id(s)
    boxes = {b.name: b for b in await store.list_mailboxes(account_id)}
    subscribed = await store.subscriptions(account_id)
    select_subscribed = cmd.lsub or "SUBSCRIBED" in cmd.select_options
    recursive = "RECURSIVEMATCH" in cmd.select_options
    special_only = "SPECIAL-USE" in cmd.select_options
    show_subscribed = "SUBSCRIBED" in cmd.return_options or (select_subscribed and not cmd.lsub)
    # An account may hold any number of names: the loops below give other clients a turn.
    pacer = Pacer()
    candidates = set(boxes)
    # Every name that has an inferior, computed once rather than scanned for again per name.
    with_children: set[str] = set()
    for name in boxes:
        with_children.update(names.parents(name))
        await pacer.tick()
    candidates |= with_children
    with_subscribed_children: set[str] = set()
    for name in subscribed:
        with_subscribed_children.update(names.parents(name))
        await pacer.tick()
    if select_subscribed:
        candidates |= subscribed | with_subscribed_children
    # RFC 3501 6.3.9: LSUB "%" lists an unsubscribed parent of a subscribed name the pattern
    # does not reach, flagged \Noselect. Each subscribed name is matched once, not once per
    # candidate parent.
    lsub_parents: set[str] = set()
    if cmd.lsub:
        for other in subscribed:
            if not any(p.match(other) for p in patterns):
                lsub_parents.update(names.parents(other))
            await pacer.tick()
    lines: list[bytes] = []
    for name in sorted(candidates, key=lambda n: (n != "INBOX", n)):
        await pacer.tick()
        if not any(p.match(name) for p in patterns):
            continue
        box = boxes.get(name)
        has_children = name in with_children
        child_subscribed = name in with_subscribed_children
        attrs: list[str] = []
        extra = ""
        lsub_parent = False
        if select_subscribed and name not in subscribed:
            if cmd.lsub:
                lsub_parent = name in lsub_parents
                if not lsub_parent:
                    continue
            elif not (recursive and child_subscribed):
                continue
            else:
                extra = ' ("CHILDINFO" ("SUBSCRIBED"))'
        if special_only and (box is None or not box.special_use):
            continue
        if box is None:
            attrs.append("\\NonExistent" if not has_children else "\\Noselect")
        attrs.append("\\HasChildren" if has_children else "\\HasNoChildren")
        if box is not None and box.special_use:
            attrs.append(box.special_use)
        if show_subscribed and name in subscribed:
            attrs.append("\\Subscribed")
        if cmd.lsub and (box is None or lsub_parent):
            attrs = ["\\Noselect"]
        encoded = wire_name(s, name)
        lines.append(
            f'* {verb} ({" ".join(attrs)}) "/" '.encode() + encoded + extra.encode() + b"\r\n"
        )
        if cmd.status_items and box is not None:
            status = await store.mailbox_status(account_id, box.id)
            if status is not None:
                text = _status_items(status, cmd.status_items, s.ctx.max_message_size)
                lines.append(b"* STATUS " + encoded + f" ({text})\r\n".encode())
    if lines:
        await s.send(b"".join(lines))
    return Done(text=f"{verb} completed")


def _octets(data: bytes | C.LiteralSink) -> int:
    if isinstance(data, SpoolFile):
        return data.size
    assert isinstance(data, bytes)  # the connection spools only to SpoolFiles
    return len(data)


async def _in_memory(data: bytes | C.LiteralSink) -> bytes | bytearray:
    if isinstance(data, SpoolFile):
        octets = await data.read()
        data.close()  # the octets are in memory now: free the disk at once
        return octets
    assert isinstance(data, bytes)
    return data


@handles(C.Append)
async def do_append(s: Session, cmd: C.Command) -> Done:
    assert isinstance(cmd, C.Append)
    name = names.decode(cmd.mailbox, s.utf8)
    for message in cmd.messages:
        size = _octets(message.data)
        if size > s.ctx.max_message_size:
            return Done("NO", "message too large", "TOOBIG")
        if not size:
            return Done("NO", "empty message", "CANNOT")
    spooled = sum(_octets(m.data) for m in cmd.messages if isinstance(m.data, SpoolFile))
    try:
        # Spooled messages are in memory only from here to the end of the store write.
        async with s.ctx.memory.hold(spooled, owner=s.account.id if s.account else None):
            items: list[AppendItem] = []
            for message in cmd.messages:
                flags = normalize_flags(message.flags) - {"\\Recent"}
                when = message.internal_date.timestamp() if message.internal_date else time.time()
                items.append(
                    AppendItem(
                        data=await _in_memory(message.data),
                        flags=frozenset(flags),
                        internal_date=when,
                    )
                )
            result = await s.ctx.store.append(_account_id(s), name, items)
    except NotFound:
        return Done("NO", f"no mailbox {name}", "TRYCREATE")
    uids = response.format_seqset(list(result.uids))
    return Done(text="APPEND completed", code=f"APPENDUID {result.uidvalidity} {uids}")


def _kib(n: int) -> int:
    return (n + 1023) // 1024


def _quota_line(used: int, limit: int) -> bytes:
    # RFC 9208 5.1: STORAGE is counted in units of 1024 octets.
    return f'* QUOTA "" (STORAGE {_kib(used)} {_kib(limit)})\r\n'.encode()


@handles(C.GetQuotaRoot)
async def do_getquotaroot(s: Session, cmd: C.Command) -> Done:
    assert isinstance(cmd, C.GetQuotaRoot)
    box = await _mailbox(s, cmd.mailbox)
    account = await s.ctx.store.get_account_by_id(_account_id(s))
    assert account is not None
    name = wire_name(s, box.name)
    if account.quota_bytes <= 0:
        await s.send(b"* QUOTAROOT " + name + b"\r\n")
    else:
        await s.send(
            b"* QUOTAROOT "
            + name
            + b' ""\r\n'
            + _quota_line(account.used_bytes, account.quota_bytes)
        )
    return Done(text="GETQUOTAROOT completed")


@handles(C.GetQuota)
async def do_getquota(s: Session, cmd: C.Command) -> Done:
    assert isinstance(cmd, C.GetQuota)
    account = await s.ctx.store.get_account_by_id(_account_id(s))
    assert account is not None
    if cmd.root != "" or account.quota_bytes <= 0:
        return Done("NO", "no such quota root", "NONEXISTENT")
    await s.untagged(f'QUOTA "" (STORAGE {_kib(account.used_bytes)} {_kib(account.quota_bytes)})')
    return Done(text="GETQUOTA completed")


@handles(C.SetQuota)
async def do_setquota(s: Session, cmd: C.Command) -> Done:
    return Done("NO", "quotas are set by the provider", "NOPERM")
