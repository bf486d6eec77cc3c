"""The login throttle on a real node, on every protocol that takes a password: IMAP, POP3,
submission and the status web's `/account`.

Clients bind to addresses of several 127.x.y.0/24 networks, so that per-address, per-network and
per-account counts can be told apart; the owner logs in from 127.0.9.0/24, a network nobody else
uses. Each protocol gets its own networks and accounts, so the tests do not share counts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
from argon2 import PasswordHasher

from mailfort.store.sqlite import SqliteStore
from tests import login_clients
from tests.conftest import PASSWORD
from tests.nodeproc import NodeProcess

PER_IP, PER_NETWORK, PER_ACCOUNT = 3, 6, 4
CONFIG = f"""
[limits]
auth_failures_per_ip = {PER_IP}
auth_failures_per_network = {PER_NETWORK}
auth_failures_per_account = {PER_ACCOUNT}
auth_failure_window = 60.0
auth_failure_delay = 0.05

[auth]
# /account over plain HTTP from loopback (no TLS proxy in front in tests).
allow_plaintext_loopback = true
"""
OWNER = "127.0.9.1"
OWNER_ELSEWHERE = "127.0.9.77"  # another address of the owner's network
USERS = [f"{who}-{p}@example.test" for who in ("owner", "bystander") for p in range(4)]


@dataclass(frozen=True)
class Protocol:
    """One protocol's login, and how its answers read."""

    name: str
    port: str
    login: Callable[..., object]
    ok: Callable[[object], bool]
    failed: Callable[[object], bool]
    throttled: Callable[[object], bool]


PROTOCOLS = [
    Protocol(
        "imap",
        "imaps",
        login_clients.imap,
        lambda r: r.startswith(b"a OK"),  # type: ignore[attr-defined]
        lambda r: r.startswith(b"a NO [AUTHENTICATIONFAILED]"),  # type: ignore[attr-defined]
        lambda r: r.startswith(b"a NO [UNAVAILABLE] too many failed logins"),  # type: ignore[attr-defined]
    ),
    Protocol(
        "pop3",
        "pop3s",
        login_clients.pop3,
        lambda r: r.startswith(b"+OK"),  # type: ignore[attr-defined]
        lambda r: r.startswith(b"-ERR [AUTH]"),  # type: ignore[attr-defined]
        lambda r: r == b"-ERR [SYS/TEMP] too many failed logins, try again later\r\n",
    ),
    Protocol(
        "submission",
        "submission",
        login_clients.submission,
        lambda r: r[0] == 235,  # type: ignore[index]
        lambda r: r[0] == 535 and r[1].startswith(b"5.7.8"),  # type: ignore[index]
        lambda r: r[0] == 454 and r[1].startswith(b"4.7.0"),  # type: ignore[index]
    ),
    Protocol(
        "http",
        "http",
        login_clients.account,
        lambda r: r == 200,
        lambda r: r == 401,
        lambda r: r == 429,
    ),
]


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    proc = NodeProcess(tmp_path_factory.mktemp("logins"), extra_config=CONFIG, http=True)
    proc.provision(domains=("example.test",))
    # The cheapest Argon2id: the node's real verify path, milliseconds per check.
    cheap = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1).hash(PASSWORD)

    async def add(store: SqliteStore) -> None:
        for address in USERS:
            await store.add_account(address, cheap)

    proc._query(add)
    proc.start()
    yield proc
    proc.stop()
    assert "Traceback" not in proc.log()


def attempt(node: NodeProcess, p: Protocol, source: str, user: str, password: str) -> object:
    return p.login(node.ports[p.port], source, user, password)


@pytest.mark.parametrize("p", PROTOCOLS, ids=[p.name for p in PROTOCOLS])
def test_guesses_are_refused_per_address_then_per_network(node: NodeProcess, p: Protocol) -> None:
    index = PROTOCOLS.index(p)
    net = f"127.0.{10 + index}"  # this protocol's attacker network
    bystander = f"bystander-{index}@example.test"
    for n in range(PER_IP):  # a different (unknown) account each time: the address's count
        assert p.failed(attempt(node, p, f"{net}.1", f"nobody-{p.name}-{n}@example.test", "x"))
    # Refused unchecked, even with a right password.
    assert p.throttled(attempt(node, p, f"{net}.1", bystander, PASSWORD))
    # The network's other addresses add up until the network is refused as a whole.
    for n in range(PER_NETWORK - PER_IP):
        source = f"{net}.{2 + n // PER_IP}"
        assert p.failed(attempt(node, p, source, f"someone-{p.name}-{n}@example.test", "x"))
    assert p.throttled(attempt(node, p, f"{net}.200", bystander, PASSWORD))
    # Another network is not touched.
    assert p.ok(attempt(node, p, f"127.0.{50 + index}.1", bystander, PASSWORD))


def test_an_attacked_account_lets_its_owner_in_from_a_network_it_knows(node: NodeProcess) -> None:
    """The account's limit refuses every network the owner never logged in from, and none the
    owner did: an attack on an account costs its owner nothing where the owner logs in. The
    known networks live in the store, so a restarted node knows them too."""
    owner = "owner-0@example.test"
    p = PROTOCOLS[0]
    assert p.ok(attempt(node, p, OWNER, owner, PASSWORD))  # the network becomes known

    def attack(first_net: int) -> None:
        for n in range(PER_ACCOUNT):  # one guess from each of several networks, any protocol
            q = PROTOCOLS[n % len(PROTOCOLS)]
            assert q.failed(attempt(node, q, f"127.0.{first_net + n}.1", owner, "guess"))

    def owner_served_only_where_known(stranger: str) -> None:
        for q in PROTOCOLS:
            assert q.ok(attempt(node, q, OWNER_ELSEWHERE, owner, PASSWORD)), q.name
            # Right password, unknown network: refused (the account's limit is reached).
            assert q.throttled(attempt(node, q, stranger, owner, PASSWORD)), q.name

    attack(100)
    owner_served_only_where_known("127.0.120.1")
    node.stop()
    node.start()  # the counts are gone with the process; the known networks are not
    attack(130)
    owner_served_only_where_known("127.0.150.1")
