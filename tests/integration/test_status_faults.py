"""Real faults on loopback, and the status engine telling about them by itself.

Nodes run with fast status settings (evaluations every 0.5 s, a 10-s window, 1 s before a worse
state and 5 s before a better one is published) and are hurt for real: every remote MX (the
test's SMTP sink plays them all) is stopped, logins are refused by the dozen, the SQLite file is
locked from outside so every commit waits, a PostgreSQL node is SIGKILLed. Each check waits (at
most 60 s: a fault is on the page within a minute) for the published component state and the
automatic incident,
read through the `StatusRepository` over a store opened on the node's own data, then for the
recovery.
The customer-facing side is checked where customers meet it: the submission 4xx text, the IMAP
`[ALERT]`, the POP3 `+OK`, the notice message in the INBOX, a webhook POST, and — when the node
serves the web — `/api/v2/summary.json` and `/history.atom`.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import imaplib
import json
import poplib
import re
import smtplib
import sqlite3
import threading
import time
import urllib.request
import uuid
from collections.abc import Awaitable, Callable, Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any, TypeVar

import pytest
from argon2 import PasswordHasher

from mailfort.status import Component, ComponentState, Incident, IncidentStatus, Origin
from mailfort.status.repository import StatusRepository
from mailfort.status.service import LEADER_LEASE
from mailfort.store.api import Store
from tests.cluster_support import PgSchema, base_dsn, cluster_node
from tests.conftest import PASSWORD, RawImap
from tests.dnsserver import NameServer
from tests.integration.status_web_support import with_repository
from tests.integration.test_remote_delivery import delivery_config, make_zone
from tests.login_clients import RawPop3
from tests.nodeproc import NodeProcess, free_ports
from tests.rawclient import client_tls
from tests.smtpsink import Sink
from tests.webhook_receiver import Receiver

T = TypeVar("T")

ALICE = "alice@example.test"  # sends while the MX is down: gets the notice
BOB = "bob@example.test"  # sends nothing remote: must get nothing
URL = "https://status.mailfort.test/"
DEADLINE = 60.0  # a fault is on the status page within a minute

FAST_STATUS = f"""
[cluster]
heartbeat_seconds = 0.5

[auth]
# Password checks one at a time, four waiting (one per client network): RefusedLogins can fill
# them from a few networks, as a real rush of logins from many networks would.
verify_concurrency = 1
verify_max_waiting = 4

[limits]
auth_failures_per_ip = 100000
auth_failures_per_network = 100000
auth_failures_per_account = 100000
auth_failure_delay = 0.0
max_recipients = 3

[overload]
# Not about overload: a busy test machine's scheduling lag must not shed these few connections.
max_loop_lag = 2.0
breaker_open_seconds = 0.5
breaker_max_open_seconds = 1.0
retry_budget_ratio = 0.9
retry_budget_reserve = 100000

