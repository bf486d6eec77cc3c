"""The pure parts of delivery security: MTA-STS records and patterns, TLS-RPT records and counts,
DANE-EE matching."""

from __future__ import annotations

import hashlib
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from mailfort.delivery import tlsrpt
from mailfort.delivery.dane import DanePolicy, policy_of
from mailfort.delivery.mtasts import Mode, mx_matches, parse_policy, parse_txt
from mailfort.delivery.mx import Tlsa
from mailfort.server.tls import ensure_self_signed


def test_sts_txt_records() -> None:
    assert parse_txt(["v=STSv1; id=20240101T000000"]) == "20240101T000000"
    assert parse_txt([f"v=STSv1; id={'a' * 33}"]) is None  # 1 to 32 (RFC 8461 3.1)
    assert parse_txt(["v=STSv1; id=20240101"]) == "20240101"
    assert parse_txt(["v=STSv1;id=abc;"]) == "abc"
    assert parse_txt(["v=spf1 -all", "v=STSv1; id=x1"]) == "x1"
    assert parse_txt(["v=STSv1; id=a", "v=STSv1; id=b"]) is None  # RFC 8461 3.1: several: none
    assert parse_txt(["v=STSv1; id=a-b"]) is None
    assert parse_txt(["v=STSv1"]) is None
    assert parse_txt(["v=STSv10; id=a"]) is None
    assert parse_txt([]) is None


def test_mx_patterns() -> None:
    assert mx_matches("mx.a.test", "MX.A.test.")
    assert mx_matches("*.a.test", "mx1.a.test")
    assert not mx_matches("*.a.test", "a.test")
    assert not mx_matches("*.a.test", "x.mx1.a.test")  # one label only (RFC 8461 4.1)
    assert not mx_matches("mx.a.test", "mx.a.test.evil")
    policy = parse_policy("version: STSv1\r\nmode: enforce\r\nmx: *.a.test\r\nmax_age: 60\r\n")
    assert policy.mode is Mode.ENFORCE and policy.max_age == 60 and policy.allows("b.a.test")
    none = parse_policy("version: STSv1\nmode: none\nmax_age: 60\nfuture: key\n")
    assert none.mode is Mode.NONE and none.mx == ()


def test_rua_records() -> None:
    one = "v=TLSRPTv1; rua=mailto:a@r.test,https://r.test/x, mailto:b@r.test"
    assert tlsrpt.parse_rua([one]) == ["a@r.test", "b@r.test"]
    assert tlsrpt.parse_rua([one, one]) == []
    assert tlsrpt.parse_rua(["v=TLSRPTv1; rua=https://r.test/x"]) == []
    assert tlsrpt.parse_rua(["v=TLSRPTv1; rua=mailto:nobody"]) == []
    many = ",".join(f"mailto:r{i}@r.test" for i in range(50))
    assert len(tlsrpt.parse_rua([f"v=TLSRPTv1; rua={many}"])) == tlsrpt.MAX_RUA


def test_the_counter_is_bounded() -> None:
    counter = tlsrpt.TlsCounter()
    for i in range(tlsrpt.MAX_PENDING + 10):
        counter.count(tlsrpt.Session(f"d{i}.test", "sts", ()), 1_800_000_000.0)
    assert counter.dropped == 10
    rows = counter.take()
    assert len(rows) == tlsrpt.MAX_PENDING and counter.take() == []
    counter.give_back(rows[:3])
    assert sum(r.sessions for r in counter.take()) == 3


def test_dane_ee_matching(tmp_path: Path) -> None:
    cert_path, _ = ensure_self_signed(tmp_path, "mx.a.test")
    der = x509.load_pem_x509_certificate(cert_path.read_bytes()).public_bytes(Encoding.DER)
    full = Tlsa(3, 0, 2, hashlib.sha512(der).digest())
    exact = Tlsa(3, 0, 0, der)
    ta = Tlsa(2, 0, 1, hashlib.sha256(der).digest())
    pkix = Tlsa(1, 0, 1, hashlib.sha256(der).digest())  # PKIX-EE: unusable for SMTP
    assert DanePolicy("mx", (full,)).matches([der])
    assert DanePolicy("mx", (exact,)).matches([der])
    # DANE-TA names a certificate above the server's own, never the server's own
    assert not DanePolicy("mx.a.test", (ta, pkix)).matches([der])
    assert not DanePolicy("mx", (pkix,)).authenticated  # TLS required, not authenticated
    assert DanePolicy("mx", (ta,)).authenticated
    assert not DanePolicy("mx", (full,)).matches([b"not a certificate"])
    assert not DanePolicy("mx", (full,)).matches([])
    assert policy_of("mx", [full], secure=False) is None
    assert policy_of("mx", [], secure=True) is None
