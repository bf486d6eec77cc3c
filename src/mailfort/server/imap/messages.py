"""IMAP commands of the selected state: FETCH, STORE, SEARCH, COPY/MOVE, EXPUNGE, CLOSE."""

from __future__ import annotations

import datetime
from collections.abc import Iterator, Mapping

from mailfort.errors import NotFound
from mailfort.protocol.imap import answers, response, search
from mailfort.protocol.imap import commands as C
from mailfort.protocol.imap.answers import Answer
from mailfort.server.imap import fetch, names
from mailfort.server.imap.flags import normalize_flags
from mailfort.server.imap.selected import SelectedMailbox
from mailfort.server.imap.session import HUNG_UP, Session
from mailfort.server.offload import Pacer
from mailfort.server.spool import SPOOL_THRESHOLD
from mailfort.store.records import FlagMode, MessageRow

# Messages read from the store per round trip, and at most BATCH_BYTES of them (one larger
# message goes alone): bounds memory per session during a big FETCH or SEARCH, and what a client
# that does not read its responses can make the server hold (DESIGN.md: bounded everything).
BATCH = 100
BATCH_BYTES = 1024 * 1024
_MODES = {
    C.StoreMode.ADD: FlagMode.ADD,
    C.StoreMode.REMOVE: FlagMode.REMOVE,
    C.StoreMode.REPLACE: FlagMode.REPLACE,
}


def _batches(sel: SelectedMailbox, uids: list[int]) -> Iterator[list[int]]:
    chunk: list[int] = []
    size = 0
    for uid in uids:
        row = sel.rows.get(uid)
        octets = row.size if row is not None else 0
        if chunk and (len(chunk) >= BATCH or size + octets > BATCH_BYTES):
            yield chunk
            chunk, size = [], 0
        chunk.append(uid)
        size += octets
    if chunk:
        yield chunk


def _named(cmd: C.Command) -> str:
    """The command as the client named it, for its tagged OK: `UID FETCH`, `SEARCH`."""
    return ("UID " if cmd.uid else "") + cmd.name


def _ctx(s: Session) -> tuple[int, SelectedMailbox]:
    assert s.account is not None and s.selected is not None
    return s.account.id, s.selected


async def do_fetch(s: Session, cmd: C.Command) -> Answer:
    assert isinstance(cmd, C.Fetch)
    account_id, sel = _ctx(s)
    # Flags other sessions changed should be current in what we answer (no EXPUNGE here).
    await s.sync(allow_expunge=cmd.uid)
    uids = sel.resolve(cmd.seqset, uid=cmd.uid)
    atts = list(cmd.atts)
    kinds = {a.kind for a in atts}
    if cmd.uid and C.FetchKind.UID not in kinds:
        atts.insert(0, C.FetchAtt(kind=C.FetchKind.UID))
    if C.FetchKind.MODSEQ in kinds or cmd.changed_since is not None:
        s.condstore = True
        if C.FetchKind.MODSEQ not in kinds:
            atts.append(C.FetchAtt(kind=C.FetchKind.MODSEQ))
    if cmd.changed_since is not None:
        since = cmd.changed_since
        uids = [u for u in uids if sel.rows[u].modseq > since]
    uids = [u for u in uids if u not in sel.pending_expunge]
    if fetch.sets_seen(cmd.atts) and not sel.readonly:
        unseen = [u for u in uids if "\\Seen" not in sel.rows[u].flags]
        if unseen:
            changed, _ = await s.ctx.store.set_flags(
                account_id, sel.mailbox_id, unseen, FlagMode.ADD, frozenset({"\\Seen"})
            )
            sel.update_rows(changed)
            # RFC 9051 6.4.5: the implied flag change is reported in the same FETCH response.
            if C.FetchKind.FLAGS not in kinds:
                atts.append(C.FetchAtt(kind=C.FetchKind.FLAGS))
    wants_meta = fetch.needs_meta(tuple(atts))
    wants_bytes = fetch.needs_bytes(tuple(atts))
    cache = s.ctx.cache
    failed = False
    pacer = Pacer()
    for chunk in _batches(sel, uids):
        metas = {u: cache.get(sel.mailbox_id, u) for u in chunk} if wants_meta else {}
        need = chunk if wants_bytes else [u for u in chunk if wants_meta and metas[u] is None]
        # Message data is in memory from its store read until the client has taken the answer
        # (a client that does not read keeps it there): within the node's memory budget, as
        # an APPEND's is, so sessions that FETCH large messages and stall cannot take the
        # node's memory (10 of them on a 20 MB message took 520 MB). The body and its rendered
        # copy are counted; batches of small messages take nothing and never queue.
        octets = sum(sel.rows[u].size for u in need if u in sel.rows) if wants_bytes else 0
        held = 2 * octets if octets > SPOOL_THRESHOLD else 0
        async with s.ctx.memory.hold(held, owner=account_id):
            data = await s.ctx.store.bodies(account_id, sel.mailbox_id, need) if need else {}
            needed = set(need)
            items = [
                fetch.BatchItem(
                    uid=uid,
                    seq=sel.seq(uid),
                    row=sel.rows.get(uid),
                    data=data.get(uid),
                    meta=metas.get(uid),
                    needed_data=uid in needed,
                )
                for uid in chunk
            ]
            del data
            if need:
                # Parsing and cutting message bodies: off the loop (see server/offload.py).
                rendered = await s.ctx.cpu.run(
                    fetch.render_batch, items, atts, wants_meta=wants_meta
                )
            else:
                rendered = fetch.render_batch(items, atts, wants_meta=wants_meta)
                await pacer.tick()
            del items  # the bodies: only their rendered answers are needed now
            for uid, meta in rendered.metas.items():
                cache.put(sel.mailbox_id, uid, meta)
            if rendered.unknown_cte:
                return answers.UNKNOWN_TRANSFER_ENCODING
            failed = failed or rendered.expunged
            # One write per response, not their join: a join would be one more copy of them.
            for line in rendered.lines:
                await s.send(line)
    if failed:
        return answers.EXPUNGE_ISSUED
    return answers.completed(_named(cmd))