[status]
webhook_allow_private = true
evaluate_seconds = 0.5
window_seconds = 10.0
worsen_after = 1.0
recover_after = 5.0
notice_delay = 2.0
remote_min_attempts = 3
login_min_attempts = 5
public_url = "{URL}"
page_refresh_seconds = 0.5
provider_name = "Mailfort Test"
"""

BAD = frozenset(
    {ComponentState.DEGRADED, ComponentState.PARTIAL_OUTAGE, ComponentState.MAJOR_OUTAGE}
)


# -- helpers ------------------------------------------------------------------------------------
def wait(predicate: Callable[[], T], what: str, timeout: float = DEADLINE) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.2)


def states(read: Callable[[Callable[[StatusRepository], Awaitable[Any]]], Any]) -> Any:
    async def fn(repo: StatusRepository) -> dict[Component, ComponentState]:
        return {c: p.state for c, p in (await repo.components()).items()}

    return read(fn)


def open_automatic(read: Callable[[Callable[[StatusRepository], Awaitable[Any]]], Any]) -> Any:
    async def fn(repo: StatusRepository) -> list[Incident]:
        found = await repo.incidents(open_only=True)
        return [i for i in found if i.origin is Origin.AUTOMATIC]

    return read(fn)


def incident(
    read: Callable[[Callable[[StatusRepository], Awaitable[Any]]], Any], incident_id: str
) -> Incident:
    found = read(lambda repo: repo.incident(incident_id))
    assert found is not None
    return found  # type: ignore[no-any-return]


def evaluated(read: Callable[[Callable[[StatusRepository], Awaitable[Any]]], Any]) -> bool:
    async def fn(repo: StatusRepository) -> bool:
        return all(p.updated_at is not None for p in (await repo.components()).values())

    return bool(read(fn))


def read_of(node: NodeProcess) -> Callable[[Callable[[StatusRepository], Awaitable[Any]]], Any]:
    return lambda fn: with_repository(node, fn)


def cheap_users(store_query: Callable[[Callable[[Store], Awaitable[None]]], None]) -> None:
    """Alice and Bob with the cheapest Argon2id hash: the node's real verify path, but a flood
    of wrong passwords costs milliseconds, not a busy CPU."""
    cheap = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash(PASSWORD)

    async def add(store: Store) -> None:
        for address in (ALICE, BOB):
            if await store.get_account(address) is None:
                await store.add_account(address, cheap)

    store_query(add)


def serve_http(node: NodeProcess, port: int) -> None:
    """Turn on the node's http listener (the base config leaves it off)."""
    text = node.config_path.read_text()
    node.config_path.write_text(text.replace('http = ""', f'http = "127.0.0.1:{port}"', 1))


def http_get(port: int, path: str) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
        return bytes(response.read())


def serves_web(node: NodeProcess) -> bool:
    """Whether this version of the node serves the status web (it lists the listener)."""
    return "\n  http " in (node.root / f"{node.name}.out").read_text()


def message(subject: str, sender: str) -> bytes:
    return (
        f"From: <{sender}>\r\nTo: undisclosed-recipients:;\r\nSubject: {subject}\r\n"
        f"Message-ID: <{uuid.uuid4().hex}@example.test>\r\n\r\nbody of {subject}\r\n"
    ).encode()


def submission(node: NodeProcess, user: str = ALICE) -> smtplib.SMTP:
    client = smtplib.SMTP("127.0.0.1", node.ports["submission"], timeout=30)
    client.starttls(context=client_tls())
    client.login(user, PASSWORD)
    return client


def imap_alerts(node: NodeProcess) -> list[bytes]:
    """Log in over IMAPS with the right password; the [ALERT] texts the login brought."""
    client = imaplib.IMAP4_SSL(
        "127.0.0.1", node.ports["imaps"], ssl_context=client_tls(), timeout=30
    )
    try:
        client.login(ALICE, PASSWORD)
        # imaplib files "* OK [ALERT] text" under OK, the code left in front of the text.
        _, untagged = client.response("OK")
        return [
            a.removeprefix(b"[ALERT] ")
            for a in untagged
            if isinstance(a, bytes) and a.startswith(b"[ALERT] ")
        ]
    finally:
        with contextlib.suppress(Exception):
            client.logout()


def pop3_greeting(node: NodeProcess) -> bytes:
    """The +OK of a successful POP3 login."""
    client = poplib.POP3_SSL("127.0.0.1", node.ports["pop3s"], context=client_tls(), timeout=30)
    try:
        client.user(ALICE)
        return client.pass_(PASSWORD)
    finally:
        with contextlib.suppress(Exception):
            client.quit()


