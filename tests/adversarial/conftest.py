"""The adversarial suite's node and its witnesses.

Every attack runs against a real node on loopback from attacker addresses in 127.0.0.0/24, while
a customer (`customer.py`, its own process) keeps sending mail and logging in from 127.0.9.1, a
network no attacker uses. After the attack the test checks, with `assert_unharmed`:

* the customer was served: every message got 250, every login succeeded, p99 under 1 s;
* the status record is calm: no incident was opened and every component stayed operational
  (the node evaluates every second with a 2-s hysteresis, so a signal an attacker could move
  would show within the attack);
* the node logged no traceback.
"""

from __future__ import annotations

import contextlib
import json
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.adversarial.customer import CUSTOMER, Plan, Report, customer
from tests.nodeproc import NO_DNS, NodeProcess

PASSWORD = "correct horse battery staple"
USERS = {
    "alice@example.test": PASSWORD,  # the customer
    "bob@example.test": PASSWORD,
    "victim@example.test": PASSWORD,  # an account the attacker goes after
}
ALIASES = (("postmaster@example.test", "bob@example.test"),)
ATTACKER_NET = "127.0.0"


def attacker(n: int) -> str:
    """The n-th attacker address (1..250), all in 127.0.0.0/24; the customer is elsewhere."""
    assert 1 <= n <= 250
    return f"{ATTACKER_NET}.{n + 1}"


# Status settings that make a movable signal visible within seconds: evaluated every second over
# a 10-s window, published after 2 s. (Defaults: 10 s, 60 s, 20 s.)
STATUS = """
[cluster]
heartbeat_seconds = 1

[status]
evaluate_seconds = 1
window_seconds = 10
worsen_after = 2
page_refresh_seconds = 0.5
"""


def start_hostile_node(root: Path, extra_config: str = "", delivery: str = NO_DNS) -> NodeProcess:
    """A node with the default limits, the status web on, and the suite's accounts;
    `delivery`: the lines of its `[delivery]` table."""
    node = NodeProcess(root, extra_config=STATUS + extra_config, http=True, delivery=delivery)
    node.provision(domains=("example.test",), users=USERS, aliases=ALIASES)
    return node.start()


@pytest.fixture(scope="module")
def hostile_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    node = start_hostile_node(tmp_path_factory.mktemp("hostile"))
    yield node
    node.stop()


@pytest.fixture
def fresh_node(tmp_path: Path) -> Iterator[Callable[..., NodeProcess]]:
    """A factory for a node of the test's own (`fresh_node(extra_config, delivery=...)`),
    stopped at the end."""
    started: list[NodeProcess] = []

    def make(extra_config: str = "", delivery: str = NO_DNS) -> NodeProcess:
        node = start_hostile_node(tmp_path / f"node{len(started)}", extra_config, delivery)
        started.append(node)
        return node

    yield make
    for node in started:
        node.stop()


def plan_for(node: NodeProcess, **overrides: object) -> Plan:
    plan = Plan(
        ports=dict(node.ports),
        user="alice@example.test",
        password=PASSWORD,
        recipient="alice@example.test",
        source=CUSTOMER,
    )
    for key, value in overrides.items():
        setattr(plan, key, value)
    return plan


def served(node: NodeProcess, **overrides: object) -> contextlib.AbstractContextManager[Report]:
    """`with served(node) as report:` runs the customer for the block."""
    return customer(plan_for(node, **overrides))


def summary(node: NodeProcess) -> dict:  # type: ignore[type-arg]
    url = f"http://127.0.0.1:{node.ports['http']}/api/v2/summary.json"
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())  # type: ignore[no-any-return]


def assert_calm(node: NodeProcess, *, settle: float = 3.0) -> None:
    """No incident was ever opened and every component is operational, `settle` seconds on
    (one evaluation and the hysteresis after the attack's last effect)."""
    time.sleep(settle)
    listed = node.cli("status", "incident", "list", "--all")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.strip() == "no incidents", listed.stdout
    doc = summary(node)
    states = {c["id"]: c["status"] for c in doc["components"]}
    assert set(states.values()) == {"operational"}, states


def assert_no_traceback(node: NodeProcess) -> None:
    log = node.log()
    assert "Traceback" not in log, log[log.find("Traceback") - 2000 :][:6000]


def assert_served(report: Report, *, p99: float = 1.0, at_least: int = 4) -> None:
    """The customer got every answer it should have, quickly enough, and did enough."""
    assert not report.failures(), report.summary()
    assert len(report.outcomes) >= at_least, report.summary()
    assert report.p99() < p99, report.summary()


def assert_unharmed(node: NodeProcess, report: Report, *, p99: float = 1.0) -> None:
    assert_served(report, p99=p99)
    assert_no_traceback(node)
    assert_calm(node)


def metric(node: NodeProcess, name: str, **labels: str) -> float | None:
    """One sample from the node's /metrics (None when it is not there)."""
    from prometheus_client.parser import text_string_to_metric_families

    url = f"http://127.0.0.1:{node.ports['http']}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return None


def store_limit(node: NodeProcess) -> float:
    """The overload gate's adaptive limit now (the gate publishes it at its first tick)."""
    deadline = time.monotonic() + 10
    while (value := metric(node, "mailfort_concurrency_limit", scope="store")) is None:
        assert time.monotonic() < deadline, "no mailfort_concurrency_limit on /metrics"
        time.sleep(0.1)
    return value
