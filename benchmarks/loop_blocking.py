#!/usr/bin/env python3
"""How long one heavy command holds a node's event loop, seen from another client.

It starts its own node (a real `mailfort serve` subprocess on loopback, SQLite store in a
temporary directory), fills bob's account through the store API before the node starts, then
runs each case below as bob while a second session (alice) sends NOOP after NOOP, 2 ms apart,
and times each round trip (--repeat N: N runs of each case whose work is not cached, the
least worst shown, since a busy machine only adds to a round trip). Every protocol shares the
one event loop, so the longest NOOP round trip during a case is the longest stretch the loop
was held (plus a round trip of ~0.2 ms). A
case that has not finished after --timeout seconds is reported as such; the node is then
restarted, since a loop that is still busy would spoil the next case.

  list-stars      LIST "" "<40 x *>Q" against 200 mailboxes with 255-character names
  list-mixed      LIST "" "<40 x %*>Q" against the same names
  lsub-parents    LSUB "" "%" with 3000 subscribed names under 3000 unsubscribed parents
  select-10k      SELECT of a mailbox of 10,000 messages (5 KB, text)
  search-body     SEARCH BODY "needle" over those 10,000 messages
  search-flags    SEARCH UNSEEN over them (no message data)
  fetch-envelope  FETCH 1:* (ENVELOPE BODYSTRUCTURE) over them, cold cache
  store-flags     STORE 1:* +FLAGS (\\Flagged) over them
  bodystructure   FETCH BODYSTRUCTURE of a 25 MB message of 5,000 parts
  deep-nesting    FETCH BODYSTRUCTURE of a 25 MB message of 50 nested multiparts
  section         FETCH BODY.PEEK[2500] of the 5,000-part message
  qp-blanks       FETCH BINARY[1] of a quoted-printable part of --blanks blanks
  to-blanks       FETCH ENVELOPE of a message whose To field holds --blanks blanks
  smtp-25mb       one 25 MB message to the MX (not bob's session: an SMTP client)
  pop3-top        POP3 TOP of a 12 MB message of 6 million short lines

    .venv/bin/python benchmarks/loop_blocking.py                  # every case
    .venv/bin/python benchmarks/loop_blocking.py --only list-stars,search-body
    PYTHONPATH=/tmp/old/src .venv/bin/python benchmarks/loop_blocking.py   # another source tree

It never asserts anything; tests/adversarial/test_blocking.py is the test.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import smtplib
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.nodeproc import NodeProcess  # noqa: E402

PASSWORD = "bench password"
DOMAIN = "bench.test"
BOB, ALICE = f"bob@{DOMAIN}", f"alice@{DOMAIN}"
CASES = (
    "list-stars",
    "list-mixed",
    "lsub-parents",
    "select-10k",
    "search-body",
    "search-flags",
    "fetch-envelope",
    "store-flags",
    "bodystructure",
    "deep-nesting",
    "section",
    "qp-blanks",
    "to-blanks",
    "smtp-25mb",
    "pop3-top",
)


# The node keeps ENVELOPE and BODYSTRUCTURE per message: a second run would measure the cache.
CACHED = frozenset({"fetch-envelope", "bodystructure", "deep-nesting", "to-blanks"})


# -- the data -------------------------------------------------------------------------------------
def long_names(count: int = 200) -> list[str]:
    return [f"{i:03d}" + "a" * 252 for i in range(count)]


def many_parts(parts: int = 5000, size: int = 25 * 1024 * 1024) -> bytes:
    body = b"x" * (size // parts - 60) + b"\r\n"
    return (
        b"From: a@b.test\r\nSubject: parts\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
        + b"".join(b"--b\r\nContent-Type: text/plain\r\n\r\n" + body for _ in range(parts))
        + b"--b--\r\n"
    )


def deep(levels: int = 50, size: int = 25 * 1024 * 1024) -> bytes:
    message = b"y" * size
    for d in range(levels):
        message = (
            b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (d, d)
            + message
            + b"\r\n--b%d--\r\n" % d
        )
    return b"From: a@b.test\r\nSubject: deep\r\n" + message


def qp_blanks(blanks: int) -> bytes:
    return (
        b"From: a@b.test\r\nSubject: qp\r\nContent-Type: text/plain\r\n"
        b"Content-Transfer-Encoding: quoted-printable\r\n\r\n" + b" " * blanks + b"x\r\n"
    )


def to_blanks(blanks: int) -> bytes:
    # After a comma: blanks at the start of a field value are stripped before parsing.
    return b"From: a@b.test\r\nTo: a@b.test," + b" " * blanks + b"x\r\nSubject: to\r\n\r\nbody\r\n"


def small(i: int) -> bytes:
    text = (f"line {i} of an ordinary message, nothing to see here\r\n" * 90).encode()
    return (
        f"From: Sender {i} <s{i}@remote.test>\r\nTo: bob@{DOMAIN}\r\nSubject: message {i}\r\n"
        f"Date: Thu, 1 Jan 2026 00:00:00 +0000\r\nMessage-ID: <{i}@remote.test>\r\n\r\n"
    ).encode() + text


def fill(node: NodeProcess, blanks: int) -> None:
    from mailfort.store.records import AppendItem
    from mailfort.store.sqlite import SqliteStore

    async def run() -> None:
        store = SqliteStore(node.db_path)
        await store.open()
        try:
            bob = await store.get_account(BOB)
            assert bob is not None
            for name in long_names():
                await store.create_mailbox(bob.id, name)
            for i in range(3000):
                await store.subscribe(bob.id, f"p{i}/child", True)
            now = time.time()
            await store.create_mailbox(bob.id, "Many")
            for start in range(0, 10_000, 500):
                items = [
                    AppendItem(data=small(i), internal_date=now) for i in range(start, start + 500)
                ]
                await store.append(bob.id, "Many", items)
            await store.create_mailbox(bob.id, "Big")
            for data in (many_parts(), deep(), qp_blanks(blanks), to_blanks(blanks)):
                await store.append(bob.id, "Big", [AppendItem(data=data, internal_date=now)])
            big = b"".join(b"l%d\r\n" % (i % 10) for i in range(6_000_000))
            await store.append(
                bob.id,
                "INBOX",
                [AppendItem(data=b"Subject: lines\r\n\r\n" + big, internal_date=now)],
            )
        finally:
            await store.close()

    asyncio.run(run())


# -- clients --------------------------------------------------------------------------------------
class Imap:
    def __init__(self, port: int, user: str, timeout: float) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buffer = b""
        self.n = 0
        self.read_until(b"\r\n")
        self.command(f'LOGIN "{user}" "{PASSWORD}"')

    def read_until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise EOFError("closed")
            self.buffer += chunk
            if len(self.buffer) > (1 << 22):  # keep only a tail: answers may be 25 MB
                self.buffer = self.buffer[-(1 << 16) :]
        head, _, self.buffer = self.buffer.partition(marker)
        return head

    def command(self, text: str) -> bytes:
        """Send a command, read up to its tagged answer (the buffer is at a line start)."""
        self.n += 1
        tag = f"t{self.n}"
        self.buffer = b"\r\n" + self.buffer
        self.sock.sendall(f"{tag} {text}\r\n".encode())
        self.read_until(f"\r\n{tag} ".encode())
        return self.read_until(b"\r\n")

    def close(self) -> None:
        self.sock.close()


class Pinger(threading.Thread):
    """NOOP round trips on their own session, 2 ms apart, timestamped."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.client = Imap(port, ALICE, timeout=600)
        self.samples: list[tuple[float, float]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            started = time.perf_counter()
            try:
                self.client.command("NOOP")
            except OSError:  # closed by measure() after a case that never finished
                return
            self.samples.append((started, time.perf_counter() - started))
            time.sleep(0.002)

    def worst(self, since: float, until: float) -> float:
        return max((rtt for at, rtt in self.samples if since <= at <= until), default=0.0)


def _smtp(node: NodeProcess) -> None:
    data = b"From: a@remote.test\r\nSubject: big\r\n\r\n" + b"z" * 998 + b"\r\n"
    body = data + (b"z" * 998 + b"\r\n") * (24 * 1024 * 1024 // 1000)
    with smtplib.SMTP("127.0.0.1", node.ports["smtp"], timeout=600) as client:
        client.sendmail("a@remote.test", [BOB], body)


def _pop3_top(node: NodeProcess) -> None:
    with socket.create_connection(("127.0.0.1", node.ports["pop3"]), timeout=600) as sock:
        reader = sock.makefile("rb")
        reader.readline()
        for line in (f"USER {BOB}", f"PASS {PASSWORD}"):
            sock.sendall(line.encode() + b"\r\n")
            reader.readline()
        sock.sendall(b"TOP 1 5999990\r\n")  # the 6-million-line message is the first
        while reader.readline() not in (b".\r\n", b""):
            pass


def operation(case: str, node: NodeProcess, blanks: int) -> Callable[[Imap], None]:
    stars, mixed = "*" * 40 + "Q", "%*" * 40 + "Q"
    table: dict[str, tuple[str | None, str]] = {
        "list-stars": (None, f'LIST "" "{stars}"'),
        "list-mixed": (None, f'LIST "" "{mixed}"'),
        "lsub-parents": (None, 'LSUB "" "%"'),
        "select-10k": (None, "SELECT Many"),
        "search-body": ("Many", 'SEARCH BODY "needle"'),
        "search-flags": ("Many", "SEARCH UNSEEN"),
        "fetch-envelope": ("Many", "FETCH 1:* (ENVELOPE BODYSTRUCTURE)"),
        "store-flags": ("Many", "STORE 1:* +FLAGS (\\Flagged)"),
        "bodystructure": ("Big", "FETCH 1 BODYSTRUCTURE"),
        "deep-nesting": ("Big", "FETCH 2 BODYSTRUCTURE"),
        "section": ("Big", "FETCH 1 BODY.PEEK[2500]"),
        "qp-blanks": ("Big", "FETCH 3 BINARY.PEEK[1]"),
        "to-blanks": ("Big", "FETCH 4 ENVELOPE"),
    }
    if case == "smtp-25mb":
        return lambda _: _smtp(node)
    if case == "pop3-top":
        return lambda _: _pop3_top(node)
    mailbox, text = table[case]

    def run(client: Imap) -> None:
        client.command(text)

    run.mailbox = mailbox  # type: ignore[attr-defined]
    return run


def measure(node: NodeProcess, case: str, blanks: int, timeout: float) -> tuple[str, str]:
    op = operation(case, node, blanks)
    client = Imap(node.ports["imap"], BOB, timeout=timeout)
    mailbox = getattr(op, "mailbox", None)
    if mailbox:
        client.command(f"SELECT {mailbox}")
    pinger = Pinger(node.ports["imap"])
    pinger.start()
    time.sleep(0.3)
    started = time.perf_counter()
    result = threading.Event()
    error: list[str] = []

    def work() -> None:
        try:
            op(client)
        except Exception as exc:  # a timeout, most likely
            error.append(type(exc).__name__)
        result.set()

    threading.Thread(target=work, daemon=True).start()
    finished = result.wait(timeout)
    elapsed = time.perf_counter() - started
    pinger.stop.set()
    pinger.join(timeout=timeout)
    client.close()
    pinger.client.close()
    if not finished or error or pinger.is_alive():
        return f"> {timeout:.0f} s", f"gave up{' (' + error[0] + ')' if error else ''}"
    return f"{elapsed:.2f} s", f"{pinger.worst(started, started + elapsed) * 1000:.0f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", help="comma-separated cases", default=",".join(CASES))
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--blanks", type=int, default=30_000)
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs per case; the least worst round trip is shown"
    )
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="mailfort-blocking-"))
    extra = "\n[auth]\nallow_plaintext_loopback = true\n[limits]\nmax_message_size = 33554432\n"
    node = NodeProcess(root, extra_config=extra)
    node.provision(domains=(DOMAIN,), users={BOB: PASSWORD, ALICE: PASSWORD})
    print("filling the store ...", flush=True)
    fill(node, args.blanks)
    node.start(timeout=120)
    print(f"{'case':16} {'duration':>10} {'longest NOOP round trip':>24}")
    try:
        for case in args.only.split(","):
            runs = []
            for _ in range(1 if case in CACHED else args.repeat):
                duration, worst = measure(node, case, args.blanks, args.timeout)
                runs.append((duration, worst))
                if worst.startswith("gave up"):
                    node.kill()
                    node.start(timeout=120)
                    break
            # A busy machine only adds to a round trip: the least of the worst is the closest.
            duration, worst = min(
                runs, key=lambda r: float(r[1].split()[0]) if r[1][0].isdigit() else 1e9
            )
            print(f"{case:16} {duration:>10} {worst:>24}", flush=True)
    finally:
        node.stop()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
