"""IMAP operations on mailboxes: RENAME, DELETE, (UN)SUBSCRIBE, STATUS (RFC 9051 6.3)."""

from __future__ import annotations

import pytest

from mailfort.errors import AlreadyExists, NotFound
from mailfort.store.api import Store
from mailfort.store.records import DEFAULT_MAILBOXES, FlagMode
from tests.store.conftest import Engine
from tests.store.helpers import request, user
from tests.store.test_imap_ops import delete, highest, item, mailbox, status, used


# -- RENAME ---------------------------------------------------------------------------------------
async def test_rename_keeps_uidvalidity_messages_and_moves_children(store: Store) -> None:
    alice = await user(store, "alice@a.test")
    for name in ("a", "a/x", "a/x/y", "ab", "b/z"):
        await store.create_mailbox(alice.id, name)
    uids = (await store.append(alice.id, "a", [item(), item("s", "\\Seen")])).uids
    await store.append(alice.id, "a/x/y", [item()])
    old = {name: await mailbox(store, alice, name) for name in ("a", "a/x", "a/x/y", "ab")}
    old_rows = await store.messages(alice.id, old["a"].id)

    await store.rename_mailbox(alice.id, "a", "b", "/")
    names = {b.name for b in await store.list_mailboxes(alice.id)}
    assert {"b", "b/x", "b/x/y", "ab", "b/z"} <= names
    assert not names & {"a", "a/x", "a/x/y"}
    for before, after in [("a", "b"), ("a/x", "b/x"), ("a/x/y", "b/x/y"), ("ab", "ab")]:
        now = await mailbox(store, alice, after)
        # The same mailbox under a new name: the client's cached UIDs stay valid.
        assert now.id == old[before].id
        assert now.uidvalidity == old[before].uidvalidity
        assert now.uidnext == old[before].uidnext
    assert await store.messages(alice.id, old["a"].id) == old_rows
    assert [m.uid for m in await store.list_messages(alice.id, "b")] == list(uids)
    assert await store.list_messages(alice.id, "a") == []
    with pytest.raises(NotFound):
        await store.append(alice.id, "a", [item()])


async def test_rename_errors(store: Store) -> None:
    alice = await user(store, "alice@a.test")
    for name in ("a", "a/x", "b", "c/x"):
        await store.create_mailbox(alice.id, name)
    with pytest.raises(AlreadyExists):
        await store.rename_mailbox(alice.id, "a", "b", "/")
    with pytest.raises(AlreadyExists):
        await store.rename_mailbox(alice.id, "a", "Sent", "/")
    with pytest.raises(NotFound):
        await store.rename_mailbox(alice.id, "nope", "new", "/")
    # A child's new name is taken: the whole rename fails, nothing moved.
    with pytest.raises(AlreadyExists):
        await store.rename_mailbox(alice.id, "a", "c", "/")
    names = {b.name for b in await store.list_mailboxes(alice.id)}
    assert {"a", "a/x", "b", "c/x"} <= names and "c" not in names
    # Another account's names are not in the way, nor renamed.
    bob = await user(store, "bob@a.test")
    await store.create_mailbox(bob.id, "a")
    await store.rename_mailbox(bob.id, "a", "b", "/")
    assert await store.get_mailbox(alice.id, "a") is not None
    with pytest.raises(NotFound):
        await store.rename_mailbox(bob.id, "a/x", "y", "/")


