"""DKIM signatures made with dkimpy (RSA through OpenSSL) verify with dkimpy against keys served
by a real name server, both algorithms (RFC 8463), with the header fields a receiver relies on."""

from __future__ import annotations

import dkim

from mailfort.trust.dkim_sign import SigningKey, sign, to_sign
from tests.dkim_support import publish, txt_from, verified_domains
from tests.dnsserver import NameServer, Zone
from tests.unit.trust.conftest import active_keys

MESSAGE = (
    b"Received: from client by mx.example.test; Mon, 7 Dec 2026 10:00:00 +0000\r\n"
    b"From: Alice <alice@example.test>\r\n"
    b"To: bob@remote.test\r\n"
    b"Subject: quarterly figures\r\n"
    b"Date: Mon, 7 Dec 2026 10:00:00 +0000\r\n"
    b"Message-ID: <q1@example.test>\r\n"
    b"List-Unsubscribe: <mailto:unsub@example.test>\r\n"
    b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
    b"\r\n"
    b"The figures are attached.   \r\n"
    b"\r\n"
)


def loaded(domain: str) -> list[SigningKey]:
    return [SigningKey.load(k) for k in active_keys(domain)]


def test_both_signatures_verify_against_dns(zone: Zone, nameserver: NameServer) -> None:
    publish(zone, active_keys("example.test"))
    signed = sign(MESSAGE, loaded("example.test")) + MESSAGE
    assert verified_domains(signed, txt_from(nameserver)) == [
        ("example.test", "rsa-sha256", True),
        ("example.test", "ed25519-sha256", True),
    ]
    # Relaxed canonicalisation: a forwarder that rewraps a header or strips trailing spaces
    # does not break it.
    rewrapped = signed.replace(b"Subject: quarterly figures", b"Subject: quarterly\r\n figures")
    rewrapped = rewrapped.replace(b"attached.   \r\n", b"attached.\r\n")
    assert [ok for *_, ok in verified_domains(rewrapped, txt_from(nameserver))] == [True, True]


def test_from_is_oversigned_and_absent_fields_are_not_named(
    zone: Zone, nameserver: NameServer
) -> None:
    publish(zone, active_keys("example.test"))
    header = sign(MESSAGE, loaded("example.test")[:1])
    tags = dkim.util.parse_tag_value(header.split(b":", 1)[1].replace(b"\r\n", b""))
    names = [n.strip() for n in tags[b"h"].split(b":")]
    assert names.count(b"from") == 2
    assert b"list-unsubscribe" in names and b"list-unsubscribe-post" in names
    assert b"cc" not in names and b"received" not in names
    # A second From: added on the way does not pass: the signature names one more than it saw.
    forged = header + MESSAGE.replace(b"To:", b"From: ceo@example.test\r\nTo:", 1)
    assert verified_domains(forged, txt_from(nameserver))[0][2] is False
    # Nor does a changed body.
    changed = header + MESSAGE.replace(b"attached", b"not attached")
    assert verified_domains(changed, txt_from(nameserver))[0][2] is False


def test_a_key_not_in_dns_does_not_verify(zone: Zone, nameserver: NameServer) -> None:
    # Signed with example.test's keys, but DNS holds another domain's under those selectors.
    other = active_keys("other.test")
    for mine, theirs in zip(active_keys("example.test"), other, strict=True):
        zone.txt(f"{mine.selector}._domainkey.example.test", theirs.txt_record)
    signed = sign(MESSAGE, loaded("example.test")) + MESSAGE
    assert [ok for *_, ok in verified_domains(signed, txt_from(nameserver))] == [False, False]


def test_a_message_without_from_is_left_unsigned() -> None:
    assert sign(b"To: bob@remote.test\r\nSubject: x\r\n\r\nbody\r\n", loaded("example.test")) == b""
    assert sign(MESSAGE, []) == b""


def test_fields_are_signed_as_often_as_they_occur() -> None:
    present = [b"received", b"from", b"to", b"to", b"subject"]
    assert to_sign(present) == [b"from", b"to", b"to", b"subject", b"from"]
