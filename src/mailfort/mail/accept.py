"""One SMTP transaction becomes one store transaction: trace headers, local copies, queue items."""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import dataclass

from mailfort.mail.directory import Resolution
from mailfort.mail.trace import delivery_prefix, new_queue_id, received_header
from mailfort.store.records import INBOX, JUNK, AcceptRequest, LocalDelivery, QueuedRecipient


@dataclass(frozen=True, slots=True, kw_only=True)
class Stamp:
    """What acceptance puts on a message: its queue id and the Received header (RFC 5321 4.4)
    that the stored body starts with."""

    queue_id: str
    received: bytes


def new_stamp(
    *,
    recipients: list[str],
    helo: str,
    client_ip: str,
    hostname: str,
    protocol: str,
    now: float,
) -> Stamp:
    queue_id = new_queue_id(now)
    received = received_header(
        helo=helo,
        client_ip=client_ip,
        hostname=hostname,
        protocol=protocol,
        queue_id=queue_id,
        recipients=recipients,
        now=now,
    )
    return Stamp(queue_id=queue_id, received=received)


def build_request(
    *,
    sender: str,
    data: bytes,
    resolved: Mapping[str, Resolution],
    helo: str,
    client_ip: str,
    hostname: str,
    protocol: str,
    authenticated: str | None,
    now: float,
) -> AcceptRequest:
    """`resolved` maps each envelope recipient, in RCPT order, to where its mail goes."""
    stamp = new_stamp(
        recipients=list(resolved),
        helo=helo,
        client_ip=client_ip,
        hostname=hostname,
        protocol=protocol,
        now=now,
    )
    return stamped_request(
        stamp=stamp,
        sender=sender,
        body=stamp.received + data,
        resolved=resolved,
        client_ip=client_ip,
        authenticated=authenticated,
        now=now,
    )


def stamped_request(
    *,
    stamp: Stamp,
    sender: str,
    body: bytes | bytearray,
    resolved: Mapping[str, Resolution],
    client_ip: str,
    authenticated: str | None,
    now: float,
    junk: Set[str] = frozenset(),
) -> AcceptRequest:
    """The request for a `body` that already starts with `stamp.received` (a large message is
    read from the spool straight after its header, so it is never copied to prepend one).
    The local copies for envelope recipients in `junk` are filed to the account's Junk mailbox
    (a DMARC quarantine); an account reached through several recipients takes the first's."""
    queue_id = stamp.queue_id
    local: dict[int, LocalDelivery] = {}
    queued: list[QueuedRecipient] = []
    seen_remote: set[str] = set()
    for original, resolution in resolved.items():
        for account_id, address in resolution.local.items():
            # One copy per account even when several envelope recipients (aliases) reach it.
            if account_id not in local:
                local[account_id] = LocalDelivery(
                    account_id=account_id,
                    recipient=address,
                    prefix=delivery_prefix(sender, address),
                    mailbox=JUNK if original in junk else INBOX,
                )
        for address in resolution.remote:
            if address not in seen_remote:
                seen_remote.add(address)
                queued.append(QueuedRecipient(recipient=address, original=original))
    return AcceptRequest(
        queue_id=queue_id,
        sender=sender,
        body=body,
        received=now,
        client=client_ip,
        authenticated=authenticated,
        local=tuple(local.values()),
        queued=tuple(queued),
    )
