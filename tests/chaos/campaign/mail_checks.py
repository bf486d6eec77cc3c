"""Checks of the mail a campaign sent through the MX and submission, over the history and the
final state: every acknowledged message is where it belongs (a kept local mailbox: exactly once;
the remote MX: at least once, and a second copy only where a fault can have cost the node the
answer or its lease — RFC 5321 6.3 allows duplicates after a lost reply, and only then), nothing
refused went anywhere, nothing is left in the queue.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from tests.chaos.campaign.history import FAIL, OK, UNKNOWN, Op, Violation
from tests.chaos.campaign.mx_load import MID, Recipients
from tests.chaos.campaign.nemesis import LOSES_LEASES
from tests.smtpsink import Transaction

# A copy is exposed to a fault on its node that began within this long after its final dot (the
# sink's held reply and the outcome's commit fit in it), or that was going on at the dot or had
# ended just before it (a paused node that wakes and finishes a delivery it no longer holds).
EXPOSURE_AFTER = 2.5
EXPOSURE_BEFORE = 1.0


@dataclass
class MailState:
    """The end of a campaign: Message-IDs in each local account (all mailboxes), the remote MX's
    transactions, and what is still queued."""

    local: dict[str, Counter[str]]
    sink: list[Transaction]
    queued: int


@dataclass
class MailReport:
    violations: list[Violation] = field(default_factory=list)
    figures: dict[str, object] = field(default_factory=dict)


def _mids(data: bytes) -> list[str]:
    return [m.decode() for m in MID.findall(data)]


def exposed(node: str, at: float, faults: Iterable[Op]) -> Op | None:
    """The fault that may have cost `node` the answer or the lease of a delivery at `at`."""
    for fault in faults:
        if fault.f not in LOSES_LEASES or fault.node not in (node, "db"):
            continue
        end = fault.end or float("inf")
        if at - EXPOSURE_BEFORE <= fault.start <= at + EXPOSURE_AFTER:
            return fault
        if fault.start <= at <= end + EXPOSURE_BEFORE:
            return fault
    return None


def check_mail(ops: list[Op], state: MailState, recipients: Recipients) -> MailReport:
    report = MailReport()
    faults = [op for op in ops if op.client == "nemesis"]
    sent = [op for op in ops if op.f in ("send", "submit")]
    kept, pop3 = set(recipients.kept), set(recipients.pop3)
    everywhere: Counter[str] = Counter()
    for counts in state.local.values():
        everywhere.update(counts)

    copies: dict[str, list[Transaction]] = defaultdict(list)
    for t in state.sink:
        for mid in _mids(t.data):
            copies[mid].append(t)

    def add(rule: str, detail: str, op: Op, at: float | None = None) -> None:
        report.violations.append(Violation(rule, detail, at or op.end, [op.id]))

    waits: list[float] = []
    waits_faulted: list[float] = []
    shapes: Counter[tuple[int, int]] = Counter()
    exposures: Counter[str] = Counter()
    for op in sent:
        mid = op.args["mid"]
        to: list[str] = op.args["to"]
        remote = [r for r in to if recipients.remote_of(r)]
        arrived = sorted(copies.get(mid, []), key=lambda t: t.at)
        if op.outcome == FAIL:
            if everywhere[mid] or arrived:
                add("refused-but-delivered", f"{mid} got {op.result} but was delivered", op)
            continue
        for rcpt in to:
            if rcpt in kept:
                n = state.local.get(rcpt, Counter())[mid]
                if op.outcome == OK and n != 1:
                    add("local-not-once", f"{mid} acknowledged, {n} copies in {rcpt}", op)
                if op.outcome == UNKNOWN and n > 1:
                    add("local-duplicate", f"{mid} (answer lost), {n} copies in {rcpt}", op)
        if not remote:
            continue
        if op.outcome == OK and not arrived:
            add("remote-lost", f"{mid} acknowledged, never reached the remote MX", op)
            continue
        # Each recipient of one transaction shares the copy; several aliases of one message
        # go in one transaction per destination, so count transactions per copy.
        exposing = [exposed(t.helo.split(".")[0], t.at, faults) for t in arrived]
        allowed = 1 + sum(1 for e in exposing if e is not None)
        for e in exposing:
            if e is not None:
                exposures[e.f] += 1
        shapes[(len(arrived), allowed - 1)] += 1
        if len(arrived) > allowed:
            lines = ", ".join(f"{t.helo.split('.')[0]} at +{t.at - op.start:.2f}s" for t in arrived)
            add(
                "remote-extra-copy",
                f"{mid}: {len(arrived)} copies ({lines}); faults explain {allowed - 1} extra",
                op,
                arrived[-1].at,
            )
        if op.outcome == OK and arrived:
            wait = arrived[0].at - op.end
            waits.append(wait)
            if exposed(arrived[0].helo.split(".")[0], arrived[0].at, faults) or any(
                f.start <= arrived[0].at and (f.end or 0) >= op.end for f in faults
            ):
                waits_faulted.append(wait)
    if state.queued:
        report.violations.append(
            Violation("queue-not-empty", f"{state.queued} items still queued", 0.0, [])
        )
    for account, counts in state.local.items():
        if account in pop3:
            continue  # POP3 sessions may delete; their checks are the mailbox checker's
        for mid, n in counts.items():
            if n > 1:
                report.violations.append(
                    Violation("local-duplicate", f"{mid}: {n} copies in {account}", 0.0, [])
                )
    outcomes = Counter(op.outcome for op in sent)
    report.figures = {
        "messages": len(sent),
        "acknowledged": outcomes[OK],
        "refused": outcomes[FAIL],
        "unknown": outcomes[UNKNOWN],
        "remote copies (copies, extra allowed): messages": {
            f"{n},{k}": c for (n, k), c in sorted(shapes.items())
        },
        "extra copies allowed by fault": dict(exposures),
        "remote wait p50 s": round(statistics.median(waits), 2) if waits else None,
        "remote wait max s": round(max(waits), 2) if waits else None,
        "remote wait max under a fault s": round(max(waits_faulted), 2) if waits_faulted else None,
    }
    return report
