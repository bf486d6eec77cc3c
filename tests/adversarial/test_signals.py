"""Health signals cannot be forged: a stranger's flood of bad input moves no public signal.

Every signal that can change a component's state, open an incident, put an [ALERT] into logins or
fire a webhook is pushed here by what a stranger with one machine (127.0.0.0/24) can send, while
the customer (127.0.9.1) is served. Each test ends in `assert_unharmed`: no incident, every
component operational, no traceback. (Logins are judged in the login tests.)

Remote delivery runs against the real world in miniature: a name server on loopback
(`tests/dnsserver.py`), a big provider's MX that takes the customers' mail and refuses the
stranger's (`tests/smtpsink.py` on 127.0.5.1), a forwarding target that died (a socket that
never answers, 127.0.6.1), and the stranger's own addresses: one where nothing listens and one
with an MX of his own. Mail enters by the node's MX port for local aliases that forward to
remote addresses, as customers' aliases do.
"""

from __future__ import annotations

import contextlib
import re
import smtplib
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, closing
from typing import Self

import pytest

from mailfort.status.collector import signals_from
from mailfort.status.signals import HealthSignals, Protocol, StatusThresholds
from mailfort.store.sqlite.cluster import list_nodes
from mailfort.store.sqlite.status import queue_health
from tests.adversarial.conftest import (
    ATTACKER_NET,
    assert_unharmed,
    attacker,
    metric,
    served,
    summary,
)
from tests.dnsserver import NameServer, Zone
from tests.nodeproc import NodeProcess
from tests.polling import wait_for
from tests.smtpsink import REJECT, Sink

pytestmark = pytest.mark.timeout(180)
LIMITS = StatusThresholds()  # the defaults the suite's nodes judge by

PROVIDER = "127.0.5.1"  # a big provider's MX (remote.test): a network of its own
DEAD_TARGET = "127.0.6.1"  # the MX of tarpit.test, a forwarding target that died
DARK = f"{ATTACKER_NET}.200"  # the stranger's: nothing listens
EVIL = f"{ATTACKER_NET}.201"  # the stranger's own MX (evil.test and its subdomains)
SPREAD = 20  # forged sender domains of each kind

ALIASES = (
    ("forward@example.test", "someone@remote.test"),  # the provider refuses the stranger's mail
    ("friend@example.test", "friend@remote.test"),  # a customer's forward that works
    ("gone@example.test", "someone@tarpit.test"),  # a customer's forward to a dead domain
)


def zone() -> Zone:
    z = Zone()
    z.add("remote.test", "MX", "10 mx.remote.test.").add("mx.remote.test", "A", PROVIDER)
    z.add("tarpit.test", "MX", "10 mx.tarpit.test.").add("mx.tarpit.test", "A", DEAD_TARGET)
    z.add("mx.dark.test", "A", DARK).add("mx.evil.test", "A", EVIL)
    for n in range(SPREAD):
        z.add(f"dark{n}.test", "MX", "10 mx.dark.test.")  # refuses every connection
        z.add(f"e{n}.evil.test", "MX", "10 mx.evil.test.")
        z.servfail.add(f"lame{n}.test")  # a dead domain whose name servers fail
        # nx{n}.test is in no zone at all: NXDOMAIN
    return z


class DeadTarget:
    """A server that takes connections into its backlog and never says a word."""

    def __init__(self, host: str, port: int) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(1000)

    def close(self) -> None:
        self.sock.close()


class World:
    """The name server, the provider's MX, the dead forwarding target, the stranger's MX."""

    def __init__(self, stack: ExitStack) -> None:
        self.dns = NameServer(zone()).start()
        stack.callback(self.dns.stop)
        self.provider = Sink(hosts=(PROVIDER,), record_data=False).start()
        stack.callback(self.provider.stop)
        self.provider.script("someone@remote.test", REJECT)
        self.dead = DeadTarget(DEAD_TARGET, self.provider.port)
        stack.callback(self.dead.close)
        self.evil = Sink(hosts=(EVIL,), port=self.provider.port, record_data=False).start()
        stack.callback(self._stop_evil)

    def _stop_evil(self) -> None:
        with contextlib.suppress(RuntimeError):  # a test stopped it already
            self.evil.stop()

    def delivery(self, **overrides: object) -> str:
        values: dict[str, object] = {
            "dns_nameservers": f'["{self.dns.address}"]',
            "dns_timeout": 1.0,
            "smtp_port": self.provider.port,
            "tls": '"none"',
            "retry_base": 0.3,
            "retry_max": 1.0,
            "connect_timeout": 1.0,
            "command_timeout": 5.0,
        }
        values.update(overrides)
        return "".join(f"{key} = {value}\n" for key, value in values.items())