class RefusedLogins:
    """Logins the node must refuse for want of capacity: its password checks (one at a time, four
    waiting, see FAST_STATUS) are kept full from eight client networks, one check each, with
    names nobody has (each costs a full argon2 check of the dummy hash). A login that finds every
    place taken is refused "try again later": the platform failing logins, which the status must
    tell (wrong passwords alone are nobody's outage and must not)."""

    NETWORKS = 8

    def __init__(self, node: NodeProcess) -> None:
        self.node = node
        self.stop = threading.Event()
        self.attempts = 0
        self.threads = [
            threading.Thread(target=run, args=(f"127.0.{20 + n}.1",), daemon=True)
            for n in range(self.NETWORKS)
            for run in (self._imap, self._pop3)
        ]

    def __enter__(self) -> RefusedLogins:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)

    def _imap(self, source: str) -> None:
        while not self.stop.is_set():
            with (
                contextlib.suppress(OSError, EOFError),
                RawImap(self.node.ports["imaps"], source=source, timeout=30) as raw,
            ):
                for n in range(20):
                    if self.stop.is_set():
                        break
                    raw.command(f'LOGIN "nobody{n}@example.test" "x"')
                    self.attempts += 1

    def _pop3(self, source: str) -> None:
        while not self.stop.is_set():
            with (
                contextlib.suppress(OSError, EOFError),
                RawPop3(self.node.ports["pop3s"], source=source, timeout=30) as raw,
            ):
                raw.line()  # greeting
                for n in range(20):
                    if self.stop.is_set():
                        break
                    raw.send(f"USER nobody{n}@example.test\r\nPASS x\r\n")
                    raw.line()
                    raw.line()
                    self.attempts += 1


class Traffic:
    """Local mail through the MX port in a loop (each one a store commit), until stopped."""

    def __init__(self, node: NodeProcess) -> None:
        self.node = node
        self.stop = threading.Event()
        self.sent = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Traffic:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(60)

    def _run(self) -> None:
        while not self.stop.is_set():
            with (
                contextlib.suppress(OSError, smtplib.SMTPException),
                smtplib.SMTP("127.0.0.1", self.node.ports["smtp"], timeout=30) as client,
            ):
                client.sendmail("someone@remote.test", [BOB], message("load", "x@y.test"))
                self.sent += 1
            time.sleep(0.05)


def hold_write_lock(db: Path, seconds: float, stop: threading.Event) -> None:
    """Take SQLite's write lock from outside again and again (0.6 s of every 0.75 s), so that
    every commit of the node waits: a slow disk, as the node sees it."""
    conn = sqlite3.connect(db, timeout=30, isolation_level=None)
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not stop.is_set():
            conn.execute("BEGIN IMMEDIATE")
            time.sleep(0.6)
            conn.execute("ROLLBACK")
            time.sleep(0.15)
    finally:
        conn.close()


# -- the SQLite node, its DNS and its remote MX -------------------------------------------------
@pytest.fixture(scope="module")
def dns() -> Iterator[NameServer]:
    server = NameServer(make_zone()).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def sink(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sink]:
    server = Sink(hosts=("127.0.0.1",), tls_dir=tmp_path_factory.mktemp("tls")).start()
    yield server
    with contextlib.suppress(RuntimeError):  # the MX test stopped it already
        server.stop()


@pytest.fixture(scope="module")
def http_port() -> int:
    return free_ports(1)[0]


@pytest.fixture(scope="module")
def node(
    tmp_path_factory: pytest.TempPathFactory, dns: NameServer, sink: Sink, http_port: int
) -> Iterator[NodeProcess]:
    proc = NodeProcess(
        tmp_path_factory.mktemp("status"),
        name="status1",
        delivery=delivery_config(dns, sink),
        extra_config=FAST_STATUS,
    )
    proc.provision(domains=("example.test",))
    cheap_users(proc._query)
    serve_http(proc, http_port)
    proc.start()
    yield proc
    proc.stop()
    assert "Traceback" not in proc.log()


def notices(node: NodeProcess, address: str) -> list[EmailMessage]:
    found = []
    for raw in node.inbox(address):
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        if parsed["X-Mailfort-Incident"]:
            found.append(parsed)
    return found


def wait_recovered(read: Callable[..., Any], incident_id: str) -> Incident:
    def resolved() -> Incident | None:
        found = incident(read, incident_id)
        return found if found.status is IncidentStatus.RESOLVED else None

    done = wait(resolved, f"incident {incident_id} to resolve itself")
    assert set(states(read).values()) == {ComponentState.OPERATIONAL}
    return done


