"""`mailfort dns records` and `mailfort dns check`, run as the operator runs them, against a real
name server on loopback holding the zone under test."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import dns.name
import dns.rdatatype
import dns.zone
import pytest

from tests.dnsserver import NameServer, Zone

HOST = "mx1.provider.test"
DOMAIN = "example.test"
ADDRESS = "192.0.2.10"
ADDRESS6 = "2001:db8::10"

CONFIG = f"""\
hostname = "{HOST}"
data_dir = "{{data_dir}}"
local_domains = ["{DOMAIN}"]

[listen]
smtp = "127.0.0.1:2525"
submission = "127.0.0.1:2587"
submissions = "127.0.0.1:2465"
imap = ""
imaps = "127.0.0.1:2993"
pop3 = ""
pop3s = "127.0.0.1:2995"
http = "127.0.0.1:8080"

[delivery]
dns_nameservers = ["{{nameserver}}"]
dns_timeout = 1.0

[dns]
public_addresses = ["{ADDRESS}", "{ADDRESS6}"]
dmarc_rua = "dmarc@provider.test"

[dns.public_ports]
smtp = 25
submission = 587
submissions = 465
imaps = 993
pop3s = 995
http = 443
"""


def write_config(root: Path, nameserver: str) -> Path:
    path = root / "mailfort.toml"
    path.write_text(CONFIG.format(data_dir=root / "data", nameserver=nameserver))
    return path


def mailfort(config: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mailfort", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def parse_zone(text: str) -> dns.zone.Zone:
    """dnspython's zone-file parser over the whole output: every name absolute, any zone."""
    return dns.zone.from_text(text, origin=dns.name.root, relativize=False, check_origin=False)


def serve(zone: Zone, zone_text: str) -> Zone:
    """`zone` (tests/dnsserver.py) made to hold exactly the records of a zone file."""
    zone.clear()
    for name, ttl, rdata in parse_zone(zone_text).iterate_rdatas():
        zone.add(name.to_text(), dns.rdatatype.to_text(rdata.rdtype), rdata.to_text(), ttl)
    return zone


@pytest.fixture
def nameserver() -> Iterator[NameServer]:
    server = NameServer(Zone()).start()
    yield server
    server.stop()


@pytest.fixture
def published(tmp_path: Path, nameserver: NameServer) -> tuple[Path, str]:
    """The config, and the zone `dns records` prints for it, now served by `nameserver`."""
    config = write_config(tmp_path, nameserver.address)
    printed = mailfort(config, "dns", "records", DOMAIN)
    assert printed.returncode == 0, printed.stderr
    serve(nameserver.zone, printed.stdout)
    return config, printed.stdout


def lines_about(output: str, name: str, purpose: str = "") -> str:
    """The finding about `name` (whose purpose starts with `purpose`) with its found/fix lines."""
    blocks = output.split("\n")
    for i, line in enumerate(blocks):
        if f" {name}  ({purpose}" in line:
            rest = [line]
            for more in blocks[i + 1 :]:
                if not more.startswith(" "):
                    break
                rest.append(more)
            return "\n".join(rest)
    raise AssertionError(f"no finding about {name} in:\n{output}")


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
    # Nothing but these (and the MTA-STS id): no record the operator was not told about.
    assert len(found) == len(expected) + 1
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
    assert len(findings) == 19 and all(ln.startswith("ok ") for ln in findings), checked.stdout


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
    assert out.splitlines()[-1] == "14 ok, 1 missing, 3 wrong, 1 could not check"


def test_check_finds_faults_in_a_record_it_can_read(
    published: tuple[Path, str], nameserver: NameServer
) -> None:
    """DMARC syntax, SPF past 10 lookups, an MX host that is not the node, a PTR whose name
    does not resolve back (no forward confirmation), an old MTA-STS id."""
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
