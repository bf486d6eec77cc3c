"""Attacks on logins: floods of unknown users, guessing an account's password, concurrent bursts.

Each test runs its own node (the throttle's counts are the node's memory, and every attacker
shares 127.0.0.0/24), starts the customer first so that its network (127.0.9.0/24) is one that
has logged in to alice before, attacks, and then checks what the attacker got, that the customer
was served, and that no incident, no [ALERT] and no traceback came of it.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from tests import login_clients
from tests.adversarial.conftest import (
    PASSWORD,
    assert_unharmed,
    attacker,
    served,
)
from tests.adversarial.conftest import metric as sample
from tests.adversarial.customer import CUSTOMER
from tests.conftest import RawImap
from tests.nodeproc import NodeProcess

# /account over plain HTTP from loopback: no TLS proxy in front of the test node. And not about
# loop lag: on a busy test machine dozens of connects at once lag the loop past max_loop_lag's
# shedding, which would refuse connections (the customer's too) whatever the logins do; these
# attacks are about what logins cost.
PLAINTEXT = """
[auth]
allow_plaintext_loopback = true

[overload]
max_loop_lag = 2.0
"""
# Smaller limits where the attack is about what is refused, not how many checks pass: each
# check of a wrong password costs a full argon2 run (a second on a busy test machine).
SMALL_LIMITS = """
[limits]
auth_failures_per_ip = 3
auth_failures_per_network = 10
auth_failures_per_account = 5
"""
ALICE, VICTIM = "alice@example.test", "victim@example.test"

Login = Callable[[int, str, str, str], object]
# IMAP and POP3 in plain text (the node allows it from loopback here): these attacks are about
# logins, and dozens of TLS handshakes at once would measure the machine's CPU instead.
LOGINS: dict[str, tuple[str, Login]] = {
    "imap": ("imap", functools.partial(login_clients.imap, tls=False)),
    "pop3": ("pop3", functools.partial(login_clients.pop3, tls=False)),
    "submission": ("submission", login_clients.submission),
    "http": ("http", login_clients.account),
}
# Refused at connect (the node's overload shedding): the attacker is refused all the same.
AT_CONNECT = (b"* BYE", b"-ERR [SYS/TEMP]")


def refused(protocol: str, answer: object) -> bool:
    """A wrong or throttled login's answer on `protocol` (never a success, never a crash)."""
    if protocol == "imap":
        assert isinstance(answer, bytes)
        return answer.startswith(
            (b"a NO [AUTHENTICATIONFAILED]", b"a NO [UNAVAILABLE]", *AT_CONNECT)
        )
    if protocol == "pop3":
        assert isinstance(answer, bytes)
        return answer.startswith((b"-ERR [AUTH]", *AT_CONNECT))
    if protocol == "submission":
        assert isinstance(answer, tuple)
        return answer[0] in (535, 454, 421)
    return answer in (401, 429, 503)


def accepted(protocol: str, answer: object) -> bool:
    if protocol == "imap":
        return isinstance(answer, bytes) and answer.startswith(b"a OK")
    if protocol == "pop3":
        return isinstance(answer, bytes) and answer.startswith(b"+OK")
    if protocol == "submission":
        return isinstance(answer, tuple) and answer[0] == 235
    return answer == 200


def login(node: NodeProcess, protocol: str, source: str, user: str, password: str) -> object:
    port, fn = LOGINS[protocol]
    return fn(node.ports[port], source, user, password)


def owner_login(node: NodeProcess, protocol: str) -> object:
    """Alice's own login from the customer's address. The customer process logs in as alice
    too, and POP3 allows one session per maildrop: `-ERR [IN-USE]` (given only after the
    password was accepted) means her other session holds it for a moment, so try again."""
    for _ in range(10):
        answer = login(node, protocol, CUSTOMER, ALICE, PASSWORD)
        if not (isinstance(answer, bytes) and answer.startswith(b"-ERR [IN-USE]")):
            return answer
        time.sleep(0.3)
    return answer


def burst(
    node: NodeProcess, protocol: str, attempts: list[tuple[str, str, str]], workers: int = 45
) -> list[object]:
    """(source, user, password) attempts on `protocol`, `workers` at a time."""
    with ThreadPoolExecutor(workers) as pool:
        return list(pool.map(lambda a: login(node, protocol, *a), attempts))


def metric(node: NodeProcess, name: str, **labels: str) -> float:
    """The conftest's, with an absent sample read as zero."""
    return sample(node, name, **labels) or 0.0


def known_to_alice(node: NodeProcess) -> None:
    """The customer has logged in as alice from its network (it is now a known one)."""
    deadline = time.monotonic() + 20
    while metric(node, "mailfort_logins_total", protocol="pop3", result="success") < 1:
        assert time.monotonic() < deadline, "the customer never logged in"
        time.sleep(0.2)


def no_alert(node: NodeProcess) -> None:
    """Alice's IMAP login, from the customer's address, brings no [ALERT]."""
    with RawImap(node.ports["imaps"], source=CUSTOMER) as raw:
        untagged, done = raw.command(f'LOGIN "{ALICE}" "{PASSWORD}"')
    assert done.startswith(b"a OK"), done
    assert not any(b"[ALERT]" in line for line in untagged), untagged


