"""Network namespaces for a campaign: each node runs in a namespace of its own, so that it can be
cut off from the database or from the remote MX while it keeps running.

Layout (all on this machine): the shared services (the PostgreSQL servers and the remote MX sink)
listen on loopback addresses of the host namespace, `10.77.0.1` (database) and `10.77.0.2`
(remote MX). Node `i` lives in namespace `mfc<i>`, joined to the host by a veth pair:
`10.77.<i>.1` on the host side, `10.77.<i>.2` inside, its default route through the host side.
Clients in the host namespace reach the node at `10.77.<i>.2`. A partition is an nftables set
of cut-off addresses inside the node's namespace whose packets are dropped both ways, so
connections do not fail fast: they go silent, as they do when a switch port dies.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from pathlib import Path
from typing import IO

DB_ADDR = "10.77.0.1"
MX_ADDR = "10.77.0.2"
_LOCK = Path("/run/mailfort-campaign.lock")


def missing_tools() -> list[str]:
    """What a campaign's network needs and this machine lacks (root, ip, nft)."""
    missing = []
    if os.geteuid() != 0:
        missing.append("root (network namespaces)")
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            missing.append(tool)
    return missing


def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(list(args), capture_output=True, text=True, timeout=30)
    if check and out.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {out.stderr.strip()}")
    return out


class Network:
    """The namespaces of `nodes` nodes; `setup()` and `teardown()` (safe to call twice, and
    cleaning what an earlier run that died left behind)."""

    def __init__(self, nodes: int) -> None:
        self.nodes = nodes
        self._lock: IO[str] | None = None

    @staticmethod
    def namespace(i: int) -> str:
        return f"mfc{i}"

    @staticmethod
    def address(i: int) -> str:
        return f"10.77.{i}.2"

    def wrap(self, i: int) -> list[str]:
        return ["ip", "netns", "exec", self.namespace(i)]

    def setup(self) -> None:
        # One campaign at a time: the addresses and names are fixed.
        self._lock = open(_LOCK, "w")  # noqa: SIM115
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(f"another campaign holds {_LOCK}") from None
        self._clean()
        for addr in (DB_ADDR, MX_ADDR):
            _run("ip", "addr", "add", f"{addr}/32", "dev", "lo")
        for i in range(1, self.nodes + 1):
            ns, host_if, node_if = self.namespace(i), f"mfc{i}h", f"mfc{i}n"
            _run("ip", "netns", "add", ns)
            _run("ip", "-n", ns, "link", "set", "lo", "up")
            _run("ip", "link", "add", host_if, "type", "veth", "peer", "name", node_if)
            _run("ip", "link", "set", node_if, "netns", ns)
            _run("ip", "addr", "add", f"10.77.{i}.1/24", "dev", host_if)
            _run("ip", "link", "set", host_if, "up")
            _run("ip", "-n", ns, "addr", "add", f"{self.address(i)}/24", "dev", node_if)
            _run("ip", "-n", ns, "link", "set", node_if, "up")
            _run("ip", "-n", ns, "route", "add", "default", "via", f"10.77.{i}.1")
            rules = (
                "table inet mfc {\n"
                "  set cut { type ipv4_addr; }\n"
                "  chain out { type filter hook output priority 0; ip daddr @cut drop; }\n"
                "  chain in { type filter hook input priority 0; ip saddr @cut drop; }\n"
                "}\n"
            )
            subprocess.run(
                ["ip", "netns", "exec", ns, "nft", "-f", "-"],
                input=rules,
                text=True,
                check=True,
                capture_output=True,
                timeout=30,
            )

    def cut(self, i: int, addr: str) -> None:
        """Drop every packet between node `i` and `addr`, both ways."""
        _run(*self.wrap(i), "nft", "add", "element", "inet", "mfc", "cut", f"{{ {addr} }}")

    def heal(self, i: int, addr: str) -> None:
        _run(
            *self.wrap(i),
            "nft",
            "delete",
            "element",
            "inet",
            "mfc",
            "cut",
            f"{{ {addr} }}",
            check=False,
        )

    def _clean(self) -> None:
        listed = _run("ip", "netns", "list", check=False).stdout.split()
        for ns in listed:
            if ns.startswith("mfc") and ns[3:].isdigit():
                _run("ip", "netns", "delete", ns, check=False)
        links = _run("ip", "-o", "link", "show", check=False).stdout
        for line in links.splitlines():
            name = line.split(":")[1].strip().split("@")[0] if ":" in line else ""
            if name.startswith("mfc") and name.endswith("h"):
                _run("ip", "link", "delete", name, check=False)
        for addr in (DB_ADDR, MX_ADDR):
            _run("ip", "addr", "delete", f"{addr}/32", "dev", "lo", check=False)

    def teardown(self) -> None:
        self._clean()
        if self._lock is not None:
            self._lock.close()
            self._lock = None
