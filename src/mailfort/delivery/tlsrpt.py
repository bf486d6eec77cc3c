"""SMTP TLS reporting (RFC 8460): counting TLS sessions per policy domain, and the daily report.

The SMTP client counts every session to a destination with a policy (MTA-STS or DANE): a success,
or a failure with its RFC 8460 4.3 result type, per MX host and address. `TlsCounter` keeps the
counts in memory; the queue's reporter (`queue/tls_reports.py`) moves them to the store now and
then, and once a day builds the report for each finished UTC day and mails it to the `rua` of
`_smtp._tls.<domain>` — only `mailto:` addresses; `https:` ones are skipped.

What this module holds is pure: the counter, the `_smtp._tls` record's parser, the report's JSON
(RFC 8460 4.4) and its mail (RFC 8460 5.3: multipart/report; report-type="tlsrpt", the JSON
gzipped as `application/tlsrpt+gzip`).
"""

from __future__ import annotations

import datetime as dt
import email.utils
import gzip
import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from email.message import EmailMessage

from mailfort.store.records import TlsResultRow

# RFC 8460 4.3 result types
STARTTLS_NOT_SUPPORTED = "starttls-not-supported"
CERTIFICATE_HOST_MISMATCH = "certificate-host-mismatch"
CERTIFICATE_EXPIRED = "certificate-expired"
CERTIFICATE_NOT_TRUSTED = "certificate-not-trusted"
VALIDATION_FAILURE = "validation-failure"

POLICY_STS = "sts"
POLICY_TLSA = "tlsa"
POLICY_NONE = "no-policy-found"

MAX_PENDING = 50_000  # distinct counters held in memory between flushes; more are dropped
MAX_RUA = 5  # addresses one report goes to, however many a record names
MAX_TXT_BYTES = 2048


@dataclass(frozen=True, slots=True)
class Session:
    """One TLS session (or attempt) to count."""

    domain: str  # the policy domain: the recipient domain
    policy_type: str  # sts | tlsa | no-policy-found
    policy: tuple[str, ...]  # the policy's text, line by line (RFC 8460 4.4 policy-string)
    mx_host: str = ""
    address: str = ""
    result: str = ""  # "" success, else a result type


def day_of(now: float) -> str:
    return dt.datetime.fromtimestamp(now, dt.UTC).strftime("%Y-%m-%d")


class TlsCounter:
    """Counts sessions between flushes to the store; bounded (`MAX_PENDING` distinct keys)."""

    def __init__(self) -> None:
        self._counts: Counter[tuple[str, Session]] = Counter()
        self.dropped = 0

    def count(self, session: Session, now: float) -> None:
        key = (day_of(now), session)
        if key not in self._counts and len(self._counts) >= MAX_PENDING:
            self.dropped += 1
            return
        self._counts[key] += 1

    def take(self) -> list[TlsResultRow]:
        """The counts so far, as rows for the store; the counter starts again from zero."""
        counts, self._counts = self._counts, Counter()
        return [
            TlsResultRow(
                day=day,
                domain=s.domain,
                policy_type=s.policy_type,
                policy="\n".join(s.policy),
                mx_host=s.mx_host,
                result=s.result,
                address=s.address,
                sessions=n,
            )
            for (day, s), n in counts.items()
        ]

    def give_back(self, rows: Iterable[TlsResultRow]) -> None:
        """Rows the store did not take: counted again for the next flush."""
        for row in rows:
            session = Session(
                row.domain,
                row.policy_type,
                tuple(row.policy.split("\n")) if row.policy else (),
                row.mx_host,
                row.address,
                row.result,
            )
            key = (row.day, session)
            if key in self._counts or len(self._counts) < MAX_PENDING:
                self._counts[key] += row.sessions


