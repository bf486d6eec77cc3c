"""How mail leaves: submitted mail signed as its From: domain, forwarded mail signed as the
alias's domain with an ARC seal and an SRS sender, a rotation applying to mail already queued."""

from __future__ import annotations

import dataclasses

import dkim

from mailfort.mail.directory import Directory
from mailfort.store.records import DkimState, QueueItem
from mailfort.store.sqlite import SqliteStore
from mailfort.trust.dkim_keys import generate
from mailfort.trust.outbound import KeyCache, Outbound, group_key
from mailfort.trust.srs import Srs
from tests.dkim_support import publish, txt_from, verified_domains
from tests.dnsserver import NameServer, Zone
from tests.unit.trust.conftest import active_keys

HOST = "mx.ours.test"
ITEM = QueueItem(
    id=1,
    queue_id="Q1",
    sender="alice@ours.test",
    recipient="bob@remote.test",
    original="bob@remote.test",
    account_id=None,
    size=100,
    received=0.0,
    attempts=0,
    next_attempt=0.0,
    last_error=None,
    lease_owner=None,
    lease_until=None,
)


def message(author: str, results: str | None = None) -> bytes:
    head = f"Authentication-Results: {results}\r\n" if results else ""
    return (
        f"{head}From: <{author}>\r\nTo: bob@remote.test\r\nSubject: hello\r\n"
        "Date: Mon, 7 Dec 2026 10:00:00 +0000\r\nMessage-ID: <m1@x>\r\n\r\nhello\r\n"
    ).encode()


async def outbound(store: SqliteStore, *, ttl: float = 10.0) -> Outbound:
    for domain in ("ours.test", "fwd.test"):
        await store.add_domain(domain)
        await store.add_dkim_keys(active_keys(domain))
    srs = Srs(b"k" * 32)
    return Outbound(
        KeyCache(store, ttl=ttl),
        is_local=Directory(store).is_local,
        authserv_id=HOST,
        srs=srs,
    )


async def test_submitted_mail_is_signed_as_its_from_domain(
    store: SqliteStore, zone: Zone, nameserver: NameServer
) -> None:
    out = await outbound(store)
    publish(zone, active_keys("ours.test"))
    item = dataclasses.replace(ITEM, authenticated="alice@ours.test")
    leaving = await out.prepare(item, message("alice@ours.test"))
    assert leaving.sender == "alice@ours.test"  # ours: no SRS
    assert sorted(verified_domains(leaving.message, txt_from(nameserver))) == [
        ("ours.test", "ed25519-sha256", True),
        ("ours.test", "rsa-sha256", True),
    ]
    assert b"ARC-Seal" not in leaving.message
    # A From: that is not ours (an address [submission] senders allows): the user's domain signs.
    other = await out.prepare(item, message("alice@gmail.example"))
    assert {d for d, *_ in verified_domains(other.message, txt_from(nameserver))} == {"ours.test"}


async def test_forwarded_mail_gets_srs_arc_and_the_alias_domains_signature(
    store: SqliteStore, zone: Zone, nameserver: NameServer
) -> None:
    out = await outbound(store)
    publish(zone, active_keys("fwd.test"))
    item = dataclasses.replace(ITEM, sender="carol@elsewhere.example", original="friends@fwd.test")
    results = (
        f"{HOST}; spf=pass smtp.mailfrom=carol@elsewhere.example; dkim=none;"
        " dmarc=none header.from=elsewhere.example; arc=none"
    )
    leaving = await out.prepare(item, message("carol@elsewhere.example", results))
    assert leaving.sender.startswith("SRS0=") and leaving.sender.endswith("@fwd.test")
    assert out.srs is not None and out.srs.reverse(leaving.sender) == "carol@elsewhere.example"
    assert sorted(verified_domains(leaving.message, txt_from(nameserver))) == [
        ("fwd.test", "ed25519-sha256", True),
        ("fwd.test", "rsa-sha256", True),
    ]
    cv, *_ = dkim.arc_verify(leaving.message, dnsfunc=txt_from(nameserver))
    assert cv == b"pass"
    assert b"ARC-Authentication-Results: i=1; mx.ours.test;" in leaving.message
    # Without our Authentication-Results there is nothing to attest: signed, not sealed.
    unsealed = await out.prepare(item, message("carol@elsewhere.example"))
    assert b"ARC-Seal" not in unsealed.message and b"DKIM-Signature" in unsealed.message
    # A sender of ours keeps its address: SPF covers it already.
    ours = await out.prepare(dataclasses.replace(item, sender="dave@ours.test"), b"x\r\n")
    assert ours.sender == "dave@ours.test"
    # A message dkimpy cannot parse still leaves, as it came.
    assert ours.message == b"x\r\n"


async def test_a_rotation_applies_to_mail_already_queued(
    store: SqliteStore, zone: Zone, nameserver: NameServer
) -> None:
    out = await outbound(store, ttl=0)
    item = dataclasses.replace(ITEM, authenticated="alice@ours.test")
    body = message("alice@ours.test")  # queued before the rotation
    new = generate("ours.test", "n1r", "rsa-sha256", DkimState.PUBLISHED)
    await store.add_dkim_keys([new])
    publish(zone, [new])
    await store.activate_dkim_keys("ours.test", ["n1r"], 1.0, 2.0)
    leaving = await out.prepare(item, body)
    assert b"s=n1r;" in leaving.message
    assert verified_domains(leaving.message, txt_from(nameserver)) == [
        ("ours.test", "rsa-sha256", True)
    ]


async def test_our_own_notices_and_domains_without_keys_leave_as_they_are(
    store: SqliteStore,
) -> None:
    out = await outbound(store)
    body = message("mailer-daemon@ours.test")
    dsn = await out.prepare(dataclasses.replace(ITEM, sender=""), body)
    assert dsn.message == body and dsn.sender == ""
    await store.add_domain("bare.test")
    login = dataclasses.replace(ITEM, authenticated="eve@bare.test")
    assert (await out.prepare(login, message("eve@bare.test"))).message == message("eve@bare.test")


def test_forwards_through_different_alias_domains_are_sent_apart() -> None:
    a = dataclasses.replace(ITEM, original="x@fwd.test")
    b = dataclasses.replace(ITEM, original="y@ours.test")
    assert group_key(a) != group_key(b) and group_key(ITEM) == ""
