"""DKIM keys made for a test, their DNS records, and messages signed with them (dkimpy)."""

from __future__ import annotations

import base64
from dataclasses import dataclass

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from tests.dnsserver import Zone
from tests.trustdns import txt


@dataclass(frozen=True)
class Key:
    domain: str
    selector: str
    algorithm: str  # rsa-sha256 | ed25519-sha256
    private: bytes  # what dkim.sign takes
    record: str  # the TXT record at <selector>._domainkey.<domain>

    def publish(self, zone: Zone) -> None:
        txt(zone, f"{self.selector}._domainkey.{self.domain}", self.record)

    def sign(
        self, message: bytes, headers: tuple[bytes, ...] = (b"from", b"to", b"subject")
    ) -> bytes:
        """`message` with this key's DKIM-Signature prepended."""
        signature = dkim.sign(
            message,
            self.selector.encode(),
            self.domain.encode(),
            self.private,
            signature_algorithm=self.algorithm.encode(),
            include_headers=list(headers),
        )
        return bytes(signature) + message


def rsa_key(domain: str, selector: str = "rsa", bits: int = 2048) -> Key:
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    record = f"v=DKIM1; k=rsa; p={base64.b64encode(public).decode()}"
    return Key(domain, selector, "rsa-sha256", private, record)


def ed25519_key(domain: str, selector: str = "ed") -> Key:
    key = ed25519.Ed25519PrivateKey.generate()
    seed = key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    public = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    record = f"v=DKIM1; k=ed25519; p={base64.b64encode(public).decode()}"
    return Key(domain, selector, "ed25519-sha256", base64.b64encode(seed), record)
