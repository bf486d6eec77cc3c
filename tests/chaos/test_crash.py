"""Crash test: concurrent senders, the node SIGKILLed mid-load (twice) and restarted.

Afterwards every message that got `250` is in each recipient's INBOX exactly once, byte for byte;
a message whose outcome the client never learned (the connection died between DATA and the reply)
is there at most once; a message that was refused or never reached DATA is not there at all; and
no queue item is left for a local account.

The senders never retry a message whose outcome is unknown: a retry after a lost `250` is SMTP's
known duplicate case (RFC 1047), so here any duplicate is the server's fault.
"""

from __future__ import annotations

import os
import random
import re
import smtplib
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.nodeproc import NodeProcess, free_ports

PASSWORD = "crash test password"
USERS = ("alice", "bob", "carol", "dave")
DOMAIN = "example.test"
# team@ expands to alice and bob: one copy per account, even when alice is also named directly.
ALIASES = (("team@example.test", "alice@example.test"), ("team@example.test", "bob@example.test"))
ACCOUNTS = tuple(f"{u}@{DOMAIN}" for u in USERS)

SENDERS = 8
PHASE_SECONDS = (1.0, 2.0)  # each kill comes at a random moment within this window of load
KILLS = 2

ACKED, UNKNOWN, REFUSED = "acked", "unknown", "refused"
SEQ_HEADER = re.compile(rb"^X-Seq: (\d+)\r$", re.M)


def free_port() -> int:
    return free_ports(1)[0]


def expand(recipient: str) -> set[str]:
    if recipient == "team@example.test":
        return {"alice@example.test", "bob@example.test"}
    return {recipient}


@dataclass
class Sent:
    seq: int
    recipients: list[str]
    body: bytes
    outcome: str = ""
    reply: str = ""

    @property
    def accounts(self) -> set[str]:
        return set().union(*(expand(r) for r in self.recipients))


@dataclass
class Ledger:
    lock: threading.Lock = field(default_factory=threading.Lock)
    messages: dict[int, Sent] = field(default_factory=dict)
    next_seq: int = 0

    def new(self, rng: random.Random, thread: int) -> Sent:
        with self.lock:
            seq = self.next_seq
            self.next_seq += 1
        roll = rng.random()
        if roll < 0.55:
            recipients = [rng.choice(ACCOUNTS)]
        elif roll < 0.85:
            recipients = rng.sample(ACCOUNTS, 2)
        elif roll < 0.95:
            recipients = ["team@example.test"]
        else:
            recipients = ["alice@example.test", "team@example.test"]
        # 1–40 KB so that some kills land while the body is still streaming.
        filler = f"seq {seq} thread {thread} ".encode() * 8
        lines = (filler + b"\r\n") * rng.randint(5, 250)
        body = (
            f"From: sender{thread}@remote.test\r\nTo: {', '.join(recipients)}\r\n"
            f"Subject: crash test {seq}\r\nMessage-ID: <crash-{seq}@remote.test>\r\n"
            f"X-Seq: {seq}\r\n\r\n"
        ).encode() + lines
        sent = Sent(seq, recipients, body)
        with self.lock:
            self.messages[seq] = sent
        return sent

    def count(self, outcome: str) -> int:
        with self.lock:
            return sum(1 for m in self.messages.values() if m.outcome == outcome)


def send_one(client: smtplib.SMTP, msg: Sent) -> bool:
    """Send one transaction on an open session; record its outcome. False: the session is dead."""
    try:
        code, text = client.mail("sender@remote.test")
        if code != 250:
            msg.outcome, msg.reply = REFUSED, f"MAIL {code} {text!r}"
            client.rset()
            return True
        for rcpt in msg.recipients:
            code, text = client.rcpt(rcpt)
            if code != 250:
                msg.outcome, msg.reply = REFUSED, f"RCPT {code} {text!r}"
                client.rset()
                return True
    except (smtplib.SMTPException, OSError) as exc:
        # The DATA command was never sent: the server cannot have this message.
        msg.outcome, msg.reply = REFUSED, f"before DATA: {exc!r}"
        return False
    try:
        code, text = client.data(msg.body)
    except smtplib.SMTPDataError as exc:  # DATA itself refused (no 354)
        msg.outcome, msg.reply = REFUSED, f"DATA {exc.smtp_code} {exc.smtp_error!r}"
        return True
    except (smtplib.SMTPException, OSError) as exc:
        msg.outcome, msg.reply = UNKNOWN, repr(exc)
        return False
    if code == 250:
        msg.outcome, msg.reply = ACKED, text.decode(errors="replace")
    else:
        msg.outcome, msg.reply = REFUSED, f"end of DATA {code} {text!r}"
    return True