async def do_store(s: Session, cmd: C.Command) -> Answer:
    assert isinstance(cmd, C.StoreCmd)
    account_id, sel = _ctx(s)
    if sel.readonly:
        return answers.MAILBOX_READ_ONLY
    flags = normalize_flags(cmd.flags) - {"\\Recent"}
    uids = [u for u in sel.resolve(cmd.seqset, uid=cmd.uid) if u not in sel.pending_expunge]
    if cmd.unchanged_since is not None:
        s.condstore = True
    changed, failed = await s.ctx.store.set_flags(
        account_id, sel.mailbox_id, uids, _MODES[cmd.mode], flags, cmd.unchanged_since
    )
    sel.update_rows(changed)
    changed_uids = {r.uid for r in changed}
    out: list[bytes] = []
    pacer = Pacer()
    for uid in uids:
        await pacer.tick()
        row = sel.rows.get(uid)
        if row is None or uid in failed:
            continue
        # .SILENT still reports MODSEQ changes to a CONDSTORE client (RFC 7162 3.1.3).
        if cmd.silent and not (s.condstore and uid in changed_uids):
            continue
        out.append(
            fetch.flag_update(
                sel.seq(uid), row, uid=cmd.uid, flags=not cmd.silent, modseq=s.condstore
            )
        )
    if out:
        await s.send(b"".join(out))
    if failed:
        return answers.store_modified(response.format_seqset(_numbers(sel, failed, cmd.uid)))
    return answers.completed("STORE")


def _numbers(sel: SelectedMailbox, uids: list[int], by_uid: bool) -> list[int]:
    return sorted(uids) if by_uid else sorted(sel.seq(u) for u in uids)


class _Searchable:
    """Adapts a stored message to what `protocol.imap.search` evaluates."""

    __slots__ = ("data", "flags", "internal_date", "modseq", "size", "uid")

    def __init__(self, row: MessageRow, data: bytes | None) -> None:
        self.uid = row.uid
        self.flags = row.flags
        self.internal_date = datetime.datetime.fromtimestamp(row.internal_date, datetime.UTC)
        self.size = row.size
        self.modseq = row.modseq
        self.data = data or b""


def _search_batch(
    keys: C.SearchKey,
    batch: list[tuple[MessageRow, int]],
    data: Mapping[int, bytes],
    largest_seq: int,
    largest_uid: int,
    saved: frozenset[int],
) -> list[int]:
    """The UIDs of `batch` (rows with their sequence numbers) that match `keys`."""
    return [
        row.uid
        for row, seq in batch
        if search.matches(
            keys,
            _Searchable(row, data.get(row.uid)),
            seq=seq,
            largest_seq=largest_seq,
            largest_uid=largest_uid,
            saved=saved,
        )
    ]


def _uses_modseq(key: C.SearchKey) -> bool:
    return key.name == "MODSEQ" or any(_uses_modseq(k) for k in key.children)


