"""Delivery status notifications (RFC 3464): the bounce and the delay warning.

A DSN is a `multipart/report; report-type=delivery-status` (RFC 6522) of three parts:
1. text/plain for people: what happened to which recipient;
2. message/delivery-status: per-message fields (Reporting-MTA, Arrival-Date), then a block of
   per-recipient fields (Final-Recipient, Original-Recipient when it differs, Action, Status,
   Remote-MTA, Diagnostic-Code, Last-Attempt-Date, Will-Retry-Until for "delayed");
3. text/rfc822-headers: the original message's header section (not its body: RFC 3462 allows
   either, and the headers are enough to recognise the message without sending it back).

It comes From MAILER-DAEMON and carries `Auto-Submitted: auto-replied` (RFC 3834); the queue sends
it with the null envelope sender, and never writes one about a message whose sender was null
(RFC 5321 6.1, RFC 3464 2): so a bounce can never bounce, and no loop can start.

Built by hand, line by line with CRLF, so the bytes are exactly what the RFCs show; the tests
parse it back with the stdlib `email` parser.
"""

from __future__ import annotations

import email.utils
import enum
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

MAX_HEADER_BYTES = 64 * 1024  # of the original, returned in the third part
MAX_FIELD = 900  # longest diagnostic text copied in, well under the 998-octet line limit


class Action(enum.Enum):
    FAILED = "failed"
    DELAYED = "delayed"


@dataclass(frozen=True, slots=True, kw_only=True)
class RecipientReport:
    final_recipient: str
    original_recipient: str | None = None
    action: Action
    status: str  # "5.1.1", "4.4.1"
    text: str  # for the human-readable part
    remote_mta: str | None = None
    diagnostic: str | None = None  # "smtp; 550 5.1.1 no such user"
    last_attempt: float | None = None
    will_retry_until: float | None = None  # for Action: delayed


@dataclass(frozen=True, slots=True, kw_only=True)
class Report:
    reporting_mta: str  # our host name
    sender: str  # the envelope sender of the original: the DSN goes there
    queue_id: str
    arrival: float
    original: bytes  # the original message as stored (trace headers included)
    recipients: Sequence[RecipientReport]
    now: float


def header_date(when: float) -> str:
    return email.utils.format_datetime(datetime.fromtimestamp(when, UTC))


def _clean(text: str, limit: int = MAX_FIELD) -> str:
    """One line of printable text: no CR/LF can break out of a field."""
    return " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())[:limit]


def _address_type(address: str) -> str:
    # RFC 6533 3: "utf-8" for addresses that are not ASCII.
    return f"rfc822; {address}" if address.isascii() else f"utf-8; {address}"


def original_headers(message: bytes) -> bytes:
    """The header section of a stored message, ending with CRLF, without the blank line."""
    end = message.find(b"\r\n\r\n")
    headers = message if end < 0 else message[: end + 2]
    if len(headers) > MAX_HEADER_BYTES:
        cut = headers.rfind(b"\r\n", 0, MAX_HEADER_BYTES)
        headers = headers[: cut + 2] if cut > 0 else b""
    if headers and not headers.endswith(b"\r\n"):
        headers += b"\r\n"
    return headers


def _message_id(message: bytes) -> str | None:
    for line in original_headers(message).split(b"\r\n"):
        if line[:11].lower() == b"message-id:":
            value = line[11:].decode("ascii", "replace").strip()
            if value.startswith("<") and value.endswith(">") and " " not in value:
                return value
    return None


def _human(report: Report, action: Action) -> str:
    host = report.reporting_mta
    if action is Action.FAILED:
        intro = (
            f"This is the mail system at host {host}.\r\n\r\n"
            "I'm sorry to have to inform you that your message could not\r\n"
            "be delivered to one or more recipients. It's attached below.\r\n\r\n"
            "The mail system\r\n"
        )
    else:
        until = min(
            (r.will_retry_until for r in report.recipients if r.will_retry_until), default=0
        )
        intro = (
            f"This is the mail system at host {host}.\r\n\r\n"
            "####################################################################\r\n"
            "# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #\r\n"
            "####################################################################\r\n\r\n"
            "Your message could not be delivered yet to the recipients below.\r\n"
            + (f"The mail system will keep trying until {header_date(until)}.\r\n" if until else "")
            + "\r\nThe mail system\r\n"
        )
    lines = [f"\r\n<{r.final_recipient}>: {_clean(r.text)}\r\n" for r in report.recipients]
    return intro + "".join(lines)


