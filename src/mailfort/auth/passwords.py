"""Argon2id password hashes, and verification that never blocks the event loop."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import hashlib
import hmac
import os
import secrets
import sys
import threading
from collections import OrderedDict, deque
from collections.abc import Callable

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from mailfort.errors import Busy
from mailfort.metrics import NodeMetrics
from mailfort.network import share_of

_hasher = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """A hash of a random password: unknown users cost the same time as known ones (no oracle)."""
    return _hasher.hash(secrets.token_hex(16))


# Password checks run at this niceness (Linux: per thread). Argon2 is built to eat CPU (each check
# runs four lanes on threads of their own); at the event loop's priority a few checks at once
# starved it on a small machine, so every session's latency, and the overload gate's loop-lag
# signal, moved with the number of wrong passwords strangers sent. Niced, the checks get what
# the loop leaves; the loop is one thread, so on a machine of several cores that is most of it.
CHECK_NICENESS = 19


def _lower_priority() -> None:
    """Make the calling worker thread (and the threads argon2 starts from it) yield the CPU.

    On Linux a thread has its own nice value, and threads inherit their creator's. Elsewhere
    `setpriority` on this id would renice the whole process, so it is left alone there."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), CHECK_NICENESS)


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def generate_password() -> str:
    return secrets.token_urlsafe(12)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        ok = _hasher.verify(password_hash or _dummy_hash(), password)
        return ok and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


class NetworkBusy(Exception):
    """One client network has its share of the password checks waiting: its own doing, so the
    answer is the throttle's ("too many attempts"), not "the node is busy"."""


class Verifier:
    """Verifies in a worker thread and remembers recent successes.

    Argon2 is deliberately slow (tens of ms of CPU). Clients that log in again and again with the
    same right password (IMAP clients open several connections, POP3 clients poll) would spend the
    node's CPU on it, so a success is remembered as a keyed digest bound to the stored hash; a
    changed password changes the hash and so invalidates the entry.

    Each verification costs about 64 MiB and a few hundred ms of CPU, so at most `concurrency` run
    at once and at most `max_waiting` wait; past that the caller gets `Busy` and answers "try again
    later". After a restart every client reconnects at once: without this bound the node's memory
    would grow by 64 MiB per concurrent first login.

    One client network may hold at most `max_network_share` of the waiting places (past that:
    `NetworkBusy`), and waiting checks are served by network in turn, not first come first
    served: one machine can neither fill the queue (every other login would get `Busy`) nor
    stand in front of everyone else's login with its own guesses. The checks run niced
    (`CHECK_NICENESS`): they get the CPU the event loop leaves, so they cannot slow the node.
    """

    def __init__(
        self,
        max_entries: int = 10000,
        *,
        concurrency: int = 2,
        max_waiting: int = 64,
        max_network_share: float = 0.25,
        metrics: NodeMetrics | None = None,
        check: Callable[[str | None, str], bool] = verify_password,
    ) -> None:
        self._key = secrets.token_bytes(32)
        self._ok: dict[bytes, None] = {}
        self._max = max_entries
        self._concurrency = concurrency
        self._max_waiting = max_waiting
        self._max_per_network = share_of(max_waiting, max_network_share)
        self._metrics = metrics
        self._check = check  # runs in a worker thread of `_pool`, at a low priority
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._running = 0
        self._waiting = 0
        self._per_network: dict[str, int] = {}  # waiting or running, per network
        # When each network with checks waiting or running last got a worker (a count).
        self._last_start: dict[str, int] = {}
        self._starts = 0
        # Checks waiting for a worker, per network, in the order the networks began to wait.
        self._queues: OrderedDict[str, deque[asyncio.Future[None]]] = OrderedDict()
        self.refused = 0
        self.verifications = 0  # argon2 runs (remembered successes cost none)

    def _digest(self, password_hash: str, password: str) -> bytes:
        material = password_hash.encode() + b"\0" + password.encode("utf-8", "surrogateescape")
        return hmac.new(self._key, material, hashlib.sha256).digest()

    async def verify(self, password_hash: str | None, password: str, *, network: str = "") -> bool:
        """Whether `password` matches `password_hash` (None: an unknown user, checked against a
        dummy hash all the same). `network` is the client's (`mailfort.network.Networks.of`)."""
        if password_hash is not None and self._digest(password_hash, password) in self._ok:
            return True
        # The network's own bound first: past it the refusal is its doing, whatever the node's.
        if self._per_network.get(network, 0) >= self._max_per_network:
            raise NetworkBusy(network)
        if self._waiting >= self._max_waiting:
            self.refused += 1
            raise Busy("too many logins being verified; try again later")
        self._waiting += 1
        self._per_network[network] = self._per_network.get(network, 0) + 1
        try:
            await self._worker(network)
            try:
                self.verifications += 1
                if self._metrics is not None:
                    self._metrics.password_verified()
                ok = await self._run(password_hash, password)
            finally:
                self._done(network)
        finally:
            self._waiting -= 1
            left = self._per_network[network] - 1
            if left:
                self._per_network[network] = left
            else:
                del self._per_network[network]
                self._last_start.pop(network, None)
        if ok and password_hash is not None:
            if len(self._ok) >= self._max:
                self._ok.pop(next(iter(self._ok)))
            self._ok[self._digest(password_hash, password)] = None
        return ok

    async def _run(self, password_hash: str | None, password: str) -> bool:
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(
                self._concurrency, "password-check", initializer=_lower_priority
            )
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, self._check, password_hash, password)

    async def _worker(self, network: str) -> None:
        """Wait for one of the `concurrency` workers. When one is free, the waiting network served
        least recently goes first: a newcomer is not stuck behind a network that already had its
        turn and queued more."""
        if self._running < self._concurrency and not self._queues:
            self._start(network)
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queues.setdefault(network, deque()).append(turn)
        try:
            await turn
        except BaseException:
            if turn.done() and not turn.cancelled():
                self._done(network)  # handed a worker just as the caller went away: pass it on
            else:
                queue = self._queues.get(network)
                if queue is not None and turn in queue:
                    queue.remove(turn)
                    if not queue:
                        del self._queues[network]
            raise

    def _start(self, network: str) -> None:
        self._running += 1
        self._starts += 1
        self._last_start[network] = self._starts

    def _done(self, network: str) -> None:
        """`network`'s check is over; a free worker goes to the next in turn."""
        self._running -= 1
        while self._queues and self._running < self._concurrency:
            # At most `max_waiting` networks wait, so this scan is short.
            chosen = min(self._queues, key=lambda n: self._last_start.get(n, 0))
            queue = self._queues[chosen]
            turn = queue.popleft()
            if not queue:
                del self._queues[chosen]
            if not turn.done():
                self._start(chosen)
                turn.set_result(None)
