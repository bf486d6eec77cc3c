"""IMAP commands of the authenticated state: mailboxes, LIST, STATUS, APPEND, quota."""

from __future__ import annotations

import contextlib
import time
from typing import Final

from mailfort.errors import AlreadyExists, NotFound
from mailfort.protocol.imap import answers, response
from mailfort.protocol.imap import commands as C
from mailfort.protocol.imap.answers import Answer
from mailfort.server.imap import names
from mailfort.server.imap.flags import PERMANENT_FLAGS, SYSTEM_FLAGS, normalize_flags
from mailfort.server.imap.selected import SelectedMailbox
from mailfort.server.imap.session import CommandError, Session, State
from mailfort.server.offload import Pacer
from mailfort.server.spool import SpoolFile
from mailfort.store.records import AppendItem, Mailbox, MailboxStatus

# RFC 5258 3.5: a name listed only because an inferior is subscribed says so.
CHILDINFO_SUBSCRIBED: Final = (b'("CHILDINFO" ("SUBSCRIBED"))',)
_SPECIAL_USES = frozenset(
    {"\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk", "\\Sent", "\\Trash"}
)


def _account_id(s: Session) -> int:
    assert s.account is not None
    return s.account.id


def wire_name(s: Session, name: str) -> str:
    """A store name as this session's client spells it (modified UTF-7 unless UTF-8 is on)."""
    return names.encode(name, s.utf8)


async def _mailbox(s: Session, raw: str) -> Mailbox:
    name = names.decode(raw, s.utf8)
    box = await s.ctx.store.get_mailbox(_account_id(s), name)
    if box is None:
        raise CommandError(answers.no_such_mailbox(name))
    return box


async def do_select(s: Session, cmd: C.Command) -> Answer:
    assert isinstance(cmd, C.Select)
    if s.selected is not None:
        s.close_selected()
        # RFC 7162 3.2.11 / RFC 9051 7.1: tell the client the old mailbox is closed.
        await s.send(answers.MAILBOX_CLOSED)
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
    unseen = None
    if not s.rev2:
        unseen = next((i + 1 for i, r in enumerate(rows) if "\\Seen" not in r.flags), None)
    # RFC 9051 6.3.2 (and RFC 3501 6.3.1 for RECENT and UNSEEN, RFC 7162 3.1.2.1 for
    # HIGHESTMODSEQ): what a client learns of the mailbox it opens.
    out = [response.exists(sel.exists)]
    if not s.rev2:
        out.append(response.recent(0))
    out += [
        response.flags_response(sorted(SYSTEM_FLAGS) + keywords),
        answers.permanent_flags(() if cmd.readonly else PERMANENT_FLAGS),
        answers.uidvalidity(box.uidvalidity),
        answers.uidnext(uidnext),
        answers.highestmodseq(highest),
    ]
    if unseen is not None:
        out.append(answers.first_unseen(unseen))
    if s.rev2:  # RFC 9051 6.3.2: the mailbox name as the server spells it
        out.append(response.list_response((), names.DELIMITER, wire_name(s, box.name), utf8=True))
    await s.send(b"".join(out))
    s.selected = sel
    s.state = State.SELECTED
    s.watch(box.id)
    return answers.opened(readonly=cmd.readonly)


async def do_create(s: Session, cmd: C.Command) -> Answer:
    assert isinstance(cmd, C.Create)
    name = names.decode(cmd.mailbox, s.utf8).rstrip(names.DELIMITER)
    names.check_new(name)
    if name == "INBOX":
        return answers.INBOX_EXISTS
    special = None
    if cmd.special_use:
        if len(cmd.special_use) > 1:
            return answers.ONE_SPECIAL_USE
        special = next((u for u in _SPECIAL_USES if u.lower() == cmd.special_use[0].lower()), None)
        if special is None:
            return answers.unsupported_special_use(cmd.special_use[0])
    store, account_id = s.ctx.store, _account_id(s)
    existing = {b.name for b in await store.list_mailboxes(account_id)}
    if name in existing:
        return answers.MAILBOX_EXISTS
    # RFC 9051 6.3.4: create the superior names a new name needs.
    for parent in names.parents(name):
        if parent not in existing:
            with contextlib.suppress(AlreadyExists):
                await store.create_mailbox(account_id, parent)
    try:
        await store.create_mailbox(account_id, name, special)
    except AlreadyExists:
        return answers.MAILBOX_EXISTS
    return answers.completed("CREATE")


async def do_delete(s: Session, cmd: C.Command) -> Answer:
    assert isinstance(cmd, C.Delete)
    name = names.decode(cmd.mailbox, s.utf8)
    if name == "INBOX":
        return answers.INBOX_UNDELETABLE
    if s.selected is not None and s.selected.name == name:
        s.close_selected()
    try:
        await s.ctx.store.delete_mailbox(_account_id(s), name)
    except NotFound:
        return answers.no_such_mailbox(name)
    return answers.completed("DELETE")


