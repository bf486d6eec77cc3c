"""Trace headers (RFC 5321 4.4) and queue ids."""

from __future__ import annotations

import email
import email.policy
import email.utils
import re

import pytest

from mailfort.mail.trace import delivery_prefix, new_queue_id, protocol_name, received_header

NOW = 1_767_225_600.0  # 2026-01-01 00:00:00 UTC


@pytest.mark.parametrize(
    ("esmtp", "tls", "authenticated", "utf8", "name"),
    [
        (False, False, False, False, "SMTP"),
        (True, False, False, False, "ESMTP"),
        (True, True, False, False, "ESMTPS"),
        (True, False, True, False, "ESMTPA"),
        (True, True, True, False, "ESMTPSA"),
        (True, False, False, True, "UTF8SMTP"),
        (True, True, False, True, "UTF8SMTPS"),
        (True, False, True, True, "UTF8SMTPA"),
        (True, True, True, True, "UTF8SMTPSA"),
    ],
)
def test_protocol_name(esmtp: bool, tls: bool, authenticated: bool, utf8: bool, name: str) -> None:
    # RFC 3848 and RFC 6531 section 4.3 registry values.
    assert protocol_name(esmtp=esmtp, tls=tls, authenticated=authenticated, utf8=utf8) == name


def header(**overrides: object) -> bytes:
    args: dict[str, object] = {
        "helo": "client.example",
        "client_ip": "192.0.2.7",
        "hostname": "mx.mailfort.test",
        "protocol": "ESMTPS",
        "queue_id": "ABC123",
        "recipients": ["alice@a.test"],
        "now": NOW,
    }
    args.update(overrides)
    return received_header(**args)  # type: ignore[arg-type]


def test_received_header_shape() -> None:
    raw = header()
    assert raw.startswith(b"Received: from client.example ([192.0.2.7])\r\n\t")
    assert raw.endswith(b"\r\n")
    assert b"\n" not in raw.replace(b"\r\n", b"")  # only CRLF line ends
    lines = raw.split(b"\r\n")[:-1]
    assert all(line.startswith(b"\t") for line in lines[1:])  # folded, one header
    assert all(len(line) <= 998 for line in lines)
    text = raw.decode()
    assert "by mx.mailfort.test (mailfort) with ESMTPS id ABC123" in text
    assert "for <alice@a.test>;" in text
    message = email.message_from_bytes(raw + b"\r\nbody", policy=email.policy.SMTP)
    value = str(message["Received"])
    stamp = email.utils.parsedate_to_datetime(value.rpartition(";")[2].strip())
    assert stamp.timestamp() == NOW
    assert stamp.utcoffset() is not None


def test_received_header_names_no_recipient_when_there_are_several() -> None:
    raw = header(recipients=["alice@a.test", "bob@a.test"])
    assert b"for <" not in raw
    assert b"alice" not in raw and b"bob" not in raw


def test_received_header_does_not_trust_the_helo() -> None:
    raw = header(helo="evil\r\nX-Injected: yes\x00 ünï" + "x" * 500)
    first = raw.split(b"\r\n")[0]
    assert b"X-Injected: yes" not in raw.split(b"\r\n", 1)[1].split(b"\r\n\t")[0]
    assert re.fullmatch(rb"Received: from [!-~]{1,200} \(\[192\.0\.2\.7\]\)", first)
    assert header(helo="").startswith(b"Received: from unknown ")


def test_delivery_prefix() -> None:
    assert delivery_prefix("s@remote.test", "alice@a.test") == (
        b"Return-Path: <s@remote.test>\r\nDelivered-To: alice@a.test\r\n"
    )
    assert delivery_prefix("", "alice@a.test").startswith(b"Return-Path: <>\r\n")
    assert "ü".encode() in delivery_prefix("ü@b.test", "alice@a.test")


def test_queue_ids_are_unique_and_sort_by_time() -> None:
    times = [NOW + i * 0.000_01 for i in range(2000)]
    ids = [new_queue_id(t) for t in times]
    assert len(set(ids)) == len(ids)
    assert sorted(ids) == ids
    # Many at the very same instant (several sessions, several nodes) stay distinct.
    same = {new_queue_id(NOW) for _ in range(2000)}
    assert len(same) == 2000
    for queue_id in ids[:10]:
        assert re.fullmatch(r"[0-9A-F]{21}", queue_id)
    # Fixed width keeps sorting by text the same as sorting by time, also across years.
    assert len(new_queue_id(4_102_444_800.0)) == len(ids[0])  # 2100
    assert new_queue_id() > ids[0]
