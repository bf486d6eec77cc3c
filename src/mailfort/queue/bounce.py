"""A DSN (bounce or delay warning) as a message to accept: to the sender's INBOX or queued.

The notice is an `AcceptRequest` with the null sender, committed by the remote worker in the same
store transaction that settles the failed items (`Queue.settle_queued`): a crash before that commit
leaves the items to be tried again, after it the bounce exists exactly once. A local sender gets
it in their INBOX at once; a remote sender's copy is queued like any other remote mail, and being
from the null sender it can never cause another DSN.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from mailfort.mail import dsn
from mailfort.mail.directory import Directory
from mailfort.mail.trace import delivery_prefix, new_queue_id
from mailfort.store.records import AcceptRequest, LocalDelivery, QueuedRecipient

log = logging.getLogger("mailfort.queue")


async def notice(
    directory: Directory,
    *,
    hostname: str,
    sender: str,
    queue_id: str,
    arrival: float,
    original: bytes,
    recipients: Sequence[dsn.RecipientReport],
    now: float,
) -> AcceptRequest | None:
    """The DSN for `recipients` of message `queue_id`, addressed to `sender`; None for nobody.

    Raises StoreError when the sender cannot be looked up (the caller retries the whole attempt)."""
    if not sender or not recipients:
        return None
    resolution = await directory.resolve(sender)
    if resolution is None:
        # A local sender nobody receives for (deleted since): nowhere to send it.
        log.warning("event=dsn_undeliverable id=%s to=<%s> reason=unknown_sender", queue_id, sender)
        return None
    notice_id = new_queue_id(now)
    body = dsn.build(
        dsn.Report(
            reporting_mta=hostname,
            sender=sender,
            queue_id=queue_id,
            arrival=arrival,
            original=original,
            recipients=recipients,
            now=now,
        )
    )
    received = f"Received: by {hostname} (mailfort) id {notice_id}; {dsn.header_date(now)}\r\n"
    return AcceptRequest(
        queue_id=notice_id,
        sender="",
        body=received.encode() + body,
        received=now,
        client="",
        authenticated=None,
        local=tuple(
            LocalDelivery(
                account_id=account_id, recipient=address, prefix=delivery_prefix("", address)
            )
            for account_id, address in resolution.local.items()
        ),
        queued=tuple(QueuedRecipient(recipient=r, original=sender) for r in resolution.remote),
    )