async def do_rename(s: Session, cmd: C.Command) -> Answer:
    assert isinstance(cmd, C.Rename)
    old = names.decode(cmd.old, s.utf8)
    new = names.decode(cmd.new, s.utf8).rstrip(names.DELIMITER)
    names.check_new(new)
    if new == "INBOX":
        return answers.already_exists("INBOX")
    try:
        await s.ctx.store.rename_mailbox(_account_id(s), old, new, names.DELIMITER)
    except AlreadyExists:
        return answers.already_exists(new)
    except NotFound:
        return answers.no_such_mailbox(old)
    if s.selected is not None and s.selected.name == old and old != "INBOX":
        s.selected.name = new
    return answers.completed("RENAME")


async def do_subscribe(s: Session, cmd: C.Command) -> Answer:
    assert isinstance(cmd, C.Subscribe)
    name = names.decode(cmd.mailbox, s.utf8)
    await s.ctx.store.subscribe(_account_id(s), name, cmd.subscribe)
    return answers.completed("SUBSCRIBE" if cmd.subscribe else "UNSUBSCRIBE")


def _status_items(
    status: MailboxStatus, items: tuple[str, ...], limit: int
) -> list[tuple[str, int]]:
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
        raise CommandError(answers.unknown_status_item(unknown[0]))
    return [(i, values[i]) for i in items]


async def do_status(s: Session, cmd: C.Command) -> Answer:
    assert isinstance(cmd, C.Status)
    box = await _mailbox(s, cmd.mailbox)
    if "HIGHESTMODSEQ" in cmd.items:
        s.condstore = True
    status = await s.ctx.store.mailbox_status(_account_id(s), box.id)
    if status is None:
        return answers.NO_SUCH_MAILBOX
    items = _status_items(status, cmd.items, s.ctx.max_message_size)
    await s.send(response.status_response(wire_name(s, box.name), items, utf8=s.utf8))
    return answers.completed("STATUS")


async def do_list(s: Session, cmd: C.Command) -> Answer:
    assert isinstance(cmd, C.ListCmd)
    if not cmd.extended and not cmd.lsub and cmd.patterns == ("",):
        # RFC 9051 6.3.9: an empty pattern asks for the delimiter and the root.
        await s.send(response.list_response(["\\Noselect"], names.DELIMITER, ""))
        return answers.completed("LIST")
    try:
        reference = names.decode(cmd.reference, s.utf8)
        patterns = [names.pattern(reference, names.decode(p, s.utf8)) for p in cmd.patterns]
    except names.NameError_ as exc:
        return answers.bad(str(exc))
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
        extended: tuple[bytes, ...] = ()
        lsub_parent = False
        if select_subscribed and name not in subscribed:
            if cmd.lsub:
                lsub_parent = name in lsub_parents
                if not lsub_parent:
                    continue
            elif not (recursive and child_subscribed):
                continue
            else:
                extended = CHILDINFO_SUBSCRIBED
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
            response.list_response(
                attrs,
                names.DELIMITER,
                encoded,
                utf8=s.utf8,
                lsub=cmd.lsub,
                extended=extended,
            )
        )
        if cmd.status_items and box is not None:
            status = await store.mailbox_status(account_id, box.id)
            if status is not None:
                items = _status_items(status, cmd.status_items, s.ctx.max_message_size)
                lines.append(response.status_response(encoded, items, utf8=s.utf8))
    if lines:
        await s.send(b"".join(lines))
    return answers.completed("LSUB" if cmd.lsub else "LIST")


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


async def do_append(s: Session, cmd: C.Command) -> Answer:
    assert isinstance(cmd, C.Append)
    name = names.decode(cmd.mailbox, s.utf8)
    for message in cmd.messages:
        size = _octets(message.data)
        if size > s.ctx.max_message_size:
            return answers.MESSAGE_TOO_BIG
        if not size:
            return answers.EMPTY_MESSAGE
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
        return answers.try_create(name)
    return answers.appended(result.uidvalidity, response.format_seqset(list(result.uids)))


def _kib(n: int) -> int:
    return (n + 1023) // 1024


# The one quota root: the account's, named "" (RFC 9208 3.2).
_ROOT = ""


def _storage(used: int, limit: int) -> bytes:
    # RFC 9208 5.1: STORAGE is counted in units of 1024 octets.
    return response.quota_response(_ROOT, [("STORAGE", _kib(used), _kib(limit))])


async def do_getquotaroot(s: Session, cmd: C.Command) -> Answer:
    assert isinstance(cmd, C.GetQuotaRoot)
    box = await _mailbox(s, cmd.mailbox)
    account = await s.ctx.store.get_account_by_id(_account_id(s))
    assert account is not None
    name = wire_name(s, box.name)
    if account.quota_bytes <= 0:
        await s.send(response.quotaroot_response(name, [], utf8=s.utf8))
    else:
        await s.send(
            response.quotaroot_response(name, [_ROOT], utf8=s.utf8)
            + _storage(account.used_bytes, account.quota_bytes)
        )
    return answers.completed("GETQUOTAROOT")


async def do_getquota(s: Session, cmd: C.Command) -> Answer:
    assert isinstance(cmd, C.GetQuota)
    account = await s.ctx.store.get_account_by_id(_account_id(s))
    assert account is not None
    if cmd.root != _ROOT or account.quota_bytes <= 0:
        return answers.NO_SUCH_QUOTA_ROOT
    await s.send(_storage(account.used_bytes, account.quota_bytes))
    return answers.completed("GETQUOTA")


async def do_setquota(s: Session, cmd: C.Command) -> Answer:
    return answers.QUOTA_BY_PROVIDER
