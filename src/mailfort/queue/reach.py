"""Whose fault a remote delivery's outcome is: the platform's, or the destination's.

The public "Outgoing mail" signal must measure whether *we* can hand mail to the world, not what
strangers make us send. Anyone can make mailfort attempt deliveries that fail: a message with a
forged sender at a dead domain, sent to an alias that forwards to a server that rejects it,
makes a bounce to that dead domain. Spammers forge senders at random existing domains, many of
them dead (backscatter), so counting failed attempts would let a stranger publish an outage.
Large operators judge their own queue the same way: Postfix marks a failing destination dead
and defers its mail without counting it against itself (qmgr), and its QSHAPE_README reads a
large deferred queue as remote trouble, the incoming and active queues as our own.

Each attempt is judged by who answered (`delivery.remote.Reach`):

* a server answered (delivered, or refused with any 4xx/5xx, or broke off): the platform reached
  it, whatever the answer (a refusal is the destination's decision) -- *reached*;
* the domain's DNS says it takes no mail (NXDOMAIN, null MX, no address) -- *theirs*;
* our own name server answers no lookup at all, or the operator's smarthost (transport "*")
  is silent -- *ours*;
* nobody answered (no connection, the domain's DNS failing): a destination that answered this
  node within `remember` is *unreachable*, charged to the network its server answered from;
  one that never answered (a dead domain, a forged sender) is *theirs*. While this node has
  reached no server at all within `remember` (it just started, or it is cut off), it cannot
  tell its fault from theirs: silence is *unreachable*, charged to the destination itself.

The status collector counts `reached` as successes and `ours` and `unreachable` as failures, but
caps what each network (or destination) is charged at a share of everything else
(`collector.py`): one of them going silent is its own outage, not ours (a provider's outage, a
stranger's server that took one bounce and then stopped answering, a customer's forwarding
target that died); our own network failing silences many at once.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from dataclasses import dataclass, field

from mailfort.delivery.remote import Destination, Reach, RecipientResult
from mailfort.network import Networks

# A destination that answered within a day still counts as one we can reach: a failure to reach
# it is worth a look. Longer would keep destinations that have since died.
REMEMBER_SECONDS = 86400.0
# Destinations remembered at once (the least recently answered are forgotten first); a
# provider's customers write to a few thousand domains a day.
CAPACITY = 10_000


class Verdict(enum.Enum):
    REACHED = "reached"
    THEIRS = "theirs"
    OURS = "ours"
    UNREACHABLE = "unreachable"  # silent, though it answered lately: charged to its network


@dataclass(slots=True)
class KnownDestinations:
    """The destinations whose servers answered this node lately, and from which network."""

    networks: Networks = field(default_factory=Networks)
    remember: float = REMEMBER_SECONDS
    capacity: int = CAPACITY
    _seen: OrderedDict[str, tuple[float, str]] = field(default_factory=OrderedDict)
    _last_answer: float | None = None

    def __len__(self) -> int:
        return len(self._seen)

    def answered(self, key: str, address: str | None, now: float) -> None:
        """A server of destination `key` answered from `address` at `now`."""
        self._last_answer = now
        network = self.networks.of(address) if address else key
        self._seen[key] = (now, network)
        self._seen.move_to_end(key)
        while len(self._seen) > self.capacity:
            self._seen.popitem(last=False)

    def network(self, key: str, now: float) -> str | None:
        """The network destination `key` last answered from, if it answered lately."""
        seen = self._seen.get(key)
        if seen is None or now - seen[0] > self.remember:
            return None
        return seen[1]

    def reached_any(self, now: float) -> bool:
        return self._last_answer is not None and now - self._last_answer <= self.remember

    def judge(
        self, dest: Destination, result: RecipientResult, now: float
    ) -> tuple[Verdict, str | None]:
        """The verdict on one recipient's attempt, and for UNREACHABLE the network charged."""
        if result.reach is Reach.SERVER:
            self.answered(dest.key, result.remote_address, now)
            return Verdict.REACHED, None
        if result.reach is Reach.NO_DOMAIN:
            return Verdict.THEIRS, None
        if result.reach is Reach.LOCAL or dest.relay:
            return Verdict.OURS, None
        network = self.network(dest.key, now)
        if network is not None:
            return Verdict.UNREACHABLE, network
        if not self.reached_any(now):
            return Verdict.UNREACHABLE, dest.key
        return Verdict.THEIRS, None