async def do_search(s: Session, cmd: C.Command) -> Answer:
    assert isinstance(cmd, C.Search)
    account_id, sel = _ctx(s)
    if cmd.charset is not None and cmd.charset.upper() not in ("UTF-8", "US-ASCII"):
        return answers.BAD_CHARSET
    await s.sync(allow_expunge=cmd.uid)
    candidates = [u for u in sel.uids if u not in sel.pending_expunge]
    saved = frozenset(sel.saved_search)  # `$` is tested once per message: a set, not a list
    needs_data = search.needs_body(cmd.keys)
    largest_seq = len(sel.uids)
    largest_uid = sel.uids[-1] if sel.uids else 0
    found: list[int] = []
    pacer = Pacer()
    for chunk in _batches(sel, candidates):
        batch = [(sel.rows[uid], sel.seq(uid)) for uid in chunk]
        if needs_data:
            data = await s.ctx.store.bodies(account_id, sel.mailbox_id, chunk)
            # Parsing, decoding and scanning message bodies: off the loop.
            found += await s.ctx.cpu.run(
                _search_batch, cmd.keys, batch, data, largest_seq, largest_uid, saved
            )
        else:
            found += _search_batch(cmd.keys, batch, {}, largest_seq, largest_uid, saved)
            await pacer.tick()
    modseq = max((sel.rows[u].modseq for u in found), default=0)
    with_modseq = _uses_modseq(cmd.keys)
    if with_modseq:
        s.condstore = True
    numbers = found if cmd.uid else [sel.seq(u) for u in found]
    options = cmd.return_options
    if options is not None and "SAVE" in options:
        sel.saved_search = list(found)
    if options is None and not s.rev2:
        await s.send(response.search_response(numbers, modseq=modseq if with_modseq else None))
        return answers.completed(_named(cmd))
    # ESEARCH (RFC 4731): RETURN () means ALL; IMAP4rev2 answers a plain SEARCH the same way.
    wanted = {"ALL"} if not options else set(options) - {"SAVE"}
    if not wanted:
        # RETURN (SAVE) alone: the result is kept, not sent (RFC 5182 2.1).
        return answers.completed(_named(cmd))
    await s.send(
        response.esearch(
            cmd.tag,
            uid=cmd.uid,
            minimum=numbers[0] if numbers and "MIN" in wanted else None,
            maximum=numbers[-1] if numbers and "MAX" in wanted else None,
            all_numbers=numbers if "ALL" in wanted else None,
            count=len(numbers) if "COUNT" in wanted else None,
            modseq=modseq if with_modseq and found else None,
        )
    )
    return answers.completed(_named(cmd))


async def do_copy(s: Session, cmd: C.Command) -> Answer:
    assert isinstance(cmd, C.Copy)
    account_id, sel = _ctx(s)
    verb = "MOVE" if cmd.move else "COPY"
    if cmd.move and sel.readonly:
        return answers.MAILBOX_READ_ONLY
    target = names.decode(cmd.mailbox, s.utf8)
    uids = [u for u in sel.resolve(cmd.seqset, uid=cmd.uid) if u not in sel.pending_expunge]
    if not uids:
        return answers.ok(f"{verb} completed (nothing to do)")
    try:
        result = await s.ctx.store.copy(account_id, sel.mailbox_id, uids, target, move=cmd.move)
    except NotFound:
        return answers.try_create(target)
    if not result.pairs:
        return answers.completed(verb)
    src = response.format_seqset([a for a, _ in result.pairs])
    dst = response.format_seqset([b for _, b in result.pairs])
    code = answers.copyuid(result.uidvalidity, src, dst)
    if cmd.move:
        await s.send(answers.moved(code))
        if not await s.report_write("MOVE"):
            return HUNG_UP
        return answers.completed("MOVE")
    return answers.ok("COPY completed", code)


async def do_expunge(s: Session, cmd: C.Command) -> Answer:
    assert isinstance(cmd, C.Expunge)
    account_id, sel = _ctx(s)
    if sel.readonly:
        return answers.MAILBOX_READ_ONLY
    uids = sel.resolve(cmd.seqset, uid=True) if cmd.seqset is not None else None
    await s.ctx.store.expunge(account_id, sel.mailbox_id, uids)
    if not await s.report_write("EXPUNGE"):
        return HUNG_UP
    return answers.completed("EXPUNGE")


async def do_close(s: Session, cmd: C.Command) -> Answer:
    account_id, sel = _ctx(s)
    if not sel.readonly:
        # RFC 9051 6.4.1: CLOSE expunges silently.
        await s.ctx.store.expunge(account_id, sel.mailbox_id, None)
    s.close_selected()
    return answers.completed("CLOSE")


async def do_unselect(s: Session, cmd: C.Command) -> Answer:
    s.close_selected()
    return answers.completed("UNSELECT")