@pytest.fixture
def world() -> Iterator[World]:
    with ExitStack() as stack:
        yield World(stack)


def start(
    fresh_node: Callable[..., NodeProcess], world: World, extra: str = "", **delivery: object
) -> NodeProcess:
    node = fresh_node(extra, delivery=world.delivery(**delivery))

    async def add(store):  # type: ignore[no-untyped-def]
        for source, target in ALIASES:
            await store.add_alias(source, target)

    node._query(add)
    return node


def in_service(node: NodeProcess, world: World) -> None:
    """A customer's forward reaches the provider: the node has delivered mail lately, as every
    node in service has."""
    send(node, attacker(9), [("customer@remote.test", "friend@example.test")])
    world.provider.wait_for(lambda: world.provider.received("friend@remote.test"), what="mail")


def send(node: NodeProcess, source: str, envelopes: list[tuple[str, str]]) -> None:
    """Messages from `source` into the MX: (forged sender, local recipient) each."""
    with smtplib.SMTP(
        "127.0.0.1", node.ports["smtp"], timeout=30, source_address=(source, 0)
    ) as client:
        for n, (sender, recipient) in enumerate(envelopes):
            body = (
                f"From: <{sender}>\r\nTo: <{recipient}>\r\nSubject: cheap pills {n}\r\n"
                f"Message-ID: <spam-{n}-{time.time()}@{sender.partition('@')[2]}>\r\n\r\nbuy\r\n"
            )
            assert not client.sendmail(sender, [recipient], body)


def tried(node: NodeProcess, recipients: list[str]) -> bool:
    """Every one of `recipients` had a delivery attempt settled (bounce, deferral or DSN)."""
    log = node.log()
    return all(
        re.search(rf"event=remote_(failed|deferred|delivered) id=\S+ rcpt={re.escape(r)} ", log)
        for r in recipients
    )


class Watch:
    """The public signals, computed from the node's store as its status leader computes them
    (heartbeat windows and the queue), sampled every `every` seconds while a test attacks: the
    worst value each reached says what the attack did to it, whatever the hysteresis hid."""

    def __init__(self, node: NodeProcess, every: float = 0.25) -> None:
        self.node = node
        self.every = every
        self.samples: list[HealthSignals] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        # Read-only: a reader takes no lock the node's writer could wait on.
        uri = f"file:{self.node.db_path}?mode=ro"
        with closing(sqlite3.connect(uri, uri=True, timeout=5)) as conn:
            while not self._stop.wait(self.every):
                now = time.time()
                depth, oldest = queue_health(conn, now)
                self.samples.append(
                    signals_from(
                        list_nodes(conn),
                        now=now,
                        heartbeat_seconds=1.0,  # the suite's [cluster] and [status] settings
                        window_seconds=10.0,
                        queue_depth=depth,
                        oldest_due=oldest,
                    )
                )

    def most(self, signal: str) -> float:
        values = [getattr(s, signal) for s in self.samples]
        return max((v for v in values if v is not None), default=0.0)

    def least(self, signal: str) -> float:
        values = [getattr(s, signal) for s in self.samples]
        return min((v for v in values if v is not None), default=1.0)

    def remote_rate(self, min_attempts: int = StatusThresholds().remote_min_attempts) -> float:
        """The lowest remote success rate judged (enough attempts); 1.0 when never judged."""
        judged = [s for s in self.samples if s.remote_attempts >= min_attempts]
        return min((s.remote_success_rate or 0.0 for s in judged), default=1.0)

    def refusals(self, protocol: Protocol) -> float:
        return max((s.refusals(protocol) for s in self.samples), default=0.0)

    def summary(self) -> str:
        return (
            f"{len(self.samples)} samples: remote rate >= {self.remote_rate():.2f}, "
            f"queue depth <= {self.most('queue_depth'):.0f}, "
            f"oldest <= {self.most('oldest_queue_age'):.1f} s, "
            f"commit p95 <= {self.most('store_commit_p95')} s, "
            f"250->mailbox p95 <= {self.most('accept_to_mailbox_p95')} s, "
            f"live >= {self.least('live_node_fraction'):.2f}, refusals/min <= "
            + ", ".join(f"{p.value} {self.refusals(p):.0f}" for p in Protocol)
        )


