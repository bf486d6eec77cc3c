"""DKIM keys made for a test (by the signing part's `dkim_keys.generate`), their DNS records on
the test name server, and messages signed with them by dkimpy as another provider would."""

from __future__ import annotations

from dataclasses import dataclass

import dkim

from mailfort.store.records import DkimKey, DkimState
from mailfort.trust.dkim_keys import ED25519, RSA, generate
from tests.dkim_support import publish
from tests.dnsserver import Zone


@dataclass(frozen=True)
class Key:
    stored: DkimKey

    @property
    def domain(self) -> str:
        return self.stored.domain

    @property
    def selector(self) -> str:
        return self.stored.selector

    @property
    def private(self) -> bytes:
        """What dkim.sign and dkim.arc_sign take."""
        return self.stored.private_key.encode("ascii")

    @property
    def record(self) -> str:
        """The TXT record at <selector>._domainkey.<domain>."""
        return self.stored.txt_record

    def publish(self, zone: Zone) -> None:
        publish(zone, [self.stored])

    def sign(
        self, message: bytes, headers: tuple[bytes, ...] = (b"from", b"to", b"subject")
    ) -> bytes:
        """`message` with this key's DKIM-Signature prepended."""
        signature = dkim.sign(
            message,
            self.selector.encode(),
            self.domain.encode(),
            self.private,
            signature_algorithm=self.stored.algorithm.encode(),
            include_headers=list(headers),
        )
        return bytes(signature) + message


def rsa_key(domain: str, selector: str = "rsa") -> Key:
    return Key(generate(domain, selector, RSA, DkimState.ACTIVE))


def ed25519_key(domain: str, selector: str = "ed") -> Key:
    return Key(generate(domain, selector, ED25519, DkimState.ACTIVE))
