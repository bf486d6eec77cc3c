"""`doctor.judge_certificate`: what the doctor says of a certificate, by its facts alone."""

from __future__ import annotations

import datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from mailfort.ops.doctor import Level, judge_certificate

NOW = datetime.datetime(2026, 12, 7, tzinfo=datetime.UTC)
KEY = ec.generate_private_key(ec.SECP256R1())


def cert(names: list[str], days: float, *, self_signed: bool = False) -> x509.Certificate:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0] if names else "x")])
    issuer = subject if self_signed else x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "CA")])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(KEY.public_key())
        .serial_number(1)
        .not_valid_before(NOW - datetime.timedelta(days=30))
        .not_valid_after(NOW + datetime.timedelta(days=days))
    )
    if names:
        san = x509.SubjectAlternativeName([x509.DNSName(n) for n in names])
        builder = builder.add_extension(san, critical=False)
    return builder.sign(KEY, hashes.SHA256())


def judged(c: x509.Certificate, trust: str = "") -> list[tuple[Level, str]]:
    return [
        (check.level, check.text) for check in judge_certificate(c, "mx1.example.net", NOW, trust)
    ]


def test_a_trusted_certificate_for_the_host_is_ok() -> None:
    [(level, text)] = judged(cert(["mx1.example.net"], 60))
    assert level is Level.OK and "valid until 2027-02-05" in text


def test_a_wildcard_covers_one_label_only() -> None:
    assert judged(cert(["*.example.net"], 60))[0][0] is Level.OK
    [(level, text)] = judged(cert(["*.net"], 60))
    assert level is Level.FAIL and "does not cover mx1.example.net" in text


def test_expiring_soon_warns_and_expired_fails() -> None:
    [(level, text)] = judged(cert(["mx1.example.net"], 13.5))
    assert level is Level.WARN and "expires in 13 days" in text
    [(level, text)] = judged(cert(["mx1.example.net"], -1))
    assert (level, text) == (Level.FAIL, "expired")


def test_self_signed_or_untrusted_fails() -> None:
    [(level, text)] = judged(cert(["mx1.example.net"], 60, self_signed=True))
    assert level is Level.FAIL and text.startswith("self-signed")
    [(level, text)] = judged(cert(["mx1.example.net"], 60), trust="unable to get local issuer")
    assert level is Level.FAIL and "not trusted by this machine" in text


def test_a_certificate_without_names_covers_nothing() -> None:
    [(level, text)] = judged(cert([], 60))
    assert level is Level.FAIL and "it names nothing" in text