async def test_rename_inbox_moves_its_messages_and_leaves_it_empty(store: Store) -> None:
    alice = await user(store, "alice@a.test")
    await store.create_mailbox(alice.id, "INBOX/child")
    await store.accept(request(local=(alice,)))
    await store.append(alice.id, "INBOX", [item("x", "\\Seen")])
    inbox = await mailbox(store, alice)
    rows = await store.messages(alice.id, inbox.id)
    data = await store.bodies(alice.id, inbox.id, [r.uid for r in rows])
    since, before = await highest(store, alice, inbox), await used(store, alice)

    await store.rename_mailbox(alice.id, "INBOX", "Old", "/")
    after = await mailbox(store, alice)
    assert after.id == inbox.id and after.uidvalidity == inbox.uidvalidity
    assert await store.messages(alice.id, inbox.id) == []
    assert (await status(store, alice, inbox)).uidnext == inbox.uidnext  # UIDs are not reused
    changes = await store.changes(alice.id, inbox.id, since)
    assert changes is not None
    assert changes.expunged == [r.uid for r in rows] and changes.changed == []
    # INBOX's children are not renamed with it (RFC 9051 6.3.6).
    assert await store.get_mailbox(alice.id, "INBOX/child") is not None
    assert await store.get_mailbox(alice.id, "Old/child") is None

    old = await mailbox(store, alice, "Old")
    assert old.id != inbox.id and old.uidvalidity != inbox.uidvalidity
    moved = await store.messages(alice.id, old.id)
    assert [(m.flags, m.internal_date, m.size) for m in moved] == [
        (r.flags, r.internal_date, r.size) for r in rows
    ]
    moved_data = await store.bodies(alice.id, old.id, [m.uid for m in moved])
    assert [moved_data[m.uid] for m in moved] == [data[r.uid] for r in rows]
    assert await used(store, alice) == before

    # INBOX keeps working; new mail gets UIDs after the old ones.
    await store.accept(request(local=(alice,)))
    (new,) = await store.messages(alice.id, inbox.id)
    assert new.uid > rows[-1].uid
    # Renaming INBOX again, even to one of its own children's level, works the same way.
    await store.rename_mailbox(alice.id, "INBOX", "INBOX/old", "/")
    assert await store.messages(alice.id, inbox.id) == []
    assert len(await store.list_messages(alice.id, "INBOX/old")) == 1


async def test_rename_empty_inbox(store: Store) -> None:
    alice = await user(store, "alice@a.test")
    inbox = await mailbox(store, alice)
    await store.rename_mailbox(alice.id, "INBOX", "Empty", "/")
    assert await mailbox(store, alice) == inbox
    assert (await mailbox(store, alice, "Empty")).messages == 0
    with pytest.raises(AlreadyExists):
        await store.rename_mailbox(alice.id, "INBOX", "Empty", "/")


# -- DELETE ---------------------------------------------------------------------------------------
async def test_delete_frees_quota_and_bodies(store: Store, engine: Engine) -> None:
    alice = await user(store, "alice@a.test")
    await store.create_mailbox(alice.id, "Lists")
    blobs, base = engine.blob_count(), await used(store, alice)
    await store.append(alice.id, "INBOX", [item()])
    kept = await used(store, alice)
    await store.append(alice.id, "Lists", [item(), item()])
    inbox = await mailbox(store, alice)
    (uid,) = [r.uid for r in await store.messages(alice.id, inbox.id)]
    # One body shared with a copy that stays.
    await store.copy(alice.id, inbox.id, [uid], "Lists", move=False)
    assert engine.blob_count() == blobs + 3

    await store.delete_mailbox(alice.id, "Lists")
    assert await store.get_mailbox(alice.id, "Lists") is None
    assert await used(store, alice) == kept > base
    assert engine.blob_count() == blobs + 1
    assert (await store.bodies(alice.id, inbox.id, [uid]))[uid].startswith(b"Received:")
    with pytest.raises(NotFound):
        await store.delete_mailbox(alice.id, "Lists")
    with pytest.raises(NotFound):
        await store.append(alice.id, "Lists", [item()])


async def test_recreated_mailbox_is_a_new_mailbox(store: Store) -> None:
    alice = await user(store, "alice@a.test")
    await store.create_mailbox(alice.id, "Lists")
    await store.append(alice.id, "Lists", [item(), item()])
    old = await mailbox(store, alice, "Lists")
    await store.delete_mailbox(alice.id, "Lists")
    assert await store.changes(alice.id, old.id, 0) is None
    assert await store.mailbox_status(alice.id, old.id) is None

    new = await store.create_mailbox(alice.id, "Lists")
    assert new.uidvalidity != old.uidvalidity
    # A session still holding the old id must not find the new mailbox behind it.
    assert new.id != old.id
    assert await store.changes(alice.id, old.id, 0) is None
    changes = await store.changes(alice.id, new.id, 0)
    assert changes is not None and changes.changed == [] and changes.expunged == []


async def test_another_accounts_mailbox_cannot_be_renamed_or_deleted(store: Store) -> None:
    alice = await user(store, "alice@a.test")
    bob = await user(store, "bob@a.test")
    await store.create_mailbox(alice.id, "Private")
    await store.append(alice.id, "Private", [item()])
    with pytest.raises(NotFound):
        await store.delete_mailbox(bob.id, "Private")
    with pytest.raises(NotFound):
        await store.rename_mailbox(bob.id, "Private", "Mine", "/")
    await store.delete_mailbox(bob.id, "Archive")  # bob's own, alice's stays
    assert await store.get_mailbox(alice.id, "Archive") is not None
    assert (await mailbox(store, alice, "Private")).messages == 1
    assert await store.get_mailbox(bob.id, "Mine") is None