# -- remote_success_rate --------------------------------------------------------------------------
def test_backscatter_to_forged_senders_at_dead_domains_is_no_outgoing_outage(
    fresh_node: Callable[..., NodeProcess], world: World
) -> None:
    """The stranger sends spam to a customer's forwarding alias, with senders forged at domains
    that do not exist, whose name servers fail, or whose MX refuses connections. The provider
    refuses every forward; each refusal makes a bounce to a dead domain. Before, every one of
    those attempts counted as a failure of ours: Outgoing mail showed a major outage."""
    node = start(fresh_node, world)
    senders = [f"x{n}@{kind}{n}.test" for n in range(SPREAD) for kind in ("nx", "lame", "dark")]
    with served(node) as report, Watch(node) as watch:
        send(node, attacker(1), [(s, "forward@example.test") for s in senders])
        wait_for(lambda: tried(node, senders), timeout=60, what="a bounce to every forged sender")
        time.sleep(2)  # the retries to the silent ones
    print(watch.summary())
    assert watch.remote_rate() >= LIMITS.remote_success_rate.degraded, watch.summary()
    assert_unharmed(node, report)
    # The attack did what it does: forwards refused by a server, bounces to the dead domains.
    assert (metric(node, "mailfort_remote_reach_total", verdict="reached") or 0) >= len(senders)
    assert (metric(node, "mailfort_remote_reach_total", verdict="theirs") or 0) >= len(senders)


def test_a_strangers_own_mx_that_takes_bounces_and_then_falls_silent_moves_nothing(
    fresh_node: Callable[..., NodeProcess], world: World
) -> None:
    """The stranger first lets bounces to his own domains arrive (so the node knows them as
    destinations that answer), then stops his MX and makes more: the node's attempts to
    destinations that answered lately now fail, but all from one network, and one network is
    charged at most a quarter of the other attempts. Before: a partial outage."""
    node = start(fresh_node, world)
    senders = [f"y{n}@e{n}.evil.test" for n in range(SPREAD)]
    with served(node) as report, Watch(node) as watch:
        send(node, attacker(1), [(s, "forward@example.test") for s in senders])
        world.evil.wait_for(lambda: len(world.evil.received()) >= SPREAD, what="the bounces")
        world.evil.stop()
        send(node, attacker(2), [(s, "forward@example.test") for s in senders])
        wait_for(lambda: node.log().count("event=remote_deferred") >= SPREAD, what="silence")
        time.sleep(3)  # retries to the silent MX, until its breakers open
    print(watch.summary())
    assert watch.remote_rate() >= LIMITS.remote_success_rate.degraded, watch.summary()
    assert_unharmed(node, report)
    assert (metric(node, "mailfort_remote_reach_total", verdict="unreachable") or 0) >= SPREAD


# Breakers probe a silent destination every second and retries are not budgeted: the failures
# keep coming for as long as the test looks, not in one burst before every breaker opens.
PROBES = """
[overload]
breaker_open_seconds = 0.5
breaker_max_open_seconds = 1.0
retry_budget_reserve = 100000
"""


