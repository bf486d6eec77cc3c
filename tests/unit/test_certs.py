"""The ACME keeper without a CA: when a certificate is due, how a stored one reaches the live TLS
context (a real handshake sees it), what a damaged row does, and the `[tls] acme` settings."""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mailfort.certs.acme_order import describe
from mailfort.certs.renewal import CERTIFICATE, DAY, CertificateKeeper
from mailfort.config import TlsConfig
from mailfort.server.tls import ensure_self_signed, server_context
from mailfort.store.records import StoredCertificate
from mailfort.store.sqlite import SqliteStore
from tests.unit.test_config import error_for


def certificate(names: tuple[str, ...], days: float) -> tuple[str, str]:
    """A self-issued certificate for `names` valid `days` from now: (chain PEM, key PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem.decode()


def stored(names: tuple[str, ...], days: float, updated: float = 1.0) -> StoredCertificate:
    chain, key = certificate(names, days)
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


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    opened = SqliteStore(tmp_path / "store.sqlite3")
    await opened.open()
    yield opened
    await opened.close()


def keeper(store: SqliteStore, tmp_path: Path, context: ssl.SSLContext) -> CertificateKeeper:
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
    store: SqliteStore, tmp_path: Path
) -> None:
    k = keeper(store, tmp_path, ssl.create_default_context(ssl.Purpose.CLIENT_AUTH))
    now = time.time()
    assert k.due(None, now)
    assert not k.due(stored(("mx.example.test",), days=90), now)
    assert k.due(stored(("mx.example.test",), days=29), now)  # renew 30 days before
    assert k.due(stored(("other.example.test",), days=90), now)
    assert k.due(stored(("mx.example.test",), days=90), now + 61 * DAY)


async def test_a_stored_certificate_replaces_the_served_one_on_the_live_context(
    store: SqliteStore, tmp_path: Path
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
    store: SqliteStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    context = server_context(*ensure_self_signed(tmp_path / "tls", "mx.example.test"))
    k = keeper(store, tmp_path, context)
    good = stored(("mx.example.test",), days=90, updated=1.0)
    await store.put_certificate(good)
    await k.install_stored()
    other_key = certificate(("mx.example.test",), days=90)[1]
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


def test_acme_settings(tmp_path: Path) -> None:
    (tmp_path / "c.pem").write_text("c")
    (tmp_path / "k.pem").write_text("k")
    both = '[tls]\nacme = true\ncert = "c.pem"\nkey = "k.pem"\n'
    assert error_for(tmp_path, both).key == "tls.acme"
    missing = '[tls]\nacme = true\nacme_ca_file = "nowhere.pem"\n'
    assert error_for(tmp_path, missing).key == "tls.acme_ca_file"
    zero = "[tls]\nacme = true\nacme_reload_seconds = 0\n"
    assert error_for(tmp_path, zero).key == "tls.acme_reload_seconds"


def test_acme_is_off_by_default() -> None:
    settings = TlsConfig()
    assert settings.acme is False
    assert settings.acme_renew_before_days == 30
    assert settings.acme_directory.startswith("https://acme-v02.api.letsencrypt.org/")
