"""`mailfort dns check` against name servers that misbehave: answers too large to be records, a
name server that never answers, an SPF include loop. Each ends in a verdict ("could not check"
or "wrong") within a bound, never a traceback or a hang."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.dnsops_support import DOMAIN, lines_about, mailfort, serve, write_config
from tests.dnsserver import NameServer, Zone

TIMEOUT = 1.0
# A check has 4 x the lookup timeout and a second (cli_dns.check_deadline); the rest is the
# interpreter's start on a loaded machine.
BOUND = 4 * TIMEOUT + 1 + 10


@pytest.fixture
def nameserver() -> Iterator[NameServer]:
    server = NameServer(Zone()).start()
    yield server
    server.stop()


def check(config: Path) -> tuple[int, str, float]:
    started = time.monotonic()
    done = mailfort(config, "dns", "check", DOMAIN, "--timeout", str(TIMEOUT), timeout=60)
    assert "Traceback" not in done.stderr + done.stdout, done.stderr
    return done.returncode, done.stdout, time.monotonic() - started


def test_huge_txt_answers_are_not_read(tmp_path: Path, nameserver: NameServer) -> None:
    config = write_config(tmp_path, nameserver.address)
    serve(nameserver.zone, mailfort(config, "dns", "records", DOMAIN).stdout)
    d = f"{DOMAIN}."
    # 40 KB of SPF-looking text in 160 strings, and 300 DMARC records: more than any real
    # answer, sent whole over UDP by the server (dnslib does not truncate).
    nameserver.zone.remove(d, "TXT").add(d, "TXT", " ".join(['"v=spf1 ' + "a" * 240 + '"'] * 160))
    for i in range(300):
        nameserver.zone.add(f"_dmarc.{d}", "TXT", f'"v=DMARC1; p=none; rua=mailto:r{i}@x.test"')
    status, out, elapsed = check(config)
    assert elapsed < BOUND
    for name, purpose in ((d, "SPF"), (f"_dmarc.{d}", "DMARC")):
        finding = lines_about(out, name, purpose)
        assert finding.startswith("could not check") and "octets" in finding, finding
        assert len(finding) < 1000  # what was found is not echoed whole
    assert status == 3, out  # nothing wrong found, but not all checked


def test_a_name_server_that_never_answers(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))  # takes queries, answers none
        config = write_config(tmp_path, f"127.0.0.1:{silent.getsockname()[1]}")
        status, out, elapsed = check(config)
    assert elapsed < BOUND, elapsed
    findings = [ln for ln in out.splitlines()[1:-1] if not ln.startswith(" ")]
    assert findings and all(ln.startswith("could not check") for ln in findings), out
    assert out.splitlines()[-1].startswith("0 ok, 0 missing, 0 wrong, ")
    assert status == 3


def test_an_spf_include_loop_is_counted_not_followed_forever(
    tmp_path: Path, nameserver: NameServer
) -> None:
    config = write_config(tmp_path, nameserver.address)
    serve(nameserver.zone, mailfort(config, "dns", "records", DOMAIN).stdout)
    d = f"{DOMAIN}."
    nameserver.zone.remove(d, "TXT").add(d, "TXT", '"v=spf1 mx include:loop.test -all"')
    nameserver.zone.add("loop.test", "TXT", '"v=spf1 include:loop.test -all"')
    status, out, elapsed = check(config)
    assert elapsed < BOUND
    spf = lines_about(out, d, "SPF")
    assert spf.startswith("wrong") and "more than 10 DNS lookups" in spf
    asked = [q for q in nameserver.zone.queries if q == ("loop.test.", "TXT")]
    assert 1 <= len(asked) <= 10  # answers are cached; never more than the limit in any case
    assert status == 1
