"""The node's budget of message octets in memory for store writes (server/memory_budget.py)."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from mailfort.errors import Busy
from mailfort.server.memory_budget import MemoryBudget


async def test_writes_within_the_budget_go_at_once() -> None:
    budget = MemoryBudget(100, wait=0.1)
    async with budget.hold(60), budget.hold(40):
        assert budget.held == 100
    assert budget.held == 0


async def test_past_the_budget_a_write_waits_then_is_refused() -> None:
    budget = MemoryBudget(100, wait=0.2)
    async with budget.hold(80):
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(Busy):
            async with budget.hold(30):
                raise AssertionError("granted past the budget")
        assert loop.time() - started >= 0.19
        assert budget.held == 80
    assert budget.held == 0


async def test_a_waiting_write_goes_as_soon_as_there_is_room() -> None:
    budget = MemoryBudget(100, wait=5)
    order: list[str] = []
    first = asyncio.Event()

    async def write(name: str, size: int, hold: float) -> None:
        async with budget.hold(size):
            order.append(name)
            first.set()
            await asyncio.sleep(hold)

    big = asyncio.create_task(write("big", 90, 0.1))
    await first.wait()
    # Both wait; the first to ask goes first even though the second would fit sooner.
    second = asyncio.create_task(write("second", 50, 0))
    await asyncio.sleep(0)
    third = asyncio.create_task(write("third", 10, 0))
    await asyncio.gather(big, second, third)
    assert order == ["big", "second", "third"]
    assert budget.held == 0


async def test_a_write_larger_than_the_budget_waits_for_all_of_it() -> None:
    budget = MemoryBudget(100, wait=5)
    async with budget.hold(10):
        task = asyncio.create_task(_hold(budget, 500))
        await asyncio.sleep(0.05)
        assert not task.done()
    await task
    assert budget.held == 0


async def _hold(budget: MemoryBudget, size: int) -> None:
    async with budget.hold(size):
        assert budget.held == budget.limit


async def test_a_cancelled_wait_gives_back_what_it_was_granted() -> None:
    budget = MemoryBudget(100, wait=5)
    async with budget.hold(100):
        waiter = asyncio.create_task(_hold(budget, 50))
        await asyncio.sleep(0.01)
        waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert budget.held == 0
    async with budget.hold(100):  # nothing is left over from the cancelled one
        pass


async def test_nothing_to_hold_never_waits() -> None:
    budget = MemoryBudget(10, wait=5)
    async with budget.hold(10):
        waiting = asyncio.create_task(_hold(budget, 10))
        await asyncio.sleep(0.01)
        async with asyncio.timeout(0.1), budget.hold(0):
            pass
    await waiting


async def test_one_owner_holds_its_share_and_does_not_hold_up_the_others() -> None:
    # A client that FETCHes large messages and reads nothing keeps what it holds until its write
    # times out: it may hold a quarter of the budget (or one piece when it holds nothing else),
    # and its own next piece waiting must not make anyone else wait.
    budget = MemoryBudget(100, wait=5, owner_share=0.25)
    hog = "192.0.2.0/24"
    async with budget.hold(40, owner=hog):  # more than its share, but its only piece: granted
        blocked = asyncio.ensure_future(budget.hold(10, owner=hog).__aenter__())
        await asyncio.sleep(0.01)
        assert not blocked.done()  # the hog's second piece waits for its first
        async with budget.hold(30, owner="alice"):  # another owner behind it goes at once
            assert budget.held == 70
        blocked.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await blocked
    assert budget.held == 0


async def test_a_piece_larger_than_the_room_is_not_overtaken_for_ever() -> None:
    budget = MemoryBudget(100, wait=5)
    order: list[str] = []

    async def piece(name: str, size: int, owner: str) -> None:
        async with budget.hold(size, owner=owner):
            order.append(name)
            await asyncio.sleep(0.05)

    async with budget.hold(60, owner="a"):
        big = asyncio.ensure_future(piece("big", 80, "b"))
        await asyncio.sleep(0.01)
        small = asyncio.ensure_future(piece("small", 10, "c"))  # would fit, but waits its turn
        await asyncio.sleep(0.01)
        assert order == []
    await asyncio.gather(big, small)
    assert order == ["big", "small"]