def test_every_remote_mx_silent_is_still_an_outage(
    fresh_node: Callable[..., NodeProcess], world: World
) -> None:
    """The other side of the coin: when the node's own way out fails, destinations on many
    networks that answered lately all fall silent, and Outgoing mail says so."""
    hosts = [f"127.0.{20 + n}.1" for n in range(6)]
    for n, host in enumerate(hosts):
        world.dns.zone.add(f"p{n}.test", "MX", f"10 mx.p{n}.test.").add(f"mx.p{n}.test", "A", host)
    providers = Sink(hosts=hosts, port=world.provider.port, record_data=False).start()
    try:
        node = start(fresh_node, world, PROBES)
        recipients = [f"r{n}@p{n}.test" for n in range(len(hosts))]
        with smtplib.SMTP("127.0.0.1", node.ports["smtp"], timeout=30) as client:
            for alias, target in [(f"out{n}@example.test", r) for n, r in enumerate(recipients)]:
                node._query(lambda store, a=alias, t=target: store.add_alias(a, t))
                client.sendmail("c@remote.test", [alias], f"To: <{alias}>\r\n\r\nhi\r\n")
        providers.wait_for(lambda: len(providers.received()) >= len(hosts), what="deliveries")
    finally:
        providers.stop()
    with smtplib.SMTP("127.0.0.1", node.ports["smtp"], timeout=30) as client:
        for _ in range(6):
            for n in range(len(hosts)):
                client.sendmail("c@remote.test", [f"out{n}@example.test"], "\r\nagain\r\n")

    def outgoing() -> str:
        (state,) = [c["status"] for c in summary(node)["components"] if c["id"] == "outgoing"]
        return str(state)

    with Watch(node) as watch:
        wait_for(lambda: outgoing() != "operational", timeout=30, what="Outgoing mail to turn bad")
    print(watch.summary())
    assert watch.remote_rate() < LIMITS.remote_success_rate.down, watch.summary()


# -- queue_depth, oldest_queue_age ----------------------------------------------------------------
QUEUE_LIMITS = """
[overload]
# The bounces at the end of life are retries: unbudgeted, they all happen within the test.
retry_budget_reserve = 100000

# Limits for a test that lasts seconds: more than 3 * SPREAD / 4 messages, 3 s.
[status.thresholds]
queue_depth = [45, 90]
oldest_queue_age = [3.0, 6.0, 12.0]
"""


def test_mail_for_a_dead_forwarding_target_is_not_our_backlog(
    fresh_node: Callable[..., NodeProcess], world: World
) -> None:
    """A customer's alias forwards to a domain whose MX died (it takes the connection and never
    greets); the stranger floods it with spam forged from domains that do not exist. The items
    wait in flight for the silent server, then as retries, then bounce at the end of their
    lifetime to the forged senders. None of it is mail the platform owes: the queue signals
    count only mail nobody tried yet and nobody works on. Before (queue limits at 45 items and
    3 s for a test that lasts seconds): depth and age of every due item, in flight or retried,
    published an outage."""
    node = start(fresh_node, world, QUEUE_LIMITS, lifetime=4.0)
    in_service(node, world)
    senders = [f"z{n}@nx{n}.test" for n in range(3 * SPREAD)]
    with served(node) as report, Watch(node) as watch:
        send(node, attacker(1), [(s, "gone@example.test") for s in senders])
        wait_for(lambda: tried(node, senders), timeout=60, what="the bounces at the end of life")
    print(watch.summary())
    # Arriving faster than the worker polls (5 times a second), up to half the flood waits for
    # its first try: new mail, not a backlog. Before, all of it counted while in flight.
    assert watch.most("queue_depth") <= 45, watch.summary()  # QUEUE_LIMITS
    assert watch.most("oldest_queue_age") <= 3.0, watch.summary()
    assert_unharmed(node, report)
    assert "event=remote_failed" in node.log() and "expired=yes" in node.log()


# -- admission_refusals_per_minute ----------------------------------------------------------------
PER_IP = (("smtp", 20), ("imap", 50), ("pop3", 20))  # [limits] max_connections_per_ip & co


def first_line(sock: socket.socket) -> bytes:
    """The server's first line: its greeting, or its refusal."""
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(1024)
        if not chunk:
            break
        data += chunk
    return data


# Not about overload: on a busy test machine (load 15 on 2 cores was seen) the scheduling lag
# alone makes the gate shed a share of new connections as overloaded, which is counted, rightly.
LAG_TOLERANT = """
[overload]
max_loop_lag = 2.0
"""


