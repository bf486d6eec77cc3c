"""The Authentication-Results field (RFC 8601): how ours reads, and which ones are cut out."""

from __future__ import annotations

import email.parser
import email.policy

import dkim

from mailfort.trust.authres import authserv_id, format_header, ours, results
from mailfort.trust.dkim_check import DkimResult
from mailfort.trust.dmarc import DmarcResult, Policy
from mailfort.trust.headers import fields
from mailfort.trust.incoming import cut
from mailfort.trust.spf import Result, SpfResult


def test_format_lists_every_method() -> None:
    header = format_header(
        "mx.example.org",
        SpfResult(Result.PASS, "mailfrom", "example.com", "alice@example.com"),
        [
            DkimResult("pass", "example.com", "sel", "rsa-sha256"),
            DkimResult("fail", "other.test", "s2", "ed25519-sha256"),
        ],
        DmarcResult("pass", "example.com", Policy.REJECT),
        "pass",
    )
    assert header == (
        b"Authentication-Results: mx.example.org;\r\n"
        b"\tspf=pass smtp.mailfrom=alice@example.com;\r\n"
        b"\tdkim=pass header.d=example.com header.s=sel header.a=rsa-sha256;\r\n"
        b"\tdkim=fail header.d=other.test header.s=s2 header.a=ed25519-sha256;\r\n"
        b"\tdmarc=pass policy.dmarc=reject header.from=example.com;\r\n"
        b"\tarc=pass\r\n"
    )
    parsed = email.parser.BytesParser(policy=email.policy.default).parsebytes(header + b"\r\n")
    assert parsed["Authentication-Results"].startswith("mx.example.org;")
    assert results(" ".join(header.decode().split())) == {
        "spf": "pass",
        "dkim": "pass",
        "dmarc": "pass",
        "arc": "pass",
    }


def test_null_sender_and_no_signature() -> None:
    header = format_header(
        "mx.example.org",
        SpfResult(Result.NONE, "helo", "client.test", "postmaster@client.test"),
        [],
        DmarcResult("none", ""),
        "none",
    )
    text = header.decode()
    assert "spf=none smtp.helo=client.test;" in text
    assert "dkim=none;" in text and "dmarc=none;" in text and text.endswith("arc=none\r\n")


def test_sender_text_cannot_add_to_the_field() -> None:
    # A hostile d= or From domain is cut down to the characters of a value.
    header = format_header(
        "mx.example.org",
        SpfResult(Result.FAIL, "mailfrom", "x.test", 'a";dmarc=pass@x.test'),
        [DkimResult("permerror", "evil.test; dmarc=pass\r\nX-Injected: 1", "s (c)", "a=b")],
        DmarcResult("fail", "evil.test;arc=pass", Policy.REJECT, Policy.REJECT),
        "pass; dmarc=pass",
    )
    text = header.decode()
    assert "\r\nX-Injected" not in text
    assert text.count(";") == 4  # after the authserv-id, and between the 4 results
    assert "arc=fail" in text  # an unknown cv is not repeated


def test_an_srs_sender_is_named_whole() -> None:
    # RFC 8601 2.2: a pvalue may be local-part@domain, and "=" is atext: the address the SPF
    # check was about, not a version with its separators dropped.
    srs = "SRS0=jyel624a=J2=alpha.test=alice@beta.test"
    header = format_header(
        "mx.example.org",
        SpfResult(Result.PASS, "mailfrom", "beta.test", srs),
        [],
        DmarcResult("none", "alpha.test", None, None),
        "none",
    )
    assert f"spf=pass smtp.mailfrom={srs};" in header.decode()
    parsed = email.parser.BytesParser(policy=email.policy.default).parsebytes(header + b"\r\n")
    assert results(str(parsed["Authentication-Results"]))["spf"] == "pass"


def test_authserv_id_and_ours() -> None:
    assert authserv_id(" mx.example.org; spf=pass") == "mx.example.org"
    assert authserv_id("(comment) MX.Example.ORG. 1; none") == "mx.example.org"
    assert authserv_id("mx.example.org") == "mx.example.org"
    message = (
        b"Received: from a\r\n"
        b"Authentication-Results: mx.example.org; dmarc=pass\r\n"
        b"Authentication-Results: other.example; dmarc=pass\r\n"
        b"ARC-Authentication-Results: i=1; mx.example.org; dmarc=pass\r\n"
        b"authentication-results: (x)\r\n mx.example.org;\r\n dkim=pass\r\n"
        b"Subject: hi\r\n\r\nAuthentication-Results: mx.example.org; in the body\r\n"
    )
    found = ours(fields(message), "mx.example.org.")
    assert len(found) == 2
    kept = cut(message, [(f.start, f.end) for f in found])
    assert kept == (
        b"Received: from a\r\n"
        b"Authentication-Results: other.example; dmarc=pass\r\n"
        b"ARC-Authentication-Results: i=1; mx.example.org; dmarc=pass\r\n"
        b"Subject: hi\r\n\r\nAuthentication-Results: mx.example.org; in the body\r\n"
    )


def test_header_fields_are_read_tolerantly() -> None:
    message = b"Good: 1\r\nno colon here\r\n\tcontinued\r\nFrom: a@b.test\r\n\r\nbody"
    assert [(f.name, f.value) for f in fields(message)] == [("good", "1"), ("from", "a@b.test")]
    assert fields(b"\r\nbody") == []
    assert [f.name for f in fields(b"X: 1\r\nY: 2")] == ["x", "y"]  # no body at all


def test_our_field_is_what_an_arc_sealer_reads() -> None:
    # dkimpy's ARC signer (which the forwarding side seals with) parses our field with the
    # authres package, keeps the results of its authserv-id and takes cv= from arc=.
    from tests.dkimkeys import rsa_key

    ours_header = format_header(
        "mx.example.org",
        SpfResult(Result.PASS, "mailfrom", "example.com", "alice@example.com"),
        [DkimResult("pass", "example.com", "sel", "rsa-sha256")],
        DmarcResult("pass", "example.com", Policy.REJECT),
        "none",
    )
    message = ours_header + b"From: alice@example.com\r\nTo: b@example.org\r\n\r\nHi.\r\n"
    key = rsa_key("example.org", "arc")
    seal = b"".join(
        dkim.arc_sign(message, b"arc", b"example.org", key.private, b"mx.example.org")
    ).decode()
    assert "ARC-Seal: i=1;" in seal and "cv=none" in seal
    aar = " ".join(seal[seal.index("ARC-Authentication-Results:") :].split())
    for result in ("spf=pass", "dkim=pass", "dmarc=pass"):
        assert result in aar