# -- (a) no remote MX answers -------------------------------------------------------------------
def test_remote_mx_down_opens_an_incident_and_the_delayed_sender_gets_one_notice(
    node: NodeProcess, sink: Sink, http_port: int
) -> None:
    read = read_of(node)
    hooks = Receiver()
    revived: Sink | None = None
    hook = with_repository(node, lambda repo: repo.add_webhook(hooks.url))
    try:
        # The sink plays every remote MX: stopped, no destination answers, as when our own way
        # out is cut (the node has reached nobody yet). One provider's MX alone being down is
        # that provider's outage, not ours, and moves nothing (tests/adversarial/test_signals.py).
        sink.stop()
        with submission(node) as client:
            domains = ("remote.test", "sender.test", "pref.test", "fallback.test")
            for n, domain in enumerate(domains):
                client.sendmail(ALICE, [f"r{n}@{domain}"], message(f"held {n}", ALICE))

        wait(lambda: states(read)[Component.OUTGOING] in BAD, "Outgoing mail to turn bad")
        (opened,) = wait(lambda: open_automatic(read), "an automatic incident")
        assert Component.OUTGOING in opened.components
        change = opened.timeline[0].change
        assert change is not None and change.component is Component.OUTGOING
        assert any(f.signal == "remote_success_rate" for f in change.findings)

        # A submission 4xx names it: the 4th recipient is one too many (max_recipients = 3).
        def refusal_with_notice() -> str | None:
            with submission(node) as client:
                client.mail(ALICE)
                for n in range(3):
                    client.rcpt(f"x{n}@remote.test")
                code, text = client.rcpt("x3@remote.test")
                assert code == 452
                reply = text.decode()
                return reply if URL in reply else None

        reply = wait(refusal_with_notice, "the notice in a submission 4xx", timeout=20)
        assert reply.startswith("4.5.3 Too many recipients (Outgoing mail: ")

        if serves_web(node):
            # The web serves a snapshot refreshed every page_refresh_seconds: wait for it.
            def summary_shows_it() -> bool:
                data = json.loads(http_get(http_port, "/api/v2/summary.json"))
                outgoing = [c for c in data["components"] if c["id"] == "outgoing"]
                return outgoing[0]["status"] in {s.value for s in BAD} and opened.id in {
                    i["id"] for i in data["incidents"]
                }

            wait(summary_shows_it, "the incident in /api/v2/summary.json", timeout=20)
            feed = http_get(http_port, "/history.atom")
            assert f"incidents/{opened.id}".encode() in feed
            metrics = http_get(http_port, "/metrics").decode()
            gauge = re.search(r'^mailfort_component_status\{component="outgoing"\} (\S+)$',
                              metrics, re.M)  # fmt: skip
            assert gauge is not None and float(gauge[1]) >= 1.0
            assert re.search(r"^mailfort_incidents_open 1\.0$", metrics, re.M)
            assert re.search(r'^mailfort_nodes\{state="active"\} 1\.0$', metrics, re.M)

        revived = Sink(hosts=("127.0.0.1",), port=sink.port, tls_dir=sink.tls_dir).start()
        done = wait_recovered(read, opened.id)
        assert [e.change.new for e in done.timeline if e.change][-1] is ComponentState.OPERATIONAL

        (notice,) = wait(lambda: notices(node, ALICE), "the notice in the sender's INBOX", 20)
        assert notice["X-Mailfort-Incident"] == opened.id
        assert notice["From"] == "Mailfort Test <postmaster@example.test>"
        text = notice.get_content()
        assert "4 of your messages were delayed" in text
        assert "4 Ihrer Nachrichten wurden verzögert" in text
        assert URL in text
        assert notices(node, BOB) == []
        time.sleep(2)  # a few more evaluations: still exactly one
        assert len(notices(node, ALICE)) == 1

        # The webhook subscriber heard the component change and the incident.
        def heard() -> list[dict[str, Any]] | None:
            events = [json.loads(body) for _, body in hooks.bodies]
            statuses = {e["incident"]["status"] for e in events if "incident" in e}
            return events if {"investigating", "resolved"} <= statuses else None

        events = wait(heard, "webhook POSTs", timeout=20)
        assert any(
            e.get("component", {}).get("id") == "outgoing" and "component_update" in e
            for e in events
        )
    finally:
        with_repository(node, lambda repo: repo.remove_webhook(hook.id))
        hooks.close()
        if revived is not None:
            revived.stop()


