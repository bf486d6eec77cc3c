"""`mailfort dns records` and `mailfort dns check`, run as the operator runs them, against a real
name server on loopback holding the zone under test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dns.rdatatype
import pytest

from mailfort.store.records import DkimState
from tests.dnsops_support import (
    ADDRESS,
    ADDRESS6,
    DKIM_KEYS,
    DOMAIN,
    HOST,
    add_dkim_keys,
    dkim_key,
    lines_about,
    mailfort,
    parse_zone,
    serve,
    write_config,
)
from tests.dnsserver import NameServer, Zone


@pytest.fixture
def nameserver() -> Iterator[NameServer]:
    server = NameServer(Zone()).start()
    yield server
    server.stop()


@pytest.fixture
def published(tmp_path: Path, nameserver: NameServer) -> tuple[Path, str]:
    """The config, and the zone `dns records` prints for it, now served by `nameserver`."""
    config = write_config(tmp_path, nameserver.address)
    add_dkim_keys(tmp_path, DKIM_KEYS)
    printed = mailfort(config, "dns", "records", DOMAIN)
    assert printed.returncode == 0, printed.stderr
    serve(nameserver.zone, printed.stdout)
    return config, printed.stdout


# -- dns records ------------------------------------------------------------------------------
def test_records_are_a_valid_complete_zone_file(published: tuple[Path, str]) -> None:
    _, text = published
    zone = parse_zone(text)
    found = {
        (name.to_text(), dns.rdatatype.to_text(rdata.rdtype), rdata.to_text())
        for name, _, rdata in zone.iterate_rdatas()
    }
    d, h = f"{DOMAIN}.", f"{HOST}."
    expected = {
        (d, "MX", f"10 {h}"),
        (d, "TXT", '"v=spf1 mx -all"'),
        (f"_dmarc.{d}", "TXT", '"v=DMARC1; p=none; rua=mailto:dmarc@provider.test"'),
        ("example.test._report._dmarc.provider.test.", "TXT", '"v=DMARC1"'),
        (f"mta-sts.{d}", "CNAME", h),
        (f"_smtp._tls.{d}", "TXT", f'"v=TLSRPTv1; rua=mailto:postmaster@{DOMAIN}"'),
        (f"autoconfig.{d}", "CNAME", h),
        (f"autodiscover.{d}", "CNAME", h),
        # The public ports, not the ports the listeners bind behind the firewall.
        (f"_submissions._tcp.{d}", "SRV", f"0 1 465 {h}"),
        (f"_submission._tcp.{d}", "SRV", f"10 1 587 {h}"),
        (f"_imaps._tcp.{d}", "SRV", f"0 1 993 {h}"),
        (f"_pop3s._tcp.{d}", "SRV", f"20 1 995 {h}"),
        # Switched off: "." tells clients not to try (RFC 6186 4).
        (f"_imap._tcp.{d}", "SRV", "0 0 0 ."),
        (f"_pop3._tcp.{d}", "SRV", "0 0 0 ."),
        (h, "A", ADDRESS),
        (h, "AAAA", ADDRESS6),
        ("10.2.0.192.in-addr.arpa.", "PTR", h),
        ("0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa.", "PTR", h),
    }
    assert expected <= found, expected - found
    (sts,) = [r for n, t, r in found if n == f"_mta-sts.{d}"]
    assert sts.startswith('"v=STSv1; id=') and sts[13:-1].isalnum()
    # Every key a verifier may still meet (waiting, signing, retiring), none retired; an RSA key
    # is longer than one TXT string (255 octets), so it comes in parts.
    dkim = {
        n: "".join(r.strip('"') for r in rd.split('" "')) for n, t, rd in found if "_domainkey" in n
    }
    assert dkim == {
        f"{k.selector}._domainkey.{d}": f"v=DKIM1; k={k.key_type}; p={k.public_key}"
        for k in DKIM_KEYS[:3]
    }
    assert "selector r2025, retiring" in text
    # Nothing but these: no record the operator was not told about.
    assert len(found) == len(expected) + 1 + 3
    # Each record says what it is for, on the comment line above it.
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line and not line.startswith(";"):
            assert lines[i - 1].startswith("; "), line


def test_records_say_what_the_config_cannot_give(tmp_path: Path) -> None:
    path = tmp_path / "mailfort.toml"
    path.write_text(f'hostname = "{HOST}"\ndata_dir = "{tmp_path / "data"}"\n')
    printed = mailfort(path, "dns", "records", DOMAIN)
    assert printed.returncode == 0, printed.stderr
    # Default listeners are on loopback: no public address, and their ports are not public.
    assert "set [dns] public_addresses" in printed.stdout
    parse_zone(printed.stdout)  # notes are comments: still a valid zone file


# -- dns check ---------------------------------------------------------------------------------
def test_check_of_a_correct_zone_is_all_ok(published: tuple[Path, str]) -> None:
    config, _ = published
    checked = mailfort(config, "dns", "check", DOMAIN)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    findings = [ln for ln in checked.stdout.splitlines()[1:-1] if not ln.startswith(" ")]
    assert len(findings) == 22 and all(ln.startswith("ok ") for ln in findings), checked.stdout


def test_check_reports_each_fault_with_its_fix(
    published: tuple[Path, str], nameserver: NameServer
) -> None:
    config, _ = published
    zone = nameserver.zone
    d = f"{DOMAIN}."
    zone.remove(f"_dmarc.{d}")  # missing DMARC
    zone.add(d, "TXT", '"v=spf1 ip4:198.51.100.1 -all"')  # a second SPF record
    zone.remove(d, "MX").add(d, "MX", "10 mail.elsewhere.test.")  # MX pointing elsewhere
    zone.remove("10.2.0.192.in-addr.arpa.")
    zone.add("10.2.0.192.in-addr.arpa.", "PTR", "host-10.hosting.test.")  # PTR mismatch
    zone.silent.add(f"_smtp._tls.{d}")  # a name server that never answers for TLS-RPT

    checked = mailfort(config, "dns", "check", DOMAIN, "--timeout", "1")
    out = checked.stdout
    assert checked.returncode == 1, out + checked.stderr
    assert "Traceback" not in checked.stderr

    dmarc = lines_about(out, f"_dmarc.{d}")
    assert dmarc.startswith("missing")
    assert 'fix: publish: _dmarc.example.test.\t3600\tIN\tTXT\t"v=DMARC1; p=none;' in dmarc

    spf = lines_about(out, d, "SPF")
    assert spf.startswith("wrong") and "2 records" in spf and "keep one" in spf

    mx = lines_about(out, d, "incoming")
    assert mx.startswith("wrong") and "mail.elsewhere.test." in mx
    assert f"replace 10 mail.elsewhere.test. with 10 {HOST}." in mx

    ptr = lines_about(out, "10.2.0.192.in-addr.arpa.")
    assert ptr.startswith("wrong") and "host-10.hosting.test." in ptr
    assert f"PTR\t{HOST}." in ptr

    tlsrpt = lines_about(out, f"_smtp._tls.{d}")
    assert tlsrpt.startswith("could not check") and "no answer within 1 s" in tlsrpt

    # The IPv6 PTR is untouched and still ok; the rest too.
    assert lines_about(
        out, "0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa."
    ).startswith("ok")
    assert out.splitlines()[-1] == "17 ok, 1 missing, 3 wrong, 1 could not check"


def test_check_finds_faults_in_a_record_it_can_read(
    published: tuple[Path, str], nameserver: NameServer
) -> None:
    """DMARC syntax, SPF past 10 lookups, a DKIM key that is not the store's, an MX host that
    is not the node, a PTR whose name does not resolve back (no forward confirmation), an old
    MTA-STS id."""
    config, _ = published
    zone = nameserver.zone
    d = f"{DOMAIN}."
    zone.remove(f"_dmarc.{d}").add(f"_dmarc.{d}", "TXT", '"v=DMARC1; p=maybe"')
    zone.remove(d, "TXT").add(d, "TXT", '"v=spf1 mx include:a.spf.test -all"')
    chain = "abcdefghijkl"  # each includes the next, the last the first: a loop
    for i, name in enumerate(chain):
        zone.add(f"{name}.spf.test", "TXT", f'"v=spf1 include:{chain[(i + 1) % 12]}.spf.test -all"')
    zone.remove(f"{HOST}.").add(f"{HOST}.", "A", "198.51.100.7")  # the host moved away
    zone.remove(f"_mta-sts.{d}").add(f"_mta-sts.{d}", "TXT", '"v=STSv1; id=old1"')
    other = dkim_key("e2026", DkimState.ACTIVE, "ed25519-sha256")  # not the store's key
    zone.remove(f"e2026._domainkey.{d}").add(
        f"e2026._domainkey.{d}", "TXT", f'"{other.txt_record}"'
    )

    out = mailfort(config, "dns", "check", DOMAIN, "--timeout", "1").stdout
    dmarc = lines_about(out, f"_dmarc.{d}")
    assert dmarc.startswith("wrong") and "p= must be none, quarantine or reject" in dmarc
    spf = lines_about(out, d, "SPF")
    assert spf.startswith("wrong") and "more than 10 DNS lookups" in spf
    mx = lines_about(out, d, "incoming")
    assert mx.startswith("wrong") and "198.51.100.7" in mx and ADDRESS in mx
    ptr = lines_about(out, "10.2.0.192.in-addr.arpa.")
    assert ptr.startswith("wrong") and f"add {ADDRESS} to the A/AAAA records of {HOST}." in ptr
    a = lines_about(out, f"{HOST}.", "the node")
    assert a.startswith("wrong") and "198.51.100.7" in a
    assert lines_about(out, f"_mta-sts.{d}").startswith("wrong")
    dkim = lines_about(out, f"e2026._domainkey.{d}")
    assert dkim.startswith("wrong") and "differs from the store's" in dkim
    assert DKIM_KEYS[1].public_key in dkim
    assert lines_about(out, f"r2026._domainkey.{d}").startswith("ok")
