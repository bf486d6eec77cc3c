"""Connection admission: a bound per node, per client address and per client network, checked
before any work is done for a connection."""

from __future__ import annotations

from collections import Counter
from enum import Enum

from mailfort.network import Networks, share_of


class Refusal(Enum):
    NODE_FULL = "node"
    IP_FULL = "ip"
    NETWORK_FULL = "network"
    DRAINING = "draining"


# Share of a listener's connection slots in use from which it is under stress (Postfix's stress
# mode starts when every smtpd process is busy; starting a little earlier leaves room to recover).
STRESS_SHARE = 0.8


class ConnectionLimiter:
    """Counts open connections; `admit` either takes a slot or says why not.

    A client is bounded per address (`max_per_ip`) and per network (`network_share` of the
    slots): one machine that owns a /24 or a /64 must not take the whole listener by using many
    addresses, and the slots it cannot take stay free for everyone else."""

    def __init__(
        self,
        *,
        max_total: int,
        max_per_ip: int,
        networks: Networks | None = None,
        network_share: float = 1.0,
    ) -> None:
        self.max_total = max_total
        self.max_per_ip = max_per_ip
        self.networks = networks or Networks()
        self.max_per_network = share_of(max_total, network_share)
        self._per_ip: Counter[str] = Counter()
        self._per_network: Counter[str] = Counter()
        self.total = 0
        self.draining = False
        self.refused = Counter[Refusal]()

    def admit(self, ip: str) -> Refusal | None:
        refusal = None
        network = self.networks.of(ip)
        if self.draining:
            refusal = Refusal.DRAINING
        elif self._per_ip[ip] >= self.max_per_ip:
            refusal = Refusal.IP_FULL
        elif self.max_per_network < self.max_total and (
            self._per_network[network] >= self.max_per_network
        ):
            refusal = Refusal.NETWORK_FULL
        elif self.total >= self.max_total:
            refusal = Refusal.NODE_FULL
        if refusal is not None:
            self.refused[refusal] += 1
            return refusal
        self.total += 1
        self._per_ip[ip] += 1
        self._per_network[network] += 1
        return None

    @property
    def stressed(self) -> bool:
        """Most slots are taken (`STRESS_SHARE`): idle sessions should make room for new ones."""
        return self.total >= self.max_total * STRESS_SHARE

    def login_deadline(self, connected_at: float, usual: float, under_stress: float) -> float:
        """When a client that connected at `connected_at` and has not logged in is sent away:
        `usual` seconds later, or `under_stress` while most slots are taken (Postfix's stress
        mode, for the part of it that cannot hurt a user): strangers must not keep a full node
        from its users. Asked again while the client waits, since the node may fill meanwhile."""
        return connected_at + (min(usual, under_stress) if self.stressed else usual)

    def release(self, ip: str) -> None:
        self.total -= 1
        _drop(self._per_ip, ip)
        _drop(self._per_network, self.networks.of(ip))


def _drop(counts: Counter[str], key: str) -> None:
    counts[key] -= 1
    if counts[key] <= 0:
        del counts[key]
