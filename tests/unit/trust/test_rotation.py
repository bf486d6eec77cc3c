"""Rotation in steps: publish new keys, switch once DNS has them and the wait is over, retire the
old ones after they were kept in DNS; each step says what to publish or remove and when."""

from __future__ import annotations

from mailfort.cli_dkim import txt_lookup
from mailfort.config import Config, DeliveryConfig
from mailfort.store.records import DkimKey, DkimState
from mailfort.store.sqlite import SqliteStore
from mailfort.trust.rotation import NOT_NOW, OK, Rotation, published_key
from tests.dkim_support import publish
from tests.dnsserver import NameServer, Zone
from tests.unit.trust.conftest import active_keys

HOUR = 3600.0
DAY = 24 * HOUR
T0 = 1_796_650_000.0  # December 2026


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def rotation(store: SqliteStore, server: NameServer | None, clock: Clock) -> Rotation:
    lookup = None
    if server is not None:
        config = Config(delivery=DeliveryConfig(dns_nameservers=(server.address,)))
        lookup = txt_lookup(config)
    return Rotation(
        store=store,
        algorithms=["rsa-sha256", "ed25519-sha256"],
        prefix="mf",
        publish_wait=48 * HOUR,
        retire_wait=7 * DAY,
        lookup=lookup,
        clock=clock,
    )


def states(keys: list[DkimKey]) -> dict[str, DkimState]:
    return {k.selector: k.state for k in keys}


async def test_a_rotation_from_start_to_end(
    store: SqliteStore, zone: Zone, nameserver: NameServer
) -> None:
    clock = Clock()
    old = active_keys("x.test")
    await store.add_dkim_keys(old)
    steps = rotation(store, nameserver, clock)

    first = await steps.step("x.test")
    assert first.status == OK
    new = [k for k in await store.dkim_keys("x.test") if k.state is DkimState.PUBLISHED]
    assert sorted(k.selector for k in new) == ["mf202612e", "mf202612r"]
    text = "\n".join(first.lines)
    assert all(f"{k.selector}._domainkey.x.test." in text for k in new)
    assert "2026-12-09" in text  # when to come back: 48 h later

    # Too early: nothing changes, and it says when.
    clock.now += 47 * HOUR
    early = await steps.step("x.test")
    assert early.status == NOT_NOW and "2026-12-09" in early.lines[0]
    assert states(await store.dkim_keys("x.test"))["mf202612r"] is DkimState.PUBLISHED

    # On time but not in DNS: no switch; the records to publish are repeated.
    clock.now += 2 * HOUR
    absent = await steps.step("x.test")
    assert absent.status == NOT_NOW and any("mf202612r._domainkey" in ln for ln in absent.lines)
    assert all(k.state is DkimState.ACTIVE for k in await store.dkim_keys("x.test") if k in old)

    publish(zone, new)
    switched = await steps.step("x.test")
    assert switched.status == OK, switched.lines
    assert "DNS has mf202612r._domainkey.x.test." in switched.lines
    now = states(await store.dkim_keys("x.test"))
    assert now == {
        **{k.selector: DkimState.RETIRING for k in old},
        "mf202612r": DkimState.ACTIVE,
        "mf202612e": DkimState.ACTIVE,
    }

    clock.now += 6 * DAY
    assert (await steps.step("x.test")).status == NOT_NOW
    clock.now += 1 * DAY + 1
    done = await steps.step("x.test")
    assert done.status == OK
    assert all(
        any(f"{k.selector}._domainkey.x.test. IN TXT" == ln for ln in done.lines) for k in old
    )
    assert {states(await store.dkim_keys("x.test"))[k.selector] for k in old} == {DkimState.RETIRED}

    # The next rotation picks selectors never used before.
    await steps.step("x.test")
    newest = [k for k in await store.dkim_keys("x.test") if k.state is DkimState.PUBLISHED]
    assert sorted(k.selector for k in newest) == ["mf202612be", "mf202612br"]


async def test_now_skips_the_waits_and_an_unreachable_resolver_is_said(
    store: SqliteStore,
) -> None:
    clock = Clock()
    await store.add_dkim_keys(active_keys("y.test"))
    unreachable = Rotation(
        store=store,
        algorithms=["ed25519-sha256"],
        prefix="mf",
        publish_wait=48 * HOUR,
        retire_wait=7 * DAY,
        lookup=txt_lookup(Config(delivery=DeliveryConfig(dns_nameservers=("127.0.0.1:9",)))),
        clock=clock,
    )
    await unreachable.step("y.test")
    switched = await unreachable.step("y.test", skip_wait=True)
    assert switched.status == OK
    assert any("DNS not checked" in ln for ln in switched.lines)
    retired = await unreachable.step("y.test", skip_wait=True)
    assert retired.status == OK
    assert [k.state for k in await store.dkim_keys("y.test")].count(DkimState.RETIRED) == 2
    # Without a resolver at all, the switch says so too.
    await store.add_dkim_keys(active_keys("z.test"))
    blind = rotation(store, None, clock)
    await blind.step("z.test")
    assert (
        "DNS not checked: no resolver is configured."
        in (await blind.step("z.test", skip_wait=True)).lines
    )


def test_the_published_key_is_read_from_the_record() -> None:
    assert published_key(["v=DKIM1; k=rsa; p=AB CD"]) == "ABCD"
    assert published_key(["v=spf1 -all", "v=DKIM1; p=XY"]) == "XY"
    assert published_key(["garbage", ""]) is None
