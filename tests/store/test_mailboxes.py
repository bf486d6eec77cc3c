"""Mailbox numbering: UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ (RFC 3501 2.3.1.1, RFC 7162)."""

from __future__ import annotations

import itertools

import pytest

from mailfort.errors import AlreadyExists, NotFound
from mailfort.store.api import Store
from tests.store.conftest import Engine
from tests.store.helpers import request, user


async def test_create_mailbox(store: Store) -> None:
    alice = await user(store, "alice@a.test")
    box = await store.create_mailbox(alice.id, "Lists/python", None)
    assert box.name == "Lists/python" and box.account_id == alice.id
    assert box.uidnext == 1 and box.messages == 0
    assert await store.get_mailbox(alice.id, "Lists/python") == box
    assert await store.get_mailbox(alice.id, "Nope") is None
    assert [b.name for b in await store.list_mailboxes(alice.id)][-1] == "Lists/python"


async def test_duplicate_mailbox_is_already_exists(store: Store) -> None:
    alice = await user(store, "alice@a.test")
    with pytest.raises(AlreadyExists):
        await store.create_mailbox(alice.id, "INBOX")
    with pytest.raises(AlreadyExists):
        await store.create_mailbox(alice.id, "Sent", "\\Sent")


async def test_mailbox_for_a_missing_account_is_not_found(store: Store) -> None:
    alice = await user(store, "alice@a.test")
    with pytest.raises(NotFound):
        await store.create_mailbox(alice.id + 1000, "INBOX")


async def test_uidvalidity_is_distinct_even_for_a_recreated_name(
    store: Store, engine: Engine
) -> None:
    alice = await user(store, "alice@a.test")
    bob = await user(store, "bob@a.test")
    seen = [b.uidvalidity for b in await store.list_mailboxes(alice.id)]
    seen += [b.uidvalidity for b in await store.list_mailboxes(bob.id)]
    old_inbox = await store.get_mailbox(alice.id, "INBOX")
    assert old_inbox is not None

    await store.delete_account("alice@a.test")
    alice = await user(store, "alice@a.test")
    new_inbox = await store.get_mailbox(alice.id, "INBOX")
    assert new_inbox is not None
    # A client that cached UIDs of the old INBOX must see that they are void.
    assert new_inbox.uidvalidity != old_inbox.uidvalidity
    seen += [b.uidvalidity for b in await store.list_mailboxes(alice.id)]

    # ... also after a restart, when nothing is left in memory.
    await store.close()
    reopened = engine.new_store()
    await reopened.open()
    try:
        carol = await user(reopened, "carol@a.test")
        seen += [b.uidvalidity for b in await reopened.list_mailboxes(carol.id)]
    finally:
        await reopened.close()
    assert len(seen) == len(set(seen)) == 24
    assert all(0 < v < 2**32 for v in seen)


async def test_uidnext_and_highestmodseq_bump_per_delivery(store: Store) -> None:
    alice = await user(store, "alice@a.test")
    before = await store.get_mailbox(alice.id, "INBOX")
    assert before is not None
    states = [before]
    for _ in range(5):
        await store.accept(request(local=(alice,)))
        box = await store.get_mailbox(alice.id, "INBOX")
        assert box is not None
        states.append(box)
    for old, new in itertools.pairwise(states):
        assert new.uidnext == old.uidnext + 1
        assert new.highestmodseq > old.highestmodseq
        assert new.messages == old.messages + 1
        assert new.uidvalidity == before.uidvalidity

    messages = await store.list_messages(alice.id, "INBOX")
    uids = [m.uid for m in messages]
    assert uids == sorted(set(uids)) and len(uids) == 5
    assert all(u < states[-1].uidnext for u in uids)
    modseqs = [m.modseq for m in messages]
    assert modseqs == sorted(set(modseqs))
    assert max(modseqs) <= states[-1].highestmodseq
    # Other mailboxes are untouched.
    sent = await store.get_mailbox(alice.id, "Sent")
    assert sent is not None and sent.uidnext == 1 and sent.messages == 0


async def test_message_metadata(store: Store) -> None:
    alice = await user(store, "alice@a.test")
    req = request(local=(alice,), received=1_700_000_000.25)
    await store.accept(req)
    (message,) = await store.list_messages(alice.id, "INBOX")
    assert message.flags == frozenset()
    assert message.internal_date == pytest.approx(1_700_000_000.25)
    assert message.size == len(req.local[0].prefix) + len(req.body)
    assert await store.message_bytes(alice.id, "INBOX", message.uid + 1) is None
    assert await store.message_bytes(alice.id, "Sent", message.uid) is None
    assert await store.list_messages(alice.id, "Nope") == []
