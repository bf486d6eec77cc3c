"""A legitimate customer who keeps using a node while a test attacks it from other addresses.

It runs in a process of its own, so that what it measures is the node, not the attacking test's
own CPU or GIL. In a loop, each operation on a fresh connection from `CUSTOMER` (a /24 that no
attacker uses): an SMTP message to the MX (must get 250), an IMAP login with a NOOP (OK), a POP3
login (+OK), a status page fetch (200). Every operation is timed; `Report` holds the outcomes.
"""

from __future__ import annotations

import contextlib
import imaplib
import multiprocessing
import poplib
import smtplib
import socket
import ssl
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from multiprocessing.synchronize import Event
from typing import Any

CUSTOMER = "127.0.9.1"  # the customer's address; attackers come from 127.0.0.0/24
OPERATIONS = ("smtp", "imap", "pop3", "http")


def client_tls() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class _Imap(imaplib.IMAP4_SSL):
    def __init__(self, port: int, source: str, timeout: float) -> None:
        self._source = source
        super().__init__("127.0.0.1", port, ssl_context=client_tls(), timeout=timeout)

    def _create_socket(self, timeout: float | None = None) -> socket.socket:
        sock = socket.create_connection(
            (self.host, self.port), timeout, source_address=(self._source, 0)
        )
        return self.ssl_context.wrap_socket(sock, server_hostname=self.host)


class _Pop3(poplib.POP3_SSL):
    def __init__(self, port: int, source: str, timeout: float) -> None:
        self._source = source
        super().__init__("127.0.0.1", port, context=client_tls(), timeout=timeout)

    def _create_socket(self, timeout: float) -> socket.socket:
        sock = socket.create_connection(
            (self.host, self.port), timeout, source_address=(self._source, 0)
        )
        return self.context.wrap_socket(sock, server_hostname=self.host)


@dataclass
class Plan:
    """What the customer does: the node's ports, its account, and how often."""

    ports: dict[str, int]
    user: str
    password: str
    recipient: str
    source: str = CUSTOMER
    pause: float = 0.05  # seconds between operations
    timeout: float = 10.0  # per operation; a slower answer counts as a failure
    operations: tuple[str, ...] = OPERATIONS


@dataclass
class Outcome:
    operation: str
    ok: bool
    seconds: float
    detail: str = ""


@dataclass
class Report:
    outcomes: list[Outcome] = field(default_factory=list)

    def failures(self) -> list[Outcome]:
        return [o for o in self.outcomes if not o.ok]

    def p99(self) -> float:
        times = sorted(o.seconds for o in self.outcomes)
        if not times:
            return 0.0
        return times[min(len(times) - 1, int(len(times) * 0.99))]

    def count(self, operation: str) -> int:
        return sum(1 for o in self.outcomes if o.operation == operation and o.ok)

    def summary(self) -> str:
        by_op = {op: self.count(op) for op in OPERATIONS}
        slowest = sorted(self.outcomes, key=lambda o: -o.seconds)[:5]
        return (
            f"{len(self.outcomes)} operations, ok per kind {by_op}, p99 {self.p99():.3f} s, "
            f"failures {[(o.operation, o.detail) for o in self.failures()][:5]}, "
            f"slowest {[(o.operation, round(o.seconds, 3)) for o in slowest]}"
        )


def _smtp(plan: Plan, n: int) -> None:
    with smtplib.SMTP(
        "127.0.0.1", plan.ports["smtp"], timeout=plan.timeout, source_address=(plan.source, 0)
    ) as client:
        message = (
            f"From: customer@remote.test\r\nTo: {plan.recipient}\r\n"
            f"Subject: customer {n}\r\nMessage-ID: <customer-{n}-{time.time()}@remote.test>\r\n"
            f"\r\nstill served\r\n"
        )
        refused = client.sendmail("customer@remote.test", [plan.recipient], message)
        if refused:
            raise AssertionError(f"refused {refused}")


def _imap(plan: Plan, n: int) -> None:
    client = _Imap(plan.ports["imaps"], plan.source, plan.timeout)
    try:
        client.login(plan.user, plan.password)
        client.select("INBOX")
        client.noop()
        client.logout()
    finally:
        with contextlib.suppress(Exception):
            client.shutdown()


def _pop3(plan: Plan, n: int) -> None:
    client = _Pop3(plan.ports["pop3s"], plan.source, plan.timeout)
    try:
        client.user(plan.user)
        client.pass_(plan.password)
        client.stat()
    finally:
        with contextlib.suppress(Exception):
            client.quit()


def _http(plan: Plan, n: int) -> None:
    sock = socket.create_connection(
        ("127.0.0.1", plan.ports["http"]), plan.timeout, source_address=(plan.source, 0)
    )
    with sock:
        sock.sendall(
            b"GET /api/v2/summary.json HTTP/1.1\r\nHost: status.test\r\nConnection: close\r\n\r\n"
        )
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    status = data.split(b"\r\n", 1)[0]
    if b" 200 " not in status:
        raise AssertionError(status.decode(errors="replace"))


_RUN = {"smtp": _smtp, "imap": _imap, "pop3": _pop3, "http": _http}


def _warm_up(plan: Plan) -> None:
    """One of each, not measured: the first login of an account hashes its password (argon2,
    up to a second on a busy machine), later ones are remembered; and the node learns the
    customer's network as one its owner logs in from."""
    for operation in plan.operations:
        if operation == "http" and "http" not in plan.ports:
            continue
        with contextlib.suppress(Exception):
            _RUN[operation](plan, -1)


def _loop(plan: Plan, stop: Event, results: Any) -> None:
    _warm_up(plan)
    results.put("ready")
    n = 0
    while not stop.is_set():
        for operation in plan.operations:
            if operation == "http" and "http" not in plan.ports:
                continue
            started = time.monotonic()
            try:
                _RUN[operation](plan, n)
            except Exception as exc:
                detail = f"{type(exc).__name__}: {exc}"[:300]
                results.put((operation, False, time.monotonic() - started, detail))
            else:
                results.put((operation, True, time.monotonic() - started, ""))
            n += 1
            if stop.wait(plan.pause):
                break
    results.put(None)


def _main(plan: Plan, stop: Event, results: Any) -> None:
    try:
        _loop(plan, stop, results)
    except BaseException:
        results.put(("crash", False, 0.0, traceback.format_exc()[-500:]))
        results.put(None)


@contextlib.contextmanager
def customer(plan: Plan) -> Iterator[Report]:
    """Run the customer while the block runs; the report fills when the block ends."""
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    results = context.Queue()
    process = context.Process(target=_main, args=(plan, stop, results), daemon=True)
    process.start()
    report = Report()
    first = results.get(timeout=plan.timeout * len(plan.operations) * 2 + 30)
    if first != "ready":  # the customer crashed while warming up
        report.outcomes.append(Outcome(*first))
    try:
        yield report
    finally:
        stop.set()
        deadline = time.monotonic() + plan.timeout * 4 + 10
        while time.monotonic() < deadline:
            try:
                item = results.get(timeout=max(0.1, deadline - time.monotonic()))
            except Exception:
                break
            if item is None:
                break
            report.outcomes.append(Outcome(*item))
        process.join(timeout=10)
        if process.is_alive():
            process.kill()
