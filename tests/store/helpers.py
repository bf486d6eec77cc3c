"""Building accept requests the way `mail/accept.py` does, without an SMTP session."""

from __future__ import annotations

import itertools
import time

from mailfort.mail.trace import delivery_prefix
from mailfort.store.api import Store
from mailfort.store.records import AcceptRequest, Account, LocalDelivery, QueuedRecipient

SENDER = "sender@remote.test"
_counter = itertools.count(1)


def body(tag: str = "") -> bytes:
    tag = tag or f"m{next(_counter)}"
    return (
        f"Received: from x by y; Thu, 1 Jan 2026 00:00:00 +0000\r\n"
        f"Subject: {tag}\r\nMessage-ID: <{tag}@remote.test>\r\n\r\nbody of {tag}\r\n"
    ).encode()


def queue_id() -> str:
    return f"Q{time.time_ns():020d}{next(_counter):06d}"


def request(
    *,
    local: tuple[Account, ...] = (),
    remote: tuple[str, ...] = (),
    queued_local: tuple[Account, ...] = (),
    data: bytes | bytearray | None = None,
    received: float | None = None,
    qid: str | None = None,
) -> AcceptRequest:
    return AcceptRequest(
        queue_id=qid or queue_id(),
        sender=SENDER,
        body=data if data is not None else body(),
        received=time.time() if received is None else received,
        client="192.0.2.1",
        authenticated=None,
        local=tuple(
            LocalDelivery(
                account_id=a.id, recipient=a.address, prefix=delivery_prefix(SENDER, a.address)
            )
            for a in local
        ),
        queued=tuple(QueuedRecipient(recipient=r, original=r) for r in remote)
        + tuple(
            QueuedRecipient(recipient=a.address, original=a.address, account_id=a.id)
            for a in queued_local
        ),
    )


async def inbox(store: Store, account: Account, mailbox: str = "INBOX") -> list[bytes]:
    found = []
    for message in await store.list_messages(account.id, mailbox):
        data = await store.message_bytes(account.id, mailbox, message.uid)
        assert data is not None
        found.append(data)
    return found


async def user(store: Store, address: str) -> Account:
    domain = address.rpartition("@")[2]
    if domain not in await store.list_domains():
        await store.add_domain(domain)
    return await store.add_account(address, "$argon2id$not-a-real-hash")
