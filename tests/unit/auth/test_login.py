"""One password login (`auth/login.Logins`) over a real SQLite store and real argon2 hashes:
counted before the check, the owner's networks spared, slots held for store work only, and
only the platform's doing in the public window."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from mailfort.auth.known import KnownNetworks
from mailfort.auth.login import Logins, Outcome
from mailfort.auth.passwords import Verifier, verify_password
from mailfort.auth.throttle import AuthThrottle, ThrottleLimits
from mailfort.config import OverloadConfig
from mailfort.metrics import NodeMetrics
from mailfort.server.overload import OverloadGate
from mailfort.store.records import Account
from mailfort.store.sqlite import SqliteStore

PASSWORD = "correct horse"
# Argon2 reads its cost from the stored hash: accounts hashed cheaply keep these tests quick on a
# busy machine while every check still runs the real verifier. (Unknown users are checked
# against the full-cost dummy hash.)
CHEAP = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
OWNER = "192.0.2.10"  # the owner's network: 192.0.2.0/24
LIMITS = ThrottleLimits(per_address=3, per_network=6, per_account=4, window=600, base_delay=0.01)


class CountingStore(SqliteStore):
    """The real SQLite store, counting account reads."""

    reads = 0

    async def get_account(self, address: str) -> Account | None:
        self.reads += 1
        return await super().get_account(address)


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[CountingStore]:
    s = CountingStore(tmp_path / "store.sqlite3")
    await s.open()
    await s.add_domain("x.test")
    stored = CHEAP.hash(PASSWORD)
    for user in ("alice", "bob"):
        await s.add_account(f"{user}@x.test", stored)
    yield s
    await s.close()


def logins(
    store: SqliteStore,
    limits: ThrottleLimits = LIMITS,
    verifier: Verifier | None = None,
    metrics: NodeMetrics | None = None,
) -> Logins:
    return Logins(
        store=store,
        verifier=verifier or Verifier(),
        throttle=AuthThrottle(limits),
        known=KnownNetworks(store),
        metrics=metrics,
    )


async def test_right_wrong_and_unknown(store: CountingStore) -> None:
    metrics = NodeMetrics()
    auth = logins(store, metrics=metrics)
    ok = await auth.attempt("imap", OWNER, "Alice@X.test", PASSWORD)
    assert ok.outcome is Outcome.SUCCESS and ok.account is not None
    assert ok.account.address == "alice@x.test"
    wrong = await auth.attempt("imap", "198.51.100.1", "alice@x.test", "guess")
    unknown = await auth.attempt("imap", "198.51.100.2", "nobody@x.test", PASSWORD)
    garbage = await auth.attempt("imap", "198.51.100.3", "\0not an address", PASSWORD)
    for attempt in (wrong, unknown, garbage):
        assert attempt.outcome is Outcome.REJECTED and attempt.account is None
        assert attempt.delay == 0.01
    for attempt in (ok, wrong, unknown, garbage):
        auth.record(attempt)
        auth.record(attempt)  # once only
    # What the platform did reaches the window; the strangers' failures do not.
    assert metrics.snapshot()["counts"] == {"login.imap.ok": 1}
    assert (
        metrics.registry.get_sample_value(
            "mailfort_logins_total", {"protocol": "imap", "result": "rejected"}
        )
        == 3
    )


async def test_an_attack_on_an_account_spares_its_owner_on_a_known_network(
    store: CountingStore,
) -> None:
    auth = logins(store)
    assert (await auth.attempt("pop3", OWNER, "alice@x.test", PASSWORD)).ok
    assert await store.login_networks((await store.get_account("alice@x.test")).id, 0) == {  # type: ignore[union-attr]
        "192.0.2.0/24": pytest.approx(auth.known.clock(), abs=60)
    }
    # Guesses from four networks fill the account's count ...
    for n in range(4):
        guess = await auth.attempt("imap", f"10.{n}.0.1", "alice@x.test", f"guess{n}")
        assert guess.outcome is Outcome.REJECTED
    # ... so a fifth network is refused unchecked ...
    refused = await auth.attempt("imap", "10.9.0.1", "alice@x.test", PASSWORD)
    assert refused.outcome is Outcome.THROTTLED and refused.refused_by == "account"
    # ... and so is the owner somewhere new (the price of the account's limit) ...
    assert (await auth.attempt("smtp", "203.0.113.5", "alice@x.test", PASSWORD)).outcome is (
        Outcome.THROTTLED
    )
    # ... but from the network the owner logged in from, on every protocol, the owner gets in,
    # even from another address of it.
    for protocol in ("imap", "pop3", "submission", "http"):
        assert (await auth.attempt(protocol, "192.0.2.77", "alice@x.test", PASSWORD)).ok
    # Another account is not touched.
    assert (await auth.attempt("imap", "10.9.0.1", "bob@x.test", PASSWORD)).ok


async def test_known_networks_survive_a_restart_and_are_written_once(
    store: CountingStore, tmp_path: Path
) -> None:
    first = logins(store)
    for _ in range(5):
        assert (await first.attempt("imap", OWNER, "alice@x.test", PASSWORD)).ok
    assert first.known.writes == 1  # new network: one write; the rest changed nothing
    assert first.known.reads == 0  # nobody needed to ask
    # A node started afresh on the same store (or another node of the cluster).
    again = logins(store)
    for n in range(4):
        await again.attempt("imap", f"10.{n}.0.1", "alice@x.test", "guess")
    assert (await again.attempt("imap", OWNER, "alice@x.test", PASSWORD)).ok
    assert again.known.reads == 1
    # A changed password forgets them: whoever knew the old one is nobody's to trust.
    await store.set_password("alice@x.test", CHEAP.hash("new one"))
    third = logins(store)
    for n in range(4):
        await third.attempt("imap", f"10.{n}.0.1", "alice@x.test", "guess")
    owner = await third.attempt("imap", OWNER, "alice@x.test", "new one")
    assert owner.outcome is Outcome.THROTTLED


async def test_a_concurrent_burst_gets_exactly_the_limits_worth_of_checks(
    store: CountingStore,
) -> None:
    """70 wrong logins at once from one address: 3 password checks (the address's limit), not
    one per attempt that passed the check before the first failure was recorded; and 3 store
    reads, since the address is counted before its account is read."""
    verifier = Verifier(max_waiting=200, max_network_share=1.0)
    auth = logins(store, verifier=verifier)
    store.reads = 0
    burst = await asyncio.gather(
        *(auth.attempt("imap", "198.51.100.1", "alice@x.test", f"g{n}") for n in range(70))
    )
    outcomes = [a.outcome for a in burst]
    assert outcomes.count(Outcome.REJECTED) == 3
    assert outcomes.count(Outcome.THROTTLED) == 67
    assert verifier.verifications == 3 and store.reads == 3
    # From 70 addresses of 70 networks, the account's limit holds the same way.
    verifier = Verifier(max_waiting=200, max_network_share=1.0)
    auth = logins(store, verifier=verifier)
    burst = await asyncio.gather(
        *(auth.attempt("imap", f"10.{n}.0.1", "bob@x.test", f"g{n}") for n in range(70))
    )
    assert [a.outcome for a in burst].count(Outcome.REJECTED) == 4
    assert verifier.verifications == 4


async def test_the_gate_slot_covers_the_store_read_only(store: CountingStore) -> None:
    """The password check (and with it the failure delay the caller waits out) runs with no
    overload-gate slot held, so wrong passwords cannot hold slots or count as store latency."""
    gate = OverloadGate(OverloadConfig(), NodeMetrics())
    in_flight: list[int] = []

    def check(password_hash: str | None, password: str) -> bool:
        in_flight.append(gate.limit.in_flight)
        return verify_password(password_hash, password)

    auth = logins(store, verifier=Verifier(check=check))
    attempts = [
        await auth.attempt("imap", "10.0.0.1", "nobody@x.test", "x", gate),
        await auth.attempt("imap", "10.0.0.1", "alice@x.test", "x", gate),
        await auth.attempt("imap", OWNER, "alice@x.test", PASSWORD, gate),
    ]
    assert [a.outcome for a in attempts] == [Outcome.REJECTED] * 2 + [Outcome.SUCCESS]
    assert in_flight == [0, 0, 0]
    assert gate.limit.in_flight == 0
    # Refused by the gate: the platform's refusal, not the client's.
    full = OverloadGate(OverloadConfig(initial_limit=1, min_limit=1, max_limit=1), NodeMetrics())
    held = full.try_acquire("imap")
    assert held is not None
    refused = await auth.attempt("imap", OWNER, "alice@x.test", PASSWORD, full)
    assert refused.outcome is Outcome.UNAVAILABLE and refused.refused_by == "overload"


async def test_the_platforms_failures_are_errors_and_not_counted_against_the_client(
    store: CountingStore,
) -> None:
    metrics = NodeMetrics()
    auth = logins(store, verifier=Verifier(max_waiting=1, max_network_share=1.0), metrics=metrics)
    # Every check place taken (by another network): Busy, the platform's refusal.
    blocker = asyncio.create_task(auth.verifier.verify(None, "x", network="203.0.113.0/24"))
    await asyncio.sleep(0)
    busy = await auth.attempt("imap", OWNER, "alice@x.test", PASSWORD)
    assert busy.outcome is Outcome.UNAVAILABLE and busy.refused_by == "verifier"
    await blocker
    # One network over its share of the places: its own doing.
    share = logins(store, verifier=Verifier(max_waiting=4, max_network_share=0.25))
    first = asyncio.create_task(share.attempt("imap", "198.51.100.1", "nobody@x.test", "x"))
    await asyncio.sleep(0.05)
    second = await share.attempt("imap", "198.51.100.2", "nobody@x.test", "x")
    assert second.outcome is Outcome.THROTTLED and second.refused_by == "verifier"
    assert (await first).outcome is Outcome.REJECTED
    # The store gone: an error, and the attempt is not counted against the address.
    await store.close()
    down = await auth.attempt("imap", OWNER, "alice@x.test", PASSWORD)
    assert down.outcome is Outcome.UNAVAILABLE and down.refused_by == "store"
    auth.record(busy)
    auth.record(down)
    assert metrics.snapshot()["counts"] == {"login.imap.fail": 2}
    assert auth.throttle.blocked(OWNER) is None
    await store.open()
