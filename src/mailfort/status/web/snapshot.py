"""The in-memory snapshot of the status page that every public response renders from.

A visitor rush must cost no store reads and the page must stay up while the store (the mail path)
is down, so:

- :class:`SnapshotCache` reads ``StatusRepository.page()`` at most once per ``refresh`` seconds,
  *single-flight*: concurrent requests share one read.
- A snapshot younger than ``max_stale`` (default: ``refresh``) is served at once while a refresh
  runs in the background (stale-while-revalidate); an older one waits for the shared refresh, at
  most ``timeout`` seconds, so a page is never older than about ``refresh`` while the store works.
- A failed or slow refresh keeps the last good snapshot and records since when refreshing fails,
  so the page can say "as of …". Without any snapshot the view has ``page=None`` and pages render
  every component as unknown rather than failing.
- Each :class:`View` memoizes what was rendered from it (bounded), so a page is rendered once per
  snapshot and language, not once per visitor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

from mailfort.status.repository import StatusPage

log = logging.getLogger("mailfort.status.web")

T = TypeVar("T")

_MAX_RENDERS = 64


@dataclass(slots=True, eq=False)
class View:
    """One immutable state of the snapshot, as of ``now``."""

    page: StatusPage | None
    now: float  # when this view was made: maintenance windows are judged against it
    fetched_at: float | None = None  # when `page` was read
    failing_since: float | None = None  # first failed refresh after the last good one
    _renders: OrderedDict[object, object] = field(default_factory=OrderedDict)

    @property
    def stale(self) -> bool:
        return self.failing_since is not None

    def rendered(self, key: object, render: Callable[[], T]) -> T:
        """`render()` once per key for this view; bounded, oldest evicted first."""
        if key in self._renders:
            self._renders.move_to_end(key)
            return self._renders[key]  # type: ignore[return-value]
        value = render()
        self._renders[key] = value
        if len(self._renders) > _MAX_RENDERS:
            self._renders.popitem(last=False)
        return value


class SnapshotCache:
    def __init__(
        self,
        load: Callable[[float], Awaitable[StatusPage]],
        *,
        refresh: float = 5.0,
        max_stale: float | None = None,
        timeout: float = 5.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._load = load
        self.refresh = refresh
        self.max_stale = refresh if max_stale is None else max_stale
        self.timeout = timeout
        self._clock = clock
        self._view = View(page=None, now=clock())
        self._attempted_at: float | None = None
        self._task: asyncio.Task[None] | None = None
        self.reads = 0  # store reads so far (tests and benchmarks look at it)

    @property
    def current(self) -> View:
        return self._view

    async def view(self) -> View:
        now = self._clock()
        view = self._view
        due = self._attempted_at is None or now - self._attempted_at >= self.refresh
        task = self._refreshing(now) if due else self._task
        if task is None or task.done():
            return view
        fresh_enough = view.fetched_at is not None and now - view.fetched_at < self.max_stale
        if fresh_enough or view.failing_since is not None:
            # Serve what we have while the refresh runs; a failing store must not make every
            # visitor wait for its timeout.
            return view
        # Too old to show (a quiet node's first visitor in a while): wait for the shared
        # refresh, at most `timeout` (shielded, so one impatient visitor does not cancel it).
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(task), self.timeout)
        return self._view

    def _refreshing(self, now: float) -> asyncio.Task[None]:
        if self._task is None or self._task.done():
            self._attempted_at = now
            self._task = asyncio.create_task(self._refresh(now), name="status-page-refresh")
        return self._task

    async def _refresh(self, now: float) -> None:
        self.reads += 1
        try:
            page = await asyncio.wait_for(self._load(now), max(self.timeout * 4, 10.0))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the page must outlive any store failure, whatever it is
            old = self._view
            log.warning("event=status_snapshot_failed error=%s detail=%s", type(exc).__name__, exc)
            self._view = View(
                page=old.page,
                now=self._clock(),
                fetched_at=old.fetched_at,
                failing_since=old.failing_since or now,
            )
            return
        self._view = View(page=page, now=self._clock(), fetched_at=self._clock())

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
