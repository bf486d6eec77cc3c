"""The node's overload gate: admission, refusals counted, stress signals, the store hook."""

from __future__ import annotations

import asyncio
import contextlib
import time
from pathlib import Path

from mailfort.config import OverloadConfig
from mailfort.metrics import NodeMetrics
from mailfort.server.overload import OverloadGate
from mailfort.store.sqlite import SqliteStore


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def refusals(metrics: NodeMetrics, protocol: str, reason: str) -> float:
    value = metrics.registry.get_sample_value(
        "mailfort_admission_refusals_total", {"protocol": protocol, "reason": reason}
    )
    return value or 0.0


def gate(**overrides: object) -> tuple[OverloadGate, NodeMetrics, Clock]:
    small = {"initial_limit": 3, "min_limit": 1, "max_limit": 3}
    small |= {"initial_sessions": 3, "min_sessions": 1, "max_sessions": 3}
    config = OverloadConfig(**{**small, **overrides})  # type: ignore[arg-type]
    metrics = NodeMetrics()
    clock = Clock()
    return OverloadGate(config, metrics, clock=clock), metrics, clock


def test_admits_up_to_the_limit_then_refuses_and_counts_it() -> None:
    g, metrics, _ = gate()
    tokens = [g.try_acquire("smtp") for _ in range(3)]
    assert all(t is not None for t in tokens)
    assert g.try_acquire("imap") is None
    assert refusals(metrics, "imap", "limit") == 1
    first = tokens[0]
    assert first is not None
    g.release(first)
    g.release(first)  # a second release is harmless, not a second free slot
    assert g.try_acquire("smtp") is not None
    assert g.try_acquire("smtp") is None


def test_forget_frees_the_slot_without_a_sample() -> None:
    g, _, clock = gate()
    token = g.try_acquire("pop3")
    assert token is not None
    clock.now += 100.0  # a client that sat for 100 s must not teach the limit anything
    g.forget(token)
    assert g.limit.in_flight == 0
    assert g.limit.baseline_latency == 0.0


def test_disabled_gate_admits_everything() -> None:
    g, metrics, _ = gate(enabled=False)
    tokens = [g.try_acquire("smtp") for _ in range(50)]
    assert all(t is not None for t in tokens)
    assert not g.overloaded() and not g.stressed()
    for t in tokens:
        assert t is not None
        g.release(t, ok=False)
    assert refusals(metrics, "smtp", "limit") == 0


def test_failures_back_the_limit_off() -> None:
    g, _, _ = gate(initial_limit=20, max_limit=40)
    for _ in range(10):
        token = g.try_acquire("smtp")
        assert token is not None
        g.release(token, ok=False)
    assert g.limit.limit < 20


def test_loop_lag_makes_the_node_hard_overloaded_and_shrinks_the_limit() -> None:
    g, metrics, clock = gate(initial_limit=40, max_limit=40, max_loop_lag=0.2)
    assert not g.overloaded()
    for _ in range(30):
        clock.now += 0.1
        g.observe_lag(0.5)
        token = g.try_acquire("smtp")
        if token is not None:
            g.release(token, latency=0.01)
    assert not g.overloaded()  # nothing in play: the lag is not this node's doing
    assert g.begin() is None  # a transaction at work (it was admitted before the lag)
    assert g.overloaded()
    assert g.stressed()
    assert g.limit.limit < 40
    assert metrics.registry.get_sample_value("mailfort_event_loop_lag_seconds") == 0.5
    # Recovery: the lag average falls below the bound again.
    for _ in range(30):
        clock.now += 0.1
        g.observe_lag(0.0)
    assert not g.overloaded()


