"""The status leader on a real SQLite store: heartbeats in, components, incidents, webhooks out.

The nodes are rows the test writes with the store's own `register_node`/`heartbeat` (each
carrying a metrics window, as `Membership` does); the clock is the test's, so hysteresis is
exact and nothing waits.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mailfort.config import StatusConfig
from mailfort.metrics import NodeMetrics, WindowStats
from mailfort.status import Component, ComponentState, IncidentStatus, Origin
from mailfort.status.repository import StatusRepository
from mailfort.status.service import LEADER_LEASE, StatusService
from mailfort.store.sqlite import SqliteStore
from tests.webhook_receiver import Receiver

T0 = 1_780_000_000.0
SETTINGS = StatusConfig(
    evaluate_seconds=1.0,
    window_seconds=60.0,
    worsen_after=2.0,
    recover_after=4.0,
    login_min_attempts=5,
    remote_min_attempts=5,
    webhook_allow_private=True,  # the test's subscriber listens on loopback
)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = SqliteStore(tmp_path / "mailfort.sqlite3")
    await s.open()
    yield s
    await s.close()


def imap_window(now: float, ok: int, failed: int) -> dict[str, object]:
    stats = WindowStats(window=60.0)
    stats.count("login.imap.ok", now, ok)
    stats.count("login.imap.fail", now, failed)
    return stats.snapshot(now)


async def beat(store: SqliteStore, now: float, window: dict[str, object], *names: str) -> None:
    for name in names:
        await store.heartbeat(name, {"window": window}, now)


def service(store: SqliteStore, name: str, clock: Clock, **kwargs: object) -> StatusService:
    return StatusService(
        store,
        node_name=name,
        settings=SETTINGS,
        heartbeat_seconds=1.0,
        url="https://status.example/",
        hostname="mx.example.test",
        clock=clock,
        **kwargs,  # type: ignore[arg-type]
    )


async def test_one_leader_publishes_opens_and_resolves_an_incident(store: SqliteStore) -> None:
    clock = Clock()
    repo = StatusRepository(store)
    for name in ("n1", "n2"):
        await store.register_node(name, [], clock.now)
    hooks = Receiver()
    await repo.add_webhook(hooks.url, now=clock.now)
    metrics = NodeMetrics()
    leader = service(store, "n1", clock, metrics=metrics)
    follower = service(store, "n2", clock)
    try:
        # Healthy first, then 3 of 10 logins succeed: below the partial-outage line (50 %).
        bad = False
        opened_at = None
        for second in range(12):
            clock.now = T0 + second
            if second == 3:
                bad = True
            window = imap_window(clock.now, 3, 7) if bad else imap_window(clock.now, 10, 0)
            await beat(store, clock.now, window, "n1", "n2")
            await leader.step()
            await follower.step()
            state = (await repo.components())[Component.IMAP].state
            if state is not ComponentState.OPERATIONAL and opened_at is None:
                opened_at = clock.now
        assert leader.leader and not follower.leader
        assert await store.lease_holder(LEADER_LEASE, clock.now) == "n1"
        assert opened_at == T0 + 5  # bad from 3, published after worsen_after (2 s)
        published = (await repo.components())[Component.IMAP]
        assert published.state is ComponentState.PARTIAL_OUTAGE and published.since == T0 + 5
        assert {f.signal for f in published.findings} == {"login_success_rate"}
        (incident,) = await repo.incidents(open_only=True)
        assert incident.origin is Origin.AUTOMATIC
        assert incident.components == {Component.IMAP: ComponentState.PARTIAL_OUTAGE}
        assert metrics.component_state.labels("imap")._value.get() == 2
        assert metrics.incidents_open._value.get() == 1

        # Recovery: healthy windows for recover_after (4 s), then the incident resolves itself.
        for second in range(12, 20):
            clock.now = T0 + second
            await beat(store, clock.now, imap_window(clock.now, 10, 0), "n1", "n2")
            await leader.step()
        assert (await repo.components())[Component.IMAP].state is ComponentState.OPERATIONAL
        done = await repo.incident(incident.id)
        assert done is not None and done.status is IncidentStatus.RESOLVED
        assert done.resolved_at == T0 + 16
        assert [e.change.new for e in done.timeline if e.change] == [
            ComponentState.PARTIAL_OUTAGE,
            ComponentState.OPERATIONAL,
        ]
        history = (await repo.history(clock.now, days=1))[Component.IMAP][-1]
        assert history.worst is ComponentState.PARTIAL_OUTAGE and history.outage_seconds > 0

        await leader.webhooks.drain(timeout=10)
        events = [json.loads(body) for _, body in hooks.bodies]
        # Deliveries run side by side, so they arrive in any order.
        changes = sorted(
            (e["component_update"]["old_status"], e["component_update"]["new_status"])
            for e in events
            if "component_update" in e
        )
        assert changes == [("operational", "partial_outage"), ("partial_outage", "operational")]
        statuses = sorted(e["incident"]["status"] for e in events if "incident" in e)
        assert statuses == ["investigating", "resolved"]
    finally:
        await leader.stop()
        await follower.stop()
        hooks.close()


async def test_a_new_leader_continues_instead_of_reopening(store: SqliteStore) -> None:
    clock = Clock()
    repo = StatusRepository(store)
    for name in ("n1", "n2"):
        await store.register_node(name, [], clock.now)
    first = service(store, "n1", clock)
    for second in range(4):
        clock.now = T0 + second
        await beat(store, clock.now, imap_window(clock.now, 0, 10), "n1", "n2")
        await first.step()
    (incident,) = await repo.incidents(open_only=True)
    await first.stop()  # hands the lease back

    second_leader = service(store, "n2", clock)
    for second in range(4, 8):
        clock.now = T0 + second
        await beat(store, clock.now, imap_window(clock.now, 0, 10), "n2")
        await second_leader.step()
    assert second_leader.leader
    # The same incident, not a second one; the state was loaded, not re-derived from scratch.
    assert [i.id for i in await repo.incidents(open_only=True)] == [incident.id]
    assert (await repo.components())[Component.IMAP].state is ComponentState.MAJOR_OUTAGE
    await second_leader.stop()


async def test_a_dead_node_degrades_every_component(store: SqliteStore) -> None:
    clock = Clock()
    repo = StatusRepository(store)
    for name in ("n1", "n2"):
        await store.register_node(name, [], clock.now)
    leader = service(store, "n1", clock)
    for second in range(8):
        clock.now = T0 + second
        await beat(store, clock.now, {}, "n1")  # n2 stopped beating at T0: dead after 3 s
        await leader.step()
    states = {c: p.state for c, p in (await repo.components()).items()}
    # 1 of 2 nodes live: 50 % is the partial-outage line, not below it: degraded.
    assert set(states.values()) == {ComponentState.DEGRADED}
    await store.set_node_state("n2", "gone")  # an operator marks it: expected nodes shrink
    for second in range(8, 14):
        clock.now = T0 + second
        await beat(store, clock.now, {}, "n1")
        await leader.step()
    assert {p.state for p in (await repo.components()).values()} == {ComponentState.OPERATIONAL}
    assert await repo.incidents(open_only=True) == []
    await leader.stop()


async def test_a_store_outage_mid_fault_does_not_restart_the_hysteresis(
    store: SqliteStore,
) -> None:
    clock = Clock()
    repo = StatusRepository(store)
    await store.register_node("n1", [], clock.now)
    leader = service(store, "n1", clock)
    for second in (0, 1):  # bad from T0 on
        clock.now = T0 + second
        await beat(store, clock.now, imap_window(clock.now, 0, 10), "n1")
        await leader.step()
    await store.close()  # the store goes away for a while
    clock.now = T0 + 1.5
    await leader.tick()  # fails, logged, not raised
    assert leader.leader
    await store.open()
    clock.now = T0 + 2
    await beat(store, clock.now, imap_window(clock.now, 0, 10), "n1")
    await leader.step()
    # Bad since T0, published at T0 + worsen_after: the outage did not reset the clock.
    published = (await repo.components())[Component.IMAP]
    assert published.state is ComponentState.MAJOR_OUTAGE and published.since == T0 + 2
    (incident,) = await repo.incidents(open_only=True)
    assert incident.opened_at == T0 + 2
    await leader.stop()