def sender(port: int, ledger: Ledger, stop: threading.Event, thread: int, seed: int) -> None:
    rng = random.Random(seed * 100 + thread)
    client: smtplib.SMTP | None = None
    while not stop.is_set():
        if client is None:
            try:
                client = smtplib.SMTP("127.0.0.1", port, local_hostname="sender.test", timeout=15)
                client.ehlo()
            except (smtplib.SMTPException, OSError):
                client = None
                time.sleep(0.02)  # the node is down; connecting is not sending a message
                continue
        if not send_one(client, ledger.new(rng, thread)):
            client.close()
            client = None
    if client is not None:
        try:
            client.quit()
        except (smtplib.SMTPException, OSError):
            client.close()


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_sigkill_under_load_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    started = time.monotonic()
    port = free_port()
    node = NodeProcess(tmp_path, fixed_ports={"smtp": port})
    node.provision(domains=(DOMAIN,), users=dict.fromkeys(ACCOUNTS, PASSWORD), aliases=ALIASES)
    node.start()

    # CRASH_SEED=n repeats a run's recipients, sizes and kill moments (not its thread timing).
    seed = int(os.environ.get("CRASH_SEED", time.time_ns() % 1_000_000))
    ledger = Ledger()
    stop = threading.Event()
    threads = [
        threading.Thread(target=sender, args=(port, ledger, stop, i, seed), daemon=True)
        for i in range(SENDERS)
    ]
    rng = random.Random(seed)
    acked_per_phase: list[int] = []
    kill_at: list[float] = []
    try:
        for t in threads:
            t.start()
        for _ in range(KILLS):
            before = ledger.count(ACKED)
            load = rng.uniform(*PHASE_SECONDS)
            time.sleep(load)
            node.kill()
            kill_at.append(round(load, 2))
            acked_per_phase.append(ledger.count(ACKED) - before)
            time.sleep(0.2)  # senders see refused connections for a moment
            node.start()
        before = ledger.count(ACKED)
        time.sleep(rng.uniform(*PHASE_SECONDS))
        acked_per_phase.append(ledger.count(ACKED) - before)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
        node.stop()

    found: dict[str, Counter[int]] = {}
    bodies: dict[tuple[str, int], bytes] = {}
    for account in ACCOUNTS:
        found[account] = Counter()
        for data in node.inbox(account):
            match = SEQ_HEADER.search(data)
            assert match, data[:300]
            seq = int(match[1])
            found[account][seq] += 1
            bodies[account, seq] = data
    leftover = [item for item in node.queue() if item.account_id is not None]

    messages = list(ledger.messages.values())
    acked = [m for m in messages if m.outcome == ACKED]
    unknown = [m for m in messages if m.outcome == UNKNOWN]
    refused = [m for m in messages if m.outcome == REFUSED]
    copies = sum(sum(c.values()) for c in found.values())
    unknown_stored = sum(1 for m in unknown if any(found[a][m.seq] for a in m.accounts))
    print(
        f"\ncrash test: sent={len(messages)} acked={len(acked)} unknown={len(unknown)}"
        f" (stored {unknown_stored}) refused={len(refused)} copies_found={copies}"
        f" kills={KILLS} at={kill_at}s acked_per_phase={acked_per_phase} seed={seed}"
        f" elapsed={time.monotonic() - started:.1f}s"
    )

    assert not any(t.is_alive() for t in threads), "a sender thread hung"
    assert all(n > 0 for n in acked_per_phase), f"load stalled: {acked_per_phase}"
    errors: list[str] = []
    for m in acked:
        for account in m.accounts:
            n = found[account][m.seq]
            if n != 1:
                errors.append(f"acked seq {m.seq} found {n}x in {account} ({m.reply})")
            elif not bodies[account, m.seq].endswith(m.body):
                errors.append(f"acked seq {m.seq} in {account}: bytes differ")
        for account in set(ACCOUNTS) - m.accounts:
            if found[account][m.seq]:
                errors.append(f"acked seq {m.seq} misdelivered to {account}")
    for m in unknown:
        counts = {a: found[a][m.seq] for a in m.accounts}
        if any(n > 1 for n in counts.values()):
            errors.append(f"unknown seq {m.seq} duplicated: {counts}")
        # One transaction, one commit: either every recipient has it or none does.
        if len(set(counts.values())) > 1:
            errors.append(f"unknown seq {m.seq} partially delivered: {counts}")
    for m in refused:
        where = [a for a in ACCOUNTS if found[a][m.seq]]
        if where:
            errors.append(f"refused seq {m.seq} ({m.reply}) stored in {where}")
    known = set(ledger.messages)
    for account, counter in found.items():
        strays = set(counter) - known
        if strays:
            errors.append(f"{account} holds messages nobody sent: {sorted(strays)[:10]}")
    assert not errors, "\n".join(errors[:50]) + f"\n({len(errors)} problems)"
    assert leftover == [], leftover[:5]
