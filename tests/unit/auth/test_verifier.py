"""The password verifier: bounded per node and per client network, fair across networks."""

from __future__ import annotations

import asyncio
import threading

import pytest

from mailfort.auth.passwords import NetworkBusy, Verifier, hash_password, verify_password
from mailfort.errors import Busy
from mailfort.metrics import NodeMetrics


class Gated:
    """A password check that records who ran, in order, and waits until released."""

    def __init__(self) -> None:
        self.order: list[str] = []
        self.release = threading.Event()

    def __call__(self, password_hash: str | None, password: str) -> bool:
        self.order.append(password)
        self.release.wait(10)
        return password == "right"


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_a_real_hash_verifies_once_then_is_remembered() -> None:
    metrics = NodeMetrics()
    verifier = Verifier(metrics=metrics)
    stored = hash_password("right")
    assert await verifier.verify(stored, "right", network="192.0.2.0/24")
    assert await verifier.verify(stored, "right", network="192.0.2.0/24")
    assert not await verifier.verify(stored, "wrong", network="192.0.2.0/24")
    assert not await verifier.verify(None, "right")  # an unknown user costs a check too
    assert verifier.verifications == 3
    assert metrics.password_checks._value.get() == 3
    assert not verify_password("not a hash", "right")


async def test_one_network_holds_at_most_its_share_of_the_waiting_places() -> None:
    check = Gated()
    verifier = Verifier(concurrency=1, max_waiting=8, max_network_share=0.25, check=check)
    attacker = "192.0.2.0/24"
    calls = [
        asyncio.create_task(verifier.verify("h", f"guess{n}", network=attacker)) for n in range(2)
    ]
    await settle()
    with pytest.raises(NetworkBusy):  # 2 of 8 places is its share
        await verifier.verify("h", "guess2", network=attacker)
    others = [
        asyncio.create_task(verifier.verify("h", "x", network=f"10.{n}.0.0/24")) for n in range(6)
    ]
    await settle()
    with pytest.raises(Busy):  # every place is taken: the node's bound
        await verifier.verify("h", "x", network="198.51.100.0/24")
    assert verifier.refused == 1
    check.release.set()
    assert await asyncio.gather(*calls, *others) == [False] * 8
    assert verifier.verifications == 8


async def test_waiting_checks_are_served_round_robin_across_networks() -> None:
    check = Gated()
    verifier = Verifier(concurrency=1, max_waiting=64, max_network_share=0.5, check=check)
    attacker = [
        asyncio.create_task(verifier.verify("h", f"a{n}", network="192.0.2.0/24")) for n in range(6)
    ]
    await settle()
    customer = asyncio.create_task(verifier.verify("h", "right", network="198.51.100.0/24"))
    await settle()
    check.release.set()
    await asyncio.gather(*attacker)
    assert await customer
    # The customer came after six guesses, and waited for one of them only.
    assert check.order[:3] == ["a0", "right", "a1"], check.order


async def test_a_caller_that_goes_away_gives_its_turn_on() -> None:
    check = Gated()
    verifier = Verifier(concurrency=1, max_waiting=8, max_network_share=1.0, check=check)
    first = asyncio.create_task(verifier.verify("h", "first", network="n1"))
    await settle()
    gone = asyncio.create_task(verifier.verify("h", "gone", network="n2"))
    last = asyncio.create_task(verifier.verify("h", "right", network="n3"))
    await settle()
    gone.cancel()
    await settle()
    check.release.set()
    assert not await first
    assert await last
    assert "gone" not in check.order
    with pytest.raises(asyncio.CancelledError):
        await gone
    # Every place is free again.
    assert await asyncio.gather(*(verifier.verify("h", "right", network="n4") for _ in range(2)))
