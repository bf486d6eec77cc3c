"""The node's overload gate: admits store-bound work while the node can do it, refuses it cheaply
when it cannot (DESIGN.md "Overload").

One `AdaptiveLimit` bounds the store-bound work in flight on the node, whatever protocol brings
it: an SMTP transaction's store work (from the end of DATA to its 250), an IMAP command that
touches the store, a POP3 login or the store read of a RETR, an HTTP request that reads the store
(public status pages come from memory and wait only for a saturated CPU, see `saturated`). A slot
is taken when the node's own work starts and given back when it ends: time spent waiting for a
client (an upload, a reader that does not read, a deliberate failed-login delay) never holds a
slot and never counts as latency, or a stranger could shrink the limit by being slow. The limit
moves with what the node can really do:

* each finished unit of work is a latency sample (Gradient2: queueing makes latency rise);
* a sampler task measures how late the event loop runs a timer (loop lag: the node's CPU is
  saturated) and the store reports how long each durable commit took (a slow disk or database);
  both feed the limit's stress signal, so the node takes less work instead of queueing it;
* the commits waiting in the store are bounded (`max_pending_commits`).

Each client network (mailfort.network) holds at most `client_share` of the slots (with its
waiters) and of the connect reservations (`admit`); its refusals past that are its own doing
(`REASON_CLIENT`) and stay out of the public status signals.

Refusals are temporary answers chosen by the caller (SMTP 451 4.3.0 / 421 4.3.2, IMAP
NO [UNAVAILABLE] / BYE, POP3 -ERR [SYS/TEMP], HTTP 503 + Retry-After); sessions a node already has
keep being served. `try_acquire` counts its own refusals in `metrics.refused(protocol, reason)`
(so an HTTP 503 after a None needs no further count); the listeners count the refusals they
decide at connect time (server/listener.py).

Tuning (the reasons are measured with `benchmarks/overload.py`, see benchmarks/README.md): loop lag
mainly sheds new connections (a cheap 421 / BYE / -ERR before any session state exists), and
reaches the limit's stress only when it is severe; Gradient2's tolerance is 3, not 1.5.
Every few seconds while busy the gate logs one `event=overload_state` line.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import random
import time
from collections.abc import Callable
from typing import Final

from mailfort.config import OverloadConfig
from mailfort.metrics import NodeMetrics
from mailfort.network import share_of
from mailfort.overload.lag_limit import LagLimit, LagLimitConfig
from mailfort.overload.limit import AdaptiveLimit, LimitConfig
from mailfort.overload.limit import Token as LimitToken
from mailfort.store.roles import CommitLoad

log = logging.getLogger("mailfort.overload")

# Reasons, as recorded in metrics.refused(protocol, reason).
REASON_LIMIT: Final = "limit"  # the adaptive concurrency limit is reached
REASON_COMMITS: Final = "commits"  # too many store commits waiting
REASON_OVERLOAD: Final = "overload"  # refused at connect: the node is hard overloaded
# The client's network holds its share of slots or reservations already: its own doing, so it
# stays out of the public status signals (metrics.CLIENT_REASONS).
REASON_CLIENT: Final = "client"

# How fast the smoothed loop lag and commit latency follow new samples (per sample).
_LAG_ALPHA: Final = 0.3
_COMMIT_ALPHA: Final = 0.2
# Without commits the commit-latency average fades, so an old slow commit does not keep
# shrinking the limit of a node that writes nothing now.
_COMMIT_FADE: Final = 0.9
_TOLERANCE: Final = 3.0
_LOG_EVERY: Final = 5.0  # seconds between state lines in the log while the node is busy
# Seconds a connection admitted at accept holds its reservation while it says nothing (`admit`).
ARRIVAL_SECONDS: Final = 2.0


class Token:
    """One admitted unit of work; give it back with `OverloadGate.release` exactly once."""

    __slots__ = ("_inner", "client", "protocol", "released")

    def __init__(self, inner: LimitToken | None, protocol: str, client: str | None) -> None:
        self._inner = inner  # None when the gate is disabled
        self.protocol = protocol
        self.client = client  # the client network it counts against (see `client_share`)
        self.released = False


class Reservation:
    """A new connection's claim on its first slot (see `OverloadGate.admit`)."""

    __slots__ = ("client", "expires", "live")

    def __init__(self, client: str | None, expires: float) -> None:
        self.client = client
        self.expires = expires
        self.live = True


