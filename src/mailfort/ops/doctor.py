"""`mailfort doctor`: is this node ready to face the internet? Each check is ok, warn or fail
with what to do.

- `hostname` is a name others can resolve (it is the HELO name receivers judge, and what MX
  and PTR point at), not `localhost`;
- every listener the running node announced in the store answers with its greeting;
- the certificate it shows is trusted, covers `hostname`, and is not about to expire;
- each node address has forward-confirmed reverse DNS naming `hostname`;
- the MX refuses to relay for a stranger (an unauthenticated RCPT to a remote domain);
- each local domain's records pass `dns check`.
"""

from __future__ import annotations

import asyncio
import datetime
import enum
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509

from mailfort.config import Config
from mailfort.ops.dns_check import DomainCheck, Finding, Verdict
from mailfort.ops.hostname import hostname_problem
from mailfort.ops.lookup import Lookup, Unchecked
from mailfort.ops.probe import Endpoint, ProbeError, certificate, greeting, relay_attempt, verifies
from mailfort.ops.records import Record, node_addresses

EXPIRY_WARNING = datetime.timedelta(days=14)
# RFC 2606 6: ".invalid" never resolves, so an accepted RCPT to it can only mean "I relay".
RELAY_PROBE = "relay-test@example.invalid"
FIX_CERT = "set [tls] acme = true (certificates from Let's Encrypt) or [tls] cert and key"


