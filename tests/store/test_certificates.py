"""The `Certificates` role on both engines: stored certificates, HTTP-01 answers, account keys;
and the ACME keeper over it without a CA: when a certificate is due, how a stored one reaches the
live TLS context (a real handshake sees it), and what a damaged row does."""

from __future__ import annotations

import asyncio
import hashlib
import ssl
import time
from pathlib import Path

import pytest

from mailfort.certs.acme_order import describe
from mailfort.certs.renewal import CERTIFICATE, DAY, CertificateKeeper
from mailfort.config import TlsConfig
from mailfort.server.tls import ensure_self_signed, server_context
from mailfort.store.api import Store
from mailfort.store.records import StoredCertificate
from tests.certificates import issue
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


def stored(names: tuple[str, ...], days: float, updated: float = 1.0) -> StoredCertificate:
    issued = issue(names, days=days)
    chain, key = issued.cert_pem, issued.key_pem
    found_names, not_after = describe(chain)
    assert found_names == names
    return StoredCertificate(
        name=CERTIFICATE,
        chain_pem=chain,
        key_pem=key,
        names=found_names,
        not_after=not_after,
        updated=updated,
    )


def keeper(store: Store, tmp_path: Path, context: ssl.SSLContext) -> CertificateKeeper:
    return CertificateKeeper(
        store=store,
        context=context,
        settings=TlsConfig(acme=True, acme_names=("mx.example.test",)),
        hostname="ignored.example.test",
        owner="node1",
        directory=tmp_path / "acme",
        clock=time.time,
    )


async def served(context: ssl.SSLContext) -> str:
    """The fingerprint a client sees in a real handshake with a server on `context`."""

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()
        writer.close()

    server = await asyncio.start_server(hold, "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    client = ssl.create_default_context()
    client.check_hostname = False
    client.verify_mode = ssl.CERT_NONE
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client)
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.close()
    server.close()
    return hashlib.sha256(der).hexdigest()


def fingerprint(chain_pem: str) -> str:
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(chain_pem)).hexdigest()


async def test_due_when_missing_for_other_names_or_in_the_window(
    store: Store, tmp_path: Path
) -> None:
    k = keeper(store, tmp_path, ssl.create_default_context(ssl.Purpose.CLIENT_AUTH))
    now = time.time()
    assert k.due(None, now)
    assert not k.due(stored(("mx.example.test",), days=90), now)
    assert k.due(stored(("mx.example.test",), days=29), now)  # renew 30 days before
    assert k.due(stored(("other.example.test",), days=90), now)
    assert k.due(stored(("mx.example.test",), days=90), now + 61 * DAY)


async def test_a_stored_certificate_replaces_the_served_one_on_the_live_context(
    store: Store, tmp_path: Path
) -> None:
    context = server_context(*ensure_self_signed(tmp_path / "tls", "mx.example.test"))
    k = keeper(store, tmp_path, context)
    before = await served(context)
    assert await k.install_stored() is None  # nothing stored: the self-signed one stays
    assert await served(context) == before
    first = stored(("mx.example.test",), days=90, updated=1.0)
    await store.put_certificate(first)
    await k.install_stored()
    assert await served(context) == fingerprint(first.chain_pem) != before
    second = stored(("mx.example.test",), days=90, updated=2.0)
    await store.put_certificate(second)
    await k.install_stored()
    assert await served(context) == fingerprint(second.chain_pem)
    assert (tmp_path / "acme" / "key.pem").stat().st_mode & 0o077 == 0


async def test_a_damaged_row_leaves_the_served_certificate(
    store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    context = server_context(*ensure_self_signed(tmp_path / "tls", "mx.example.test"))
    k = keeper(store, tmp_path, context)
    good = stored(("mx.example.test",), days=90, updated=1.0)
    await store.put_certificate(good)
    await k.install_stored()
    other_key = issue(("mx.example.test",), days=90).key_pem
    for damaged in (
        StoredCertificate(
            name=CERTIFICATE,
            chain_pem="not a pem",
            key_pem=good.key_pem,
            names=good.names,
            not_after=good.not_after,
            updated=2.0,
        ),
        StoredCertificate(  # a key that is not the certificate's
            name=CERTIFICATE,
            chain_pem=good.chain_pem,
            key_pem=other_key,
            names=good.names,
            not_after=good.not_after,
            updated=3.0,
        ),
    ):
        await store.put_certificate(damaged)
        await k.install_stored()
        assert await served(context) == fingerprint(good.chain_pem)
    assert caplog.text.count("event=certificate_load_failed") == 2
