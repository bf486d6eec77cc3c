"""The tools that keep the event loop free: a bounded thread pool and a pacer."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from mailfort.server.offload import CpuPool, Pacer


def test_the_pool_runs_off_the_loop_and_returns_results() -> None:
    async def main() -> None:
        pool = CpuPool(2)
        try:
            loop_thread = threading.get_ident()
            ident, value = await pool.run(lambda x: (threading.get_ident(), x * 2), 21)
            assert value == 42 and ident != loop_thread
            with pytest.raises(ZeroDivisionError):
                await pool.run(lambda: 1 / 0)
        finally:
            pool.close()

    asyncio.run(main())


def test_at_most_workers_jobs_run_at_once_and_the_loop_keeps_turning() -> None:
    running = 0
    most = 0
    lock = threading.Lock()

    def job() -> None:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.05)  # sleeping releases the interpreter lock, as I/O and C slices do
        with lock:
            running -= 1

    async def main() -> int:
        pool = CpuPool(2)
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.005)
                ticks += 1

        task = asyncio.create_task(ticker())
        try:
            await asyncio.gather(*(pool.run(job) for _ in range(8)))
        finally:
            task.cancel()
            pool.close()
        return ticks

    ticks = asyncio.run(main())
    assert most == 2
    assert ticks >= 10  # four rounds of 50 ms: the loop ran meanwhile


def test_a_job_waiting_for_a_slot_leaves_when_cancelled() -> None:
    started: list[int] = []
    release = threading.Event()

    def job(n: int) -> None:
        started.append(n)
        release.wait(5)

    async def main() -> None:
        pool = CpuPool(1)
        first = asyncio.create_task(pool.run(job, 1))
        await asyncio.sleep(0.05)
        second = asyncio.create_task(pool.run(job, 2))
        await asyncio.sleep(0.05)
        second.cancel()
        release.set()
        await first
        with pytest.raises(asyncio.CancelledError):
            await second
        pool.close()

    asyncio.run(main())
    assert started == [1]  # the cancelled job never reached a thread


def test_a_pool_needs_a_worker() -> None:
    with pytest.raises(ValueError):
        CpuPool(0)


def test_the_pacer_yields_only_when_its_budget_is_spent() -> None:
    now = [0.0]

    async def main() -> list[int]:
        pacer = Pacer(budget=0.01, clock=lambda: now[0])
        turns: list[int] = []

        async def other() -> None:
            for _ in range(100):
                turns.append(len(seen))
                await asyncio.sleep(0)

        seen: list[int] = []
        task = asyncio.create_task(other())
        await asyncio.sleep(0)  # let it record its first turn
        for i in range(10):
            seen.append(i)
            now[0] += 0.004  # 4 ms of work per item
            await pacer.tick()
        task.cancel()
        return turns

    turns = asyncio.run(main())
    # Work items between the other task's turns: every third item spends the 10 ms budget.
    assert turns[:4] == [0, 3, 6, 9]