def parse_rua(strings: Iterable[str]) -> list[str]:
    """The mailto: addresses of a `_smtp._tls` TXT RRset (RFC 8460 3); [] unless exactly one
    record is TLSRPTv1. https: destinations are skipped (not implemented)."""
    records = [s for s in strings if s.startswith("v=TLSRPTv1")]
    if len(records) != 1:
        return []
    fields: dict[str, str] = {}
    for part in records[0].split(";"):
        key, sep, value = part.strip().partition("=")
        if sep:
            fields.setdefault(key.strip().lower(), value.strip())
    if fields.get("v") != "TLSRPTv1":
        return []
    found: list[str] = []
    for uri in fields.get("rua", "").split(","):
        uri = uri.strip()
        if not uri.lower().startswith("mailto:"):
            continue
        address = email.utils.unquote(uri[7:].split("?")[0]).strip()
        local, at, domain = address.rpartition("@")
        if at and local and "." in domain and address.isascii() and " " not in address:
            found.append(address)
        if len(found) >= MAX_RUA:
            break
    return found


@dataclass(frozen=True, slots=True)
class Reporter:
    """Who we are in a report."""

    organization: str
    contact: str
    submitter: str  # our host name
    sender: str  # envelope and From address of reports


def report_json(
    rows: Sequence[TlsResultRow], *, day: str, domain: str, reporter: Reporter, report_id: str
) -> dict[str, object]:
    """The report of `domain` for UTC `day` (RFC 8460 4.4)."""
    policies: dict[tuple[str, str], dict[str, object]] = {}
    for row in rows:
        entry = policies.setdefault(
            (row.policy_type, row.policy),
            {
                "policy": _policy(row, domain),
                "summary": {"total-successful-session-count": 0, "total-failure-session-count": 0},
                "failure-details": [],
            },
        )
        summary = entry["summary"]
        assert isinstance(summary, dict)
        if row.result:
            summary["total-failure-session-count"] += row.sessions
            details = entry["failure-details"]
            assert isinstance(details, list)
            detail: dict[str, object] = {"result-type": row.result}
            if row.mx_host:
                detail["receiving-mx-hostname"] = row.mx_host
            if row.address:
                detail["receiving-ip"] = row.address
            detail["failed-session-count"] = row.sessions
            details.append(detail)
        else:
            summary["total-successful-session-count"] += row.sessions
    for entry in policies.values():
        if not entry["failure-details"]:
            del entry["failure-details"]
    return {
        "organization-name": reporter.organization,
        "date-range": {
            "start-datetime": f"{day}T00:00:00Z",
            "end-datetime": f"{day}T23:59:59Z",
        },
        "contact-info": reporter.contact,
        "report-id": report_id,
        "policies": list(policies.values()),
    }


def _policy(row: TlsResultRow, domain: str) -> dict[str, object]:
    policy: dict[str, object] = {"policy-type": row.policy_type, "policy-domain": domain}
    lines = [line for line in row.policy.split("\n") if line.strip()] if row.policy else []
    if lines:
        policy["policy-string"] = lines
    if row.policy_type == POLICY_STS:
        mx = [line.partition(":")[2].strip() for line in lines if line.startswith("mx:")]
        if mx:
            policy["mx-host"] = mx
    return policy


def report_message(
    report: dict[str, object],
    *,
    day: str,
    domain: str,
    reporter: Reporter,
    report_id: str,
    recipients: Sequence[str],
    now: float,
) -> bytes:
    """The report as a mail (RFC 8460 5.3)."""
    start = int(dt.datetime.fromisoformat(f"{day}T00:00:00+00:00").timestamp())
    end = start + 86400
    data = gzip.compress(json.dumps(report, separators=(",", ":")).encode(), mtime=0)
    message = EmailMessage()
    message["From"] = reporter.sender
    message["To"] = ", ".join(recipients)
    message["Subject"] = (
        f"Report Domain: {domain} Submitter: {reporter.submitter} Report-ID: <{report_id}>"
    )
    message["Date"] = email.utils.formatdate(now)
    message["Message-ID"] = f"<{report_id}>"
    message["TLS-Report-Domain"] = domain
    message["TLS-Report-Submitter"] = reporter.submitter
    message.set_content(
        f"This is an aggregate TLS report (RFC 8460) from {reporter.submitter}"
        f" for {domain}, {day} (UTC).\n"
    )
    message.add_attachment(
        data,
        maintype="application",
        subtype="tlsrpt+gzip",
        filename=f"{reporter.submitter}!{domain}!{start}!{end}!{report_id}.json.gz",
    )
    message.set_type("multipart/report")  # keeps the boundary parameter
    message.set_param("report-type", "tlsrpt")
    return message.as_bytes(policy=message.policy.clone(linesep="\r\n"))
