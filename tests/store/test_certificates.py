"""The `Certificates` role on both engines: stored certificates, HTTP-01 answers, account keys."""

from __future__ import annotations

import asyncio

from mailfort.store.api import Store
from mailfort.store.records import StoredCertificate
from tests.store.conftest import Engine


def cert(serial: int, updated: float) -> StoredCertificate:
    return StoredCertificate(
        name="acme",
        chain_pem=f"chain {serial}",
        key_pem=f"key {serial}",
        names=("mx.example.test", "mta-sts.example.test"),
        not_after=1_000_000.0 + serial,
        updated=updated,
    )


async def test_a_certificate_is_replaced_whole(store: Store) -> None:
    assert await store.certificate("acme") is None
    await store.put_certificate(cert(1, 10.0))
    await store.put_certificate(cert(2, 20.0))
    assert await store.certificate("acme") == cert(2, 20.0)
    assert await store.certificate("other") is None


async def test_challenges_answer_until_they_expire(store: Store) -> None:
    await store.put_acme_challenge("tok-1", "tok-1.thumb", expires=100.0, now=0.0)
    assert await store.acme_challenge("tok-1", now=99.0) == "tok-1.thumb"
    assert await store.acme_challenge("tok-1", now=100.0) is None
    assert await store.acme_challenge("tok-2", now=0.0) is None
    await store.delete_acme_challenge("tok-1")
    assert await store.acme_challenge("tok-1", now=0.0) is None


async def test_an_expired_challenge_is_dropped_by_the_next_one(store: Store) -> None:
    await store.put_acme_challenge("old", "old.thumb", expires=10.0, now=0.0)
    await store.put_acme_challenge("new", "new.thumb", expires=100.0, now=50.0)
    # Even asked at a time before its expiry, the swept token is gone.
    assert await store.acme_challenge("old", now=0.0) is None
    assert await store.acme_challenge("new", now=50.0) == "new.thumb"


async def test_nodes_creating_the_account_at_once_share_one_key(
    store: Store, engine: Engine
) -> None:
    other = engine.new_store()
    await other.open()
    try:
        keys = await asyncio.gather(
            store.acme_account_key("https://ca.test/dir", "key-a", 1.0),
            other.acme_account_key("https://ca.test/dir", "key-b", 1.0),
        )
        assert keys[0] == keys[1] in ("key-a", "key-b")
        assert await store.acme_account_key("https://other.test/dir", "key-c", 2.0) == "key-c"
    finally:
        await other.close()
