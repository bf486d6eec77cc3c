"""The campaign's cluster: nodes in network namespaces over one PostgreSQL (a primary and a
synchronous standby), a remote MX sink, and the handles the nemesis pulls."""

from __future__ import annotations

import random
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.chaos.campaign.nemesis import signal_process
from tests.chaos.campaign.netns import DB_ADDR, MX_ADDR, Network
from tests.cluster_support import PgSchema, with_search_path
from tests.nodeproc import NodeProcess
from tests.smtpsink import Sink

FAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1"
# Every node listens on its own address, so all of them use the same ports.
PORTS = {
    "smtp": 2525,
    "submission": 2587,
    "submissions": 2465,
    "imap": 2143,
    "imaps": 2993,
    "pop3": 2110,
    "pop3s": 2995,
}


def node_config(lease: float) -> str:
    # Every client of a campaign comes from the host side of a node's veth, one address: the
    # per-address and per-network shares that guard against strangers would refuse the load.
    return (
        "[limits]\nmax_network_share = 1.0\nmax_connections_per_ip = 500\n"
        "imap_max_connections_per_ip = 500\npop3_max_connections_per_ip = 500\n"
        "auth_failures_per_ip = 1000\nauth_failures_per_network = 1000\n"
        f"[cluster]\nheartbeat_seconds = 0.5\ndrain_seconds = 5.0\n"
        f"maildrop_lease_seconds = {lease * 2:g}\n"
        # One account submits a fifth of the load: a campaign hour is more than its bound.
        "[submission]\nmessages_per_hour = 0\nrecipients_per_hour = 0\n"
    )


def delivery_config(name: str, sink_port: int) -> str:
    return (
        'dns_nameservers = ["127.0.0.1:9"]\ndns_timeout = 1.0\n'
        f'helo_name = "{name}.cluster.test"\n'
        "retry_base = 0.5\nretry_max = 2.0\nconnect_timeout = 2.0\ncommand_timeout = 10.0\n"
        f'[delivery.transports]\n"*" = "{MX_ADDR}:{sink_port}"\n'
    )


@dataclass
class ChaosNode:
    """A node in namespace `index`, as the nemesis sees it (implements `NodeHandle`)."""

    index: int
    proc: NodeProcess
    network: Network
    clock_file: Path
    starts: int = 0
    down: bool = False
    events: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.proc.name

    @property
    def host(self) -> str:
        return self.network.address(self.index)

    def start(self) -> None:
        # The database may be failing over or restarting: try until it serves.
        deadline = time.monotonic() + 180
        while True:
            try:
                self.proc.start(timeout=40)
                break
            except RuntimeError:
                self.proc.kill()
                if time.monotonic() > deadline:
                    raise
                time.sleep(1.0)
        self.starts += 1
        self.down = False

    def kill(self) -> None:
        self.down = True
        self.proc.kill()

    def pause(self) -> None:
        assert self.proc.proc is not None
        signal_process(self.proc.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc.proc is not None
        signal_process(self.proc.proc.pid, signal.SIGCONT)

    def restart(self) -> None:
        self.down = True
        self.proc.stop()
        self.start()

    def drain(self) -> None:
        self.down = True
        out = self.proc.cli("node", "drain", self.name)
        if out.returncode != 0:
            self.events.append(f"drain: {out.stderr.strip()[:200]}")
        assert self.proc.proc is not None
        try:
            self.proc.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.events.append("drain: still running after 60 s, killed")
            self.proc.kill()
        self.start()

    def cut(self, what: str) -> None:
        self.network.cut(self.index, DB_ADDR if what == "db" else MX_ADDR)

    def heal(self, what: str) -> None:
        self.network.heal(self.index, DB_ADDR if what == "db" else MX_ADDR)

    def jump_clock(self, seconds: float) -> None:
        # libfaketime reads the file at most once a second (FAKETIME_CACHE_DURATION).
        self.clock_file.write_text(f"{seconds:+.0f}\n")


@dataclass
class Cluster:
    network: Network
    database: object  # PgPair
    schema: PgSchema
    sink: Sink
    nodes: list[ChaosNode]

    def target(self, rng: random.Random, listener: str) -> tuple[str, str, int]:
        node = rng.choice(self.nodes)
        return node.name, node.host, PORTS[listener]

    def stop(self) -> None:
        for node in self.nodes:
            node.resume()  # a paused process ignores SIGTERM until it runs again
            node.proc.stop()
        self.sink.stop()


def build(
    root: Path,
    network: Network,
    database: object,
    admin_dsn: str,
    lease: float,
    sink_delay: float = 0.5,
) -> Cluster:
    """Nodes (not started), the schema and the sink; `database` has been started."""
    schema = PgSchema.create(admin_dsn)
    sink = Sink(hosts=(MX_ADDR,), delay=sink_delay, record_data=True).start()
    nodes = []
    for i in range(1, network.nodes + 1):
        name = f"node-{i}"
        clock = root / f"{name}.clock"
        clock.parent.mkdir(parents=True, exist_ok=True)
        clock.write_text("+0\n")
        proc = NodeProcess(
            root / name,
            name=name,
            store_url=with_search_path(admin_dsn, schema.name),
            lease_seconds=lease,
            delivery=delivery_config(name, sink.port),
            extra_config=node_config(lease),
            fixed_ports=dict(PORTS),
            host=network.address(i),
            wrap=network.wrap(i),
            env={
                "LD_PRELOAD": FAKETIME,
                "FAKETIME_TIMESTAMP_FILE": str(clock),
                "FAKETIME_CACHE_DURATION": "1",
                # A real clock step (NTP, a resumed VM) moves the wall clock only.
                "FAKETIME_DONT_FAKE_MONOTONIC": "1",
            },
        )
        proc.write_config()
        nodes.append(ChaosNode(i, proc, network, clock))
    return Cluster(network, database, schema, sink, nodes)
