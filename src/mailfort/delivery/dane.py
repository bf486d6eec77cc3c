"""DANE for SMTP (RFC 7672): TLSA records of an MX host, trusted only when DNSSEC vouches for them.

mailfort does not validate DNSSEC itself: it asks its name server with the DO bit and believes a
TLSA answer only when the answer carries the AD flag, which a validating resolver sets once the
signatures check out (RFC 4035 3.2.3). That makes the name server part of the trust: it must be a
validating resolver on loopback (unbound, knot-resolver), named in `[delivery] dns_nameservers`
(or /etc/resolv.conf). A name server on another machine is not believed at all, AD or not: on the
way an attacker could forge the flag together with TLSA records of his own, and since DANE takes
precedence over MTA-STS, that would undo an `enforce` policy. Without a believed AD the records are
ignored, as if the zone were unsigned.

For each MX host (`_25._tcp.<host>`, RFC 7672 2.2):
- no TLSA records, or an answer without AD: DANE does not apply (MTA-STS or `[delivery] tls`);
- records, none of them usable: TLS is required, any certificate (RFC 7672 2.2: "mandatory
  unauthenticated TLS");
- usable records: TLS is required and the server's certificate must match one, else the host is
  not used and delivery defers (4.7.5) — never plaintext;
- a failed lookup (SERVFAIL is how a validating resolver answers a bogus signature): the host is
  not used (RFC 7672 2.1.1).

Usable here means DANE-EE(3) with either selector (0 full certificate, 1 SubjectPublicKeyInfo) and
any matching type (0 exact, 1 SHA-256, 2 SHA-512). DANE-EE checks the key, not names or dates
(RFC 7672 3.1.1). DANE-TA(2) needs the server's chain, which Python's ssl module before 3.13 does
not expose for an unverified connection; TA records are counted as unusable (TLS required, not
authenticated) until then. PKIX usages 0 and 1 are unusable for SMTP by RFC 7672 3.1.3.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from mailfort.delivery.mx import Tlsa

DANE_EE = 3
TLSA_INVALID = "tlsa-invalid"
DNSSEC_INVALID = "dnssec-invalid"
DANE_REQUIRED = "dane-required"


def tlsa_name(host: str, port: int) -> str:
    return f"_{port}._tcp.{host.rstrip('.')}"


def usable(record: Tlsa) -> bool:
    return record.usage == DANE_EE and record.selector in (0, 1) and record.mtype in (0, 1, 2)


@dataclass(frozen=True, slots=True)
class DanePolicy:
    """TLSA records that DNSSEC vouched for, for one MX host."""

    host: str
    records: tuple[Tlsa, ...]

    @property
    def authenticated(self) -> bool:
        """Whether a certificate must match (some record is usable), or only TLS is required."""
        return any(usable(r) for r in self.records)

    def matches(self, certificate_der: bytes) -> bool:
        """Whether the server's end-entity certificate matches a usable record."""
        try:
            certificate = x509.load_der_x509_certificate(certificate_der)
            spki = certificate.public_key().public_bytes(
                Encoding.DER, PublicFormat.SubjectPublicKeyInfo
            )
        except ValueError:
            return False
        for record in self.records:
            if not usable(record):
                continue
            selected = certificate_der if record.selector == 0 else spki
            if _digest(record.mtype, selected) == record.data:
                return True
        return False

    def strings(self) -> list[str]:
        """The records in presentation format, for TLS-RPT's policy-string."""
        return [f"{r.usage} {r.selector} {r.mtype} {r.data.hex()}" for r in self.records]


def _digest(mtype: int, data: bytes) -> bytes:
    if mtype == 1:
        return hashlib.sha256(data).digest()
    if mtype == 2:
        return hashlib.sha512(data).digest()
    return data


def policy_of(host: str, records: Sequence[Tlsa], secure: bool) -> DanePolicy | None:
    """The DANE policy for `host`, or None when DANE does not apply (no records, or no AD)."""
    if not secure or not records:
        return None
    return DanePolicy(host, tuple(records))
