"""Per-user submission counts on both engines: the conditional take is atomic, so concurrent
takers never pass the maxima together; old hours are forgotten; a returned take frees room."""

from __future__ import annotations

import asyncio

from mailfort.store.api import Store

HOUR = 490_000


async def test_take_counts_within_the_maxima_only(store: Store) -> None:
    take = store.take_submission
    assert await take("a@x.test", HOUR, 1, 3, max_messages=2, max_recipients=5)
    assert await take("a@x.test", HOUR, 1, 2, max_messages=2, max_recipients=5)
    assert not await take("a@x.test", HOUR, 1, 0, max_messages=2, max_recipients=5)
    assert not await take("a@x.test", HOUR, 0, 1, max_messages=0, max_recipients=5)
    assert await take("a@x.test", HOUR, 5, 0, max_messages=0, max_recipients=0)  # 0: no bound
    assert not await take("b@x.test", HOUR, 1, 6, max_messages=2, max_recipients=5)  # alone
    counts = await store.submission_counts("a@x.test", [HOUR - 1, HOUR])
    assert counts == {HOUR: (7, 5)}
    assert await store.submission_counts("b@x.test", [HOUR]) == {}
    await store.return_submission("a@x.test", HOUR, 7, 5)
    assert await store.submission_counts("a@x.test", [HOUR]) == {HOUR: (0, 0)}


async def test_hours_before_the_previous_are_forgotten(store: Store) -> None:
    for hour in (HOUR - 3, HOUR - 1):
        assert await store.take_submission("a@x.test", hour, 1, 1, max_messages=0, max_recipients=0)
    assert await store.take_submission("a@x.test", HOUR, 1, 1, max_messages=0, max_recipients=0)
    found = await store.submission_counts("a@x.test", [HOUR - 3, HOUR - 1, HOUR])
    assert found == {HOUR - 1: (1, 1), HOUR: (1, 1)}


async def test_concurrent_takes_never_pass_the_maximum(store: Store) -> None:
    async def one() -> bool:
        return await store.take_submission(
            "a@x.test", HOUR, 1, 2, max_messages=25, max_recipients=0
        )

    results = await asyncio.gather(*(one() for _ in range(60)))
    assert sum(results) == 25
    assert await store.submission_counts("a@x.test", [HOUR]) == {HOUR: (25, 50)}