def test_floods_of_unknown_users_publish_no_outage(fresh_node) -> None:  # type: ignore[no-untyped-def]
    """45 logins for users nobody has, on each protocol from 45 attacker addresses: before, a
    public incident ("only 0 % of IMAP logins succeed"), a red banner and an [ALERT] in every
    customer's login. Wrong credentials are the attacker's doing, not an outage."""
    node = fresh_node(PLAINTEXT + SMALL_LIMITS)
    with served(node) as report:
        known_to_alice(node)
        for protocol in LOGINS:
            attempts = [(attacker(n + 1), f"nobody{n}@example.test", "guess") for n in range(45)]
            answers = burst(node, protocol, attempts, workers=10)
            assert all(refused(protocol, a) for a in answers), (protocol, answers)
        time.sleep(3)  # evaluations every second, published after 2 s
    assert_unharmed(node, report)
    no_alert(node)
    # The attack is counted where operators look, just not as the platform failing.
    assert metric(node, "mailfort_logins_total", protocol="imap", result="rejected") > 0
    assert metric(node, "mailfort_logins_total", protocol="http", result="throttled") > 0
    assert metric(node, "mailfort_logins_total", protocol="imap", result="error") == 0


def test_an_attack_on_accounts_does_not_lock_their_owner_out(fresh_node) -> None:  # type: ignore[no-untyped-def]
    """Guesses at alice's and victim's passwords from the attacker network, past every limit
    (before: 20 failures from anywhere locked the account, owner included, for 15 minutes).
    Alice, from the network she logs in from, still gets in on every protocol; the attacker,
    even with her right password, does not."""
    node = fresh_node(PLAINTEXT + SMALL_LIMITS)
    with served(node) as report:
        known_to_alice(node)
        for protocol in LOGINS:
            attempts = [
                (attacker(n % 20 + 1), (ALICE, VICTIM)[n % 2], f"guess {protocol} {n}")
                for n in range(30)
            ]
            answers = burst(node, protocol, attempts, workers=10)
            assert all(refused(protocol, a) for a in answers), (protocol, answers)
        for protocol in LOGINS:
            assert accepted(protocol, owner_login(node, protocol)), protocol
            stolen = login(node, protocol, attacker(200), ALICE, PASSWORD)
            assert refused(protocol, stolen), (protocol, stolen)
    assert_unharmed(node, report)
    no_alert(node)


def test_a_concurrent_burst_gets_no_more_checks_than_the_limits(fresh_node) -> None:  # type: ignore[no-untyped-def]
    """70 wrong logins at once on one account from 7 addresses: before, 64 passwords were
    checked against limits of 10 per address and 20 per account (the throttle looked before
    the checks and counted after them). Now each attempt is counted before its check."""
    node = fresh_node(PLAINTEXT)
    with served(node) as report:
        known_to_alice(node)
        before = metric(node, "mailfort_password_verifications_total")
        attempts = [(attacker(n % 7 + 1), VICTIM, f"guess {n}") for n in range(70)]
        answers = burst(node, "imap", attempts, workers=70)
        checked = metric(node, "mailfort_password_verifications_total") - before
    assert all(refused("imap", a) for a in answers), answers
    assert 10 <= checked <= 20, checked  # the account's limit (20), not 64
    assert_unharmed(node, report)


def test_wrong_logins_hold_no_overload_slot_and_do_not_shrink_the_limit(fresh_node) -> None:  # type: ignore[no-untyped-def]
    """45 concurrent wrong IMAP logins: before, each held an overload-gate slot through its
    password check and its failure delay (seconds), which the adaptive limit read as a slow
    node and shrank. Now a login holds a slot for its store read only."""
    node = fresh_node(PLAINTEXT)
    with served(node) as report:
        known_to_alice(node)
        limit = metric(node, "mailfort_concurrency_limit", scope="store")
        attempts = [(attacker(n + 1), ALICE, f"guess {n}") for n in range(45)]
        with ThreadPoolExecutor(1) as watcher:
            watching = watcher.submit(in_flight, node, seconds=4.0)
            answers = burst(node, "imap", attempts)
            held = sorted(watching.result())
        time.sleep(1.5)  # the gate's sampler publishes the limit every tick
        after = metric(node, "mailfort_concurrency_limit", scope="store")
    assert all(refused("imap", a) for a in answers), answers
    # Slots are held for the account reads (a moment), not through the checks and the delays
    # (seconds): most of the time only the customer's own work holds any.
    assert held[len(held) // 2] <= 3, held
    assert limit > 0 and after >= limit, (limit, after)
    assert_unharmed(node, report)


def in_flight(node: NodeProcess, seconds: float) -> list[float]:
    """The store-bound work the node reported in flight, every 50 ms for `seconds`."""
    samples, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        samples.append(metric(node, "mailfort_in_flight", scope="store"))
        time.sleep(0.05)
    return samples
