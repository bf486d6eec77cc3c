"""One campaign from start to verdict: set up, load, faults, heal, wait, read, check, tear down."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mailfort.store.postgres import PostgresStore
from tests.chaos.campaign.cluster import Cluster, build
from tests.chaos.campaign.history import OK, History, Op, Violation, around
from tests.chaos.campaign.imap_load import ImapWorker
from tests.chaos.campaign.mail_checks import MailState, check_mail
from tests.chaos.campaign.mailbox_checks import check_mailboxes, final_state
from tests.chaos.campaign.mx_load import MID, MailSender, Recipients
from tests.chaos.campaign.nemesis import Nemesis, schedule
from tests.chaos.campaign.netns import DB_ADDR, Network, missing_tools
from tests.chaos.campaign.pop3_load import Pop3Worker
from tests.chaos.pgha import PgPair
from tests.cluster_support import unexpected_tracebacks
from tests.rawclient import client_tls

ROOT = Path(__file__).resolve().parents[3]
PASSWORD = "campaign password"
RECIPIENTS = Recipients(
    kept=tuple(f"kept{n}@example.test" for n in range(4)),
    pop3=tuple(f"pop{n}@example.test" for n in range(2)),
    forwards=tuple((f"fwd{n}@example.test", f"far{n}@remote.test") for n in range(3)),
    submitter="sub@example.test",
    password=PASSWORD,
)
IMAP_USERS = tuple(f"imap{n}@example.test" for n in range(3))


@dataclass
class Settings:
    seed: int = 1
    seconds: float = 120.0
    nodes: int = 3
    lease: float = 3.0
    every: float = 3.0  # mean seconds between faults
    senders: int = 4
    imap_workers: int = 3
    pop3_workers: int = 2
    kinds: tuple[str, ...] = ()  # empty: every kind
    tour: bool = False  # begin with one fault of each kind
    settle: float = 180.0  # after the faults: how long the queue may take to empty


@dataclass
class Result:
    settings: Settings
    ops: list[Op]
    violations: list[Violation]
    figures: dict[str, Any] = field(default_factory=dict)

    def text(self) -> str:
        lines = [f"campaign seed={self.settings.seed} seconds={self.settings.seconds:g}"]
        for key, value in self.figures.items():
            lines.append(f"  {key}: {value}")
        if self.violations:
            lines.append(f"{len(self.violations)} VIOLATIONS (seed {self.settings.seed}):")
            for v in self.violations[:20]:
                lines.append(f"- {v.rule}: {v.detail}")
                lines.append(around(self.ops, v))
        else:
            lines.append("no violations")
        return "\n".join(lines)


def ensure_tools() -> None:
    """Install what the nemesis needs (nftables, faketime), or say what is missing."""
    subprocess.run(
        [str(ROOT / "scripts" / "ensure-debian-packages"), "nftables", "faketime"], check=True
    )
    missing = missing_tools()
    if missing:
        raise RuntimeError("a campaign needs: " + ", ".join(missing))


def _final_local(cluster: Cluster, accounts: list[str]) -> dict[str, Counter[str]]:
    async def fn(store: PostgresStore) -> dict[str, Counter[str]]:
        found: dict[str, Counter[str]] = {}
        for address in accounts:
            account = await store.get_account(address)
            assert account is not None, address
            counts: Counter[str] = Counter()
            for box in await store.list_mailboxes(account.id):
                rows = await store.messages(account.id, box.id)
                bodies = await store.bodies(account.id, box.id, [r.uid for r in rows])
                for data in bodies.values():
                    counts.update(m.decode() for m in MID.findall(data))
            found[address] = counts
        return found

    return cluster.schema.query(fn)


def _heal(cluster: Cluster) -> None:
    for node in cluster.nodes:
        node.resume()
        node.heal("db")
        node.heal("mx")
        node.jump_clock(0)
        if node.proc.proc is None or node.proc.proc.poll() is not None:
            node.start()


def run(settings: Settings, root: Path) -> Result:
    ensure_tools()
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    network = Network(settings.nodes)
    database = PgPair(
        root / "pg", ports=(55431, 55432), listen=f"127.0.0.1,{DB_ADDR}", host=DB_ADDR
    )
    cluster: Cluster | None = None
    history = History(root / "history.jsonl")
    try:
        network.setup()
        database.start()
        cluster = build(root, network, database, database.dsn, settings.lease)
        users = {u: PASSWORD for u in (*RECIPIENTS.kept, *RECIPIENTS.pop3, *IMAP_USERS)}
        users[RECIPIENTS.submitter] = PASSWORD
        cluster.schema.provision(users=users, aliases=RECIPIENTS.forwards)
        for node in cluster.nodes:
            node.start()
        faults = schedule(
            settings.seed,
            settings.seconds,
            settings.nodes,
            settings.lease,
            settings.every,
            tour=settings.tour,
            **({"kinds": settings.kinds} if settings.kinds else {}),
        )
        nemesis = Nemesis(faults, {n.index: n for n in cluster.nodes}, database, history)
        stop = threading.Event()
        workers: list[Any] = [
            MailSender(f"mx{n}", history, cluster.target, RECIPIENTS, settings.seed * 100 + n)
            for n in range(settings.senders)
        ]
        workers += _mailbox_workers(settings, history, cluster)
        threads = [threading.Thread(target=w.run, args=(stop,), name=w.name) for w in workers]
        began = time.monotonic()
        for t in threads:
            t.start()
        nemesis.start(stop)
        stop.wait(settings.seconds)
        stop.set()
        nemesis.join()
        for t in threads:
            t.join(60)
        _heal(cluster)
        load_seconds = time.monotonic() - began
        deadline = time.monotonic() + settings.settle
        while cluster.schema.queue() and time.monotonic() < deadline:
            time.sleep(0.5)
        ops = history.ops()
        local = _final_local(cluster, [*RECIPIENTS.kept, *RECIPIENTS.pop3, *IMAP_USERS])
        state = MailState(local, cluster.sink.received(), len(cluster.schema.queue()))
        mail = check_mail(ops, state, RECIPIENTS)
        violations = list(mail.violations)
        violations += _mailbox_checks(ops, cluster, time.time())
        for node in cluster.nodes:
            for line in unexpected_tracebacks(node.proc.log()):
                violations.append(Violation("traceback", f"{node.name} logged: {line}", 0.0))
        figures: dict[str, Any] = {
            "load seconds": round(load_seconds, 1),
            "operations": dict(
                Counter(f"{op.f}:{op.outcome}" for op in ops if op.client != "nemesis")
            ),
            "faults": dict(Counter(op.f for op in ops if op.client == "nemesis")),
            "nemesis errors": nemesis.errors,
            **mail.figures,
        }
        figures["database failovers (writable after, synchronous after; s)"] = [
            (round(f.writable_after, 2), round(f.synchronous_after, 2)) for f in database.failovers
        ]
        violations.sort(key=lambda v: v.at)
        return Result(settings, ops, violations, figures)
    finally:
        history.close()
        if cluster is not None:
            cluster.stop()
        database.stop()
        network.teardown()


def _mailbox_workers(settings: Settings, history: History, cluster: Cluster) -> list[Any]:
    """IMAP and POP3 workers over implicit TLS, one per account (each the only writer of it)."""
    tls = client_tls()

    def imaps(rng: random.Random) -> tuple[str, str, int]:
        return cluster.target(rng, "imaps")

    def pop3s(rng: random.Random) -> tuple[str, str, int]:
        return cluster.target(rng, "pop3s")

    workers: list[Any] = [
        ImapWorker(
            f"imap{n}",
            history,
            imaps,
            IMAP_USERS[n],
            PASSWORD,
            settings.seed * 100 + 50 + n,
            tls=tls,
        )
        for n in range(min(settings.imap_workers, len(IMAP_USERS)))
    ]
    workers += [
        Pop3Worker(
            f"pop{n}",
            history,
            pop3s,
            RECIPIENTS.pop3[n],
            PASSWORD,
            settings.seed * 100 + 80 + n,
            tls=tls,
        )
        for n in range(min(settings.pop3_workers, len(RECIPIENTS.pop3)))
    ]
    return workers


def _mailbox_checks(ops: list[Op], cluster: Cluster, at: float) -> list[Violation]:
    accounts = [*IMAP_USERS, *RECIPIENTS.pop3]
    final = final_state(cluster.schema.query, accounts, at)
    acknowledged: dict[str, set[str]] = {a: set() for a in RECIPIENTS.pop3}
    for op in ops:
        if op.f in ("send", "submit") and op.outcome == OK:
            for rcpt in op.args["to"]:
                if rcpt in acknowledged:
                    acknowledged[rcpt].add(op.args["mid"] + "@chaos.test")
    return check_mailboxes(ops, final, acknowledged)


def write_result(result: Result, path: Path) -> None:
    path.write_text(
        json.dumps(
            {"figures": result.figures, "violations": [v.__dict__ for v in result.violations]},
            indent=2,
            default=str,
        )
    )
