"""What a message gets as it leaves for a remote server: DKIM signatures, an ARC seal, an SRS
envelope sender. Applied at delivery (`queue/remote_worker.py`), not at acceptance, so that every
node signs with the keys in the store at that moment: a rotation applies to mail already queued,
and no node needs keys of its own.

Who is signed, and as whom:
- mail submitted by a logged-in user: with the keys of the From: domain when it is ours (DMARC
  alignment, RFC 7489 3.1), else of the user's own domain (a signature for reputation);
- mail forwarded by an alias (a recipient that resolved from a local address to a remote one)
  from outside: with the keys of the alias's domain, sealed with ARC, and with an SRS envelope
  sender when the original sender's domain is not ours. Unless the From: domain and the alias's
  domain align: then a stranger who wrote our customer's address in From: would get our
  signature on it, and DMARC would pass for a forgery. Such mail is forwarded unsigned; a genuine
  message keeps its author's own signature, and our ARC seal says what we found.
- anything else (our own DSNs, which are not submissions): unsigned, as it was.
Signing never stops a delivery: a key or message dkimpy cannot use leaves the mail unsigned.

Keys are read from the store at most every `cache_seconds` per domain (every message would
otherwise cost a read) and parsed once. Signing runs in a thread, at most `max_signing` at once:
canonicalisation copies the message a few times, so a burst of large messages stays bounded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from mailfort.mail.address import domain_of
from mailfort.mail.originator import OriginatorError, originators
from mailfort.store.records import DkimState, QueueItem
from mailfort.store.roles import DkimKeys
from mailfort.trust import arc_seal, dkim_sign
from mailfort.trust.dkim_sign import SigningKey
from mailfort.trust.srs import Srs

log = logging.getLogger("mailfort.trust")

# Domains whose keys are remembered at once: a bound on memory, not a working limit.
MAX_CACHED_DOMAINS = 10_000


@dataclass(frozen=True, slots=True)
class Leaving:
    """How one message leaves: its envelope sender and the bytes to send."""

    sender: str
    message: bytes


def aligned(a: str, b: str) -> bool:
    """Relaxed DMARC alignment, approximated: one domain is the other or under it. (The
    organisational domain of RFC 7489 3.2 needs the Public Suffix List; for deciding *not* to
    sign, erring towards "aligned" is the safe side.)"""
    a, b = a.lower(), b.lower()
    return a == b or a.endswith("." + b) or b.endswith("." + a)


def forwarded(item: QueueItem) -> bool:
    """The recipient was reached through an alias of ours rather than named by the sender."""
    return item.original.lower() != item.recipient.lower()


def group_key(item: QueueItem) -> str:
    """Items that may share one SMTP transaction leave the same way: not when forwarded through
    aliases of different domains (another SRS sender, other keys)."""
    return domain_of(item.original) if forwarded(item) else ""


def from_domain(message: bytes) -> str | None:
    """The one domain of the From: field, None when there is none or several."""
    try:
        authors = originators(message).authors
    except OriginatorError:
        return None
    domains = {domain_of(a) for a in authors}
    return domains.pop() if len(domains) == 1 else None


class KeyCache:
    """The active keys of each domain, read from the store at most every `ttl` seconds."""

    def __init__(
        self, store: DkimKeys, ttl: float = 10.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._store = store
        self._ttl = ttl
        self._clock = clock
        self._keys: dict[str, tuple[float, tuple[SigningKey, ...]]] = {}

    async def active(self, domain: str) -> tuple[SigningKey, ...]:
        now = self._clock()
        cached = self._keys.get(domain)
        if cached is not None and now - cached[0] < self._ttl:
            return cached[1]
        loaded = []
        for key in await self._store.dkim_keys(domain):
            if key.state is DkimState.ACTIVE:
                try:
                    loaded.append(SigningKey.load(key))
                except ValueError as exc:
                    log.error("event=dkim_key_unusable domain=%s error=%s", domain, exc)
        found = tuple(loaded)
        self._keys.pop(domain, None)
        if len(self._keys) >= MAX_CACHED_DOMAINS:
            del self._keys[next(iter(self._keys))]
        self._keys[domain] = (now, found)
        return found


class Outbound:
    def __init__(
        self,
        keys: KeyCache,
        *,
        is_local: Callable[[str], Awaitable[bool]],
        authserv_id: str,
        srs: Srs | None = None,
        srs_domain: str = "",
        sign: bool = True,
        arc: bool = True,
        max_signing: int = 2,
    ) -> None:
        self.keys = keys
        self.is_local = is_local
        self.authserv_id = authserv_id
        self.srs = srs
        self.srs_domain = srs_domain
        self.sign_enabled = sign
        self.arc_enabled = arc
        self._signing = asyncio.Semaphore(max_signing)
        self.signed = 0
        self.sealed = 0
        self.rewritten = 0

    async def prepare(self, item: QueueItem, message: bytes) -> Leaving:
        """How `message`, queued as `item` (the first of its group), leaves."""
        sender = item.sender
        signing: tuple[SigningKey, ...] = ()
        sealing: SigningKey | None = None
        author = from_domain(message)
        if item.authenticated is not None:
            if self.sign_enabled:
                signing = await self._submission_keys(author, item.authenticated)
        elif forwarded(item) and await self.is_local(item.original):
            alias_domain = domain_of(item.original)
            sender = await self._srs_sender(sender, alias_domain)
            keys = await self.keys.active(alias_domain)
            if self.sign_enabled and not (author is not None and aligned(author, alias_domain)):
                signing = keys
            if self.arc_enabled:
                sealing = next((k for k in keys if k.algorithm == "rsa-sha256"), None)
        if not signing and sealing is None:
            return Leaving(sender, message)
        async with self._signing:
            try:
                added = await asyncio.to_thread(self._headers, message, signing, sealing)
            except Exception:
                # Whatever a stranger's message makes the library do, the mail still leaves.
                log.exception("event=outbound_sign_failed id=%s", item.queue_id)
                added = b""
        return Leaving(sender, added + message)

    async def _submission_keys(self, author: str | None, login: str) -> tuple[SigningKey, ...]:
        if author is not None:
            keys = await self.keys.active(author)
            if keys:
                return keys
        return await self.keys.active(domain_of(login))

    async def _srs_sender(self, sender: str, alias_domain: str) -> str:
        if self.srs is None or not sender or await self.is_local(sender):
            return sender
        self.rewritten += 1
        return self.srs.forward(sender, self.srs_domain or alias_domain)

    def _headers(
        self, message: bytes, signing: tuple[SigningKey, ...], sealing: SigningKey | None
    ) -> bytes:
        """The ARC set on the message as it came, then DKIM signatures over that set and the
        message (a receiver checks the newest ARC set's AMS against the message without our
        DKIM-Signature fields, which it does not sign)."""
        sealed = b"" if sealing is None else arc_seal.seal(message, sealing, self.authserv_id)
        self.sealed += bool(sealed)
        signed = dkim_sign.sign(sealed + message, signing)
        self.signed += bool(signed)
        return signed + sealed
