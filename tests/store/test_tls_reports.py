"""TLS-RPT counts and report claims (role `TlsReports`): counts from every node add up, a report is
claimed once per day and domain in the whole store, and a node's reports stay under its cap."""

from __future__ import annotations

import asyncio

from mailfort.store.api import Store
from mailfort.store.records import TlsResultRow
from tests.store.conftest import Engine

T0 = 1_800_000_000.0


def row(domain: str, result: str = "", sessions: int = 1, day: str = "2027-01-14") -> TlsResultRow:
    return TlsResultRow(
        day=day,
        domain=domain,
        policy_type="sts",
        policy="version: STSv1\nmode: enforce\nmx: mx.a.test\nmax_age: 86400",
        mx_host="mx.a.test" if result else "",
        result=result,
        address="192.0.2.1" if result else "",
        sessions=sessions,
    )


async def test_counts_from_every_node_add_up(store: Store, engine: Engine) -> None:
    await store.add_tls_results([row("a.test", sessions=3), row("a.test", "certificate-expired")])
    other = engine.new_store()
    await other.open()
    try:
        await other.add_tls_results([row("a.test", sessions=2), row("b.test")])
        await other.add_tls_results([])
    finally:
        await other.close()
    found = await store.tls_results("2027-01-14", "a.test")
    assert sorted((r.result, r.sessions) for r in found) == [("", 5), ("certificate-expired", 1)]
    assert found[0].policy.endswith("max_age: 86400")
    assert await store.tls_results("2027-01-15", "a.test") == []


async def test_reports_are_claimed_once_and_pending_until_then(store: Store) -> None:
    await store.add_tls_results(
        [
            row("a.test"),
            row("b.test"),
            row("c.test", day="2027-01-15"),
            row("d.test", day="2027-01-16"),
        ]
    )
    pending = await store.tls_report_domains("2027-01-16", 10)
    assert pending == [("2027-01-14", "a.test"), ("2027-01-14", "b.test"), ("2027-01-15", "c.test")]
    assert await store.tls_report_domains("2027-01-16", 1) == [("2027-01-14", "a.test")]
    claims = await asyncio.gather(
        *(
            store.claim_tls_report(
                "2027-01-14", "a.test", f"n{i}", T0, report=True, since=T0 - 86400, cap=10
            )
            for i in range(5)
        )
    )
    assert sorted(claims) == [False] * 4 + [True]
    # A domain that asks for no report is done too: not looked up again.
    assert await store.claim_tls_report(
        "2027-01-14", "b.test", "n0", T0, report=False, since=T0 - 86400, cap=0
    )
    assert await store.tls_report_domains("2027-01-16", 10) == [("2027-01-15", "c.test")]


async def test_a_node_stays_under_its_cap(store: Store) -> None:
    domains = [f"d{i}.test" for i in range(5)]
    await store.add_tls_results([row(d) for d in domains])
    won = [
        await store.claim_tls_report(
            "2027-01-14", d, "n1", T0 + i, report=True, since=T0 - 86400, cap=3
        )
        for i, d in enumerate(domains)
    ]
    assert won == [True, True, True, False, False]
    # Another node has its own cap; a day later the first one has room again.
    assert await store.claim_tls_report(
        "2027-01-14", "d3.test", "n2", T0, report=True, since=T0 - 86400, cap=3
    )
    assert await store.claim_tls_report(
        "2027-01-14", "d4.test", "n1", T0 + 86400 + 10, report=True, since=T0 + 10, cap=3
    )


async def test_old_days_are_pruned(store: Store) -> None:
    await store.add_tls_results([row("a.test", day="2027-01-01"), row("a.test")])
    assert await store.claim_tls_report(
        "2027-01-01", "a.test", "n1", T0, report=True, since=T0 - 86400, cap=3
    )
    assert await store.prune_tls_results("2027-01-10") == 2
    assert await store.tls_report_domains("2027-01-20", 10) == [("2027-01-14", "a.test")]