def test_loop_lag_sheds_only_once_the_node_has_its_least_work_in_play() -> None:
    # A busy host or the node's own start-up lags the loop with no sessions at all: refusing
    # the first ones could not help, and min_limit is the work a node always takes.
    g, _, clock = gate(
        initial_limit=40, max_limit=40, max_loop_lag=0.2,
        initial_sessions=40, min_sessions=4, max_sessions=40,
    )  # fmt: skip
    for _ in range(30):
        clock.now += 0.1
        g.observe_lag(1.0)  # past max_loop_lag / 2: every new session would be shed
    assert g.admit() and g.admit()  # two reserved
    assert g.begin() is None  # three in play
    assert g.admit()  # the fourth still comes in
    assert g.admit() is None  # with four in play the lag is the node's own: shed


def test_full_limit_is_overload_at_connect() -> None:
    g, _, _ = gate()
    held = [g.try_acquire("smtp") for _ in range(2)]
    assert not g.overloaded()  # a slot is free: a new session may get it
    held.append(g.try_acquire("smtp"))
    assert g.overloaded()  # every slot taken: a new session could only be refused later
    token = held.pop()
    assert token is not None
    g.release(token)
    assert not g.overloaded()


def test_commit_latency_above_target_shrinks_the_limit() -> None:
    g, _, clock = gate(initial_limit=40, max_limit=40, target_commit_latency=0.05)
    assert not g.stressed()
    for _ in range(50):
        g.observe_commit(0.5)
        clock.now += 0.1
        g.observe_lag(0.0)
        token = g.try_acquire("smtp")
        assert token is not None
        g.release(token, latency=0.01)
    assert g.stressed()
    assert g.limit.limit < 40


def test_pending_commits_bound_with_a_real_store(tmp_path: Path) -> None:
    """Holding SQLite's write lock from another connection makes writes wait: the gate sees
    them pending and refuses; once they commit, it sees their latency."""
    import sqlite3

    async def run() -> None:
        store = SqliteStore(tmp_path / "db.sqlite3")
        await store.open()
        g, metrics, _ = gate(max_pending_commits=2)
        g.attach(store)
        try:
            await store.add_domain("example.test")  # a commit while nobody blocks
            assert g.commit_latency > 0
            assert (
                metrics.registry.get_sample_value("mailfort_store_commit_duration_seconds_count")
                == 1.0
            )
            blocker = sqlite3.connect(tmp_path / "db.sqlite3", isolation_level=None)
            blocker.execute("BEGIN IMMEDIATE")
            writes = [asyncio.create_task(store.add_domain(f"d{i}.test")) for i in range(2)]
            deadline = time.monotonic() + 5
            while store.pending_commits < 2 and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            assert g.pending_commits == 2
            assert g.try_acquire("smtp") is None
            assert refusals(metrics, "smtp", "commits") == 1
            assert g.overloaded()
            await asyncio.sleep(0.3)
            blocker.execute("COMMIT")
            blocker.close()
            await asyncio.gather(*writes)
            assert store.pending_commits == 0
            assert not g.overloaded()
            # The blocked batch waited ~0.3 s for the lock: that is the commit latency seen.
            assert g.commit_latency > 0.03
        finally:
            await store.close()

    asyncio.run(run())


def test_sampler_measures_real_loop_lag() -> None:
    async def run() -> float:
        g, _, _ = gate(lag_interval=0.02)
        g.clock = time.monotonic
        g.start()
        try:
            await asyncio.sleep(0.05)
            for _ in range(5):
                time.sleep(0.1)  # block the loop: every timer is late
                await asyncio.sleep(0.03)
            return g.loop_lag
        finally:
            await g.stop()

    assert asyncio.run(run()) > 0.02


def test_shed_connections_are_counted_at_the_next_tick() -> None:
    g, metrics, _ = gate()
    for _ in range(5):
        g.shed("smtp")
    assert refusals(metrics, "smtp", "overload") == 0
    g.observe_lag(0.0)
    assert refusals(metrics, "smtp", "overload") == 5
    assert metrics.snapshot()["counts"]["refused.smtp"] == 5


