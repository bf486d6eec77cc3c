"""Trace fields (RFC 5321 4.4): Received on acceptance; Return-Path, Delivered-To per copy."""

from __future__ import annotations

import email.utils
import functools
import random
import re
import time
from datetime import UTC, datetime


def new_queue_id(now: float | None = None) -> str:
    """Sortable by time, unique across nodes: 13 hex digits of microseconds + 8 random."""
    micros = int((time.time() if now is None else now) * 1_000_000)
    # Uniqueness, not secrecy: the PRNG (seeded from the OS per process) saves a system call
    # per message over os.urandom.
    return f"{micros:013X}{random.getrandbits(32):08X}"


_UNPRINTABLE = re.compile(r"[^!-~]")


def _clean(text: str, limit: int = 200) -> str:
    """Keep only printable ASCII: a HELO argument is the client's text, not ours to trust."""
    return _UNPRINTABLE.sub("?", text[:limit]) or "unknown"


def protocol_name(*, esmtp: bool, tls: bool, authenticated: bool, utf8: bool) -> str:
    """The `with` keyword from the IANA registry (RFC 3848, RFC 6531)."""
    if utf8:
        base = "UTF8SMTP"
    elif esmtp:
        base = "ESMTP"
    else:
        return "SMTP"
    return base + ("S" if tls else "") + ("A" if authenticated else "")


@functools.lru_cache(maxsize=4)
def _date(second: int) -> str:
    """The header date of one second: formatting it costs more than the rest of the header, and
    a busy node receives many messages per second."""
    # "+0000", not formatdate's "-0000", which RFC 5322 3.3 reserves for "zone unknown".
    return email.utils.format_datetime(datetime.fromtimestamp(second, UTC))


def received_header(
    *,
    helo: str,
    client_ip: str,
    hostname: str,
    protocol: str,
    queue_id: str,
    recipients: list[str],
    now: float,
) -> bytes:
    # With several recipients, naming one would leak it to the others.
    for_clause = f"\r\n\tfor <{recipients[0]}>" if len(recipients) == 1 else ""
    date = _date(int(now))
    line = (
        f"Received: from {_clean(helo)} ([{client_ip}])\r\n"
        f"\tby {hostname} (mailfort) with {protocol} id {queue_id}"
        f"{for_clause}; {date}\r\n"
    )
    return line.encode("utf-8", "surrogateescape")


def delivery_prefix(sender: str, recipient: str) -> bytes:
    return f"Return-Path: <{sender}>\r\nDelivered-To: {recipient}\r\n".encode(
        "utf-8", "surrogateescape"
    )
