"""SRS: forwarded mail's envelope sender and the way back for its bounces, refused when forged or
expired; resolved by the directory before any alias or catch-all could take the address."""

from __future__ import annotations

import pytest

from mailfort.mail.address import normalize
from mailfort.mail.directory import Directory
from mailfort.store.sqlite import SqliteStore
from mailfort.trust.srs import MAX_AGE_DAYS, Srs

DAY = 86400.0
T0 = 1_800_000_000.0
SECRET = b"s" * 32


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def test_forward_and_reverse() -> None:
    srs = Srs(SECRET, clock=lambda: T0)
    address = srs.forward("Alice.Smith@elsewhere.example", "ours.test")
    local, _, domain = address.rpartition("@")
    assert domain == "ours.test" and local.startswith("SRS0=")
    assert local.endswith("=elsewhere.example=Alice.Smith")
    assert srs.reverse(address) == "alice.smith@elsewhere.example"
    # Mail software lower-cases addresses (ours does): the hash is case-insensitive by design.
    assert srs.reverse(normalize(address)) == "alice.smith@elsewhere.example"
    # The same secret on another node reads it; another secret does not.
    assert Srs(SECRET, clock=lambda: T0).reverse(address) is not None
    assert Srs(b"t" * 32, clock=lambda: T0).reverse(address) is None


def test_expired_and_future_addresses_are_refused() -> None:
    clock = Clock()
    srs = Srs(SECRET, clock=clock)
    address = srs.forward("alice@elsewhere.example", "ours.test")
    clock.now = T0 + MAX_AGE_DAYS * DAY
    assert srs.reverse(address) == "alice@elsewhere.example"
    clock.now = T0 + (MAX_AGE_DAYS + 1) * DAY
    assert srs.reverse(address) is None
    clock.now = T0 - 2 * DAY  # stamped "in the future": not one we made
    assert srs.reverse(address) is None


@pytest.mark.parametrize(
    "forged",
    [
        "SRS0=aaaaaaaa=j2=victim.example=bob@ours.test",  # a guessed hash
        "SRS0==j2=victim.example=bob@ours.test",
        "SRS0=abc@ours.test",
        "SRS1=xxxx=other.example==aaaa=j2=victim.example=bob@ours.test",  # we make no SRS1
        "SRS0=aaaaaaaa=!!=victim.example=bob@ours.test",
        "bob@ours.test",
    ],
)
def test_forged_addresses_are_refused(forged: str) -> None:
    assert Srs(SECRET, clock=lambda: T0).reverse(forged) is None


def test_changing_any_part_breaks_the_hash() -> None:
    srs = Srs(SECRET, clock=lambda: T0)
    address = srs.forward("alice@elsewhere.example", "ours.test")
    assert srs.reverse(address.replace("=alice@", "=mallory@")) is None
    assert srs.reverse(address.replace("elsewhere.example", "victim.example")) is None


def test_nothing_is_accepted_before_the_secret_is_loaded() -> None:
    srs = Srs()
    assert not srs.ready
    assert srs.reverse("SRS0=aaaaaaaa=j2=victim.example=bob@ours.test") is None
    with pytest.raises(ValueError):
        Srs(b"short")


async def test_every_node_loads_the_same_secret(store: SqliteStore) -> None:
    a, b = Srs(clock=lambda: T0), Srs(clock=lambda: T0)
    await a.load_secret(store)
    await b.load_secret(store)
    assert b.reverse(a.forward("alice@elsewhere.example", "ours.test")) is not None


async def test_the_directory_sends_bounces_back_and_refuses_forgeries(
    store: SqliteStore,
) -> None:
    await store.add_domain("ours.test")
    # A catch-all must not swallow a forged SRS address: that would relay to the victim.
    await store.add_alias("@ours.test", "someone@remote.test")
    srs = Srs(SECRET, clock=lambda: T0)
    directory = Directory(store, bounce_to=srs.reverse, cache_seconds=0)
    address = normalize(srs.forward("alice@elsewhere.example", "ours.test"))
    found = await directory.resolve(address)
    assert found is not None and found.remote == ["alice@elsewhere.example"] and not found.local
    assert await directory.resolve("srs0=aaaaaaaa=j2=victim.example=bob@ours.test") is None
    # Other addresses resolve as before (the catch-all).
    other = await directory.resolve("anyone@ours.test")
    assert other is not None and other.remote == ["someone@remote.test"]
    # Without SRS, the address is like any other.
    plain = Directory(store, cache_seconds=0)
    legacy = await plain.resolve("srs0=aaaaaaaa=j2=victim.example=bob@ours.test")
    assert legacy is not None and legacy.remote == ["someone@remote.test"]
