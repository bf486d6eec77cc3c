"""SRS: the envelope sender of forwarded mail, rewritten so SPF passes at the next hop and bounces
come back to us, who forward them to the original sender (the Sender Rewriting Scheme).

A message from `alice@elsewhere.example` to our alias `fwd@ours.example`, forwarded to
`bob@gmail.example`, leaves with the envelope sender
`SRS0=<hash>=<tt>=elsewhere.example=alice@ours.example`: our SPF record covers it, and a bounce
comes to our MX, which sends it on to alice (`reverse`).

The address names its original sender inside, so a stranger must not be able to make one: the
hash is an HMAC over the time stamp and the original address with a key every node shares
(`store.roles.Secrets`), and an address whose hash does not match, or older than `max_age_days`,
is refused (550 5.1.1) rather than forwarded — else our MX would relay to anyone who wrote such
an address (an open relay).

Format: the SRS0 layout of Shevek's scheme (`SRS0=HHHH=TT=domain=local@forwarder`), which other
forwarders recognise, with two choices of ours. Only we ever check our hash, so its encoding is
ours: 8 base32 characters (40 bits) of HMAC-SHA256, case-insensitive by design, since mail
software (ours included: `mail.address.normalize`) may lower-case the address — Shevek's base64
hash compared without case keeps barely 4 x 5 bits. And we only ever make SRS0: a sender that is
already someone's SRS address is wrapped like any other, which its forwarder unwraps in turn
when the bounce reaches it. A local part can then pass the 64 octets RFC 5321 4.5.3.1 allows;
receivers accept such envelope senders in practice (as they do other SRS implementations').
No maintained Python SRS library exists (pysrs's last release is from 2011), hence this module.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable

from mailfort.mail.address import AddressError, normalize
from mailfort.store.roles import Secrets

PREFIX = "srs0="
HASH_LENGTH = 8
# Time stamps are days modulo 1024 in two base32 characters: an address is valid this long.
MAX_AGE_DAYS = 21
_DAY = 86400
_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"  # RFC 4648 base32, lower case


SECRET_NAME = "srs"
SECRET_BYTES = 32


class Srs:
    """Makes and checks SRS0 addresses with one secret. Made before the store is open (the node
    wires it into its directory and delivery worker), it checks nothing until `load_secret`."""

    def __init__(
        self,
        secret: bytes | None = None,
        *,
        max_age_days: int = MAX_AGE_DAYS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._secret: bytes | None = None
        if secret is not None:
            self.set_secret(secret)
        self.max_age_days = max_age_days
        self._clock = clock

    def set_secret(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("the SRS secret must be at least 16 bytes")
        self._secret = secret

    async def load_secret(self, store: Secrets) -> None:
        """Use the secret every node shares, made by the first node that asked."""
        self.set_secret(await store.shared_secret(SECRET_NAME, secrets.token_bytes(SECRET_BYTES)))

    @property
    def ready(self) -> bool:
        return self._secret is not None

    def _hash(self, stamp: str, domain: str, local: str) -> str:
        if self._secret is None:
            raise RuntimeError("SRS used before its secret was loaded")
        text = f"{stamp}={domain}={local}".lower().encode("utf-8", "surrogateescape")
        digest = hmac.new(self._secret, text, hashlib.sha256).digest()
        return base64.b32encode(digest).decode("ascii").lower()[:HASH_LENGTH]

    def _stamp(self, now: float) -> str:
        day = int(now // _DAY) % 1024
        return _ALPHABET[day >> 5] + _ALPHABET[day & 31]

    def forward(self, sender: str, forwarder_domain: str) -> str:
        """The envelope sender for forwarding mail from `sender` through `forwarder_domain`."""
        local, _, domain = sender.rpartition("@")
        stamp = self._stamp(self._clock())
        digest = self._hash(stamp, domain, local)
        return f"SRS0={digest}={stamp}={domain}={local}@{forwarder_domain}"

    def reverse(self, address: str) -> str | None:
        """The original sender an SRS0 address of ours stands for; None when it is not one of
        ours, forged (its hash does not match) or expired."""
        local = address.rpartition("@")[0]
        if self._secret is None or local[:5].lower() != PREFIX:
            return None
        parts = local[5:].split("=", 3)
        if len(parts) != 4:
            return None
        digest, stamp, domain, original_local = parts
        stamp = stamp.lower()
        if len(stamp) != 2 or any(ch not in _ALPHABET for ch in stamp):
            return None
        expected = self._hash(stamp, domain, original_local)
        if not hmac.compare_digest(digest.lower().encode(), expected.encode()):
            return None
        then = _ALPHABET.index(stamp[0]) << 5 | _ALPHABET.index(stamp[1])
        today = int(self._clock() // _DAY) % 1024
        if (today - then) % 1024 > self.max_age_days:
            return None
        try:
            return normalize(f"{original_local}@{domain}")
        except AddressError:
            return None