# -- (b) logins are refused ---------------------------------------------------------------------
def test_refused_logins_degrade_imap_and_pop3_and_logins_carry_the_notice(
    node: NodeProcess,
) -> None:
    read = read_of(node)
    assert imap_alerts(node) == []  # Alice logs in once: her next checks are remembered
    pop3_greeting(node)
    with RefusedLogins(node) as flood:
        wait(
            lambda: {states(read)[Component.IMAP], states(read)[Component.POP3]} <= BAD,
            "IMAP and POP3 to turn bad",
        )
        (opened,) = wait(lambda: open_automatic(read), "an automatic incident")
        assert {Component.IMAP, Component.POP3} <= set(opened.components)
        findings = {f.signal for e in opened.timeline if e.change for f in e.change.findings}
        assert "login_success_rate" in findings

        alerts = wait(lambda: imap_alerts(node), "an IMAP [ALERT] at login", timeout=20)
        (alert,) = alerts
        assert alert.startswith(b"IMAP: ") and alert.endswith(URL.encode())
        greeting = wait(
            lambda: next((g for g in [pop3_greeting(node)] if URL.encode() in g), None),
            "the notice in POP3's +OK",
            timeout=20,
        )
        assert greeting.startswith(b"+OK ") and b"POP3: " in greeting
        assert flood.attempts > 0
    wait_recovered(read, opened.id)
    wait(lambda: imap_alerts(node) == [], "the [ALERT] to go", timeout=20)
    assert URL.encode() not in pop3_greeting(node)


# -- (c) the store is slow ----------------------------------------------------------------------
def test_a_slow_store_degrades_every_component_until_it_is_fast_again(node: NodeProcess) -> None:
    read = read_of(node)
    stop = threading.Event()
    locker = threading.Thread(target=hold_write_lock, args=(node.db_path, 40.0, stop))
    with Traffic(node):
        locker.start()
        try:
            wait(
                lambda: all(s in BAD for s in states(read).values()),
                "every component to turn bad",
            )
            (opened,) = open_automatic(read)
            findings = {f.signal for e in opened.timeline if e.change for f in e.change.findings}
            assert "store_commit_p95" in findings
        finally:
            stop.set()
            locker.join(30)
    wait_recovered(read, opened.id)


# -- (d) a node of two is SIGKILLed (PostgreSQL) --------------------------------------------------
@pytest.fixture(scope="module")
def schema() -> Iterator[PgSchema]:
    created = PgSchema.create(base_dsn())
    yield created
    created.drop()


def test_a_killed_node_degrades_the_cluster_until_it_is_back(
    schema: PgSchema, tmp_path: Path
) -> None:
    nodes = [
        cluster_node(tmp_path, name, schema.url, extra_config=FAST_STATUS)
        for name in ("pg1", "pg2")
    ]
    schema.provision(domains=("example.test",))
    cheap_users(schema.query)  # type: ignore[arg-type]

    def read(fn: Callable[[StatusRepository], Awaitable[T]]) -> T:
        return schema.query(lambda store: fn(StatusRepository(store)))

    def leader() -> str | None:
        return schema.query(lambda store: store.lease_holder(LEADER_LEASE, time.time()))

    for n in nodes:
        n.start()
    try:
        wait(lambda: evaluated(read), "a first evaluation by the leader")
        # The leader dies: the survivor must take the lease over and tell about it.
        victim = next(n for n in nodes if n.name == leader())
        survivor = next(n for n in nodes if n is not victim)
        victim.kill()
        wait(lambda: set(states(read).values()) <= BAD, "every component to turn bad")
        assert leader() == survivor.name
        (opened,) = open_automatic(read)
        findings = {f.signal for e in opened.timeline if e.change for f in e.change.findings}
        assert findings == {"live_node_fraction"}
        victim.start()
        wait_recovered(read, opened.id)
    finally:
        for n in nodes:
            n.stop()
    for n in nodes:
        assert "Traceback" not in n.log()
