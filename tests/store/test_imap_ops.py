"""IMAP operations on messages: UIDs, MODSEQ, flags, expunge, copy/move, append, quota, the hub.

RFC 9051 (IMAP4rev2) 2.3.1, RFC 3502 (MULTIAPPEND), RFC 4315 (UIDPLUS), RFC 6851 (MOVE),
RFC 7162 (CONDSTORE/QRESYNC). Mailbox-level operations (rename, delete, subscriptions, status) are
in test_imap_mailboxes.py.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable

import pytest

from mailfort.errors import NotFound, OverQuota
from mailfort.store.api import Store
from mailfort.store.records import Account, AppendItem, FlagMode, Mailbox, MailboxStatus
from tests.store.conftest import Engine
from tests.store.helpers import body, request, user

DATE = 1_767_225_600.0  # 2026-01-01T00:00:00Z
_dates = itertools.count()


def item(tag: str = "", *flags: str, date: float | None = None) -> AppendItem:
    return AppendItem(
        data=body(tag),
        flags=frozenset(flags),
        internal_date=DATE + next(_dates) if date is None else date,
    )


async def mailbox(store: Store, account: Account, name: str = "INBOX") -> Mailbox:
    found = await store.get_mailbox(account.id, name)
    assert found is not None, name
    return found


async def status(store: Store, account: Account, box: Mailbox) -> MailboxStatus:
    found = await store.mailbox_status(account.id, box.id)
    assert found is not None
    return found


async def highest(store: Store, account: Account, box: Mailbox) -> int:
    return (await status(store, account, box)).highestmodseq


async def used(store: Store, account: Account) -> int:
    found = await store.get_account_by_id(account.id)
    assert found is not None
    return found.used_bytes


async def with_quota(store: Store, address: str, quota: int) -> Account:
    domain = address.rpartition("@")[2]
    if domain not in await store.list_domains():
        await store.add_domain(domain)
    return await store.add_account(address, "$argon2id$not-a-real-hash", quota)


async def delete(store: Store, account: Account, box: Mailbox, uids: list[int]) -> None:
    await store.set_flags(account.id, box.id, uids, FlagMode.ADD, frozenset({"\\Deleted"}))


# -- UIDs -----------------------------------------------------------------------------------------
async def test_uids_ascend_and_are_never_reused(store: Store) -> None:
    alice = await user(store, "alice@a.test")
    inbox = await mailbox(store, alice)
    first = await store.append(alice.id, "INBOX", [item()])
    second = await store.append(alice.id, "INBOX", [item()])
    assert first.mailbox_id == second.mailbox_id == inbox.id
    assert first.uidvalidity == second.uidvalidity == inbox.uidvalidity
    assert first.uids[0] < second.uids[0]

    # Expunge the highest UID: the next message must not get it again.
    await delete(store, alice, inbox, list(second.uids))
    assert await store.expunge(alice.id, inbox.id, None) == list(second.uids)
    third = await store.append(alice.id, "INBOX", [item()])
    assert third.uids[0] > second.uids[0]
    await store.accept(request(local=(alice,)))
    uids = [m.uid for m in await store.messages(alice.id, inbox.id)]
    assert uids[:2] == [first.uids[0], third.uids[0]]
    assert len(uids) == 3 and uids[2] > third.uids[0]  # delivery numbers from the same counter
    assert (await status(store, alice, inbox)).uidnext > uids[-1]


async def test_multiappend_gives_consecutive_uids_and_keeps_everything(store: Store) -> None:
    alice = await user(store, "alice@a.test")
    await store.append(alice.id, "Drafts", [item()])
    items = [item("one", "\\Seen"), item("two"), item("three", "\\Flagged", "$Label")]
    result = await store.append(alice.id, "Drafts", items)
    assert len(result.uids) == 3
    assert list(result.uids) == list(range(result.uids[0], result.uids[0] + 3))
    drafts = await mailbox(store, alice, "Drafts")
    assert drafts.uidnext == result.uids[-1] + 1 and drafts.messages == 4

    rows = {m.uid: m for m in await store.messages(alice.id, drafts.id)}
    stored = await store.bodies(alice.id, drafts.id, list(result.uids))
    for uid, sent in zip(result.uids, items, strict=True):
        assert rows[uid].flags == sent.flags
        assert rows[uid].internal_date == sent.internal_date
        assert rows[uid].size == len(sent.data)
        assert stored[uid] == sent.data
    # One transaction, one MODSEQ for the whole batch.
    assert len({rows[uid].modseq for uid in result.uids}) == 1
    assert await used(store, alice) == sum(m.size for m in rows.values())


async def test_empty_append_changes_nothing(store: Store) -> None:
    alice = await user(store, "alice@a.test")
    inbox = await mailbox(store, alice)
    before = await status(store, alice, inbox)
    result = await store.append(alice.id, "INBOX", [])
    assert result.uids == () and result.mailbox_id == inbox.id
    assert await status(store, alice, inbox) == before


async def test_append_to_a_missing_mailbox_is_not_found(store: Store) -> None:
    alice = await user(store, "alice@a.test")
    with pytest.raises(NotFound):
        await store.append(alice.id, "Nope", [item()])
    assert await used(store, alice) == 0


# -- MODSEQ and changes ---------------------------------------------------------------------------
async def test_highestmodseq_strictly_increases_with_every_change(store: Store) -> None:
    alice = await user(store, "alice@a.test")
    inbox = await mailbox(store, alice)
    archive = await mailbox(store, alice, "Archive")
    trash = await mailbox(store, alice, "Trash")

    async def bumped(*boxes: Mailbox) -> None:
        for box in boxes:
            now = await highest(store, alice, box)
            assert now > seen[box.id], box.name
            seen[box.id] = now

    seen = {b.id: await highest(store, alice, b) for b in (inbox, archive, trash)}
    uids = list((await store.append(alice.id, "INBOX", [item(), item(), item()])).uids)
    await bumped(inbox)
    await store.accept(request(local=(alice,)))
    await bumped(inbox)
    await store.set_flags(alice.id, inbox.id, uids[:1], FlagMode.ADD, frozenset({"\\Seen"}))
    await bumped(inbox)
    await store.set_flags(alice.id, inbox.id, uids[:1], FlagMode.REMOVE, frozenset({"\\Seen"}))
    await bumped(inbox)
    await store.set_flags(alice.id, inbox.id, uids[:1], FlagMode.REPLACE, frozenset({"$X"}))
    await bumped(inbox)
    await delete(store, alice, inbox, uids[:1])
    await bumped(inbox)
    await store.expunge(alice.id, inbox.id, None)
    await bumped(inbox)
    before = await highest(store, alice, inbox)
    await store.copy(alice.id, inbox.id, uids[1:2], "Archive", move=False)
    await bumped(archive)
    assert await highest(store, alice, inbox) == before  # a copy leaves its source alone
    await store.copy(alice.id, inbox.id, uids[2:3], "Trash", move=True)
    await bumped(inbox, trash)


async def test_changes_since_every_modseq(store: Store) -> None:
    alice = await user(store, "alice@a.test")
    inbox = await mailbox(store, alice)
    # (modseq, UIDs expunged so far with the modseq of their expunge)
    points: list[int] = [await highest(store, alice, inbox)]
    expunged_at: dict[int, int] = {}

    async def mark() -> None:
        points.append(await highest(store, alice, inbox))

    uids = list((await store.append(alice.id, "INBOX", [item() for _ in range(6)])).uids)
    await mark()
    await store.accept(request(local=(alice,)))
    await mark()
    await store.set_flags(alice.id, inbox.id, uids[1:3], FlagMode.ADD, frozenset({"\\Seen"}))
    await mark()
    await delete(store, alice, inbox, [uids[0], uids[4]])
    await mark()
    for uid in await store.expunge(alice.id, inbox.id, None):
        expunged_at[uid] = await highest(store, alice, inbox)
    await mark()
    await store.set_flags(alice.id, inbox.id, uids[2:3], FlagMode.ADD, frozenset({"$A"}))
    await mark()
    moved = await store.copy(alice.id, inbox.id, [uids[3]], "Archive", move=True)
    expunged_at[uids[3]] = await highest(store, alice, inbox)
    assert [src for src, _ in moved.pairs] == [uids[3]]
    await mark()
    assert points == sorted(set(points))  # every step above was a change

    rows = await store.messages(alice.id, inbox.id)
    for since in [0, *points]:
        changes = await store.changes(alice.id, inbox.id, since)
        assert changes is not None
        assert changes.mailbox.id == inbox.id
        assert changes.mailbox.highestmodseq == points[-1]
        assert changes.changed == [r for r in rows if r.modseq > since], since
        assert changes.expunged == sorted(u for u, m in expunged_at.items() if m > since), since

    latest = await store.changes(alice.id, inbox.id, points[-1])
    assert latest is not None and latest.changed == [] and latest.expunged == []


async def test_changes_of_a_missing_mailbox_is_none(store: Store) -> None:
    alice = await user(store, "alice@a.test")
    assert await store.changes(alice.id, 10**9, 0) is None
    assert await store.mailbox_status(alice.id, 10**9) is None
    assert await store.messages(alice.id, 10**9) == []


# -- flags ----------------------------------------------------------------------------------------
async def test_set_flags_add_remove_replace(store: Store) -> None:
    alice = await user(store, "alice@a.test")
    inbox = await mailbox(store, alice)
    a, b = (await store.append(alice.id, "INBOX", [item("a", "\\Seen"), item("b")])).uids

    changed, refused = await store.set_flags(
        alice.id, inbox.id, [a, b], FlagMode.ADD, frozenset({"\\Flagged"})
    )
    top = await highest(store, alice, inbox)
    assert refused == []
    assert [(r.uid, r.flags, r.modseq) for r in changed] == [
        (a, frozenset({"\\Seen", "\\Flagged"}), top),
        (b, frozenset({"\\Flagged"}), top),
    ]

    changed, _ = await store.set_flags(
        alice.id, inbox.id, [a, b], FlagMode.REMOVE, frozenset({"\\Seen"})
    )
    assert [(r.uid, r.flags) for r in changed] == [(a, frozenset({"\\Flagged"}))]

    changed, _ = await store.set_flags(
        alice.id, inbox.id, [b], FlagMode.REPLACE, frozenset({"\\Answered", "$Work"})
    )
    assert [(r.uid, r.flags) for r in changed] == [(b, frozenset({"\\Answered", "$Work"}))]

    changed, _ = await store.set_flags(alice.id, inbox.id, [a], FlagMode.REPLACE, frozenset())
    assert [(r.uid, r.flags) for r in changed] == [(a, frozenset())]

    rows = {r.uid: r for r in await store.messages(alice.id, inbox.id)}
    assert rows[a].flags == frozenset() and rows[b].flags == frozenset({"\\Answered", "$Work"})
    assert await store.list_messages(alice.id, "INBOX") != []  # the old view agrees
    assert {m.uid: m.flags for m in await store.list_messages(alice.id, "INBOX")} == {
        a: frozenset(),
        b: frozenset({"\\Answered", "$Work"}),
    }


async def test_set_flags_without_effect_does_not_bump_modseq(store: Store) -> None:
    alice = await user(store, "alice@a.test")
    inbox = await mailbox(store, alice)
    (uid,) = (await store.append(alice.id, "INBOX", [item("a", "\\Seen")])).uids
    before = await store.messages(alice.id, inbox.id)
    top = await highest(store, alice, inbox)
    for mode, flags in [
        (FlagMode.ADD, {"\\Seen"}),
        (FlagMode.REMOVE, {"\\Flagged"}),
        (FlagMode.REPLACE, {"\\Seen"}),
    ]:
        assert await store.set_flags(alice.id, inbox.id, [uid], mode, frozenset(flags)) == ([], [])
    # UIDs that do not exist are no change either.
    missing = [uid + 1, uid + 100]
    assert await store.set_flags(
        alice.id, inbox.id, missing, FlagMode.ADD, frozenset({"\\Seen"})
    ) == ([], [])
    assert await highest(store, alice, inbox) == top
    assert await store.messages(alice.id, inbox.id) == before


async def test_unchangedsince_refuses_newer_messages(store: Store) -> None:
    alice = await user(store, "alice@a.test")
    inbox = await mailbox(store, alice)
    a, b, c = (await store.append(alice.id, "INBOX", [item(), item(), item()])).uids
    snapshot = await highest(store, alice, inbox)
    # Another session changes b after our snapshot.
    await store.set_flags(alice.id, inbox.id, [b], FlagMode.ADD, frozenset({"\\Seen"}))
    changed_b = (await store.messages(alice.id, inbox.id))[1]

    changed, refused = await store.set_flags(
        alice.id, inbox.id, [a, b, c], FlagMode.ADD, frozenset({"\\Flagged"}), snapshot
    )
    assert refused == [b]
    assert [r.uid for r in changed] == [a, c]
    assert all(r.flags == frozenset({"\\Flagged"}) for r in changed)
    rows = {r.uid: r for r in await store.messages(alice.id, inbox.id)}
    assert rows[b] == changed_b  # untouched: same flags, same MODSEQ

    # UNCHANGEDSINCE equal to a message's MODSEQ is allowed (RFC 7162 3.1.3: only "greater").
    changed, refused = await store.set_flags(
        alice.id, inbox.id, [b], FlagMode.ADD, frozenset({"$Ok"}), rows[b].modseq
    )
    assert refused == [] and [r.uid for r in changed] == [b]

    # Everything refused: nothing changes, not even HIGHESTMODSEQ.
    top = await highest(store, alice, inbox)
    changed, refused = await store.set_flags(
        alice.id, inbox.id, [a, b, c], FlagMode.REPLACE, frozenset(), snapshot
    )
    assert changed == [] and refused == [a, b, c]
    assert await highest(store, alice, inbox) == top


# -- expunge --------------------------------------------------------------------------------------
async def test_expunge_all_removes_only_deleted(store: Store) -> None:
    alice = await user(store, "alice@a.test")
    inbox = await mailbox(store, alice)
    uids = list((await store.append(alice.id, "INBOX", [item() for _ in range(5)])).uids)
    await delete(store, alice, inbox, [uids[1], uids[3]])
    await store.set_flags(alice.id, inbox.id, [uids[0]], FlagMode.ADD, frozenset({"\\Seen"}))
    assert await store.expunge(alice.id, inbox.id, None) == [uids[1], uids[3]]
    assert [r.uid for r in await store.messages(alice.id, inbox.id)] == [uids[0], uids[2], uids[4]]
    top = await highest(store, alice, inbox)
    assert await store.expunge(alice.id, inbox.id, None) == []
    assert await highest(store, alice, inbox) == top  # nothing expunged, nothing changed


async def test_uid_expunge_removes_only_deleted_among_the_uids(store: Store) -> None:
    alice = await user(store, "alice@a.test")
    inbox = await mailbox(store, alice)
    uids = list((await store.append(alice.id, "INBOX", [item() for _ in range(5)])).uids)
    await delete(store, alice, inbox, uids[:3])
    # uids[3] is in the set but not \Deleted; uids[0] is \Deleted but not in the set.
    assert await store.expunge(alice.id, inbox.id, [uids[1], uids[2], uids[3], 999]) == uids[1:3]
    assert [r.uid for r in await store.messages(alice.id, inbox.id)] == [uids[0], *uids[3:]]
    assert await store.expunge(alice.id, inbox.id, []) == []
    assert [r.uid for r in await store.messages(alice.id, inbox.id)] == [uids[0], *uids[3:]]


async def test_expunge_frees_quota_and_unreferenced_bodies(store: Store, engine: Engine) -> None:
    alice = await user(store, "alice@a.test")
    inbox = await mailbox(store, alice)
    blobs = engine.blob_count()
    uids = list((await store.append(alice.id, "INBOX", [item(), item()])).uids)
    assert engine.blob_count() == blobs + 2
    full = await used(store, alice)
    rows = await store.messages(alice.id, inbox.id)
    assert full == sum(r.size for r in rows) > 0

    # A copy shares the body: expunging the original must keep it for the copy.
    await store.copy(alice.id, inbox.id, [uids[0]], "Archive", move=False)
    archive = await mailbox(store, alice, "Archive")
    (copied,) = await store.messages(alice.id, archive.id)
    await delete(store, alice, inbox, uids)
    await store.expunge(alice.id, inbox.id, None)
    assert await used(store, alice) == full + rows[0].size - full  # only the copy is left
    assert engine.blob_count() == blobs + 1
    assert (await store.bodies(alice.id, archive.id, [copied.uid]))[copied.uid].startswith(
        b"Received:"
    )

    await delete(store, alice, archive, [copied.uid])
    await store.expunge(alice.id, archive.id, [copied.uid])
    assert await used(store, alice) == 0
    assert engine.blob_count() == blobs


async def test_expunge_keeps_a_body_still_queued(store: Store, engine: Engine) -> None:
    alice = await user(store, "alice@a.test")
    inbox = await mailbox(store, alice)
    blobs = engine.blob_count()
    # Delivered to alice and queued for a remote recipient: one body, shared.
    accepted = await store.accept(request(local=(alice,), remote=("carol@remote.test",)))
    (row,) = await store.messages(alice.id, inbox.id)
    await delete(store, alice, inbox, [row.uid])
    await store.expunge(alice.id, inbox.id, None)
    assert engine.blob_count() == blobs + 1
    assert await store.queue_body(accepted.queue_id) is not None


# -- copy and move --------------------------------------------------------------------------------
async def test_copy_keeps_flags_date_and_bytes_and_pairs_in_source_order(store: Store) -> None:
    alice = await user(store, "alice@a.test")
    inbox = await mailbox(store, alice)
    await store.accept(request(local=(alice,)))  # carries a per-recipient trace prefix
    await store.append(alice.id, "INBOX", [item("x", "\\Seen"), item("y", "\\Flagged", "$L")])
    await store.append(alice.id, "Archive", [item()])  # the target's UIDs do not start at 1
    sources = await store.messages(alice.id, inbox.id)
    archive = await mailbox(store, alice, "Archive")
    before = await used(store, alice)

    result = await store.copy(
        alice.id, inbox.id, [r.uid for r in reversed(sources)], "Archive", move=False
    )
    assert result.mailbox_id == archive.id and result.uidvalidity == archive.uidvalidity
    assert [src for src, _ in result.pairs] == [r.uid for r in sources]
    new = [dst for _, dst in result.pairs]
    assert new == list(range(archive.uidnext, archive.uidnext + 3))

    targets = {r.uid: r for r in await store.messages(alice.id, archive.id)}
    old_bytes = await store.bodies(alice.id, inbox.id, [r.uid for r in sources])
    new_bytes = await store.bodies(alice.id, archive.id, new)
    for src, (_, dst) in zip(sources, result.pairs, strict=True):
        assert targets[dst].flags == src.flags
        assert targets[dst].internal_date == src.internal_date
        assert targets[dst].size == src.size
        assert new_bytes[dst] == old_bytes[src.uid]
    assert await store.message_bytes(alice.id, "Archive", new[0]) == old_bytes[sources[0].uid]
    assert await store.messages(alice.id, inbox.id) == sources  # the sources are untouched
    assert await used(store, alice) == before + sum(r.size for r in sources)

    # UIDs that are not there are skipped, not invented.
    result = await store.copy(alice.id, inbox.id, [sources[0].uid, 999], "Trash", move=False)
    assert [src for src, _ in result.pairs] == [sources[0].uid]


async def test_move_removes_sources_and_keeps_usage(store: Store, engine: Engine) -> None:
    alice = await user(store, "alice@a.test")
    inbox = await mailbox(store, alice)
    uids = list((await store.append(alice.id, "INBOX", [item("a", "\\Seen"), item(), item()])).uids)
    sources = await store.messages(alice.id, inbox.id)
    data = await store.bodies(alice.id, inbox.id, uids)
    before, blobs = await used(store, alice), engine.blob_count()
    since = await highest(store, alice, inbox)

    result = await store.copy(alice.id, inbox.id, [uids[2], uids[0]], "Trash", move=True)
    assert [src for src, _ in result.pairs] == [uids[0], uids[2]]
    assert [r.uid for r in await store.messages(alice.id, inbox.id)] == [uids[1]]
    trash = await mailbox(store, alice, "Trash")
    moved = {r.uid: r for r in await store.messages(alice.id, trash.id)}
    assert sorted(moved) == [dst for _, dst in result.pairs]
    moved_bytes = await store.bodies(alice.id, trash.id, list(moved))
    for src, dst in result.pairs:
        original = next(r for r in sources if r.uid == src)
        assert moved[dst].flags == original.flags
        assert moved[dst].internal_date == original.internal_date
        assert moved_bytes[dst] == data[src]

    changes = await store.changes(alice.id, inbox.id, since)
    assert changes is not None
    assert changes.expunged == [uids[0], uids[2]] and changes.changed == []
    assert await used(store, alice) == before
    assert engine.blob_count() == blobs


async def test_move_works_at_full_quota(store: Store) -> None:
    data = item()
    alice = await with_quota(store, "alice@a.test", len(data.data))
    inbox = await mailbox(store, alice)
    (uid,) = (await store.append(alice.id, "INBOX", [data])).uids
    result = await store.copy(alice.id, inbox.id, [uid], "Archive", move=True)
    assert len(result.pairs) == 1
    assert await used(store, alice) == len(data.data)


async def test_copy_to_a_missing_mailbox_is_not_found(store: Store) -> None:
    alice = await user(store, "alice@a.test")
    inbox = await mailbox(store, alice)
    (uid,) = (await store.append(alice.id, "INBOX", [item()])).uids
    before = await store.messages(alice.id, inbox.id)
    for move in (False, True):
        with pytest.raises(NotFound):
            await store.copy(alice.id, inbox.id, [uid], "Nope", move=move)
    assert await store.messages(alice.id, inbox.id) == before


# -- quota ----------------------------------------------------------------------------------------
async def test_append_over_quota_changes_nothing(store: Store, engine: Engine) -> None:
    first = item()
    alice = await with_quota(store, "alice@a.test", len(first.data) * 3 + 10)
    inbox = await mailbox(store, alice)
    await store.append(alice.id, "INBOX", [first])
    before = (await status(store, alice, inbox), await used(store, alice), engine.blob_count())

    # Each item fits, the three together do not: MULTIAPPEND stores none of them.
    with pytest.raises(OverQuota):
        await store.append(alice.id, "INBOX", [item(), item(), item()])
    with pytest.raises(OverQuota):
        await store.append(alice.id, "INBOX", [AppendItem(data=b"x" * 10**4, internal_date=DATE)])
    after = (await status(store, alice, inbox), await used(store, alice), engine.blob_count())
    assert after == before
    assert len(await store.messages(alice.id, inbox.id)) == 1

    # What fits still goes in, with the next UID.
    result = await store.append(alice.id, "INBOX", [item(), item()])
    assert result.uids[0] == before[0].uidnext


async def test_copy_over_quota_changes_nothing(store: Store, engine: Engine) -> None:
    data = [item(), item()]
    alice = await with_quota(store, "alice@a.test", sum(len(d.data) for d in data) + 10)
    inbox = await mailbox(store, alice)
    uids = list((await store.append(alice.id, "INBOX", data)).uids)
    archive = await mailbox(store, alice, "Archive")
    before = (
        await status(store, alice, inbox),
        await status(store, alice, archive),
        await used(store, alice),
        engine.blob_count(),
    )
    with pytest.raises(OverQuota):
        await store.copy(alice.id, inbox.id, uids, "Archive", move=False)
    after = (
        await status(store, alice, inbox),
        await status(store, alice, archive),
        await used(store, alice),
        engine.blob_count(),
    )
    assert after == before
    assert await store.messages(alice.id, archive.id) == []


# -- the change hub -------------------------------------------------------------------------------
async def _woken(event: asyncio.Event) -> bool:
    # The store publishes after its commit, before the coroutine returns; allow one loop turn.
    await asyncio.sleep(0)
    return event.is_set()


async def test_hub_wakes_only_the_changed_mailbox(store: Store) -> None:
    alice = await user(store, "alice@a.test")
    inbox = await mailbox(store, alice)
    event = store.hub.subscribe(inbox.id)
    try:
        await store.append(alice.id, "Sent", [item()])
        assert not await _woken(event)
        await store.append(alice.id, "INBOX", [item()])
        assert await _woken(event)
    finally:
        store.hub.unsubscribe(inbox.id, event)


async def test_hub_is_told_of_every_kind_of_change(store: Store) -> None:
    alice = await user(store, "alice@a.test")
    bob = await user(store, "bob@a.test")
    inbox, archive = await mailbox(store, alice), await mailbox(store, alice, "Archive")
    bob_inbox = await mailbox(store, bob)
    uids = list((await store.append(alice.id, "INBOX", [item(), item(), item()])).uids)

    async def wakes(box: Mailbox, change: Awaitable[object]) -> bool:
        event = store.hub.subscribe(box.id)
        try:
            await change
            return await _woken(event)
        finally:
            store.hub.unsubscribe(box.id, event)

    # accept() into a local account publishes that account's INBOX, and only it.
    assert await wakes(bob_inbox, store.accept(request(local=(bob,))))
    assert not await wakes(inbox, store.accept(request(local=(bob,))))
    flag = frozenset({"\\Deleted"})
    assert await wakes(inbox, store.set_flags(alice.id, inbox.id, uids[:2], FlagMode.ADD, flag))
    assert await wakes(inbox, store.expunge(alice.id, inbox.id, None))
    assert await wakes(archive, store.copy(alice.id, inbox.id, uids[2:], "Archive", move=False))
    assert await wakes(inbox, store.copy(alice.id, inbox.id, uids[2:], "Trash", move=True))


# -- isolation between accounts -------------------------------------------------------------------
async def test_another_accounts_mailbox_id_is_out_of_reach(store: Store, engine: Engine) -> None:
    alice = await user(store, "alice@a.test")
    mallory = await user(store, "mallory@a.test")
    inbox = await mailbox(store, alice)
    uids = list((await store.append(alice.id, "INBOX", [item(), item()])).uids)
    await delete(store, alice, inbox, uids[:1])
    before = (
        await store.messages(alice.id, inbox.id),
        await status(store, alice, inbox),
        await used(store, alice),
        engine.blob_count(),
    )

    assert await store.messages(mallory.id, inbox.id) == []
    assert await store.changes(mallory.id, inbox.id, 0) is None
    assert await store.mailbox_status(mallory.id, inbox.id) is None
    assert await store.bodies(mallory.id, inbox.id, uids) == {}
    assert await store.message_bytes(mallory.id, "INBOX", uids[0]) is None

    async def refused(result: Awaitable[object]) -> None:
        try:
            outcome = await result
        except NotFound:
            return
        assert outcome in ([], ([], [])) or getattr(outcome, "pairs", None) == []

    flags = frozenset({"\\Seen"})
    await refused(store.set_flags(mallory.id, inbox.id, uids, FlagMode.ADD, flags))
    await refused(store.set_flags(mallory.id, inbox.id, uids, FlagMode.REPLACE, frozenset()))
    await refused(store.expunge(mallory.id, inbox.id, None))
    await refused(store.expunge(mallory.id, inbox.id, uids))
    await refused(store.copy(mallory.id, inbox.id, uids, "INBOX", move=False))
    await refused(store.copy(mallory.id, inbox.id, uids, "INBOX", move=True))
    assert await store.messages(mallory.id, (await mailbox(store, mallory)).id) == []
    assert await used(store, mallory) == 0

    after = (
        await store.messages(alice.id, inbox.id),
        await status(store, alice, inbox),
        await used(store, alice),
        engine.blob_count(),
    )
    assert after == before


async def test_append_of_messages_read_back_from_the_spool(store: Store) -> None:
    alice = await user(store, "alice@a.test")
    spooled = bytearray(b"Subject: spooled\r\n\r\n" + bytes(range(256)) * 4000)
    items = [AppendItem(data=spooled, internal_date=DATE), item("small")]
    result = await store.append(alice.id, "INBOX", items)
    assert len(result.uids) == 2
    stored = await store.message_bytes(alice.id, "INBOX", result.uids[0])
    assert stored == bytes(spooled)
    account = await store.get_account_by_id(alice.id)
    assert account is not None and account.used_bytes == len(spooled) + len(items[1].data)
