"""Keeping the event loop free while one command works through a lot of client data.

Every session of every protocol shares one event loop, so a command that computes for 100 ms
delays every other client's answer, the status page and the overload gate's own lag probe by as
much. Two tools keep each stretch of work on the loop short:

- `CpuPool` runs a function on one of a few threads of its own: MIME parsing, section and
  search work on message bodies, whose cost grows with what a client stored (a 25 MB message of
  5,000 parts, 50 nested multiparts). Python threads share the interpreter lock, but it is
  handed back to the loop every `sys.getswitchinterval()` (5 ms), so the loop keeps answering.
  The pool has its own threads, apart from the store's readers and the default executor that
  password hashing uses, and at most `workers` jobs are handed to them at once: the others wait
  on the loop, where waiting costs nothing, and leave the queue when their session goes away.
- `Pacer` is for loops over many small items that stay on the loop (flags of 100,000
  messages, LIST over thousands of names): `await pacer.tick()` per item gives the loop a turn
  whenever `budget` seconds of work have passed since the last one.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

# Work on the loop between two turns of other clients: well under the ~50 ms a client can
# notice, and a turn costs one pass of the loop.
SLICE = 0.01


class CpuPool:
    """A few threads for CPU-heavy work on client data (see the module docstring)."""

    def __init__(self, workers: int = 2) -> None:
        if workers < 1:
            raise ValueError("a CpuPool needs at least one worker")
        self.workers = workers
        self._executor: ThreadPoolExecutor | None = None
        self._slots: asyncio.Semaphore | None = None

    async def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """`fn(*args, **kwargs)` on a pool thread. `fn` must not touch what the loop mutates
        meanwhile: hand it plain values and apply its result on the loop."""
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.workers)
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="cpu")
        async with self._slots:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(
                self._executor, functools.partial(fn, *args, **kwargs)
            )

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None


class Pacer:
    """`await tick()` in a long loop: a turn for the other clients every `budget` seconds."""

    __slots__ = ("_budget", "_clock", "_since")

    def __init__(
        self, budget: float = SLICE, clock: Callable[[], float] = time.perf_counter
    ) -> None:
        self._budget = budget
        self._clock = clock
        self._since = clock()

    async def tick(self) -> None:
        if self._clock() - self._since >= self._budget:
            await asyncio.sleep(0)
            self._since = self._clock()
