"""One writer thread that turns concurrent write requests into shared, durable commits.

SQLite allows one writer at a time, and in WAL mode with `synchronous=FULL` every COMMIT costs one
fsync. Instead of one transaction per request, the writer takes every request that is waiting, runs
each inside its own SAVEPOINT (so one failing request cannot spoil the others) and commits them all
with a single fsync: group commit. A caller's future resolves only after that COMMIT returned.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from mailfort.errors import AlreadyExists, NotFound, StoreError, StoreUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")
WriteFn = Callable[[sqlite3.Connection], Any]


@dataclass(slots=True)
class _Job:
    fn: WriteFn
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop


def connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    if readonly:
        conn = sqlite3.connect(
            f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
        )
    else:
        conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 10000")
    conn.execute("PRAGMA foreign_keys = ON")
    if not readonly:
        try:
            _enable_wal(conn)
        except BaseException:
            conn.close()
            raise
        # FULL: the WAL is fsynced at every COMMIT, so a committed message survives power loss.
        conn.execute("PRAGMA synchronous = FULL")
    return conn


def _enable_wal(conn: sqlite3.Connection, timeout: float = 10.0) -> None:
    # Switching a fresh file to WAL needs an exclusive lock, and SQLite answers "locked" at once,
    # without its busy handler, when another process is switching too (two nodes, or a node and
    # the CLI, starting on an empty data dir). So wait here the way busy_timeout would.
    deadline = time.monotonic() + timeout
    while True:
        try:
            mode = str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)
    # SQLite keeps the old mode, silently, where WAL is impossible (some network filesystems);
    # the durability and reader concurrency this engine promises depend on it.
    if mode.lower() != "wal":
        raise StoreUnavailable(f"cannot use WAL journal mode here (journal_mode={mode})")


def translate(exc: BaseException) -> BaseException:
    """Map driver errors to store errors; leave our own errors alone."""
    if isinstance(exc, StoreError):
        return exc
    if isinstance(exc, sqlite3.IntegrityError):
        # A foreign key names something that is not there (a mailbox for a deleted account);
        # only UNIQUE / PRIMARY KEY violations mean "already exists".
        if "FOREIGN KEY" in str(exc):
            return NotFound(str(exc))
        return AlreadyExists(str(exc))
    if isinstance(exc, sqlite3.Error | OSError):
        return StoreUnavailable(f"sqlite: {exc}")
    return exc


Outcome = tuple[asyncio.Future[Any], Any, BaseException | None]


def _settle(
    outcomes: list[Outcome],
    observer: Callable[[float], None] | None = None,
    seconds: float = 0.0,
) -> None:
    for future, result, error in outcomes:
        if future.done():
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
    if observer is not None:
        try:
            observer(seconds)
        except Exception:  # a measuring hook must never break the store
            log.exception("event=commit_observer_failed")


class GroupCommitWriter:
    """Runs write functions on one connection, batching them into shared transactions."""

    def __init__(
        self,
        path: Path,
        *,
        max_batch: int = 512,
        on_commit: Callable[[float], None] | None = None,
    ) -> None:
        self._path = path
        # Told each batch's commit time on the event loop of the batch's first job.
        self._on_commit = on_commit
        self.waiting = 0  # jobs handed to run() and not yet settled (the overload gate reads it)
        self._max_batch = max_batch
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._closed = True
        # Orders "is it open? then enqueue" against "close, then enqueue the stop marker".
        self._gate = threading.Lock()
        self.commits = 0
        self.committed_jobs = 0
        self.last_commit_seconds = 0.0

    def start(self, setup: Callable[[sqlite3.Connection], None]) -> None:
        # A store may be opened again after close(); stale state would skip the wait below.
        self._ready.clear()
        self._startup_error = None
        self._thread = threading.Thread(
            target=self._run, args=(setup,), name="sqlite-writer", daemon=True
        )
        self._thread.start()
        self._ready.wait()
        if self._startup_error is not None:
            # The thread has exited; leaving it set would make run() queue jobs nobody serves.
            self._thread.join()
            self._thread = None
            raise self._startup_error
        self._closed = False

    def stop(self) -> None:
        if self._thread is not None:
            with self._gate:
                self._closed = True
                self._jobs.put(None)
            self._thread.join()
            self._thread = None

    @property
    def pending(self) -> int:
        return self._jobs.qsize()

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        with self._gate:
            if self._closed:
                raise StoreUnavailable("store is closed")
            self._jobs.put(_Job(fn, future, loop))
        self.waiting += 1
        try:
            return await future
        finally:
            self.waiting -= 1

    def _run(self, setup: Callable[[sqlite3.Connection], None]) -> None:
        conn: sqlite3.Connection | None = None
        try:
            conn = connect(self._path)
            setup(conn)
        except BaseException as exc:  # reported to start(), which re-raises in the caller
            if conn is not None:
                conn.close()
            self._startup_error = translate(exc)
            self._ready.set()
            return
        self._ready.set()
        try:
            while True:
                job = self._jobs.get()
                if job is None:
                    break
                batch = [job]
                stop = False
                while len(batch) < self._max_batch:
                    try:
                        nxt = self._jobs.get_nowait()
                    except queue.Empty:
                        break
                    if nxt is None:
                        stop = True
                        break
                    batch.append(nxt)
                self._commit_batch(conn, batch)
                if stop:
                    break
        finally:
            conn.close()

    def _commit_batch(self, conn: sqlite3.Connection, batch: list[_Job]) -> None:
        outcomes: list[tuple[_Job, Any, BaseException | None]] = []
        started = time.monotonic()
        try:
            conn.execute("BEGIN IMMEDIATE")
            for job in batch:
                conn.execute("SAVEPOINT job")
                try:
                    result = job.fn(conn)
                except Exception as exc:  # one request's failure must not spoil the batch
                    conn.execute("ROLLBACK TO job")
                    conn.execute("RELEASE job")
                    outcomes.append((job, None, translate(exc)))
                else:
                    conn.execute("RELEASE job")
                    outcomes.append((job, result, None))
            conn.execute("COMMIT")
        except (sqlite3.Error, OSError) as exc:
            log.error("event=store_commit_failed error=%r jobs=%d", exc, len(batch))
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            failure = StoreUnavailable(f"commit failed: {exc}")
            outcomes = [(job, None, failure) for job in batch]
        else:
            self.commits += 1
            self.committed_jobs += len(batch)
        self.last_commit_seconds = time.monotonic() - started
        # One wake-up per event loop, not per job: each call_soon_threadsafe writes to the loop's
        # self-pipe and takes the GIL from the loop thread, hundreds of times a second.
        by_loop: dict[asyncio.AbstractEventLoop, list[Outcome]] = {}
        for job, result, error in outcomes:
            by_loop.setdefault(job.loop, []).append((job.future, result, error))
        observer = self._on_commit
        for loop, settled in by_loop.items():
            # RuntimeError: the caller's loop is gone (shutdown); the commit stands.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, settled, observer, self.last_commit_seconds)
            observer = None
