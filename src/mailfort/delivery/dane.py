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

Usable records: DANE-EE(3) and DANE-TA(2), either selector (0 full certificate, 1
SubjectPublicKeyInfo), any matching type (0 exact, 1 SHA-256, 2 SHA-512). DANE-EE checks the
server's own key, not names or dates (RFC 7672 3.1.1). DANE-TA names a trust anchor the server
sends in its chain (RFC 7671 5.2.2): the chain from the server's certificate up to it must be
signed link by link and within its dates, and the certificate must name the MX host (RFC 7672
3.2.3); a TA given only as a bare public key (2 1 0 without the certificate in the chain) is not
found. PKIX usages 0 and 1 are unusable for SMTP (RFC 7672 3.1.3).

The server's chain comes from the TLS connection as sent, unverified (Python 3.13's
`get_unverified_chain`, the same method of the `_ssl` object before it); where neither exists,
DANE-TA records never match and delivery defers, never goes out unauthenticated.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from mailfort.delivery.mx import Tlsa

DANE_TA = 2
DANE_EE = 3
MAX_CHAIN = 10  # certificates of a server's chain looked at
TLSA_INVALID = "tlsa-invalid"
DNSSEC_INVALID = "dnssec-invalid"
DANE_REQUIRED = "dane-required"


def tlsa_name(host: str, port: int) -> str:
    return f"_{port}._tcp.{host.rstrip('.')}"


def usable(record: Tlsa) -> bool:
    return record.usage in (DANE_TA, DANE_EE) and record.selector in (0, 1) and record.mtype < 3


@dataclass(frozen=True, slots=True)
class DanePolicy:
    """TLSA records that DNSSEC vouched for, for one MX host."""

    host: str
    records: tuple[Tlsa, ...]

    @property
    def authenticated(self) -> bool:
        """Whether a certificate must match (some record is usable), or only TLS is required."""
        return any(usable(r) for r in self.records)

    def matches(self, chain: Sequence[bytes], now: dt.datetime | None = None) -> bool:
        """Whether the server's chain (DER, its own certificate first) satisfies a usable
        record: DANE-EE on the first certificate, DANE-TA on one further up (module docstring)."""
        try:
            certs = [x509.load_der_x509_certificate(der) for der in chain[:MAX_CHAIN]]
        except ValueError:
            return False
        if not certs:
            return False
        for record in self.records:
            if not usable(record):
                continue
            if record.usage == DANE_EE:
                if _selects(record, chain[0], certs[0]):
                    return True
                continue
            when = now or dt.datetime.now(dt.UTC)
            for depth in range(1, len(certs)):
                found = _selects(record, chain[depth], certs[depth])
                if found and _anchored(certs[: depth + 1], self.host, when):
                    return True
        return False

    def strings(self) -> list[str]:
        """The records in presentation format, for TLS-RPT's policy-string."""
        return [f"{r.usage} {r.selector} {r.mtype} {r.data.hex()}" for r in self.records]


def _selects(record: Tlsa, der: bytes, certificate: x509.Certificate) -> bool:
    if record.selector == 0:
        selected = der
    else:
        selected = certificate.public_key().public_bytes(
            Encoding.DER, PublicFormat.SubjectPublicKeyInfo
        )
    return _digest(record.mtype, selected) == record.data


def _anchored(path: Sequence[x509.Certificate], host: str, now: dt.datetime) -> bool:
    """Whether `path` (server certificate first, trust anchor last) is signed link by link, each
    within its dates, and the server certificate names `host`."""
    for child, parent in itertools.pairwise(path):
        try:
            child.verify_directly_issued_by(parent)
        except (ValueError, TypeError, InvalidSignature):
            return False
    for certificate in path:
        if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
            return False
    return _names(path[0], host)


def _names(certificate: x509.Certificate, host: str) -> bool:
    """Whether a DNS name of the certificate (SubjectAltName) is `host`, a wildcard covering
    one label of it included (RFC 6125 6.4.3)."""
    try:
        alt = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return False
    host = host.lower().rstrip(".")
    for name in alt.value.get_values_for_type(x509.DNSName):
        name = name.lower().rstrip(".")
        if name == host:
            return True
        if name.startswith("*.") and host.partition(".")[2] == name[2:] and "." in name[2:]:
            return True
    return False


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
