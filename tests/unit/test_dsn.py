"""DSNs (RFC 3464) built by `mail/dsn.py`, parsed back with the stdlib email parser."""

from __future__ import annotations

import email
import email.policy
import email.utils
from email.message import EmailMessage, Message

import pytest

from mailfort.mail import dsn

T0 = 1_800_000_000.0
ORIGINAL = (
    b"Received: from client.test ([192.0.2.1])\r\n\tby mx.mailfort.test (mailfort) with ESMTPSA"
    b" id 0ABC; Fri, 15 Jan 2027 08:00:00 +0000\r\n"
    b"From: Alice <alice@example.test>\r\nTo: bob@remote.test\r\nSubject: lunch?\r\n"
    b"Message-ID: <lunch-1@example.test>\r\n\r\nSecret body text.\r\n"
)


def failed(recipient: str = "bob@remote.test", **kw: object) -> dsn.RecipientReport:
    fields: dict[str, object] = {
        "final_recipient": recipient,
        "original_recipient": recipient,
        "action": dsn.Action.FAILED,
        "status": "5.1.1",
        "text": "host mx.remote.test[192.0.2.7] said: 550 5.1.1 no such user",
        "remote_mta": "mx.remote.test",
        "diagnostic": "smtp; 550 5.1.1 no such user",
        "last_attempt": T0 + 60,
    }
    fields.update(kw)
    return dsn.RecipientReport(**fields)  # type: ignore[arg-type]


def build(*recipients: dsn.RecipientReport, sender: str = "alice@example.test") -> bytes:
    return dsn.build(
        dsn.Report(
            reporting_mta="mx.mailfort.test",
            sender=sender,
            queue_id="0ABC",
            arrival=T0,
            original=ORIGINAL,
            recipients=recipients,
            now=T0 + 120,
        )
    )


def parse(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def part(message: EmailMessage, index: int) -> EmailMessage:
    found = list(message.iter_parts())[index]
    assert isinstance(found, EmailMessage)
    return found


def status_blocks(message: EmailMessage) -> list[Message]:
    parts = list(message.iter_parts())
    report = parts[1]
    assert report.get_content_type() == "message/delivery-status"
    blocks = report.get_payload()
    assert isinstance(blocks, list)
    return blocks


def test_a_bounce_is_a_multipart_report_with_three_parts() -> None:
    data = build(failed())
    assert b"\n" not in data.replace(b"\r\n", b"")  # CRLF only
    message = parse(data)
    assert message["From"] == "Mail Delivery System <MAILER-DAEMON@mx.mailfort.test>"
    assert message["To"].addresses[0].addr_spec == "alice@example.test"
    assert message["Subject"] == "Undelivered Mail Returned to Sender"
    assert message["Auto-Submitted"] == "auto-replied"
    assert message["In-Reply-To"] == "<lunch-1@example.test>"
    assert email.utils.parsedate_to_datetime(message["Date"]).timestamp() == T0 + 120
    assert message.get_content_type() == "multipart/report"
    assert message.get_param("report-type") == "delivery-status"
    types = [p.get_content_type() for p in message.iter_parts()]
    assert types == ["text/plain", "message/delivery-status", "text/rfc822-headers"]

    human = part(message, 0).get_content()
    assert "could not" in human and "<bob@remote.test>: host mx.remote.test" in human

    headers = part(message, 2)
    returned = headers.get_payload(decode=True)
    assert returned == ORIGINAL[: ORIGINAL.index(b"\r\n\r\n") + 2]
    assert b"Secret body text" not in data


def test_delivery_status_fields() -> None:
    per_message, per_recipient = status_blocks(parse(build(failed())))
    assert per_message["Reporting-MTA"] == "dns; mx.mailfort.test"
    assert email.utils.parsedate_to_datetime(per_message["Arrival-Date"]).timestamp() == T0
    assert per_message["X-Mailfort-Queue-ID"] == "0ABC"

    assert per_recipient["Final-Recipient"] == "rfc822; bob@remote.test"
    assert per_recipient["Original-Recipient"] is None  # the same address: left out
    assert per_recipient["Action"] == "failed"
    assert per_recipient["Status"] == "5.1.1"
    assert per_recipient["Remote-MTA"] == "dns; mx.remote.test"
    assert per_recipient["Diagnostic-Code"] == "smtp; 550 5.1.1 no such user"
    last = email.utils.parsedate_to_datetime(per_recipient["Last-Attempt-Date"])
    assert last.timestamp() == T0 + 60
    assert per_recipient["Will-Retry-Until"] is None


def test_several_recipients_and_an_original_recipient() -> None:
    data = build(
        failed("bob@remote.test", original_recipient="team@example.test"),
        failed("carol@remote.test", status="5.7.1", diagnostic="smtp; 554 5.7.1 spam"),
    )
    _, bob, carol = status_blocks(parse(data))
    assert bob["Original-Recipient"] == "rfc822; team@example.test"
    assert carol["Final-Recipient"] == "rfc822; carol@remote.test"
    assert carol["Status"] == "5.7.1" and carol["Diagnostic-Code"] == "smtp; 554 5.7.1 spam"


def test_a_delay_warning() -> None:
    delayed = failed(
        action=dsn.Action.DELAYED,
        status="4.2.1",
        diagnostic="smtp; 450 4.2.1 try later",
        will_retry_until=T0 + 5 * 86400,
    )
    message = parse(build(delayed))
    assert message["Subject"] == "Delayed Mail (still being retried)"
    human = part(message, 0).get_content()
    assert "WARNING ONLY" in human
    _, block = status_blocks(message)
    assert block["Action"] == "delayed" and block["Status"] == "4.2.1"
    until = email.utils.parsedate_to_datetime(block["Will-Retry-Until"])
    assert until.timestamp() == T0 + 5 * 86400


def test_no_dsn_to_the_null_sender() -> None:
    with pytest.raises(ValueError, match="null sender"):
        build(failed(), sender="")


def test_a_reply_cannot_inject_fields() -> None:
    evil = failed(diagnostic="smtp; 550 no\r\nAction: delivered\r\n\r\nX: y")
    _, block = status_blocks(parse(build(evil)))
    assert block["Action"] == "failed"
    assert block["Diagnostic-Code"] == "smtp; 550 no Action: delivered X: y"


def test_non_ascii_recipient_uses_the_utf8_address_type() -> None:
    data = build(failed("jörg@bücher.test"))
    assert "Final-Recipient: utf-8; jörg@bücher.test".encode() in data
    assert b"message/global-delivery-status" in data