def _status_fields(report: Report) -> str:
    fields = [
        f"Reporting-MTA: dns; {report.reporting_mta}",
        f"X-Mailfort-Queue-ID: {report.queue_id}",
        f"Arrival-Date: {header_date(report.arrival)}",
    ]
    blocks = ["\r\n".join(fields) + "\r\n"]
    for r in report.recipients:
        fields = [f"Final-Recipient: {_address_type(r.final_recipient)}"]
        if r.original_recipient and r.original_recipient != r.final_recipient:
            fields.append(f"Original-Recipient: {_address_type(r.original_recipient)}")
        fields.append(f"Action: {r.action.value}")
        fields.append(f"Status: {r.status}")
        if r.remote_mta:
            fields.append(f"Remote-MTA: dns; {_clean(r.remote_mta, 255)}")
        if r.diagnostic:
            fields.append(f"Diagnostic-Code: {_clean(r.diagnostic)}")
        if r.last_attempt is not None:
            fields.append(f"Last-Attempt-Date: {header_date(r.last_attempt)}")
        if r.action is Action.DELAYED and r.will_retry_until is not None:
            fields.append(f"Will-Retry-Until: {header_date(r.will_retry_until)}")
        blocks.append("\r\n".join(fields) + "\r\n")
    return "\r\n".join(blocks)


def build(report: Report) -> bytes:
    """The DSN message: failed if any recipient failed, else a delay warning."""
    if not report.sender:
        raise ValueError("no DSN for a message with a null sender (RFC 3464 2)")
    if not report.recipients:
        raise ValueError("a DSN needs at least one recipient")
    action = (
        Action.FAILED
        if any(r.action is Action.FAILED for r in report.recipients)
        else Action.DELAYED
    )
    boundary = f"{report.queue_id}.{os.urandom(6).hex()}/{report.reporting_mta}"
    subject = (
        "Undelivered Mail Returned to Sender"
        if action is Action.FAILED
        else "Delayed Mail (still being retried)"
    )
    host = report.reporting_mta
    human = _human(report, action)
    status = _status_fields(report)
    headers = original_headers(report.original)
    utf8 = not (human.isascii() and status.isascii() and report.sender.isascii())
    out = [
        f"From: Mail Delivery System <MAILER-DAEMON@{host}>",
        f"To: <{report.sender}>",
        f"Subject: {subject}",
        f"Date: {header_date(report.now)}",
        f"Message-ID: <{report.queue_id}.{os.urandom(4).hex()}.dsn@{host}>",
    ]
    original_id = _message_id(report.original)
    if original_id:
        out += [f"In-Reply-To: {original_id}", f"References: {original_id}"]
    out += [
        "Auto-Submitted: auto-replied",
        "MIME-Version: 1.0",
        "Content-Type: multipart/report; report-type=delivery-status;",
        f'\tboundary="{boundary}"',
        "",
        "This is a MIME-encapsulated message.",
        "",
        f"--{boundary}",
        "Content-Description: Notification",
        f"Content-Type: text/plain; charset={'utf-8' if utf8 else 'us-ascii'}",
        *(["Content-Transfer-Encoding: 8bit"] if utf8 else []),
        "",
        human,
        f"--{boundary}",
        "Content-Description: Delivery report",
        f"Content-Type: message/{'global-delivery-status' if utf8 else 'delivery-status'}",
        "",
        status,
        f"--{boundary}",
        "Content-Description: Undelivered Message Headers",
        "Content-Type: text/rfc822-headers",
        *(["Content-Transfer-Encoding: 8bit"] if not headers.isascii() else []),
        "",
    ]
    head = "\r\n".join(out).encode("utf-8") + b"\r\n"
    return head + headers + f"\r\n--{boundary}--\r\n".encode()
