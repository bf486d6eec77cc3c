"""Many sessions committing at once: each lands exactly once, and they share commits."""

from __future__ import annotations

import asyncio
import re

from mailfort.errors import AlreadyExists
from mailfort.store.api import Store
from tests.store.conftest import Engine
from tests.store.helpers import body, inbox, request, user

SESSIONS = 200


async def test_concurrent_accepts_all_land_exactly_once(store: Store, engine: Engine) -> None:
    accounts = [await user(store, f"u{i}@a.test") for i in range(5)]
    requests = [
        request(
            local=(accounts[i % 5], accounts[(i + 1) % 5]),
            remote=(f"r{i}@remote.test",) if i % 4 == 0 else (),
            data=body(f"msg{i}"),
        )
        for i in range(SESSIONS)
    ]
    before = engine.commit_stats(store)

    results = await asyncio.gather(*(store.accept(r) for r in requests))

    assert [r.queue_id for r in results] == [r.queue_id for r in requests]
    assert all(r.delivered == 2 for r in results)
    expected: dict[int, list[str]] = {a.id: [] for a in accounts}
    for i in range(SESSIONS):
        expected[accounts[i % 5].id].append(f"msg{i}")
        expected[accounts[(i + 1) % 5].id].append(f"msg{i}")
    for account in accounts:
        copies = await inbox(store, account)
        tags = sorted(re.search(rb"Subject: (msg\d+)", c)[1].decode() for c in copies)  # type: ignore[index]
        assert tags == sorted(expected[account.id])  # each exactly once
        uids = [m.uid for m in await store.list_messages(account.id, "INBOX")]
        assert uids == list(range(1, len(uids) + 1))
    queued = await store.queue_items()
    assert sorted(i.recipient for i in queued) == sorted(
        f"r{i}@remote.test" for i in range(0, SESSIONS, 4)
    )

    after = engine.commit_stats(store)
    if before is not None and after is not None:
        commits, jobs = after[0] - before[0], after[1] - before[1]
        assert jobs == SESSIONS
        # Group commit: concurrent sessions share fsyncs.
        assert commits < jobs, (commits, jobs)


async def test_a_failing_request_does_not_spoil_the_others(store: Store) -> None:
    await store.add_domain("taken.test")
    names = [f"d{i}.test" for i in range(40)]
    names.insert(17, "taken.test")

    outcomes = await asyncio.gather(*(store.add_domain(n) for n in names), return_exceptions=True)

    failures = [(n, o) for n, o in zip(names, outcomes, strict=True) if o is not None]
    assert len(failures) == 1
    assert failures[0][0] == "taken.test"
    assert isinstance(failures[0][1], AlreadyExists)
    assert await store.list_domains() == sorted({*names})


async def test_concurrent_accepts_with_one_clash(store: Store) -> None:
    alice = await user(store, "alice@a.test")
    first = request(remote=("x@remote.test",))
    await store.accept(first)
    requests = [request(local=(alice,), data=body(f"ok{i}")) for i in range(30)]
    requests.insert(10, request(local=(alice,), remote=("y@remote.test",), qid=first.queue_id))

    outcomes = await asyncio.gather(*(store.accept(r) for r in requests), return_exceptions=True)

    assert sum(isinstance(o, AlreadyExists) for o in outcomes) == 1
    assert isinstance(outcomes[10], AlreadyExists)
    copies = await inbox(store, alice)
    assert len(copies) == 30
    assert not any(requests[10].body in c for c in copies)