def test_connections_beyond_what_one_address_may_hold_are_its_own_excess(
    fresh_node: Callable[..., NodeProcess],
) -> None:
    """One address opens three times the connections it may hold on SMTP, IMAP and POP3, one
    after the other, and keeps them. The excess is refused (421, BYE, -ERR) for the address's own
    conduct: past its own bound ("ip"), and, since its connections stay silent, past its
    network's share of the gate's connect reservations ("client"). Exported, but not the
    platform turning customers away."""
    node = fresh_node(LAG_TOLERANT)
    reasons = ("ip", "network", "client", "overload", "node")

    def refused() -> dict[tuple[str, str], float]:
        return {
            (listener, reason): metric(
                node, "mailfort_admission_refusals_total", protocol=listener, reason=reason
            )
            or 0.0
            for listener, _ in PER_IP
            for reason in reasons
        }

    before = refused()
    sockets: list[socket.socket] = []
    refusals = 0
    try:
        with served(node) as report, Watch(node) as watch:
            for listener, per_ip in PER_IP:
                for _ in range(3 * per_ip):
                    sock = socket.create_connection(
                        ("127.0.0.1", node.ports[listener]), 10, source_address=(attacker(3), 0)
                    )
                    sockets.append(sock)
                    refusals += first_line(sock).startswith((b"421", b"* BYE", b"-ERR"))
            time.sleep(3)
    finally:
        for sock in sockets:
            sock.close()
    print(watch.summary())
    for protocol in (Protocol.SMTP, Protocol.IMAP, Protocol.POP3):
        assert watch.refusals(protocol) <= LIMITS.admission_refusals_per_minute.degraded, (
            watch.summary()
        )
    assert_unharmed(node, report)
    assert refusals >= sum(2 * per_ip for _, per_ip in PER_IP)
    after = refused()
    counted = {key: after[key] - before[key] for key in after}
    for listener, _ in PER_IP:
        assert counted[(listener, "overload")] == counted[(listener, "node")] == 0, counted
    assert sum(counted.values()) == refusals, counted


def test_a_burst_of_connections_from_one_address_is_its_own_excess(
    hostile_node: NodeProcess,
) -> None:
    """The same, all at once: what a flood looks like."""
    node = hostile_node
    sockets: list[socket.socket] = []
    try:
        with served(node) as report, Watch(node) as watch:
            time.sleep(1)
            for listener, per_ip in PER_IP:
                for _ in range(3 * per_ip):
                    sockets.append(
                        socket.create_connection(
                            ("127.0.0.1", node.ports[listener]), 10, source_address=(attacker(4), 0)
                        )
                    )
            time.sleep(3)
    finally:
        for sock in sockets:
            sock.close()
    print(watch.summary())
    for protocol in (Protocol.SMTP, Protocol.IMAP, Protocol.POP3):
        assert watch.refusals(protocol) <= LIMITS.admission_refusals_per_minute.degraded, (
            watch.summary()
        )
    assert_unharmed(node, report)


# -- store_commit_p95, accept_to_mailbox_p95, live_node_fraction --------------------------------
@pytest.mark.parametrize("addresses", [1, 8])
def test_a_flood_of_valid_mail_from_one_machine_keeps_the_store_and_the_nodes_calm(
    fresh_node: Callable[..., NodeProcess], addresses: int
) -> None:
    """One machine sends valid mail to a local user as fast as the node takes it, from the most
    connections its address may hold: every message is a store commit. What keeps one machine
    from saturating the store (and with it the commit p95, the 250-to-mailbox p95 and the
    heartbeats that make the node count as live) is the overload gate: its adaptive limit, and
    the per-network share of it (past which the flood's refusals are its own doing)."""
    node = fresh_node()
    stop = threading.Event()
    sent = [0]

    def flood(source: str) -> None:
        while not stop.is_set():
            try:
                with smtplib.SMTP(
                    "127.0.0.1", node.ports["smtp"], timeout=10, source_address=(source, 0)
                ) as client:
                    for n in range(50):
                        if stop.is_set():
                            break
                        client.sendmail("x@flood.test", ["bob@example.test"], f"\r\nflood {n}\r\n")
                        sent[0] += 1
            except (smtplib.SMTPException, OSError):
                time.sleep(0.05)  # refused for now: what a polite sender does

    threads = [
        threading.Thread(target=flood, args=(attacker(10 + a),), daemon=True)
        for a in range(addresses)
        for _ in range(20 if addresses == 1 else 10)
    ]
    with served(node) as report, Watch(node) as watch:
        for t in threads:
            t.start()
        time.sleep(5)
        stop.set()
        for t in threads:
            t.join(30)
    print(watch.summary())
    assert sent[0] >= 100
    assert watch.most("store_commit_p95") <= LIMITS.store_commit_p95.degraded, watch.summary()
    limit = LIMITS.accept_to_mailbox_p95.degraded
    assert watch.most("accept_to_mailbox_p95") <= limit, watch.summary()
    assert watch.least("live_node_fraction") == 1.0, watch.summary()
    assert_unharmed(node, report)