class Level(enum.Enum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"


@dataclass(frozen=True, slots=True, kw_only=True)
class Check:
    what: str
    level: Level
    text: str
    fix: str = ""


async def check_hostname(config: Config, lookup: Lookup) -> Check:
    what = f"hostname {config.hostname}"
    fix = "set `hostname` to the node's public name (e.g. mx1.example.net) and publish its A/AAAA"
    problem = hostname_problem(config.hostname)
    if problem:
        return Check(what=what, level=Level.FAIL, text=problem, fix=fix)
    try:
        found = await lookup.addresses(config.hostname.rstrip(".") + ".")
    except Unchecked as exc:
        return Check(what=what, level=Level.WARN, text=f"could not check: {exc}")
    if not found:
        return Check(what=what, level=Level.FAIL, text="does not resolve (no A/AAAA)", fix=fix)
    return Check(what=what, level=Level.OK, text="resolves to " + ", ".join(found))


async def check_listeners(endpoints: Sequence[Endpoint], timeout: float) -> list[Check]:
    """All at once: a node with every port filtered takes one timeout, not one per listener."""
    return list(await asyncio.gather(*(_check_listener(e, timeout) for e in endpoints)))


async def _check_listener(endpoint: Endpoint, timeout: float) -> Check:
    what = f"listener {endpoint.name} {endpoint.address}"
    try:
        said = await greeting(endpoint, timeout)
    except ProbeError as exc:
        fix = "is the node running (mailfort serve)? is the port open in the firewall?"
        return Check(what=what, level=Level.FAIL, text=str(exc), fix=fix)
    return Check(what=what, level=Level.OK, text=f"answers: {said}")


def judge_certificate(
    cert: x509.Certificate, hostname: str, now: datetime.datetime, trust_problem: str
) -> list[Check]:
    what = "TLS certificate"
    subject = cert.subject.rfc4514_string()
    checks: list[Check] = []
    if cert.issuer == cert.subject:
        text = f"self-signed ({subject}): mail clients warn, MTA-STS senders refuse it"
        checks.append(Check(what=what, level=Level.FAIL, text=text, fix=FIX_CERT))
    elif trust_problem:
        text = f"not trusted by this machine: {trust_problem}"
        checks.append(Check(what=what, level=Level.FAIL, text=text, fix=FIX_CERT))
    left = cert.not_valid_after_utc - now
    if left <= datetime.timedelta(0):
        checks.append(Check(what=what, level=Level.FAIL, text="expired", fix=FIX_CERT))
    elif left < EXPIRY_WARNING:
        text = f"expires in {left.days} days ({cert.not_valid_after_utc:%Y-%m-%d})"
        checks.append(Check(what=what, level=Level.WARN, text=text, fix="renew it now"))
    names = _dns_names(cert)
    if not any(_covers(pattern, hostname) for pattern in names):
        text = f"does not cover {hostname} (it names {', '.join(names) or 'nothing'})"
        checks.append(Check(what=what, level=Level.FAIL, text=text, fix=FIX_CERT))
    if not checks:
        until = f"{cert.not_valid_after_utc:%Y-%m-%d}"
        text = f"trusted, covers {hostname}, valid until {until}"
        checks.append(Check(what=what, level=Level.OK, text=text))
    return checks


def _dns_names(cert: x509.Certificate) -> list[str]:
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return [n.lower() for n in names.value.get_values_for_type(x509.DNSName)]


def _covers(pattern: str, hostname: str) -> bool:
    """RFC 6125 6.4.3: a wildcard stands for exactly one leftmost label."""
    host = hostname.lower().rstrip(".")
    if pattern.startswith("*."):
        return "." in host and host.split(".", 1)[1] == pattern[2:]
    return pattern == host


async def check_certificate(
    endpoints: Sequence[Endpoint], hostname: str, timeout: float
) -> list[Check]:
    tls = [e for e in endpoints if e.name in ("smtp", "submissions", "imaps", "submission")]
    if not tls:
        return [Check(what="TLS certificate", level=Level.WARN, text="no TLS listener to ask")]
    try:
        cert = await certificate(tls[0], hostname, timeout)
    except ProbeError as exc:
        text = f"{tls[0].name} {tls[0].address}: {exc}"
        return [Check(what="TLS certificate", level=Level.FAIL, text=text, fix=FIX_CERT)]
    trust = await verifies(tls[0], hostname, timeout)
    now = datetime.datetime.now(datetime.UTC)
    return judge_certificate(cert, hostname, now, trust)


async def check_relay(endpoints: Sequence[Endpoint], local_domain: str, timeout: float) -> Check:
    what = "open relay"
    mx = [e for e in endpoints if e.name == "smtp"]
    if not mx:
        return Check(what=what, level=Level.OK, text="no MX listener")
    senders = ["", f"postmaster@{local_domain}"] if local_domain else [""]
    for sender in senders:
        try:
            answer = await relay_attempt(mx[0], sender, RELAY_PROBE, timeout)
        except ProbeError as exc:
            return Check(what=what, level=Level.WARN, text=f"could not check: {exc}")
        if answer.startswith("2"):
            text = f"RCPT TO:<{RELAY_PROBE}> from <{sender}> was accepted: {answer}"
            fix = "stop the node: anyone can send spam through it"
            return Check(what=what, level=Level.FAIL, text=text, fix=fix)
    return Check(what=what, level=Level.OK, text=f"a stranger's RCPT to a remote domain: {answer}")


def from_findings(findings: Sequence[Finding], what: str) -> list[Check]:
    """DNS findings as doctor's checks: missing or wrong fail, unchecked warn."""
    levels = {Verdict.OK: Level.OK, Verdict.UNCHECKED: Level.WARN}
    checks = []
    for f in findings:
        label = f"{what} {f.record.rtype} {f.record.name}"
        text = f.verdict.value + (f": {f.found}" if f.found and f.verdict is not Verdict.OK else "")
        level = levels.get(f.verdict, Level.FAIL)
        checks.append(Check(what=label, level=level, text=text, fix=f.fix))
    return checks


async def check_ptr(config: Config, ptr_records: Sequence[Record], lookup: Lookup) -> list[Check]:
    addresses = node_addresses(config)
    if not addresses:
        text = "no public address known"
        fix = "set [dns] public_addresses to the addresses the internet reaches this node at"
        return [Check(what="reverse DNS", level=Level.WARN, text=text, fix=fix)]
    findings = await DomainCheck(lookup, ptr_records, addresses).run(4 * lookup.timeout + 1)
    return from_findings(findings, "reverse DNS")


def format_checks(checks: Sequence[Check]) -> str:
    lines = []
    for c in checks:
        lines.append(f"{c.level.value:<4}  {c.what}: {c.text}")
        if c.fix and c.level is not Level.OK:
            lines.append(f"      fix: {c.fix}")
    counts = {level: sum(1 for c in checks if c.level is level) for level in Level}
    lines.append(", ".join(f"{n} {level.value}" for level, n in counts.items()))
    return "\n".join(lines)
