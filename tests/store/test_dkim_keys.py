"""DKIM keys in the store: stored once per selector, read back by every node, rotated in one
transaction (new keys active, old ones retiring), retired; and secrets the first node sets."""

from __future__ import annotations

import asyncio

import pytest

from mailfort.errors import AlreadyExists, NotFound
from mailfort.store.api import Store
from mailfort.store.records import DkimKey, DkimState
from tests.store.conftest import Engine

T0 = 1_800_000_000.0
DAY = 86400.0


def key(selector: str, domain: str = "x.test", *, created: float = T0, **kw: object) -> DkimKey:
    algorithm = "ed25519-sha256" if selector.endswith("e") else "rsa-sha256"
    fields: dict[str, object] = {"state": DkimState.PUBLISHED} | kw
    return DkimKey(
        domain=domain,
        selector=selector,
        algorithm=algorithm,
        private_key=f"private of {selector}",
        public_key=f"PUB{selector}",
        created=created,
        **fields,  # type: ignore[arg-type]
    )


def states(found: list[DkimKey]) -> dict[str, DkimState]:
    return {k.selector: k.state for k in found}


async def test_keys_are_read_back_by_another_node(store: Store, engine: Engine) -> None:
    await store.add_dkim_keys([key("s1r"), key("s1e"), key("a1r", "y.test", created=T0 - 5)])
    other = engine.new_store()
    await other.open()
    try:
        mine = await other.dkim_keys("x.test")
        assert [k.selector for k in mine] == ["s1e", "s1r"]
        assert mine[1] == key("s1r")
        assert mine[0].txt_record == "v=DKIM1; k=ed25519; p=PUBs1e"
        assert mine[1].txt_record == "v=DKIM1; k=rsa; p=PUBs1r"
        assert [(k.domain, k.selector) for k in await other.dkim_keys()] == [
            ("x.test", "s1e"),
            ("x.test", "s1r"),
            ("y.test", "a1r"),
        ]
        assert await other.dkim_keys("z.test") == []
    finally:
        await other.close()


async def test_a_selector_names_one_key_forever(store: Store) -> None:
    await store.add_dkim_keys([key("s1r")])
    with pytest.raises(AlreadyExists):
        await store.add_dkim_keys([key("s2r"), key("s1r")])
    # All or none: the new key before the clash was not stored either.
    assert [k.selector for k in await store.dkim_keys("x.test")] == ["s1r"]
    # The same selector in another domain is another key.
    await store.add_dkim_keys([key("s1r", "y.test")])


async def test_rotation_activates_new_keys_and_retires_the_old_in_one_step(store: Store) -> None:
    await store.add_dkim_keys([key("s1r"), key("s1e"), key("o1r", "y.test")])
    assert await store.activate_dkim_keys("x.test", ["s1r", "s1e"], T0, T0 + 7 * DAY) == []
    await store.activate_dkim_keys("y.test", ["o1r"], T0, T0)
    first = await store.dkim_keys("x.test")
    assert states(first) == {"s1r": DkimState.ACTIVE, "s1e": DkimState.ACTIVE}
    assert {k.activated_at for k in first} == {T0}

    await store.add_dkim_keys([key("s2r", created=T0 + DAY), key("s2e", created=T0 + DAY)])
    assert states(await store.dkim_keys("x.test"))["s2r"] == DkimState.PUBLISHED
    retiring = await store.activate_dkim_keys("x.test", ["s2r", "s2e"], T0 + 2 * DAY, T0 + 9 * DAY)
    assert [(k.selector, k.state, k.retire_after) for k in retiring] == [
        ("s1e", DkimState.RETIRING, T0 + 9 * DAY),
        ("s1r", DkimState.RETIRING, T0 + 9 * DAY),
    ]
    now = await store.dkim_keys("x.test")
    assert states(now) == {
        "s1r": DkimState.RETIRING,
        "s1e": DkimState.RETIRING,
        "s2r": DkimState.ACTIVE,
        "s2e": DkimState.ACTIVE,
    }
    # Another domain's keys are not touched by this domain's rotation.
    assert states(await store.dkim_keys("y.test")) == {"o1r": DkimState.ACTIVE}

    assert await store.retire_dkim_keys("x.test", ["s1r", "s1e", "s2r"], T0 + 9 * DAY) == 2
    done = {k.selector: k for k in await store.dkim_keys("x.test")}
    assert done["s1r"].state == DkimState.RETIRED and done["s1r"].retired_at == T0 + 9 * DAY
    assert done["s2r"].state == DkimState.ACTIVE  # only retiring keys retire
    assert await store.delete_dkim_key("x.test", "s1r")
    assert not await store.delete_dkim_key("x.test", "s1r")


async def test_activating_an_unknown_or_retired_key_changes_nothing(store: Store) -> None:
    await store.add_dkim_keys([key("s1r", state=DkimState.ACTIVE, activated_at=T0)])
    await store.add_dkim_keys([key("s0r", state=DkimState.RETIRED)])
    for bad in (["nope"], ["s0r"]):
        with pytest.raises(NotFound):
            await store.activate_dkim_keys("x.test", bad, T0 + DAY, T0 + 2 * DAY)
    with pytest.raises(ValueError):
        await store.activate_dkim_keys("x.test", [], T0 + DAY, T0 + 2 * DAY)
    assert states(await store.dkim_keys("x.test")) == {
        "s1r": DkimState.ACTIVE,
        "s0r": DkimState.RETIRED,
    }


async def test_every_node_gets_the_first_nodes_secret(store: Store, engine: Engine) -> None:
    others = [engine.new_store() for _ in range(3)]
    await asyncio.gather(*(o.open() for o in others))
    try:
        got = await asyncio.gather(
            *(s.shared_secret("srs", bytes([i]) * 32) for i, s in enumerate([store, *others]))
        )
        assert len(set(got)) == 1 and len(got[0]) == 32
        assert await store.shared_secret("srs", b"later") == got[0]
        assert await store.shared_secret("other", b"\x00\xff") == b"\x00\xff"
    finally:
        for o in others:
            await o.close()
