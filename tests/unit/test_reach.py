"""Whose fault a remote attempt is (queue/reach.py): only what strangers cannot cause is ours."""

from __future__ import annotations

from mailfort.delivery.remote import Destination, Outcome, Reach, RecipientResult
from mailfort.delivery.transport import Nexthop
from mailfort.network import Networks
from mailfort.queue.reach import KnownDestinations, Verdict

NOW = 1_000_000.0
DAY = 86400.0


def dest(domain: str, *, relay: bool = False) -> Destination:
    nexthop = Nexthop("192.0.2.25", 25) if relay else None
    return Destination(key=domain, domain=domain, nexthop=nexthop, relay=relay)


def result(reach: Reach, address: str | None = None) -> RecipientResult:
    outcome = Outcome.DELIVERED if reach is Reach.SERVER else Outcome.DEFERRED
    return RecipientResult(
        recipient="a@x.test",
        outcome=outcome,
        status="4.4.1",
        text="",
        reach=reach,
        remote_address=address,
    )


def test_answers_are_reached_whatever_they_say() -> None:
    known = KnownDestinations()
    refused = RecipientResult(
        recipient="a@big.test",
        outcome=Outcome.FAILED,
        status="5.7.1",
        text="550 spam",
        reach=Reach.SERVER,
        remote_address="198.51.100.7",
    )
    assert known.judge(dest("big.test"), refused, NOW) == (Verdict.REACHED, None)
    assert known.network("big.test", NOW) == "198.51.100.0/24"


def test_a_domain_that_does_not_exist_is_theirs() -> None:
    assert KnownDestinations().judge(dest("nx.test"), result(Reach.NO_DOMAIN), NOW) == (
        Verdict.THEIRS,
        None,
    )


def test_silence_from_a_destination_that_never_answered_is_theirs() -> None:
    """Backscatter to forged senders at dead domains: the platform is not to blame."""
    known = KnownDestinations()
    known.judge(dest("big.test"), result(Reach.SERVER, "198.51.100.7"), NOW)
    for n in range(100):
        verdict = known.judge(dest(f"dead{n}.test"), result(Reach.NOBODY, "203.0.113.9"), NOW)
        assert verdict == (Verdict.THEIRS, None)


def test_silence_from_a_destination_that_answered_lately_is_charged_to_its_network() -> None:
    known = KnownDestinations(Networks(v4_prefix=24))
    known.judge(dest("big.test"), result(Reach.SERVER, "198.51.100.7"), NOW)
    silent = result(Reach.NOBODY)  # e.g. its DNS fails: no address, its network is remembered
    assert known.judge(dest("big.test"), silent, NOW + 60) == (
        Verdict.UNREACHABLE,
        "198.51.100.0/24",
    )
    # A day later the answer is too old to vouch for it, and nobody else answered meanwhile.
    late = known.judge(dest("big.test"), silent, NOW + DAY + 61)
    assert late == (Verdict.UNREACHABLE, "big.test")


def test_a_node_that_reached_nobody_lately_cannot_blame_anybody() -> None:
    """Just started, or cut off: silence counts against us, charged to each destination (one
    silent destination alone is still its own outage), until some server answers."""
    known = KnownDestinations()
    silent = known.judge(dest("any.test"), result(Reach.NOBODY), NOW)
    assert silent == (Verdict.UNREACHABLE, "any.test")
    known.judge(dest("big.test"), result(Reach.SERVER, "198.51.100.7"), NOW)
    assert known.judge(dest("any.test"), result(Reach.NOBODY), NOW) == (Verdict.THEIRS, None)


def test_our_resolver_and_our_smarthost_are_ours() -> None:
    known = KnownDestinations()
    known.judge(dest("big.test"), result(Reach.SERVER, "198.51.100.7"), NOW)
    assert known.judge(dest("x.test"), result(Reach.LOCAL), NOW) == (Verdict.OURS, None)
    relay = dest("x.test", relay=True)
    assert known.judge(relay, result(Reach.NOBODY), NOW) == (Verdict.OURS, None)


def test_memory_is_bounded_and_forgets_the_least_recently_answered() -> None:
    known = KnownDestinations(capacity=3)
    for n in range(5):
        known.judge(dest(f"d{n}.test"), result(Reach.SERVER, f"192.0.2.{n}"), NOW + n)
    assert len(known) == 3
    assert known.network("d0.test", NOW + 5) is None
    assert known.network("d4.test", NOW + 5) == "192.0.2.0/24"
