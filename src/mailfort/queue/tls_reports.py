"""TLS reports (RFC 8460) out of the counts the SMTP client keeps: stored, then mailed once a day.

Every node runs one `TlsReports` loop:
- every `flush_seconds` it adds its in-memory counts (`delivery/tlsrpt.TlsCounter`) to the store,
  so the counts of all nodes meet there (a count the store refused is kept for the next flush);
- every `interval` seconds, if it holds the cluster's "tlsrpt" lease, it reports each finished UTC
  day: for each policy domain with counts it looks up `_smtp._tls.<domain>` and, when the domain
  publishes a `mailto:` rua, claims the report in the store and queues the mail to it.

Bounds, so that a thousand domains that ask for reports cannot make us a spam source (a mailer that
reported to all of them was listed by Spamhaus): a domain gets at most one report per day (the
store's claim is unique per day and domain, across the cluster); a sending host (`hostname`, shared
by the worker processes of one node) sends at most `max_reports_per_day` reports in any 24 hours,
the rest are never sent; one run looks up at most
`max_lookups_per_run` `_smtp._tls` records. Counts older than `KEEP_DAYS` are forgotten.

Reports go from `sender`, which the SMTP client treats as unreported: their own sessions are
never counted, so a report never causes a report (and are delivered despite TLS failures, as RFC
8460 3 asks). A report claimed whose mail the store then failed to take is lost, not sent twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from mailfort.delivery.mx import DnsError, MxResolver
from mailfort.delivery.tlsrpt import (
    MAX_TXT_BYTES,
    Reporter,
    TlsCounter,
    day_of,
    parse_rua,
    report_json,
    report_message,
)
from mailfort.errors import StoreError
from mailfort.mail.directory import Directory
from mailfort.mail.trace import delivery_prefix, new_queue_id
from mailfort.store.records import AcceptRequest, LocalDelivery, QueuedRecipient
from mailfort.store.roles import Acceptance, Locks
from mailfort.store.roles import TlsReports as TlsReportStore

log = logging.getLogger("mailfort.queue")

LEASE = "tlsrpt"
KEEP_DAYS = 7
DAY = 86400.0


class ReportStore(TlsReportStore, Acceptance, Locks, Protocol):
    """What the reporter uses of the store."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportSettings:
    reporter: Reporter
    max_reports_per_day: int = 100
    max_lookups_per_run: int = 500
    interval: float = 3600.0
    flush_seconds: float = 30.0


class TlsReports:
    def __init__(
        self,
        store: ReportStore,
        counter: TlsCounter,
        resolver: MxResolver,
        directory: Directory,
        settings: ReportSettings,
        *,
        node: str,
        host: str = "",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.counter = counter
        self.resolver = resolver
        self.directory = directory
        self.settings = settings
        self.node = node
        # The daily cap counts per sending host: reputation is the address's, and the worker
        # processes of one node (`serve --workers`) share it.
        self.host = host or node
        self.clock = clock
        self.sent = 0
        self.over_cap = 0

    async def run(self) -> None:
        next_report = self.clock()
        while True:
            await asyncio.sleep(min(self.settings.flush_seconds, self.settings.interval))
            try:
                await self.flush()
                if self.clock() >= next_report:
                    next_report = self.clock() + self.settings.interval
                    await self.report()
            except StoreError as exc:
                log.warning("event=tlsrpt_failed error=%s", exc)
            except Exception:
                log.exception("event=tlsrpt_error")

    async def flush(self) -> None:
        """Move the counts in memory to the store (kept for the next flush if it fails)."""
        rows = self.counter.take()
        try:
            await self.store.add_tls_results(rows)
        except StoreError:
            self.counter.give_back(rows)
            raise

    async def close(self) -> None:
        """At shutdown: one last flush, if the store takes it."""
        with contextlib.suppress(StoreError):
            await self.flush()

    async def report(self) -> int:
        """Send the reports of finished days this node may send; how many it sent."""
        now = self.clock()
        settings = self.settings
        if not await self.store.acquire_lease(LEASE, self.node, now + settings.interval, now):
            return 0
        # A day is reported once every node had time to flush its last counts of it.
        today = day_of(now - 10 * settings.flush_seconds)
        await self.store.prune_tls_results(day_of(now - KEEP_DAYS * DAY))
        pending = await self.store.tls_report_domains(today, settings.max_lookups_per_run)
        sent = 0
        for day, domain in pending:
            try:
                strings = await self.resolver.txt(f"_smtp._tls.{domain}", limit=MAX_TXT_BYTES)
            except DnsError as exc:
                if not exc.permanent:
                    continue  # try again at the next run
                strings = []
            rua = parse_rua(strings)
            claimed = await self.store.claim_tls_report(
                day,
                domain,
                self.host,
                self.clock(),
                report=bool(rua),
                since=self.clock() - DAY,
                cap=settings.max_reports_per_day,
            )
            if not rua:
                continue
            if not claimed:
                self.over_cap += 1
                continue
            request = await self._request(day, domain, rua)
            if request is not None:
                await self.store.accept(request)
                sent += 1
                log.info("event=tlsrpt_sent domain=%s day=%s to=%s", domain, day, ",".join(rua))
        self.sent += sent
        return sent

    async def _request(self, day: str, domain: str, rua: list[str]) -> AcceptRequest | None:
        reporter = self.settings.reporter
        now = self.clock()
        rows = await self.store.tls_results(day, domain)
        report_id = f"{day}.{secrets.token_hex(6)}@{reporter.submitter}"
        report = report_json(rows, day=day, domain=domain, reporter=reporter, report_id=report_id)
        body = report_message(
            report,
            day=day,
            domain=domain,
            reporter=reporter,
            report_id=report_id,
            recipients=rua,
            now=now,
        )
        local: dict[int, str] = {}
        remote: list[str] = []
        for address in rua:
            resolution = await self.directory.resolve(address)
            if resolution is not None:
                local.update(resolution.local)
                remote.extend(a for a in resolution.remote if a not in remote)
        if not local and not remote:
            return None
        sender = reporter.sender
        return AcceptRequest(
            queue_id=new_queue_id(now),
            sender=sender,
            body=body,
            received=now,
            client="",
            authenticated=None,
            local=tuple(
                LocalDelivery(
                    account_id=account_id,
                    recipient=address,
                    prefix=delivery_prefix(sender, address),
                )
                for account_id, address in local.items()
            ),
            queued=tuple(QueuedRecipient(recipient=r, original=r) for r in remote),
        )