async def test_an_open_session_waits_briefly_for_a_slot_given_back() -> None:
    g, metrics, _ = gate()
    held = [g.try_acquire("smtp") for _ in range(3)]
    waiting = asyncio.create_task(g.acquire("smtp", wait=5.0))
    await asyncio.sleep(0.01)
    assert not waiting.done() and g.overloaded()  # a waiter is demand: new connections wait out
    first = held[0]
    assert first is not None
    g.release(first)
    token = await asyncio.wait_for(waiting, 1.0)
    assert token is not None and g.limit.in_flight == 3
    assert refusals(metrics, "smtp", "limit") == 0  # it waited, it was not refused


async def test_a_wait_that_runs_out_is_one_refusal() -> None:
    g, metrics, _ = gate()
    for _ in range(3):
        g.try_acquire("smtp")
    assert await g.acquire("smtp", wait=0.05) is None
    assert refusals(metrics, "smtp", "limit") == 1
    assert not g._waiters


async def test_a_session_that_leaves_while_waiting_does_not_keep_a_slot() -> None:
    g, _, _ = gate()
    held = [g.try_acquire("smtp") for _ in range(3)]
    gone = asyncio.create_task(g.acquire("smtp", wait=5.0))
    await asyncio.sleep(0.01)
    gone.cancel()  # the client hung up while waiting
    with contextlib.suppress(asyncio.CancelledError):
        await gone
    assert not g._waiters
    first = held[0]
    assert first is not None
    g.release(first)  # nobody is waiting any more: the slot is simply free
    assert g.limit.in_flight == 2
    assert g.try_acquire("smtp") is not None


def test_admitted_connections_reserve_their_first_slot_at_once() -> None:
    # asyncio accepts a burst before it builds any session: each admission must count at once,
    # or the whole burst passes a limit of 3 and most of it is refused later at MAIL.
    g, _, _ = gate()
    assert [g.admit() is not None for _ in range(5)] == [True, True, True, False, False]
    assert g.arriving == 3


def test_a_session_s_reservation_becomes_its_transaction() -> None:
    g, _, _ = gate()
    first = g.admit()
    assert first and g.admit() and g.admit()
    g.arrived(first)
    assert g.begin() is None  # the reservation became the transaction: still 3 in all
    assert g.active == 1 and g.admit() is None
    g.end()
    assert g.admit()


def test_transactions_at_work_are_bounded_and_one_network_holds_its_share() -> None:
    g, _, _ = gate(initial_sessions=8, max_sessions=8)
    g.client_share = 0.25  # two of eight
    hog = "192.0.2.0/24"
    assert g.begin(hog) is None and g.begin(hog) is None
    assert g.begin(hog) == "client"
    assert all(g.begin(f"198.51.{n}.0/24") is None for n in range(6))
    assert g.begin("203.0.113.0/24") == "limit"
    assert g.overloaded()  # and new connections are refused at connect
    g.end(hog)
    assert g.begin(hog) is None
    assert g.active == 8


def test_the_sessions_limit_follows_the_loop_lag() -> None:
    g, _, clock = gate(initial_sessions=100, min_sessions=10, max_sessions=1000)
    for _ in range(20):  # saturated: shrinks
        clock.now += 0.1
        g.observe_lag(0.5)
    assert g.sessions.limit < 20
    for _ in range(50):  # the smoothed lag falls back
        clock.now += 0.1
        g.observe_lag(0.0)
    shrunk = g.sessions.limit
    for _ in range(50):  # healthy but idle: holds (growth needs the limit to be used)
        clock.now += 0.1
        g.observe_lag(0.0)
    assert g.sessions.limit == shrunk
    while g.begin() is None:  # healthy and used: grows
        pass
    clock.now += 0.1
    g.observe_lag(0.0)
    assert g.sessions.limit > shrunk


