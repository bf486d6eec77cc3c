"""`mailfort dkim` as an operator runs it: keys for new domains, a rotation in three runs with the
records to publish and to remove, and the exit statuses (0 done, 1 not now, 2 not understood)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mailfort.store.records import DkimKey, DkimState
from tests.dkim_support import publish
from tests.dnsserver import NameServer, Zone
from tests.integration.test_cli import fails, in_store, ok, provision
from tests.nodeproc import NodeProcess


@pytest.fixture
def dns() -> Iterator[NameServer]:
    server = NameServer(Zone()).start()
    yield server
    server.stop()


@pytest.fixture
def dkim_node(tmp_path: Path, dns: NameServer) -> NodeProcess:
    proc = NodeProcess(tmp_path, delivery=f'dns_nameservers = ["{dns.address}"]\n')
    proc.write_config()
    return proc


def keys(node: NodeProcess, domain: str) -> list[DkimKey]:
    return in_store(node, lambda s: s.dkim_keys(domain))


def states(node: NodeProcess, domain: str) -> dict[str, DkimState]:
    return {k.selector: k.state for k in keys(node, domain)}


def test_new_domains_sign_from_their_first_message(dkim_node: NodeProcess) -> None:
    out = ok(dkim_node, "init")
    # The configured local domain got keys, active at once, and their records were printed.
    assert set(states(dkim_node, "config-domain.test").values()) == {DkimState.ACTIVE}
    assert "._domainkey.config-domain.test. IN TXT" in out and "k=ed25519" in out
    again = ok(dkim_node, "init")
    assert "_domainkey" not in again and len(keys(dkim_node, "config-domain.test")) == 2
    added = ok(dkim_node, "domain", "add", "new.test")
    assert "mf" in added and "._domainkey.new.test. IN TXT" in added
    assert "already signs" in fails(dkim_node, "dkim", "create", "new.test")
    assert "not a local domain" in fails(dkim_node, "dkim", "create", "nope.test", status=2)


def test_a_rotation_in_three_runs(dkim_node: NodeProcess, dns: NameServer) -> None:
    provision(dkim_node, "rot.test")
    created = ok(dkim_node, "dkim", "create", "rot.test")
    assert "rot.test signs with" in created
    old = set(states(dkim_node, "rot.test"))

    started = ok(dkim_node, "dkim", "rotate", "rot.test")
    assert "step 1 of 3" in started and "again after" in started
    new = {k for k, s in states(dkim_node, "rot.test").items() if s is DkimState.PUBLISHED}
    assert len(new) == 2 and not new & old

    early = dkim_node.cli("dkim", "rotate", "rot.test")
    assert early.returncode == 1 and "--now" in early.stderr
    # On time (--now) but DNS shows no record yet: nothing changes, the records are repeated.
    absent = dkim_node.cli("dkim", "rotate", "rot.test", "--now")
    assert absent.returncode == 1 and "publish these records first" in absent.stderr
    publish(dns.zone, [k for k in keys(dkim_node, "rot.test") if k.selector in new])
    switched = ok(dkim_node, "dkim", "rotate", "rot.test", "--now")
    assert "step 2 of 3" in switched and "keep their records in DNS until" in switched
    assert {s for k, s in states(dkim_node, "rot.test").items() if k in old} == {DkimState.RETIRING}
    listed = ok(dkim_node, "dkim", "list", "rot.test")
    assert listed.count("\tretiring\t") == 2 and listed.count("\tactive\t") == 2

    assert dkim_node.cli("dkim", "rotate", "rot.test").returncode == 1  # old keys kept 7 days
    done = ok(dkim_node, "dkim", "rotate", "rot.test", "--now")
    assert "step 3 of 3" in done
    assert all(f"{k}._domainkey.rot.test. IN TXT" in done for k in old)
    assert {s for k, s in states(dkim_node, "rot.test").items() if k in old} == {DkimState.RETIRED}


def test_bad_values_exit_2(dkim_node: NodeProcess) -> None:
    provision(dkim_node, "rot.test")
    for bad in (("--wait", "soon"), ("--keep", "-1"), ("--keep", "nan")):
        refused = dkim_node.cli("dkim", "rotate", "rot.test", *bad)
        assert refused.returncode == 2 and "Traceback" not in refused.stderr
    fails(dkim_node, "dkim", "rotate", "bad domain", status=2)
    fails(dkim_node, "dkim", "list", "nope.test", status=2)
