"""One SMTP transaction becomes one store transaction: trace headers, local copies, queue items."""

from __future__ import annotations

from collections.abc import Mapping

from mailfort.mail.directory import Resolution
from mailfort.mail.trace import delivery_prefix, new_queue_id, received_header
from mailfort.store.api import AcceptRequest, LocalDelivery, QueuedRecipient


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
    queue_id = new_queue_id(now)
    received = received_header(
        helo=helo,
        client_ip=client_ip,
        hostname=hostname,
        protocol=protocol,
        queue_id=queue_id,
        recipients=list(resolved),
        now=now,
    )
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
                )
        for address in resolution.remote:
            if address not in seen_remote:
                seen_remote.add(address)
                queued.append(QueuedRecipient(recipient=address, original=original))
    return AcceptRequest(
        queue_id=queue_id,
        sender=sender,
        body=received + data,
        received=now,
        client=client_ip,
        authenticated=authenticated,
        local=tuple(local.values()),
        queued=tuple(queued),
    )