def test_reservations_run_out_and_a_late_session_gives_back_nothing() -> None:
    g, _, clock = gate()
    early = g.admit()
    assert early
    clock.now += 1.5
    late = g.admit()
    assert late and g.admit()
    clock.now += 1.0  # the first reservation is over: a session silent for 2 s holds nothing
    assert g.arriving == 2
    g.arrived(early)  # its own ran out: the other two stay reserved
    assert g.arriving == 2
    g.arrived(late)
    assert g.arriving == 1
    g.arrived(late)  # given back once only
    assert g.arriving == 1
    clock.now += 5.0
    assert g.arriving == 0
    g.arrived(late)  # nothing left to give back, and nothing goes negative
    assert g.arriving == 0 and g.admit()


def test_a_disabled_gate_admits_without_reserving() -> None:
    g, _, _ = gate(enabled=False)
    assert all(g.admit() for _ in range(10))
    assert g.arriving == 0


def test_saturated_only_at_max_loop_lag_and_never_when_disabled() -> None:
    # Pages served from memory are refused only then, whatever the store-bound limit says.
    g, _, _ = gate(max_loop_lag=0.2)
    held = [g.try_acquire("smtp") for _ in range(3)]
    assert all(held) and g.overloaded()
    assert not g.saturated()
    g.loop_lag = 0.19
    assert not g.saturated()
    g.loop_lag = 0.2
    assert g.saturated()
    off, _, _ = gate(enabled=False, max_loop_lag=0.2)
    off.loop_lag = 5.0
    assert not off.saturated()


def test_one_client_network_holds_at_most_its_share_of_slots() -> None:
    g, metrics, _ = gate(initial_limit=8, max_limit=8)
    g.client_share = 0.25  # two of eight
    mine = [g.try_acquire("smtp", "192.0.2.0/24") for _ in range(3)]
    assert mine[0] is not None and mine[1] is not None and mine[2] is None
    assert refusals(metrics, "smtp", "client") == 1
    assert refusals(metrics, "smtp", "limit") == 0
    # Everyone else still finds the other six.
    others = [g.try_acquire("smtp", f"198.51.{n}.0/24") for n in range(6)]
    assert all(t is not None for t in others)
    assert g.try_acquire("smtp", "203.0.113.0/24") is None
    assert refusals(metrics, "smtp", "limit") == 1
    first = mine[0]
    assert first is not None
    g.release(first)
    assert g.try_acquire("smtp", "192.0.2.0/24") is not None  # its share has room again


async def test_a_waiting_client_at_its_share_does_not_block_the_queue() -> None:
    g, _, _ = gate(initial_limit=4, max_limit=4)
    g.client_share = 0.5  # two of four
    hog = "192.0.2.0/24"
    held = [g.try_acquire("smtp", hog), g.try_acquire("smtp", hog)]
    other = [g.try_acquire("smtp", "198.51.100.0/24"), g.try_acquire("smtp", "198.51.100.0/24")]
    assert all(held) and all(other)
    # The hog is at its share: it may not even queue; a stranger to it waits and is served.
    assert await g.acquire("smtp", 0.5, hog) is None
    waiting = asyncio.ensure_future(g.acquire("smtp", 5.0, "203.0.113.0/24"))
    await asyncio.sleep(0)
    released = other[0]
    assert released is not None
    g.release(released)
    token = await asyncio.wait_for(waiting, 1.0)
    assert token is not None and token.client == "203.0.113.0/24"


def test_one_client_network_holds_at_most_its_share_of_connect_reservations() -> None:
    # ~80 silent connections a second from one machine once took every reservation: each lasts
    # two seconds, and with them every other client's connection was refused as "overload".
    g, _, _ = gate(initial_sessions=8, max_sessions=8)
    g.client_share = 0.25
    hog = "192.0.2.0/24"
    assert g.admit(hog) and g.admit(hog)
    assert g.reservations_full(hog)
    assert g.admit(hog) is None
    assert not g.overloaded()
    assert all(g.admit(f"198.51.{n}.0/24") for n in range(6))
    assert g.overloaded()  # now the node is full, for everyone alike