async def test_hub_wakes_sessions_on_rename_of_inbox_and_delete(store: Store) -> None:
    alice = await user(store, "alice@a.test")
    await store.create_mailbox(alice.id, "Lists")
    await store.append(alice.id, "INBOX", [item()])
    inbox, lists = await mailbox(store, alice), await mailbox(store, alice, "Lists")
    events = {box.id: store.hub.subscribe(box.id) for box in (inbox, lists)}
    try:
        # INBOX loses its messages: a session that selected it must send EXPUNGEs.
        await store.rename_mailbox(alice.id, "INBOX", "Old", "/")
        assert events[inbox.id].is_set() and not events[lists.id].is_set()
        # A selected mailbox that is deleted: its sessions must learn it is gone.
        await store.delete_mailbox(alice.id, "Lists")
        assert events[lists.id].is_set()
    finally:
        for mailbox_id, event in events.items():
            store.hub.unsubscribe(mailbox_id, event)


# -- SUBSCRIBE ------------------------------------------------------------------------------------
async def test_subscriptions(store: Store) -> None:
    alice = await user(store, "alice@a.test")
    bob = await user(store, "bob@a.test")
    defaults = {name for name, _ in DEFAULT_MAILBOXES}
    assert await store.subscriptions(alice.id) == defaults
    assert all(b.subscribed for b in await store.list_mailboxes(alice.id))

    # A name that does not exist may be subscribed (RFC 9051 6.3.7) ...
    await store.subscribe(alice.id, "Later", True)
    await store.subscribe(alice.id, "Later", True)  # twice is once
    assert await store.subscriptions(alice.id) == defaults | {"Later"}
    created = await store.create_mailbox(alice.id, "Later")
    assert created.subscribed

    # ... unsubscribed ...
    await store.subscribe(alice.id, "Junk", False)
    await store.subscribe(alice.id, "Never", False)  # not subscribed: nothing to do
    assert await store.subscriptions(alice.id) == defaults - {"Junk"} | {"Later"}
    junk = await mailbox(store, alice, "Junk")
    assert not junk.subscribed

    # ... and a subscription outlives DELETE (RFC 9051 6.3.9).
    await store.delete_mailbox(alice.id, "Later")
    assert "Later" in await store.subscriptions(alice.id)

    # Each account has its own.
    assert await store.subscriptions(bob.id) == defaults


# -- STATUS ---------------------------------------------------------------------------------------
async def test_mailbox_status_counts(store: Store) -> None:
    alice = await user(store, "alice@a.test")
    inbox = await mailbox(store, alice)
    empty = await status(store, alice, inbox)
    assert (empty.messages, empty.unseen, empty.deleted, empty.size) == (0, 0, 0, 0)
    assert (empty.uidnext, empty.uidvalidity) == (inbox.uidnext, inbox.uidvalidity)

    await store.accept(request(local=(alice,)))
    items = [
        item("a", "\\Seen"),
        item("b", "\\Seen", "\\Deleted"),
        item("c", "\\Deleted"),
        item("d", "\\Flagged"),
        item("e", "$Seen", "\\Seenish"),  # look-alikes are not \Seen
    ]
    uids = (await store.append(alice.id, "INBOX", items)).uids
    rows = await store.messages(alice.id, inbox.id)
    now = await status(store, alice, inbox)
    assert now.messages == 6
    assert now.unseen == 4  # the accepted one, c, d, e
    assert now.deleted == 2
    assert now.size == sum(r.size for r in rows) == await used(store, alice)
    assert now.uidnext == uids[-1] + 1
    assert now.highestmodseq == max(r.modseq for r in rows)
    assert (await mailbox(store, alice)).messages == 6

    await delete(store, alice, inbox, [uids[0]])
    await store.set_flags(alice.id, inbox.id, [uids[3]], FlagMode.ADD, frozenset({"\\Seen"}))
    await store.expunge(alice.id, inbox.id, None)
    now = await status(store, alice, inbox)
    assert (now.messages, now.unseen, now.deleted) == (3, 2, 0)
    assert now.size == sum(r.size for r in await store.messages(alice.id, inbox.id))
