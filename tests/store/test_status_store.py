"""Status records (components, history, incidents, maintenance, webhooks) on every engine.

Through `StatusRepository` and the `StatusRecords` role methods.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from contextlib import closing
from dataclasses import replace

import pytest

from mailfort.errors import AlreadyExists, NotFound
from mailfort.status.components import ALL_COMPONENTS, Component, ComponentState, StateChange
from mailfort.status.incidents import (
    Author,
    Incident,
    IncidentStatus,
    Origin,
    TimelineEntry,
)
from mailfort.status.repository import PublishedComponent, StatusRepository
from mailfort.status.signals import Finding, Protocol, Severity
from mailfort.store.api import Store
from mailfort.store.records import Settlement, WebhookOutcome
from mailfort.store.sqlite.status import QUEUE_HEALTH_SQL
from tests.store.conftest import Engine, SqliteEngine
from tests.store.helpers import inbox, request, user

# 2027-01-15 00:00:00 UTC: a midnight, so day arithmetic below is easy to follow.
MIDNIGHT = 1_800_000_000.0 - (1_800_000_000.0 % 86400)
DAY = 86400.0
LEASE = 30.0


def repo(store: Store) -> StatusRepository:
    return StatusRepository(store)


def automatic_incident(incident_id: str, at: float) -> Incident:
    findings = (
        Finding("login_success_rate", 0.3125, 0.5, Severity.DOWN, Protocol.IMAP),
        Finding("store_commit_p95", 2.718281828459045, 2.0, Severity.DOWN),
    )
    change = StateChange(
        Component.IMAP, ComponentState.OPERATIONAL, ComponentState.PARTIAL_OUTAGE, at, findings
    )
    return Incident(
        id=incident_id,
        origin=Origin.AUTOMATIC,
        title="IMAP: partial outage",
        status=IncidentStatus.INVESTIGATING,
        opened_at=at,
        components={Component.IMAP: ComponentState.PARTIAL_OUTAGE},
        timeline=(
            TimelineEntry(at, IncidentStatus.INVESTIGATING, Author.AUTOMATIC, change=change),
        ),
    )


# -- incidents ------------------------------------------------------------------------------------
async def test_an_incident_round_trips_with_its_timeline_and_findings(store: Store) -> None:
    status = repo(store)
    incident_id = await status.new_id("inc")
    incident = automatic_incident(incident_id, MIDNIGHT + 0.1)
    operator = TimelineEntry(
        MIDNIGHT + 60.5, IncidentStatus.IDENTIFIED, Author.OPERATOR, "Disk replaced — ünïcode ok"
    )
    incident = replace(incident, timeline=(*incident.timeline, operator))
    await status.save_incident(incident)

    assert await status.incident(incident_id) == incident
    assert await status.incidents() == [incident]
    assert await status.incidents(open_only=True) == [incident]
    assert await status.incident("inc-999") is None


async def test_operator_incidents_open_update_and_resolve(store: Store) -> None:
    status = repo(store)
    opened = await status.open_incident(
        MIDNIGHT, "Slow logins", "We are looking into it", {Component.IMAP: ComponentState.DEGRADED}
    )
    assert opened.id == "inc-1" and opened.origin is Origin.OPERATOR
    updated = await status.update_incident(
        MIDNIGHT + 10,
        opened.id,
        "Found it",
        IncidentStatus.IDENTIFIED,
        {Component.POP3: ComponentState.MAJOR_OUTAGE},
    )
    assert updated.status is IncidentStatus.IDENTIFIED
    assert dict(updated.components) == {
        Component.IMAP: ComponentState.DEGRADED,
        Component.POP3: ComponentState.MAJOR_OUTAGE,
    }
    assert [e.text for e in updated.timeline] == ["We are looking into it", "Found it"]
    assert await status.incident(opened.id) == updated

    resolved = await status.update_incident(
        MIDNIGHT + 20, opened.id, "Fixed", IncidentStatus.RESOLVED
    )
    assert resolved.resolved_at == MIDNIGHT + 20 and not resolved.open
    assert await status.incidents(open_only=True) == []
    with pytest.raises(ValueError, match="resolved"):
        await status.update_incident(MIDNIGHT + 30, opened.id, "again")
    with pytest.raises(NotFound):
        await status.update_incident(MIDNIGHT + 30, "inc-404", "nobody")
    with pytest.raises(ValueError):
        await status.open_incident(MIDNIGHT, "t", "x", status=IncidentStatus.RESOLVED)

    page = await status.page(MIDNIGHT + 40, days=3)
    assert page.open_incidents == () and page.recent_incidents == (resolved,)
    later = await status.page(MIDNIGHT + 15 * DAY, days=3)
    assert later.recent_incidents == ()


async def test_incidents_are_listed_newest_update_first(store: Store) -> None:
    status = repo(store)
    first = await status.open_incident(MIDNIGHT, "first", "a")
    second = await status.open_incident(MIDNIGHT + 5, "second", "b")
    assert [i.id for i in await status.incidents()] == [second.id, first.id]
    await status.update_incident(MIDNIGHT + 9, first.id, "news")
    assert [i.id for i in await status.incidents()] == [first.id, second.id]
    assert [i.id for i in await status.incidents(since=MIDNIGHT + 6)] == [first.id]
    assert len(await status.incidents(limit=1)) == 1


async def test_the_leader_saving_a_stale_copy_keeps_the_operators_entries(store: Store) -> None:
    status = repo(store)
    incident = automatic_incident(await status.new_id("inc"), MIDNIGHT)
    await status.save_incident(incident)
    by_operator = await status.update_incident(MIDNIGHT + 5, incident.id, "We know", None)

    # The leader's in-memory copy does not have the operator's entry yet.
    change = StateChange(
        Component.IMAP, ComponentState.PARTIAL_OUTAGE, ComponentState.OPERATIONAL, MIDNIGHT + 9
    )
    recovered = replace(
        incident,
        status=IncidentStatus.RESOLVED,
        resolved_at=MIDNIGHT + 9,
        components={Component.IMAP: ComponentState.OPERATIONAL},
        timeline=(
            *incident.timeline,
            TimelineEntry(MIDNIGHT + 9, IncidentStatus.RESOLVED, Author.AUTOMATIC, change=change),
        ),
    )
    await status.save_incident(recovered)
    stored = await status.incident(incident.id)
    assert stored is not None
    assert stored.timeline == (*incident.timeline, by_operator.timeline[-1], recovered.timeline[-1])
    assert stored.status is IncidentStatus.RESOLVED and stored.resolved_at == MIDNIGHT + 9


# -- maintenance ----------------------------------------------------------------------------------
async def test_maintenance_windows_are_listed_soonest_first_and_cancelled(store: Store) -> None:
    status = repo(store)
    with pytest.raises(ValueError, match="end after"):
        await status.add_maintenance("bad", "x", MIDNIGHT, MIDNIGHT)
    later = await status.add_maintenance("Disks", "new disks", MIDNIGHT + 7200, MIDNIGHT + 9000)
    sooner = await status.add_maintenance(
        "Network", "switch swap", MIDNIGHT + 100, MIDNIGHT + 3600, (Component.IMAP,)
    )
    past = await status.add_maintenance("Old", "done", MIDNIGHT - 7200, MIDNIGHT - 3600)
    assert later.id == "mnt-1" and sooner.components == (Component.IMAP,)

    assert await status.maintenance(MIDNIGHT) == [sooner, later]
    assert await status.maintenance(MIDNIGHT, include_past=True) == [past, sooner, later]

    cancelled = await status.cancel_maintenance(MIDNIGHT + 1, later.id, "postponed")
    assert cancelled.cancelled_at == MIDNIGHT + 1 and cancelled.updates[-1].text == "postponed"
    assert await status.maintenance(MIDNIGHT) == [sooner]
    assert cancelled in await status.maintenance(MIDNIGHT, include_past=True)
    with pytest.raises(ValueError, match="cancelled"):
        await status.cancel_maintenance(MIDNIGHT + 2, later.id, "again")
    with pytest.raises(NotFound):
        await status.cancel_maintenance(MIDNIGHT, "mnt-404", "x")
    assert (await status.page(MIDNIGHT, days=1)).maintenance == (sooner,)


# -- components and history -----------------------------------------------------------------------
async def test_components_default_to_operational_and_round_trip(store: Store) -> None:
    status = repo(store)
    assert await status.components() == {
        c: PublishedComponent(c, ComponentState.OPERATIONAL, None) for c in ALL_COMPONENTS
    }
    imap = PublishedComponent(
        Component.IMAP,
        ComponentState.MAJOR_OUTAGE,
        MIDNIGHT,
        (Finding("login_p95_latency", 31.5, 30.0, Severity.MAJOR, Protocol.IMAP),),
        MIDNIGHT + 15,
    )
    await status.save_components({Component.IMAP: imap})
    found = await status.components()
    assert found[Component.IMAP] == imap
    assert found[Component.POP3].state is ComponentState.OPERATIONAL
    back = replace(imap, state=ComponentState.OPERATIONAL, since=MIDNIGHT + 400, findings=())
    await status.save_components({Component.IMAP: back})
    page = await status.page(MIDNIGHT + 500, days=1)
    assert page.components[Component.IMAP] == back
    assert page.overall is ComponentState.OPERATIONAL


async def test_history_adds_seconds_keeps_the_worst_and_fills_unmeasured_days(
    store: Store,
) -> None:
    status = repo(store)
    imap, pop3 = Component.IMAP, Component.POP3
    ok, degraded, major = (
        ComponentState.OPERATIONAL,
        ComponentState.DEGRADED,
        ComponentState.MAJOR_OUTAGE,
    )
    noon = MIDNIGHT + DAY / 2
    await status.record_history(noon, 15, {imap: degraded, pop3: ok})
    await status.record_history(noon + 15, 15, {imap: major, pop3: ok})
    await status.record_history(noon + 30, 15, {imap: degraded, pop3: ok})
    # 10 s before midnight and 5 s after: split between the two days.
    await status.record_history(MIDNIGHT + DAY + 5, 15, {imap: degraded, pop3: ok})

    history = await status.history(MIDNIGHT + DAY + 60, days=4)
    assert set(history) == set(ALL_COMPONENTS)
    assert all(len(days) == 4 for days in history.values())
    before, yesterday, today = history[imap][1], history[imap][2], history[imap][3]
    assert history[imap][0].day == "2027-01-13" and today.day == "2027-01-16"
    assert not before.measured and not history[Component.WEBMAIL][2].measured
    assert yesterday.measured and yesterday.worst is major
    assert yesterday.degraded_seconds == pytest.approx(40.0)
    assert yesterday.outage_seconds == pytest.approx(15.0)
    assert today.worst is degraded and today.degraded_seconds == pytest.approx(5.0)
    assert history[pop3][2].worst is ok and history[pop3][2].degraded_seconds == 0.0

    # Rows beyond history_days are pruned when history is recorded.
    short = StatusRepository(store, history_days=2)
    await short.record_history(MIDNIGHT + 2 * DAY + 1, 1, {imap: ok})
    kept = await status.history(MIDNIGHT + 2 * DAY + 1, days=4)
    assert [d.measured for d in kept[imap]] == [False, False, True, True]


# -- webhooks -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "url",
    [
        "ftp://hooks.example/x",
        "javascript:alert(1)",
        "http:///no-host",
        "https://exa mple.test/",
        "hooks.example/path",
        "http://host:port/",
    ],
)
async def test_webhook_urls_must_be_http_or_https_with_a_host(store: Store, url: str) -> None:
    with pytest.raises(ValueError):
        await repo(store).add_webhook(url)
    assert await repo(store).webhooks() == []


async def test_webhooks_add_list_remove(store: Store) -> None:
    status = repo(store)
    first = await status.add_webhook("https://hooks.example/a", now=MIDNIGHT)
    second = await status.add_webhook(
        "http://10.0.0.1:8080/b?x=1", (Component.IMAP, Component.POP3), now=MIDNIGHT + 1
    )
    assert await status.webhooks() == [first, second]
    assert second.components == (Component.IMAP, Component.POP3)
    with pytest.raises(AlreadyExists):
        await status.add_webhook("https://hooks.example/a")
    assert await status.remove_webhook(first.id) is True
    assert await status.remove_webhook(first.id) is False
    assert await status.webhooks() == [second]


async def test_public_subscriptions_are_capped_in_all_and_per_network(store: Store) -> None:
    status = repo(store)
    net_a, net_b = "192.0.2.0/24", "2001:db8::/64"

    async def sub(url: str, network: str) -> WebhookOutcome:
        added = await status.subscribe(url, network=network, max_total=4, max_per_network=2)
        return added.outcome

    assert await sub("https://a.example/1", net_a) is WebhookOutcome.CREATED
    assert await sub("https://a.example/2", net_a) is WebhookOutcome.CREATED
    assert await sub("https://a.example/3", net_a) is WebhookOutcome.NETWORK_FULL
    # The same URL again is its existing subscription, unchanged, whoever asks.
    again = await status.subscribe(
        "https://a.example/1", (Component.IMAP,), network=net_b, max_total=4, max_per_network=2
    )
    assert again.outcome is WebhookOutcome.EXISTS and again.hook is not None
    assert again.hook.components == () and again.hook.url == "https://a.example/1"
    assert await sub("https://b.example/1", net_b) is WebhookOutcome.CREATED
    # The operator's own (CLI, no network) count only toward the total.
    await status.add_webhook("https://ops.example/hook")
    assert await sub("https://b.example/2", net_b) is WebhookOutcome.FULL
    assert len(await status.webhooks()) == 4
    stored = {r.url: r.network for r in await store.status_webhooks()}
    assert stored["https://a.example/1"] == net_a and stored["https://ops.example/hook"] == ""


async def test_concurrent_subscriptions_cannot_pass_the_cap(store: Store) -> None:
    status = repo(store)
    results = await asyncio.gather(
        *(status.subscribe(f"https://c.example/{n}", network="n", max_total=5) for n in range(20))
    )
    assert [r.outcome for r in results].count(WebhookOutcome.CREATED) == 5
    assert len(await status.webhooks()) == 5


# -- ids and leases -------------------------------------------------------------------------------
async def test_new_ids_count_per_prefix_and_never_repeat(store: Store) -> None:
    status = repo(store)
    assert await status.new_id("inc") == "inc-1"
    assert await status.new_id("mnt") == "mnt-1"
    ids = await asyncio.gather(*(status.new_id("inc") for _ in range(20)))
    assert sorted(ids, key=lambda i: int(i.split("-")[1])) == [f"inc-{n}" for n in range(2, 22)]


async def test_named_leases_extend_expire_and_are_taken_over(store: Store) -> None:
    t = MIDNIGHT
    assert await store.acquire_lease("status-leader", "n1", t + LEASE, t) is True
    assert await store.lease_holder("status-leader", t + 1) == "n1"
    assert await store.acquire_lease("status-leader", "n2", t + 1 + LEASE, t + 1) is False
    assert await store.acquire_lease("other", "n2", t + LEASE, t) is True  # names are separate
    # Ours again: extended.
    assert await store.acquire_lease("status-leader", "n1", t + 2 * LEASE, t + 20) is True
    assert await store.acquire_lease("status-leader", "n2", t + 3 * LEASE, t + LEASE + 1) is False
    # Expired: anyone's.
    assert await store.lease_holder("status-leader", t + 2 * LEASE) is None
    assert await store.acquire_lease("status-leader", "n2", t + 3 * LEASE, t + 2 * LEASE) is True
    assert await store.lease_holder("status-leader", t + 2 * LEASE) == "n2"
    await store.release_lease("status-leader", "n1")  # not n1's: nothing happens
    assert await store.lease_holder("status-leader", t + 2 * LEASE) == "n2"
    await store.release_lease("status-leader", "n2")
    assert await store.lease_holder("status-leader", t + 2 * LEASE) is None
    assert await store.acquire_lease("status-leader", "n3", t + 3 * LEASE, t + 2 * LEASE) is True


async def test_concurrent_lease_attempts_have_one_winner(store: Store) -> None:
    results = await asyncio.gather(
        *(
            store.acquire_lease("status-leader", f"n{i}", MIDNIGHT + LEASE, MIDNIGHT)
            for i in range(8)
        )
    )
    assert sorted(results) == [False] * 7 + [True]


# -- delayed mail, queue health -------------------------------------------------------------------
async def test_late_settlements_are_recorded_per_account_in_the_settling_transaction(
    store: Store,
) -> None:
    alice = await user(store, "alice@a.test")
    bob = await user(store, "bob@a.test")
    now = time.time()
    late = now - 2000  # accepted long before the 900 s threshold
    # Outbound mail alice sent (logged in): attributed to her; two recipients, one message.
    sent = replace(
        request(remote=("x@remote.test", "y@remote.test"), received=late),
        sender="alice@a.test",
        authenticated="alice@a.test",
    )
    fresh = replace(
        request(remote=("z@remote.test",), received=now - 5),
        sender="alice@a.test",
        authenticated="alice@a.test",
    )
    bounced = replace(
        request(remote=("gone@remote.test",), received=late - 100), sender="bob@a.test"
    )
    unknown = request(remote=("w@remote.test",), received=late)  # a remote sender: nobody's
    for req in (sent, fresh, bounced, unknown):
        await store.accept(req)
    await store.accept(request(queued_local=(bob,), received=late - 50))

    remote = await store.claim_remote("n1", now, LEASE, 10)
    assert len(remote) == 5
    by_rcpt = {i.recipient: i for i in remote}
    delivered = [
        by_rcpt[r] for r in ("x@remote.test", "y@remote.test", "z@remote.test", "w@remote.test")
    ]
    assert await store.settle_queued(
        Settlement(delivered=delivered, failed=[by_rcpt["gone@remote.test"]]), "n1"
    )
    (local,) = await store.claim_queue("n1", now, LEASE, 10, local_only=True)
    assert await store.deliver_queued(local, "n1", b"") is True

    done = time.time()
    found = await repo(store).delayed_accounts(now - 60, done, done, 900.0)
    assert [(d.address, d.count) for d in found] == [("alice@a.test", 1), ("bob@a.test", 2)]
    assert found[0].max_delay == pytest.approx(2000, abs=10)
    assert found[1].max_delay == pytest.approx(2100, abs=10)
    # Outside the window, or a higher threshold: nothing.
    assert await repo(store).delayed_accounts(done + 1, done + 2, done + 2, 900.0) == []
    assert await repo(store).delayed_accounts(now - 60, done, done, 5000.0) == []
    assert alice.id != bob.id


async def test_items_still_queued_too_long_count_as_delayed(store: Store) -> None:
    alice = await user(store, "alice@a.test")
    now = time.time()
    await store.accept(request(queued_local=(alice,), received=now - 1000))
    await store.accept(request(queued_local=(alice,), received=now - 10))
    (found,) = await repo(store).delayed_accounts(now - 60, now, now, 900.0)
    assert (found.address, found.count) == ("alice@a.test", 1)
    assert found.max_delay == pytest.approx(1000, abs=1)
    # Settled in time: nothing is recorded for the timely one.
    items = await store.claim_queue("n1", now, LEASE, 10, local_only=True)
    for item in items:
        assert await store.deliver_queued(item, "n1", b"")
    (after,) = await repo(store).delayed_accounts(now - 60, time.time(), time.time(), 900.0)
    assert (after.address, after.count) == ("alice@a.test", 1)
    store.delay_threshold = 5.0  # what the node sets from [status] notice_delay
    await store.accept(request(queued_local=(alice,), received=now - 10))
    (item,) = await store.claim_queue("n1", now, LEASE, 10, local_only=True)
    assert await store.deliver_queued(item, "n1", b"")
    (lower,) = await repo(store).delayed_accounts(now - 60, time.time(), time.time(), 5.0)
    assert lower.count == 2


async def test_queue_health_counts_due_items_and_their_oldest(store: Store) -> None:
    assert await store.queue_health(MIDNIGHT) == (0, None)
    await store.accept(request(remote=("a@remote.test", "b@remote.test"), received=MIDNIGHT - 50))
    await store.accept(request(remote=("c@remote.test",), received=MIDNIGHT - 10))
    await store.accept(request(remote=("d@remote.test",), received=MIDNIGHT + 100))  # not due
    assert await store.queue_health(MIDNIGHT) == (3, MIDNIGHT - 50)
    assert await store.queue_health(MIDNIGHT - 20) == (2, MIDNIGHT - 50)


async def test_queue_health_leaves_out_retries_and_items_in_flight(store: Store) -> None:
    """What the platform owes is mail nobody tried yet and nobody works on: a retry waits for a
    destination that failed (a stranger's dead domain), a leased item for a remote server."""
    await store.accept(request(remote=("a@remote.test", "b@remote.test"), received=MIDNIGHT - 50))
    await store.accept(request(remote=("c@remote.test",), received=MIDNIGHT - 10))
    items = await store.claim_remote("n1", MIDNIGHT, LEASE, 10)
    assert len(items) == 3
    assert await store.queue_health(MIDNIGHT) == (0, None)  # all three in flight
    for item in items:
        if item.recipient in ("a@remote.test", "b@remote.test"):
            assert await store.defer_queued(item, "n1", MIDNIGHT + 20, "busy")
    # The lease on c ran out (its worker died): owed again, as old as it is. a and b are due
    # again, but as retries.
    later = MIDNIGHT + LEASE + 1
    assert await store.queue_health(later) == (1, MIDNIGHT - 10)


async def test_queue_health_reads_only_its_covering_index(engine: Engine, store: Store) -> None:
    if not isinstance(engine, SqliteEngine):
        pytest.skip("the plan is SQLite's; PostgreSQL has the same index (queue_untried)")
    with closing(sqlite3.connect(engine.path)) as conn:
        plan = " ".join(
            str(r[-1])
            for r in conn.execute("EXPLAIN QUERY PLAN " + QUEUE_HEALTH_SQL, (MIDNIGHT, MIDNIGHT))
        )
    assert "COVERING INDEX queue_untried" in plan


# -- notices and per-account status ---------------------------------------------------------------
async def test_a_notice_is_delivered_once_into_inbox_like_any_message(store: Store) -> None:
    alice = await user(store, "alice@a.test")
    box = await store.get_mailbox(alice.id, "INBOX")
    assert box is not None
    woken = store.hub.subscribe(box.id)
    message = b"From: status@a.test\r\nSubject: Your mail was delayed\r\n\r\n3 messages\r\n"
    status = repo(store)
    try:
        assert await status.deliver_notice("inc-1", "alice@a.test", message, MIDNIGHT) is True
        assert woken.is_set()
    finally:
        store.hub.unsubscribe(box.id, woken)
    assert await status.deliver_notice("inc-1", "alice@a.test", message, MIDNIGHT + 1) is False
    assert await inbox(store, alice) == [message]
    (row,) = await store.list_messages(alice.id, "INBOX")
    after = await store.get_mailbox(alice.id, "INBOX")
    assert after is not None
    assert row.uid == box.uidnext and after.uidnext == box.uidnext + 1
    assert after.highestmodseq > box.highestmodseq and row.internal_date == MIDNIGHT
    again = await store.get_account(alice.address)
    assert again is not None and again.used_bytes == len(message)
    # Another key is another notice; an unknown address is an error, not a silent skip.
    assert await status.deliver_notice("inc-2", "alice@a.test", message, MIDNIGHT + 2) is True
    assert len(await inbox(store, alice)) == 2
    with pytest.raises(NotFound):
        await status.deliver_notice("inc-1", "nobody@a.test", message, MIDNIGHT)


async def test_concurrent_notices_for_one_key_deliver_one_message(store: Store) -> None:
    alice = await user(store, "alice@a.test")
    message = b"Subject: notice\r\n\r\nbody\r\n"
    results = await asyncio.gather(
        *(repo(store).deliver_notice("inc-9", alice.address, message, MIDNIGHT) for _ in range(6))
    )
    assert sorted(results) == [False] * 5 + [True]
    assert len(await inbox(store, alice)) == 1


async def test_account_status_counts_their_queued_mail_both_ways(store: Store) -> None:
    status = repo(store)
    alice = await user(store, "alice@a.test")
    bob = await user(store, "bob@a.test")
    assert await status.account_status("nobody@a.test", MIDNIGHT) is None
    empty = await status.account_status("alice@a.test", MIDNIGHT)
    assert empty is not None
    assert (empty.queued_from, empty.queued_for, empty.oldest_queued_at) == (0, 0, None)
    assert empty.last_inbox_delivery is None and empty.incidents == () and not empty.delayed

    # Two messages she sent wait (one of them for two recipients), one for her, one for bob.
    await store.accept(
        replace(
            request(remote=("x@remote.test", "y@remote.test"), received=MIDNIGHT - 100),
            authenticated="alice@a.test",
        )
    )
    await store.accept(
        replace(request(remote=("z@remote.test",), received=MIDNIGHT - 50), sender="alice@a.test")
    )
    await store.accept(request(queued_local=(alice,), received=MIDNIGHT - 2000))
    await store.accept(request(queued_local=(bob,), received=MIDNIGHT - 5000))
    await store.accept(request(local=(alice,), received=MIDNIGHT - 30))
    await store.accept(request(local=(alice,), received=MIDNIGHT - 20))
    incident = await status.open_incident(MIDNIGHT, "Delays", "Mail is slow")

    found = await status.account_status("alice@a.test", MIDNIGHT)
    assert found is not None
    assert (found.queued_from, found.queued_for) == (2, 1)
    assert found.oldest_queued_at == MIDNIGHT - 2000
    assert found.last_inbox_delivery == MIDNIGHT - 20
    assert found.incidents == (incident,)
    assert found.delayed  # 2000 s > the 900 s default
    store.delay_threshold = 3000.0
    relaxed = await status.account_status("alice@a.test", MIDNIGHT)
    assert relaxed is not None and not relaxed.delayed
