"""`delete_messages`: what POP3's QUIT commits — exactly the marked UIDs, in one transaction.

RFC 1939 §6: the messages marked deleted are removed in the UPDATE state, all of them or (on
failure) none the client can rely on. The store does it as one transaction: the UIDs become
expunged with one new MODSEQ (IMAP sessions on the same INBOX see an ordinary expunge), the
quota and unreferenced bodies are freed, UIDs are never reused.
"""

from __future__ import annotations

import asyncio
import itertools

import pytest

from mailfort.errors import NotFound
from mailfort.store.api import Store
from mailfort.store.records import Account, AppendItem, FlagMode, Mailbox
from tests.store.conftest import Engine
from tests.store.helpers import body, request, user

_dates = itertools.count()


def item(*flags: str) -> AppendItem:
    return AppendItem(
        data=body(), flags=frozenset(flags), internal_date=1_767_225_600.0 + next(_dates)
    )


async def inbox(store: Store, account: Account) -> Mailbox:
    found = await store.get_mailbox(account.id, "INBOX")
    assert found is not None
    return found


async def used(store: Store, account: Account) -> int:
    found = await store.get_account_by_id(account.id)
    assert found is not None
    return found.used_bytes


async def test_removes_exactly_the_given_uids_whatever_their_flags(store: Store) -> None:
    alice = await user(store, "alice@a.test")
    box = await inbox(store, alice)
    uids = list(
        (await store.append(alice.id, "INBOX", [item(), item("\\Seen"), item(), item()])).uids
    )
    # A \Deleted flag set by IMAP on a message POP3 did not delete does not make it go.
    await store.set_flags(alice.id, box.id, [uids[3]], FlagMode.ADD, frozenset({"\\Deleted"}))
    removed = await store.delete_messages(alice.id, box.id, [uids[1], uids[0]])
    assert removed == [uids[0], uids[1]]
    assert [m.uid for m in await store.messages(alice.id, box.id)] == uids[2:]
    assert await store.bodies(alice.id, box.id, uids[:2]) == {}


async def test_uids_already_gone_are_skipped(store: Store) -> None:
    alice = await user(store, "alice@a.test")
    box = await inbox(store, alice)
    uids = list((await store.append(alice.id, "INBOX", [item(), item()])).uids)
    await store.set_flags(alice.id, box.id, [uids[0]], FlagMode.ADD, frozenset({"\\Deleted"}))
    assert await store.expunge(alice.id, box.id, None) == [uids[0]]  # IMAP got there first
    assert await store.delete_messages(alice.id, box.id, [uids[0], uids[1], 99999]) == [uids[1]]
    assert await store.messages(alice.id, box.id) == []


async def test_one_transaction_one_modseq_seen_as_expunges(store: Store) -> None:
    alice = await user(store, "alice@a.test")
    box = await inbox(store, alice)
    uids = list((await store.append(alice.id, "INBOX", [item(), item(), item()])).uids)
    before = await store.mailbox_status(alice.id, box.id)
    assert before is not None
    await store.delete_messages(alice.id, box.id, uids[:2])
    after = await store.mailbox_status(alice.id, box.id)
    assert after is not None
    assert after.highestmodseq == before.highestmodseq + 1
    assert after.messages == 1
    changes = await store.changes(alice.id, box.id, before.highestmodseq)
    assert changes is not None
    assert changes.expunged == uids[:2] and changes.changed == []


async def test_nothing_to_delete_changes_nothing(store: Store) -> None:
    alice = await user(store, "alice@a.test")
    box = await inbox(store, alice)
    await store.append(alice.id, "INBOX", [item()])
    before = await store.mailbox_status(alice.id, box.id)
    assert await store.delete_messages(alice.id, box.id, []) == []
    assert await store.delete_messages(alice.id, box.id, [4242]) == []
    assert await store.mailbox_status(alice.id, box.id) == before


async def test_frees_quota_and_unreferenced_bodies_only(store: Store, engine: Engine) -> None:
    alice = await user(store, "alice@a.test")
    bob = await user(store, "bob@a.test")
    box = await inbox(store, alice)
    blobs = engine.blob_count()
    # One body shared by alice's and bob's copies, and one queued for a remote recipient.
    await store.accept(request(local=(alice, bob)))
    accepted = await store.accept(request(local=(alice,), remote=("carol@remote.test",)))
    appended = (await store.append(alice.id, "INBOX", [item()])).uids[0]
    assert engine.blob_count() == blobs + 3
    rows = await store.messages(alice.id, box.id)
    assert await used(store, alice) == sum(r.size for r in rows)

    await store.delete_messages(alice.id, box.id, [r.uid for r in rows])
    assert await used(store, alice) == 0
    # The appended body is gone; bob's copy and the queued one keep theirs.
    assert engine.blob_count() == blobs + 2
    assert appended not in await store.bodies(alice.id, box.id, [appended])
    assert await store.queue_body(accepted.queue_id) is not None
    bob_box = await inbox(store, bob)
    (bob_row,) = await store.messages(bob.id, bob_box.id)
    assert (await store.bodies(bob.id, bob_box.id, [bob_row.uid]))[bob_row.uid]


async def test_uids_are_not_reused_after_delete(store: Store) -> None:
    alice = await user(store, "alice@a.test")
    box = await inbox(store, alice)
    uids = list((await store.append(alice.id, "INBOX", [item(), item()])).uids)
    await store.delete_messages(alice.id, box.id, uids)
    again = (await store.append(alice.id, "INBOX", [item()])).uids[0]
    assert again > uids[-1]


async def test_another_accounts_mailbox_is_out_of_reach(store: Store, engine: Engine) -> None:
    alice = await user(store, "alice@a.test")
    mallory = await user(store, "mallory@a.test")
    box = await inbox(store, alice)
    uids = list((await store.append(alice.id, "INBOX", [item(), item()])).uids)
    with pytest.raises(NotFound):
        await store.delete_messages(mallory.id, box.id, uids)
    with pytest.raises(NotFound):
        await store.delete_messages(alice.id, 10**9, uids)
    assert [m.uid for m in await store.messages(alice.id, box.id)] == uids


async def test_wakes_sessions_waiting_on_the_mailbox(store: Store) -> None:
    alice = await user(store, "alice@a.test")
    box = await inbox(store, alice)
    uids = list((await store.append(alice.id, "INBOX", [item()])).uids)
    event = store.hub.subscribe(box.id)
    try:
        await store.delete_messages(alice.id, box.id, uids)
        await asyncio.wait_for(event.wait(), 5)
    finally:
        store.hub.unsubscribe(box.id, event)