class OverloadGate:
    def __init__(
        self,
        config: OverloadConfig,
        metrics: NodeMetrics,
        *,
        store: CommitLoad | None = None,
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
        client_share: float = 1.0,
    ) -> None:
        self.config = config
        # The share of slots, of waiters and of connect reservations one client (a network, see
        # mailfort.network) may hold: slots turn over in the time of the node's own work, but a
        # stranger who held them all, or every reservation, would turn everyone else away.
        self.client_share = client_share
        self.metrics = metrics
        self.clock = clock
        self.rand = rand
        self.enabled = config.enabled
        self.limit = AdaptiveLimit(
            LimitConfig(
                initial_limit=config.initial_limit,
                min_limit=config.min_limit,
                max_limit=config.max_limit,
                # Stress is measured in commit-latency units; see _stress().
                stress_target_seconds=config.target_commit_latency,
                # Group commit makes a transaction's latency grow with the number in flight
                # even when nothing queues for long (measured with benchmarks/overload.py:
                # Gradient2's 1.5 shrank the limit below 20 sessions at an idle CPU); only a
                # clear rise counts as queueing. Stress and loop lag catch real saturation.
                tolerance=_TOLERANCE,
            )
        )
        # SMTP transactions in progress (MAIL to their end) and connections about to start one
        # (reservations), bounded by what the CPU can do now: the loop's lag (see lag_limit).
        self.sessions = LagLimit(
            LagLimitConfig(
                initial=config.initial_sessions,
                minimum=config.min_sessions,
                maximum=config.max_sessions,
                target_lag=config.max_loop_lag / 8,
                high_lag=config.max_loop_lag / 2,
            )
        )
        self._active = 0  # transactions in progress (`begin`)
        self._active_by: collections.Counter[str] = collections.Counter()
        self.loop_lag = 0.0  # smoothed seconds
        self.commit_latency = 0.0  # smoothed seconds
        self._commits_since_tick = 0
        # Reservations of sessions admitted at connect, in the order they run out (see `admit`):
        # they will ask for their first slot within a few round trips.
        self._arrivals: collections.deque[Reservation] = collections.deque()
        self._arriving = 0  # live reservations in _arrivals
        self._reserved_by: collections.Counter[str] = collections.Counter()
        self._held_by: collections.Counter[str] = collections.Counter()  # slots and waiters
        self._shed: dict[str, int] = {}
        self._waiters: collections.deque[tuple[asyncio.Future[Token], str, str | None]] = (
            collections.deque()
        )
        self._store: CommitLoad | None = None
        self._task: asyncio.Task[None] | None = None
        if store is not None:
            self.attach(store)

    # -- wiring ------------------------------------------------------------------------------------
    def attach(self, store: CommitLoad) -> None:
        """Watch `store`: its commit latency and the commits waiting in it."""
        self._store = store
        store.commit_observer = self.observe_commit

    def start(self) -> None:
        """Start the loop-lag sampler (on the running loop)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._sample(), name="loop-lag")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- admission ---------------------------------------------------------------------------------
    @property
    def pending_commits(self) -> int:
        return self._store.pending_commits if self._store is not None else 0

    @property
    def retry_after(self) -> int:
        """Seconds a refused client should wait (HTTP Retry-After)."""
        return self.config.retry_after

    def try_acquire(self, protocol: str, client: str | None = None) -> Token | None:
        """Admit one unit of store-bound work for `client` (its network; None: not bounded per
        client), or None: refuse it now (already counted)."""
        return self._counted(self._take(protocol, client), protocol, client)

    async def acquire(self, protocol: str, wait: float, client: str | None = None) -> Token | None:
        """Like `try_acquire`, but a session that is already open may wait up to `wait` seconds
        for a slot another one gives back.

        Such a session has cost the greeting, TLS and EHLO already; refused, it costs all that
        again when the client retries. The wait is short and the waiters are bounded (at most
        the limit's size, and a client's share of it), so this is a small queue in front of the
        workers, not a buffer.
        """
        token = self._take(protocol, client)
        if token is not None or not self.enabled or wait <= 0:
            return self._counted(token, protocol, client)
        if (
            len(self._waiters) >= self.limit.limit
            or self._pending_full()
            or self.client_full(client)
        ):
            return self._counted(None, protocol, client)
        waiter: asyncio.Future[Token] = asyncio.get_running_loop().create_future()
        entry = (waiter, protocol, client)
        self._waiters.append(entry)
        self._hold(client)  # a waiter counts against its client's share like a slot
        try:
            return await asyncio.wait_for(waiter, wait)
        except TimeoutError:
            return self._counted(None, protocol, client)
        except BaseException:
            # The session went away (cancelled) just as a slot was handed to it: give it back,
            # or the limit would shrink by one for good.
            if waiter.done() and not waiter.cancelled():
                self.forget(waiter.result())
            raise
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(entry)
                self._unhold(client)

    def client_full(self, client: str | None) -> bool:
        """`client` holds its whole share of slots (with its waiters) already."""
        if client is None or not self.enabled or self.client_share >= 1:
            return False
        return self._held_by[client] >= share_of(self.limit.limit, self.client_share)

    def _hold(self, client: str | None) -> None:
        if client is not None:
            self._held_by[client] += 1

    def _unhold(self, client: str | None) -> None:
        if client is not None:
            self._held_by[client] -= 1
            if self._held_by[client] <= 0:
                del self._held_by[client]

    def _pending_full(self) -> bool:
        return self.pending_commits >= self.config.max_pending_commits

    def _take(self, protocol: str, client: str | None) -> Token | None:
        """A slot without counting a refusal (the caller decides what a None means)."""
        if not self.enabled:
            return Token(None, protocol, None)
        if self._pending_full() or self.client_full(client):
            return None
        inner = self.limit.acquire(self.clock())
        if inner is None:
            return None
        self._hold(client)
        return Token(inner, protocol, client)

    def _counted(self, token: Token | None, protocol: str, client: str | None) -> Token | None:
        if token is None:
            if self._pending_full():
                reason = REASON_COMMITS
            elif self.client_full(client):
                reason = REASON_CLIENT
            else:
                reason = REASON_LIMIT
            self.metrics.refused(protocol, reason)
        return token

    def _hand_over(self) -> None:
        """A slot was given back: the longest waiting session whose client has room gets it."""
        for entry in list(self._waiters):
            waiter, protocol, client = entry
            if waiter.done():
                self._waiters.remove(entry)
                self._unhold(client)
                continue
            # The waiter already counts against its client's share: take the slot for it as if
            # it did not, so that a client at its share can still be served from its own place.
            self._unhold(client)
            token = self._take(protocol, client)
            if token is None:
                self._hold(client)
                if self._pending_full() or self.limit.in_flight >= self.limit.limit:
                    return  # no slot for anyone
                continue  # only this client is at its share: the next waiter may have room
            self._waiters.remove(entry)
            waiter.set_result(token)
            return

    def release(
        self,
        token: Token,
        ok: bool = True,
        latency: float | None = None,
        *,
        client_wait: float = 0.0,
    ) -> None:
        """The work is done. `ok=False`: it failed for lack of resources (store error, timeout),
        which backs the limit off. `latency`: the sample, when not the token's whole life;
        `client_wait`: seconds of that life spent waiting for the client (a reader that does
        not read), which say nothing about the node and are left out."""
        if token.released:
            return
        token.released = True
        self._unhold(token.client)
        inner = token._inner
        if inner is not None:
            now = self.clock()
            elapsed = now - inner.acquired_at if latency is None else latency
            elapsed -= client_wait
            # Below a healthy commit's time, differences are noise (group commit batches).
            elapsed = max(elapsed, self.config.target_commit_latency)
            inner.release(now, elapsed, dropped=not ok)
        if self._waiters:
            self._hand_over()

    def forget(self, token: Token) -> None:
        """Give the slot back without a sample (the client left: its latency says nothing)."""
        if token.released:
            return
        token.released = True
        self._unhold(token.client)
        if token._inner is not None:
            token._inner.ignore()
        if self._waiters:
            self._hand_over()

    def shed(self, protocol: str) -> None:
        """Count a connection refused at connect for `protocol`; recorded in metrics at the
        next sampler tick, since at thousands per second the recording cost more than the
        refusal itself."""
        self._shed[protocol] = self._shed.get(protocol, 0) + 1

    def _flush_shed(self) -> None:
        shed, self._shed = self._shed, {}
        for protocol, n in shed.items():
            self.metrics.refused(protocol, REASON_OVERLOAD, n)

    def admit(self, client: str | None = None) -> Reservation | None:
        """A new connection from `client` (its network): admit it and reserve room for the work
        it will ask for, or None: refuse it at connect (the listener answers and counts it;
        `reservations_full`, asked first, tells the client's own share apart).

        The reservation counts against the limit in `overloaded()` until the client first
        speaks (`arrived`) or `ARRIVAL_SECONDS` pass. It is taken at accept time, not when the
        session object is built: a whole burst of connections is accepted before any session
        exists, and every connection of the burst passed the check while none was counted yet;
        most were refused later instead, after costing both sides the greeting and EHLO (at 4x
        load in benchmarks/overload.py ~100 such 451s a second, a tenth of the node's CPU). One
        client network holds at most its share of them: silent connections from one machine
        (~80 a second) once took every reservation, and with it every other client's
        connection."""
        if self.reservations_full(client) or self.overloaded():
            return None
        if not self.enabled:
            return Reservation(None, 0.0)
        reservation = Reservation(client, self.clock() + ARRIVAL_SECONDS)
        self._arrivals.append(reservation)
        self._arriving += 1
        if client is not None:
            self._reserved_by[client] += 1
        return reservation

    def reservations_full(self, client: str | None) -> bool:
        """`client` holds its whole share of connect reservations already."""
        if client is None or not self.enabled or self.client_share >= 1:
            return False
        self._expire_arrivals()
        return self._reserved_by[client] >= share_of(self.sessions.limit, self.client_share)

    def arrived(self, reservation: Reservation | None) -> None:
        """The client holding `reservation` spoke, or went away: its reservation, if it has not
        run out, is given back."""
        if reservation is None or not reservation.live:
            return
        if self.clock() < reservation.expires:
            self._drop_reservation(reservation)

    def _drop_reservation(self, reservation: Reservation) -> None:
        reservation.live = False
        self._arriving -= 1
        client = reservation.client
        if client is not None:
            self._reserved_by[client] -= 1
            if self._reserved_by[client] <= 0:
                del self._reserved_by[client]

    def _expire_arrivals(self) -> None:
        # Every reservation lasts as long, so they run out in the order they were taken.
        arrivals, now = self._arrivals, self.clock()
        while arrivals and (not arrivals[0].live or arrivals[0].expires <= now):
            reservation = arrivals.popleft()
            if reservation.live:
                self._drop_reservation(reservation)

    @property
    def arriving(self) -> int:
        """Reservations of admitted sessions that have not asked for their first slot yet."""
        self._expire_arrivals()
        return self._arriving

    def overloaded(self) -> bool:
        """Hard overload: refuse new connections at connect time (cheapest for both sides).

        The store cannot keep up (commits waiting), the loop is saturated, or every slot is
        taken: a new session could only be refused later, after costing both sides more (an
        SMTP client would have sent EHLO and MAIL for a 451; at 4x load that cost alone ate
        half the goodput in benchmarks/overload.py)."""
        if not self.enabled:
            return False
        if self._pending_full():
            return True
        if self.limit.in_flight + len(self._waiters) >= self.limit.limit:
            return True  # every store slot is busy or waited for
        in_play = self._active + self.arriving
        if in_play >= self.sessions.limit:
            return True  # as many sessions at work as the CPU serves well now
        if in_play < self.config.min_sessions:
            # Lag with less than the least work a node always takes is not this node's doing
            # (a busy host, the node's own start-up): refusing would not lower it. (Seen: a
            # node's first connection refused on a loaded test machine.)
            return False
        # Loop lag sheds a growing share of new connections, from none at an eighth of
        # max_loop_lag to all of them at half of it: a smooth control keeps the lag (and with
        # it the time to 250 of every admitted session) low, where an on/off switch would
        # oscillate. (Tuned with benchmarks/overload.py: starting at a quarter let p50 reach
        # 0.6 s at 4x load; this range keeps it lower at the same goodput.)
        low, high = self.config.max_loop_lag / 8, self.config.max_loop_lag / 2
        if self.loop_lag <= low:
            return False
        share = (self.loop_lag - low) / (high - low)
        return self.rand() < share

    # -- transactions ------------------------------------------------------------------------------
    def begin(self, client: str | None = None) -> str | None:
        """An SMTP transaction starts (MAIL): None when it may, else the refusal's reason (counted
        by the caller): the node serves as many as its CPU allows now (`sessions`), one client
        network at most its share of them. The caller's reservation, if any, is given back
        first, so a session admitted at connect is not refused here while the limit holds."""
        if not self.enabled:
            return None
        if (
            client is not None
            and self.client_share < 1
            and self._active_by[client] >= share_of(self.sessions.limit, self.client_share)
        ):
            return REASON_CLIENT
        if self._active >= self.sessions.limit:
            return REASON_LIMIT
        self._active += 1
        if client is not None:
            self._active_by[client] += 1
        return None

    def end(self, client: str | None = None) -> None:
        """The transaction that `begin` let in is over (its reply, RSET, or the client left)."""
        if not self.enabled:
            return
        self._active -= 1
        if client is not None:
            self._active_by[client] -= 1
            if self._active_by[client] <= 0:
                del self._active_by[client]

    @property
    def active(self) -> int:
        """Transactions in progress."""
        return self._active

    def full(self) -> bool:
        """Every slot is taken or waited for, or the store has its bound of commits waiting:
        new work would only queue. An open session asking for a new transaction hears "not
        now" before its client sends anything more (SMTP 451 at MAIL, not after DATA)."""
        if not self.enabled:
            return False
        return self._pending_full() or (
            self.limit.in_flight + len(self._waiters) >= self.limit.limit
        )

    def saturated(self) -> bool:
        """The node's CPU is saturated (loop lag at `max_loop_lag`): even work that needs no
        store slot, a status page from memory, should wait. Below that such work is served
        whatever the store-bound limit says, since turning customers away from the status page
        while mail is overloaded is the outage this project exists to prevent."""
        return self.enabled and self.loop_lag >= self.config.max_loop_lag

    def stressed(self) -> bool:
        """Soft overload: take less optional work (queue claims) than usual."""
        if not self.enabled:
            return False
        return self._under_stress() or self.limit.in_flight >= self.limit.limit

    def _under_stress(self) -> bool:
        stress = self.limit.stress_seconds
        return (
            stress is not None and stress > self.config.target_commit_latency
        ) or self.pending_commits >= self.config.max_pending_commits // 2

    # -- signals -----------------------------------------------------------------------------------
    def observe_commit(self, seconds: float) -> None:
        """Store hook: one durable commit took `seconds`."""
        self.metrics.store_commit(seconds)
        self.commit_latency += (seconds - self.commit_latency) * _COMMIT_ALPHA
        self._commits_since_tick += 1

    def observe_lag(self, lag: float) -> None:
        """One loop-lag sample; feeds the limit's stress signal with the commit latency."""
        lag = max(0.0, lag)
        self.loop_lag += (lag - self.loop_lag) * _LAG_ALPHA
        if self._commits_since_tick == 0:
            self.commit_latency *= _COMMIT_FADE
        self._commits_since_tick = 0
        self.limit.observe_stress(self.clock(), self._stress())
        self.sessions.observe(self.loop_lag, self._active + self.arriving)
        self._flush_shed()
        self.metrics.loop_lag.set(lag)
        self.metrics.concurrency_limit.labels("store").set(self.limit.limit)
        self.metrics.in_flight.labels("store").set(self.limit.in_flight)
        self.metrics.concurrency_limit.labels("sessions").set(self.sessions.limit)
        self.metrics.in_flight.labels("sessions").set(self._active)

    def _stress(self) -> float:
        # One signal in commit-latency units. Loop lag counts only past half of max_loop_lag:
        # below that, shedding new connections (overloaded()) is the answer to a busy CPU, and
        # shrinking the transaction limit as well starved the sessions already admitted (the
        # limit fell to min_limit and goodput to a few % at 4x load in benchmarks/overload.py).
        # At max_loop_lag it is at target, at 1.5x max_loop_lag full stress.
        cfg = self.config
        half = cfg.max_loop_lag / 2
        lag_equivalent = max(0.0, self.loop_lag - half) / half * cfg.target_commit_latency
        return max(self.commit_latency, lag_equivalent)

    async def _sample(self) -> None:
        loop = asyncio.get_running_loop()
        interval = self.config.lag_interval
        logged = loop.time()
        while True:
            started = loop.time()
            await asyncio.sleep(interval)
            try:
                self.observe_lag(loop.time() - started - interval)
                if loop.time() - logged >= _LOG_EVERY:
                    logged = loop.time()
                    self._log_state()
            except Exception:  # the sampler must outlive any bug in one tick
                log.exception("event=overload_sample_failed")

    def _log_state(self) -> None:
        limit = self.limit
        if limit.in_flight == 0 and self._active == 0 and not self.stressed():
            return  # an idle node has nothing to say
        log.info(
            "event=overload_state limit=%d in_flight=%d sessions=%d active=%d arriving=%d"
            " loop_lag=%.3f commit=%.3f stress=%.3f baseline=%.3f pending_commits=%d",
            limit.limit,
            limit.in_flight,
            self.sessions.limit,
            self._active,
            self.arriving,
            self.loop_lag,
            self.commit_latency,
            limit.stress_seconds or 0.0,
            limit.baseline_latency,
            self.pending_commits,
        )
